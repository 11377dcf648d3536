// English and French text. The browser's language picks; the switch overrides
// and is remembered on this device only.

const STRINGS = {
  en: {
    language: 'Language',
    'privacy.link': 'Privacy',
    'landing.title': 'Private video meetings',
    'landing.lead': "Meetings on your organisation's own server. Nothing is sent to anyone else.",
    'landing.new': 'New meeting',
    'landing.joinLabel': 'Or paste a meeting link',
    'landing.joinButton': 'Open',
    'landing.badLink': 'That is not a meeting link.',
    'prejoin.title': 'Ready to join?',
    'prejoin.cameraOff': 'Camera is off',
    'prejoin.name': 'Your name',
    'prejoin.microphone': 'Microphone',
    'prejoin.camera': 'Camera',
    'prejoin.link': 'Meeting link',
    'prejoin.copy': 'Copy',
    'prejoin.copied': 'Link copied',
    'prejoin.join': 'Join now',
    'prejoin.noDevice': 'None',
    'prejoin.permissionDenied': 'The browser was not allowed to use the camera or microphone. You can still join and turn them on later.',
    'prejoin.deviceMissing': 'No camera or microphone was found.',
    'prejoin.deviceBusy': 'The camera or microphone is in use by another program.',
    'meeting.title': 'Meeting',
    'meeting.participants': 'Participants',
    'meeting.controls': 'Meeting controls',
    'meeting.you': '{name} (you)',
    'meeting.screenOf': "{name}'s screen",
    'meeting.yourScreen': 'Your screen',
    'meeting.guest': 'Guest',
    'meeting.joined': '{name} joined',
    'meeting.leftPeer': '{name} left',
    'meeting.connecting': 'Connecting…',
    'meeting.micOff': 'microphone off',
    'meeting.cannotDecrypt': 'Cannot be decrypted',
    'meeting.behind': 'Behind: still uses an old key (missed a change of members); not shown',
    'meeting.relabelled': 'Refused: the server sent someone else’s media under this name',
    'meeting.outside': 'Not in the encrypted meeting: cannot see or hear you',
    'security.title': 'Security',
    'security.on': '🔒 End-to-end encrypted',
    'security.off': 'Not encrypted yet: nothing is being sent',
    'security.explain': 'Compare this code with the other participants, aloud or on screen. If everyone sees the same code, nobody else can see or hear this meeting.',
    'chat.title': 'Chat',
    'chat.label': 'Message',
    'chat.send': 'Send',
    'controls.mic': 'Microphone',
    'controls.camera': 'Camera',
    'controls.screen': 'Share screen',
    'controls.leave': 'Leave',
    'left.title': 'You left the meeting',
    'left.rejoin': 'Rejoin',
    'left.home': 'Home',
    'error.signalingLost': 'The connection to the server was lost.',
    'error.mediaLost': 'The media connection was lost. Audio and video may have stopped.',
    'error.mediaReconnecting': 'Media connection interrupted; trying to recover…',
    'error.mediaBlocked': 'Audio and video cannot reach the server yet. A firewall may be blocking UDP traffic; ask your administrator.',
    'error.server': 'The server refused: {code}.',
    'error.room_full': 'This meeting is full.',
    'error.connection_lost': 'Your media connection stopped answering, so you were removed from the meeting.',
    'error.screenFailed': 'Screen sharing could not start.',
    'error.noWebRTC': 'This browser cannot take part in video meetings.',
    'error.linkIncomplete': 'This link is incomplete: the part after “#” is missing or damaged. Ask for the full meeting link.',
    'error.noEncryption': 'This browser cannot encrypt audio and video end to end, so it cannot join.',
    'error.notAdmitted': 'The other participants have not let this device into the encrypted meeting. The link may be wrong or incomplete.',
    'prejoin.passcode': 'Meeting passcode',
    'prejoin.hostNote': 'You created this meeting: you will be its host and let people in.',
    'landing.needsSecure': 'Starting a meeting needs a secure connection: open this server over HTTPS (or on localhost).',
    'waiting.title': 'Waiting for the host to let you in',
    'waiting.explain': 'The host knows you are here. The meeting opens as soon as they admit you.',
    'waiting.leave': 'Leave',
    'lobby.title': 'Waiting to join',
    'lobby.admitAll': 'Admit everyone',
    'lobby.admit': 'Admit',
    'lobby.deny': 'Deny',
    'lobby.admitName': 'Admit {name}',
    'lobby.denyName': 'Deny {name}',
    'lobby.unknownName': 'Unnamed guest',
    'lobby.unreadableName': 'Name not readable: this person may have a different link',
    'lobby.arrived': '{name} is waiting to join',
    'people.title': 'People',
    'people.host': 'host',
    'people.moderator': 'moderator',
    'people.muteName': 'Ask {name} to mute',
    'people.promoteName': 'Make {name} a moderator',
    'people.removeName': 'Remove {name}',
    'people.mute': 'Ask to mute',
    'people.promote': 'Make moderator',
    'people.remove': 'Remove',
    'people.you': 'you',
    'settings.title': 'Meeting settings',
    'settings.lobby': 'Lobby: people wait until admitted',
    'settings.locked': 'Locked: nobody new may join',
    'settings.persistent': 'Keep these settings for the next meetings of this link',
    'settings.passcode': 'Passcode',
    'settings.setPasscode': 'Set',
    'settings.clearPasscode': 'Remove',
    'settings.passcodeOn': 'A passcode is required to join.',
    'settings.passcodeOff': 'No passcode.',
    'settings.muteAll': 'Ask everyone to mute',
    'settings.end': 'End meeting for all',
    'endDialog.title': 'End the meeting for everyone?',
    'endDialog.explain': 'Everyone is disconnected, including people waiting in the lobby.',
    'endDialog.cancel': 'Cancel',
    'endDialog.confirm': 'End for all',
    'notice.muteAll': '{name} asked everyone to mute.',
    'notice.muteOne': '{name} asked {peer} to mute.',
    'notice.mutedYou': 'Your microphone was turned off at the host’s request.',
    'notice.lobbyOn': 'The lobby is on: new people wait to be admitted.',
    'notice.lobbyOff': 'The lobby is off: anyone with the link joins directly.',
    'notice.locked': 'The meeting is locked.',
    'notice.unlocked': 'The meeting is unlocked.',
    'notice.promoted': '{name} is now a moderator.',
    'notice.youPromoted': 'You are now a moderator: you can admit people, ask them to mute and remove guests.',
    'notice.passcodeSet': 'A passcode is now required to join.',
    'notice.passcodeCleared': 'The passcode was removed.',
    'error.groupRemoved': 'You were removed from the encrypted meeting.',
    'error.removed': 'The host removed you from the meeting.',
    'error.denied': 'The host did not let you in.',
    'error.meeting_ended': 'The host ended the meeting.',
    'error.room_unavailable': 'This meeting is not open: the host has not started it yet, or it is locked. Try again later.',
    'error.passcode_required': 'This meeting needs a passcode.',
    'error.wrong_passcode': 'That passcode is not right.',
    'error.rate_limited': 'Too many attempts from your network. Wait a minute and try again.',
    'error.server_busy': 'The server is busy. Try again in a moment.',
    'error.quota_exceeded': 'This server keeps no more permanent meetings. Ask its operator.',
    'error.timeout': 'The connection to the server was idle too long.',
    'error.forbidden': 'Only the host can do that.',
  },
  fr: {
    language: 'Langue',
    'privacy.link': 'Confidentialité',
    'landing.title': 'Réunions vidéo privées',
    'landing.lead': 'Des réunions sur le serveur de votre organisation. Rien n’est envoyé à qui que ce soit d’autre.',
    'landing.new': 'Nouvelle réunion',
    'landing.joinLabel': 'Ou collez un lien de réunion',
    'landing.joinButton': 'Ouvrir',
    'landing.badLink': 'Ce n’est pas un lien de réunion.',
    'prejoin.title': 'Prêt à rejoindre ?',
    'prejoin.cameraOff': 'La caméra est coupée',
    'prejoin.name': 'Votre nom',
    'prejoin.microphone': 'Micro',
    'prejoin.camera': 'Caméra',
    'prejoin.link': 'Lien de la réunion',
    'prejoin.copy': 'Copier',
    'prejoin.copied': 'Lien copié',
    'prejoin.join': 'Rejoindre',
    'prejoin.noDevice': 'Aucun',
    'prejoin.permissionDenied': 'Le navigateur n’a pas eu le droit d’utiliser la caméra ou le micro. Vous pouvez rejoindre quand même et les activer plus tard.',
    'prejoin.deviceMissing': 'Aucune caméra ni aucun micro n’a été trouvé.',
    'prejoin.deviceBusy': 'La caméra ou le micro est utilisé par un autre programme.',
    'meeting.title': 'Réunion',
    'meeting.participants': 'Participants',
    'meeting.controls': 'Commandes de la réunion',
    'meeting.you': '{name} (vous)',
    'meeting.screenOf': 'Écran de {name}',
    'meeting.yourScreen': 'Votre écran',
    'meeting.guest': 'Invité',
    'meeting.joined': '{name} a rejoint la réunion',
    'meeting.leftPeer': '{name} est parti',
    'meeting.connecting': 'Connexion…',
    'meeting.micOff': 'micro coupé',
    'meeting.cannotDecrypt': 'Impossible à déchiffrer',
    'meeting.behind': 'En retard : utilise encore une ancienne clé (a manqué un changement de participants) ; non affiché',
    'meeting.relabelled': 'Refusé : le serveur a envoyé sous ce nom le média de quelqu’un d’autre',
    'meeting.outside': 'Hors de la réunion chiffrée : ne peut ni vous voir ni vous entendre',
    'security.title': 'Sécurité',
    'security.on': '🔒 Chiffré de bout en bout',
    'security.off': 'Pas encore chiffré : rien n’est envoyé',
    'security.explain': 'Comparez ce code avec les autres participants, à voix haute ou à l’écran. Si tout le monde voit le même code, personne d’autre ne peut voir ni entendre cette réunion.',
    'chat.title': 'Discussion',
    'chat.label': 'Message',
    'chat.send': 'Envoyer',
    'controls.mic': 'Micro',
    'controls.camera': 'Caméra',
    'controls.screen': 'Partager l’écran',
    'controls.leave': 'Quitter',
    'left.title': 'Vous avez quitté la réunion',
    'left.rejoin': 'Rejoindre à nouveau',
    'left.home': 'Accueil',
    'error.signalingLost': 'La connexion au serveur a été perdue.',
    'error.mediaLost': 'La connexion média a été perdue. Le son et la vidéo ont pu s’arrêter.',
    'error.mediaReconnecting': 'Connexion média interrompue ; tentative de reprise…',
    'error.mediaBlocked': 'Le son et la vidéo n’atteignent pas encore le serveur. Un pare-feu bloque peut-être le trafic UDP ; contactez votre administrateur.',
    'error.server': 'Le serveur a refusé : {code}.',
    'error.room_full': 'Cette réunion est complète.',
    'error.connection_lost': 'Votre connexion média ne répondait plus : vous avez été retiré de la réunion.',
    'error.screenFailed': 'Le partage d’écran n’a pas pu démarrer.',
    'error.noWebRTC': 'Ce navigateur ne peut pas participer à des réunions vidéo.',
    'error.linkIncomplete': 'Ce lien est incomplet : la partie après « # » manque ou est abîmée. Demandez le lien complet de la réunion.',
    'error.noEncryption': 'Ce navigateur ne sait pas chiffrer le son et la vidéo de bout en bout : il ne peut pas rejoindre.',
    'error.notAdmitted': 'Les autres participants n’ont pas admis cet appareil dans la réunion chiffrée. Le lien est peut-être faux ou incomplet.',
    'prejoin.passcode': 'Code d’accès de la réunion',
    'prejoin.hostNote': 'Vous avez créé cette réunion : vous en serez l’hôte et ferez entrer les participants.',
    'landing.needsSecure': 'Démarrer une réunion demande une connexion sécurisée : ouvrez ce serveur en HTTPS (ou sur localhost).',
    'waiting.title': 'En attente de l’hôte',
    'waiting.explain': 'L’hôte sait que vous êtes là. La réunion s’ouvre dès qu’il vous admet.',
    'waiting.leave': 'Partir',
    'lobby.title': 'En attente d’entrer',
    'lobby.admitAll': 'Admettre tout le monde',
    'lobby.admit': 'Admettre',
    'lobby.deny': 'Refuser',
    'lobby.admitName': 'Admettre {name}',
    'lobby.denyName': 'Refuser {name}',
    'lobby.unknownName': 'Invité sans nom',
    'lobby.unreadableName': 'Nom illisible : cette personne a peut-être un autre lien',
    'lobby.arrived': '{name} attend d’entrer',
    'people.title': 'Participants',
    'people.host': 'hôte',
    'people.moderator': 'modérateur',
    'people.muteName': 'Demander à {name} de couper son micro',
    'people.promoteName': 'Nommer {name} modérateur',
    'people.removeName': 'Retirer {name}',
    'people.mute': 'Demander de couper le micro',
    'people.promote': 'Nommer modérateur',
    'people.remove': 'Retirer',
    'people.you': 'vous',
    'settings.title': 'Réglages de la réunion',
    'settings.lobby': 'Salle d’attente : les arrivants attendent d’être admis',
    'settings.locked': 'Verrouillée : personne de nouveau ne peut entrer',
    'settings.persistent': 'Garder ces réglages pour les prochaines réunions de ce lien',
    'settings.passcode': 'Code d’accès',
    'settings.setPasscode': 'Définir',
    'settings.clearPasscode': 'Supprimer',
    'settings.passcodeOn': 'Un code d’accès est demandé pour entrer.',
    'settings.passcodeOff': 'Pas de code d’accès.',
    'settings.muteAll': 'Demander à tous de couper leur micro',
    'settings.end': 'Terminer la réunion pour tous',
    'endDialog.title': 'Terminer la réunion pour tout le monde ?',
    'endDialog.explain': 'Tout le monde est déconnecté, y compris les personnes en salle d’attente.',
    'endDialog.cancel': 'Annuler',
    'endDialog.confirm': 'Terminer pour tous',
    'notice.muteAll': '{name} a demandé à tous de couper leur micro.',
    'notice.muteOne': '{name} a demandé à {peer} de couper son micro.',
    'notice.mutedYou': 'Votre micro a été coupé à la demande de l’hôte.',
    'notice.lobbyOn': 'La salle d’attente est activée : les arrivants attendent d’être admis.',
    'notice.lobbyOff': 'La salle d’attente est désactivée : toute personne ayant le lien entre directement.',
    'notice.locked': 'La réunion est verrouillée.',
    'notice.unlocked': 'La réunion est déverrouillée.',
    'notice.promoted': '{name} est maintenant modérateur.',
    'notice.youPromoted': 'Vous êtes maintenant modérateur : vous pouvez admettre des personnes, leur demander de couper leur micro et retirer des invités.',
    'notice.passcodeSet': 'Un code d’accès est maintenant demandé pour entrer.',
    'notice.passcodeCleared': 'Le code d’accès a été supprimé.',
    'error.groupRemoved': 'Vous avez été retiré de la réunion chiffrée.',
    'error.removed': 'L’hôte vous a retiré de la réunion.',
    'error.denied': 'L’hôte ne vous a pas fait entrer.',
    'error.meeting_ended': 'L’hôte a terminé la réunion.',
    'error.room_unavailable': 'Cette réunion n’est pas ouverte : l’hôte ne l’a pas encore démarrée, ou elle est verrouillée. Réessayez plus tard.',
    'error.passcode_required': 'Cette réunion demande un code d’accès.',
    'error.wrong_passcode': 'Ce code d’accès n’est pas le bon.',
    'error.rate_limited': 'Trop de tentatives depuis votre réseau. Attendez une minute et réessayez.',
    'error.server_busy': 'Le serveur est occupé. Réessayez dans un instant.',
    'error.quota_exceeded': 'Ce serveur ne garde plus de réunions permanentes. Adressez-vous à son exploitant.',
    'error.timeout': 'La connexion au serveur est restée inactive trop longtemps.',
    'error.forbidden': 'Seul l’hôte peut faire cela.',
  },
};

const STORAGE_KEY = 'aparte.lang';
let current = pickLanguage();
const listeners = new Set();

function pickLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && saved in STRINGS) return saved;
  const wanted = navigator.languages?.length ? navigator.languages : [navigator.language];
  for (const tag of wanted) {
    const base = String(tag).toLowerCase().split('-')[0];
    if (base in STRINGS) return base;
  }
  return 'en';
}

/** The current language code. */
export function lang() {
  return current;
}

/** The text for `key` in the current language, with `{name}` holes filled. */
export function t(key, vars = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ''));
}

/** Sets the language, remembers it, and re-renders every translated element. */
export function setLang(code) {
  if (!(code in STRINGS)) return;
  current = code;
  localStorage.setItem(STORAGE_KEY, code);
  apply(document);
  for (const fn of listeners) fn(code);
}

/** Calls `fn` after every language change. */
export function onLangChange(fn) {
  listeners.add(fn);
}

/** Fills `data-i18n` (text) and `data-i18n-label` (aria-label) under `root`. */
export function apply(root) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel));
    if (!el.title) el.title = t(el.dataset.i18nLabel);
  }
}

/** The keys a language has (for the test that both languages have the same). */
export function keysOf(code) {
  return Object.keys(STRINGS[code] ?? {});
}
