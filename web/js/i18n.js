// English and French text. The browser's language picks; the switch overrides
// and is remembered on this device only.

const STRINGS = {
  en: {
    language: 'Language',
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
    'error.removed': 'You were removed from the encrypted meeting.',
  },
  fr: {
    language: 'Langue',
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
    'error.removed': 'Vous avez été retiré de la réunion chiffrée.',
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
