// The page's entry point: picks the screen from the URL and wires the landing,
// pre-join and meeting screens to the modules that do the work.

import { HostPanel } from './host-panel.js';
import { apply, lang, onLangChange, setLang, t } from './i18n.js';
import { renderIcons } from './icons.js';
import { capabilities, newHostKey, roomForHostKey, base64url } from './keys.js';
import { LocalMedia, deviceErrorKey } from './media.js';
import { PeerSession, canEncryptMedia } from './peer.js';
import { RoomView } from './room-view.js';
import { Signaling } from './signaling.js';
import { SpeakingMeter } from './speaking.js';

const $ = (id) => document.getElementById(id);
const ROOM_RE = /^[A-Za-z0-9_-]{6,64}$/;
const SECRET_RE = /^[A-Za-z0-9_-]{22}$/;
/** How long old epochs' media keys stay accepted, for frames in flight. */
const GRACE_MS = 1000;
/** How long to wait for the group to let us in before saying so. */
const GROUP_SLOW_MS = 15000;
const NAME_KEY = 'aparte.name';
const MAX_NAME = 64;
const MEDIA_SLOW_MS = 10000;

/** Server errors after which this page is out of the meeting. */
const FATAL = new Set([
  'room_full', 'connection_lost', 'invalid_sdp', 'internal', 'removed', 'denied',
  'meeting_ended', 'room_unavailable', 'unsupported_version', 'timeout',
]);
/** Errors that refuse one request and leave the page where it is (fatal
 * only before the page is in a meeting or a lobby). */
const REFUSALS = new Set(['rate_limited', 'server_busy']);
/** Fatal errors after which rejoining cannot help right away. */
const FINAL = new Set(['removed', 'denied', 'meeting_ended']);

const ui = {
  screens: ['landing', 'prejoin', 'waiting', 'meeting', 'left'].map($),
  banner: $('banner'),
  announcer: $('announcer'),
};

function show(id) {
  for (const s of ui.screens) s.hidden = s.id !== id;
}

function banner(text, kind = 'error') {
  ui.banner.hidden = !text;
  ui.banner.textContent = text || '';
  ui.banner.className = `banner ${kind}`;
}

function announce(text) {
  ui.announcer.textContent = text;
}

/**
 * Creates a meeting: a host key this browser keeps, the room id derived from
 * it, and the link secret after '#' (the fragment is never sent to the
 * server). Resolves with the meeting's path.
 */
async function newMeetingPath() {
  const key = newHostKey();
  const room = await roomForHostKey(key);
  capabilities.setHostKey(room, key);
  const secret = base64url(crypto.getRandomValues(new Uint8Array(16)));
  return `/m/${room}#${secret}`;
}

// ---------------------------------------------------------------- landing

function landing() {
  show('landing');
  $('new-meeting').onclick = async () => {
    if (!window.isSecureContext || !crypto.subtle) {
      $('join-error').hidden = false;
      $('join-error').textContent = t('landing.needsSecure');
      return;
    }
    location.assign(await newMeetingPath());
  };
  $('join-form').onsubmit = (ev) => {
    ev.preventDefault();
    const text = $('join-link').value.trim();
    let path = null;
    try {
      const url = new URL(text, location.origin);
      const m = url.pathname.match(/^\/m\/([^/]+)$/);
      if (m && ROOM_RE.test(m[1]) && SECRET_RE.test(url.hash.slice(1))) path = `/m/${m[1]}${url.hash}`;
    } catch {
      // not a URL
    }
    if (path) {
      location.assign(path);
    } else {
      $('join-error').hidden = false;
      $('join-error').textContent = t('landing.badLink');
    }
  };
}

// ---------------------------------------------------------------- meeting

class Meeting {
  constructor(room, secret) {
    this.room = room;
    this.secret = secret;
    this.worker = null;
    /** Participants the group's keys cover (from MLS, not from the server). */
    this.roster = new Set();
    this.inGroup = false;
    this.decrypt = {};
    this.local = new LocalMedia((source, track) => this.#localTrack(source, track));
    this.view = new RoomView($('grid'), () => this.#layoutChanged());
    /** The last `view` message sent (JSON), and the timer that batches changes. */
    this.lastView = '';
    this.viewTimer = 0;
    this.me = null;
    this.signaling = null;
    this.session = null;
    this.offers = Promise.resolve();
    this.leaving = false;
    this.waiting = false;
    this.passcodeNeeded = false;
    /** Replies awaited from the worker, by request id. */
    this.replies = new Map();
    this.nextRequest = 1;
    this.notices = [];
    this.panel = new HostPanel({
      send: (msg) => {
        this.signaling?.send(msg);
        // A removal is committed from this page at once: the server cannot
        // keep the removed person in the group by not announcing it.
        if (msg.type === 'remove') this.worker?.postMessage({ op: 'remove', peer: msg.peer });
      },
      nameOf: (id) => (id === this.me ? this.name || t('meeting.guest') : this.view.nameOf(id)),
      askEnd: () => this.#askEnd(),
      setPasscode: (text) => this.signaling?.send({ type: 'update_room', passcode: text }),
    });
  }

  /** Asks the worker something that needs the link secret; resolves with its reply. */
  #ask(msg) {
    const id = this.nextRequest++;
    return new Promise((resolve) => {
      this.replies.set(id, resolve);
      this.worker.postMessage({ ...msg, id });
    });
  }

  get name() {
    return $('display-name').value.trim().slice(0, MAX_NAME);
  }

  state() {
    return { t: 'state', name: this.name, mic: this.local.micOn, camera: this.local.camOn, screen: this.local.screenOn };
  }

  /** Sends an application message to the group, end-to-end encrypted by the worker. */
  /** Sends `obj` to the group: to everyone, or only to the members in `to`. */
  sendToGroup(obj, to = []) {
    this.worker?.postMessage({ op: 'send', text: JSON.stringify(obj), to });
  }

  async prejoin() {
    show('prejoin');
    $('meeting-link').value = location.href;
    $('display-name').value = localStorage.getItem(NAME_KEY) || '';
    $('copy-link').onclick = async () => {
      try {
        await navigator.clipboard.writeText(location.href);
        announce(t('prejoin.copied'));
      } catch {
        $('meeting-link').select();
      }
    };
    $('pre-mic').onclick = () => this.#toggle('mic');
    $('pre-cam').onclick = () => this.#toggle('camera');
    $('mic-select').onchange = (ev) => this.local.chooseDevice('mic', ev.target.value).catch((e) => this.#deviceError(e));
    $('cam-select').onchange = (ev) => this.local.chooseDevice('camera', ev.target.value).catch((e) => this.#deviceError(e));
    $('prejoin-form').onsubmit = (ev) => {
      ev.preventDefault();
      this.join();
    };
    const linkError = !this.secret ? 'error.linkIncomplete' : !canEncryptMedia() ? 'error.noEncryption' : null;
    $('link-error').hidden = !linkError;
    $('link-error').textContent = linkError ? t(linkError) : '';
    $('join-button').disabled = !!linkError;
    $('host-note').hidden = !capabilities.hostKey(this.room);
    $('passcode-box').hidden = !this.passcodeNeeded;
    try {
      await this.local.start();
    } catch (e) {
      this.#deviceError(e);
    }
    this.#syncButtons();
    await this.#fillDevices();
    if (!this.name) $('display-name').focus();
    else if (this.passcodeNeeded) $('passcode').focus();
    else $('join-button').focus();
  }

  async #fillDevices() {
    let devices;
    try {
      devices = await this.local.devices();
    } catch {
      return;
    }
    for (const [kind, select] of [['mic', $('mic-select')], ['camera', $('cam-select')]]) {
      const current = this.local.tracks[kind]?.getSettings().deviceId || this.local.deviceIds[kind];
      const options = devices[kind].map((d, i) => {
        const o = document.createElement('option');
        o.value = d.deviceId;
        o.textContent = d.label || `${t(kind === 'mic' ? 'prejoin.microphone' : 'prejoin.camera')} ${i + 1}`;
        o.selected = d.deviceId === current;
        return o;
      });
      if (!options.length) {
        const o = document.createElement('option');
        o.value = '';
        o.textContent = t('prejoin.noDevice');
        options.push(o);
      }
      select.replaceChildren(...options);
    }
  }

  #deviceError(e) {
    const el = $('device-error');
    el.hidden = false;
    el.textContent = t(deviceErrorKey(e));
    this.#syncButtons();
  }

  async #toggle(source) {
    try {
      if (source === 'mic') await this.local.setMic(!this.local.micOn);
      if (source === 'camera') await this.local.setCamera(!this.local.camOn);
      if (source === 'screen') {
        if (this.local.screenOn) this.local.stopScreen();
        else await this.local.startScreen();
      }
    } catch (e) {
      if (source === 'screen') {
        if (e?.name !== 'NotAllowedError') banner(t('error.screenFailed'));
      } else {
        this.#deviceError(e);
      }
    }
    this.#syncButtons();
    this.#broadcastState();
  }

  #syncButtons() {
    const pairs = [
      ['pre-mic', this.local.micOn], ['pre-cam', this.local.camOn],
      ['mic-toggle', this.local.micOn], ['cam-toggle', this.local.camOn],
      ['screen-toggle', this.local.screenOn],
    ];
    for (const [id, on] of pairs) $(id).setAttribute('aria-pressed', String(on));
    renderIcons(document);
    $('preview').srcObject = this.local.tracks.camera ? new MediaStream([this.local.tracks.camera]) : null;
    $('preview-off').hidden = this.local.camOn;
  }

  #localTrack(source, track) {
    this.session?.setSource(source, track);
    if (source === 'mic' && this.meter) {
      if (track) this.meter.watch('local', track);
      else this.meter.unwatch('local');
    }
    if (this.me !== null) this.#renderLocal();
  }

  #renderLocal() {
    // Own screen share is shown too, so the presenter sees what others see.
    this.view.setLocal(this.state(), this.local.tracks.camera, this.local.tracks.screen);
  }

  async join() {
    localStorage.setItem(NAME_KEY, this.name);
    this.leaving = false;
    banner('');
    show('meeting');
    $('mic-toggle').onclick = () => this.#toggle('mic');
    $('cam-toggle').onclick = () => this.#toggle('camera');
    $('screen-toggle').onclick = () => this.#toggle('screen');
    $('leave').onclick = () => this.leave();
    $('waiting-leave').onclick = () => this.leave();
    $('passcode-error').hidden = true;
    $('passcode-error').textContent = '';
    this.view.clear();
    this.panel.reset();
    this.me = null;
    this.waiting = false;
    this.roster = new Set();
    this.inGroup = false;
    this.decrypt = {};
    $('chat-log').replaceChildren();
    $('chat-form').onsubmit = (ev) => {
      ev.preventDefault();
      const text = $('chat-input').value.trim();
      if (!text || !this.inGroup) return;
      this.sendToGroup({ t: 'chat', text: text.slice(0, 2000) });
      this.#chatLine(t('meeting.you', { name: this.name || t('meeting.guest') }), text);
      $('chat-input').value = '';
    };
    this.#securityState();
    // Who speaks, from the decrypted audio this page plays.
    this.meter?.close();
    this.meter = new SpeakingMeter((speaking, active) => {
      this.view.setSpeaking(speaking);
      if (active !== this.view.active) this.view.setActiveSpeaker(active);
    });
    if (this.local.tracks.mic) this.meter.watch('local', this.local.tracks.mic);
    $('layout-toggle').onclick = () => {
      const speaker = this.view.mode !== 'speaker';
      this.view.setMode(speaker ? 'speaker' : 'grid');
      $('layout-toggle').setAttribute('aria-pressed', String(speaker));
    };
    this.worker = new Worker('/js/e2ee-worker.js', { type: 'module' });
    this.worker.onmessage = (ev) => this.#fromWorker(ev.data);
    this.worker.postMessage({ op: 'init', secret: this.secret, graceMs: GRACE_MS });
    this.session = new PeerSession(
      {
        onTrack: (peer, source, track) => {
          this.view.setPeerTrack(peer, source, track);
          if (source === 'mic') this.meter.watch(peer, track);
        },
        onState: (state) => this.#mediaState(state),
      },
      this.worker,
    );
    for (const [source, track] of Object.entries(this.local.tracks)) this.session.setSource(source, track);
    this.signaling = new Signaling({
      onMessage: (msg) => this.#onMessage(msg),
      onClose: () => this.#signalingClosed(),
    });
    banner(t('meeting.connecting'), 'info');
    try {
      await this.signaling.connect();
    } catch {
      this.#end(t('error.signalingLost'));
      return;
    }
    const passcode = this.passcodeNeeded ? $('passcode').value : '';
    this.signaling.send({
      type: 'join',
      room: this.room,
      key: capabilities.hostKey(this.room) ?? capabilities.moderatorKey(this.room) ?? undefined,
      seat: capabilities.seat(this.room) ?? undefined,
      passcode: passcode || undefined,
    });
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this.worker?.postMessage({ op: 'stats' }), 1000);
  }

  /** Once in the meeting: if media or the group do not come up after a
   * while, say so instead of waiting silently. */
  #watchArrival() {
    clearTimeout(this.slowTimer);
    this.slowTimer = setTimeout(() => {
      const state = this.session?.pc.connectionState;
      if (this.session && state !== 'connected') banner(t('error.mediaBlocked'));
    }, MEDIA_SLOW_MS);
    clearTimeout(this.groupTimer);
    this.groupTimer = setTimeout(() => {
      if (this.session && !this.inGroup) banner(t('error.notAdmitted'));
    }, GROUP_SLOW_MS);
  }

  #fromWorker(m) {
    switch (m.op) {
      case 'send':
        this.signaling?.send(m.msg);
        break;
      case 'reply':
        this.replies.get(m.id)?.(m.value);
        this.replies.delete(m.id);
        break;
      case 'event':
        this.#e2eeEvent(m.event);
        break;
      case 'stats':
        this.#decryptStats(m.counters);
        break;
      case 'error':
        console.warn('e2ee:', m.message);
        break;
      default:
        break;
    }
  }

  #e2eeEvent(ev) {
    switch (ev.type) {
      case 'epoch': {
        const was = this.inGroup;
        this.inGroup = true;
        this.roster = new Set(ev.members.filter((id) => id !== this.me));
        this.#markOutsiders();
        this.code = { emoji: ev.emoji, digits: ev.digits };
        this.#securityState();
        if (!was) banner('');
        // Who we are and what we send: for everyone in our first epoch, then
        // only for those who just joined (the others know; in a large room a
        // broadcast per member per epoch would be N² messages).
        if (!was) this.sendToGroup(this.state());
        else if (ev.joined?.length) this.sendToGroup(this.state(), ev.joined);
        // Their frames open from now on, but those that came before the keys
        // were dropped and a decoder cannot start on a delta frame: ask for
        // their keyframes now rather than wait for the next one.
        for (const peer of ev.joined ?? []) this.signaling?.send({ type: 'keyframe', peer });
        break;
      }
      case 'message':
        this.#groupMessage(ev.from, ev.text);
        break;
      case 'removed':
        this.#end(t('error.groupRemoved'));
        break;
      case 'refused':
        console.warn('e2ee refused', ev.from, ev.reason);
        break;
      default:
        break;
    }
  }

  /** Everyone the server says is in the room but whom our group's keys do
   * not cover is shown as outside the encrypted meeting: it cannot see or
   * hear anyone (and anything it sends does not open). Only said by a page
   * that is in the group itself. */
  #markOutsiders() {
    for (const id of this.view.people.keys()) {
      if (id === 'local') continue;
      this.view.setOutside(id, this.inGroup && !this.roster.has(id));
    }
  }

  #groupMessage(from, text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    if (!m || typeof m !== 'object') return;
    if (m.t === 'state') {
      const known = this.view.people.get(from)?.name;
      const state = {
        name: typeof m.name === 'string' ? m.name.trim().slice(0, MAX_NAME) : '',
        mic: m.mic === true,
        camera: m.camera === true,
        screen: m.screen === true,
      };
      this.view.setPeer(from, state);
      this.panel.render();
      if (!known && state.name) announce(t('meeting.joined', { name: state.name }));
    } else if (m.t === 'chat' && typeof m.text === 'string') {
      this.#chatLine(this.view.nameOf(from), m.text.slice(0, 2000));
    }
  }

  /** A line everyone sees in the chat log and hears from a screen reader. */
  #notice(text) {
    this.notices.push(text);
    const li = document.createElement('li');
    li.className = 'notice';
    li.textContent = text;
    $('chat-log').append(li);
    li.scrollIntoView({ block: 'end' });
    announce(text);
  }

  #chatLine(who, text) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'who';
    name.textContent = who;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    li.append(name, body);
    $('chat-log').append(li);
    li.scrollIntoView({ block: 'end' });
  }

  /**
   * Marks tiles whose frames do not open, and says why: the sender is behind
   * the group's epoch, the server put someone else's frames on this tile, or
   * they do not decrypt at all (wrong link, or not in the group). A tile whose
   * frames open again loses its mark.
   */
  #decryptStats(counters) {
    this.lastCounters = counters;
    for (const [peer, c] of Object.entries(counters.byPeer)) {
      const prev = this.decrypt[peer] ?? { opened: 0, failed: 0, relabelled: 0, behind: 0 };
      const rose = (k) => (c[k] ?? 0) > (prev[k] ?? 0);
      if (c.opened > prev.opened) this.view.setStatus(Number(peer), null);
      else if (rose('behind')) this.view.setStatus(Number(peer), t('meeting.behind'));
      else if (rose('relabelled')) this.view.setStatus(Number(peer), t('meeting.relabelled'));
      else if (rose('failed')) this.view.setStatus(Number(peer), t('meeting.cannotDecrypt'));
      this.decrypt[peer] = { opened: c.opened, failed: c.failed, relabelled: c.relabelled, behind: c.behind };
    }
  }

  /** The security panel says exactly what the keys give, no more. */
  #securityState() {
    const status = $('e2ee-status');
    if (this.inGroup) {
      status.textContent = t('security.on');
      status.className = 'e2ee-status on';
      $('security-code').hidden = false;
      $('security-emoji').textContent = (this.code?.emoji ?? []).join(' ');
      $('security-digits').textContent = this.code?.digits ?? '';
    } else {
      status.textContent = t('security.off');
      status.className = 'e2ee-status off';
      $('security-code').hidden = true;
    }
  }

  #onMessage(msg) {
    switch (msg.type) {
      case 'waiting':
        this.waiting = true;
        this.waitingId = msg.you;
        banner('');
        show('waiting');
        $('waiting-leave').focus();
        // The name goes to the hosts sealed for this waiter's id: the server
        // can neither read it nor show it on someone else's request.
        this.#ask({ op: 'sealName', room: this.room, waiter: msg.you, name: this.name })
          .then((name) => this.signaling?.send({ type: 'lobby_name', name }))
          .catch(() => {});
        break;
      case 'welcome':
        this.me = msg.you;
        this.lastView = '';
        this.#layoutChanged();
        this.passcodeNeeded = false;
        if (this.waiting) {
          this.waiting = false;
          banner(t('meeting.connecting'), 'info');
          show('meeting');
        }
        capabilities.setSeat(this.room, msg.seat);
        this.#renderLocal();
        for (const p of msg.peers) this.view.setPeer(p.id, {});
        this.#markOutsiders();
        this.panel.welcome(msg);
        this.#watchArrival();
        this.worker.postMessage({ op: 'start', id: msg.you, createGroup: msg.create_group, room: this.room });
        break;
      case 'peer_joined':
        this.view.setPeer(msg.peer.id, {});
        this.panel.joined(msg.peer);
        this.#markOutsiders();
        break;
      case 'peer_left':
        announce(t('meeting.leftPeer', { name: this.view.nameOf(msg.peer) }));
        this.view.removePeer(msg.peer);
        this.meter?.unwatch(msg.peer);
        this.panel.left(msg.peer);
        this.worker.postMessage({ op: 'signal', text: JSON.stringify(msg) });
        break;
      case 'lobby_request':
        this.#lobbyRequest(msg);
        break;
      case 'lobby_done':
        this.panel.lobbyDone(msg.peer);
        break;
      case 'role_changed':
        this.panel.roleChanged(msg.peer, msg.role);
        if (msg.role === 'moderator') {
          this.#notice(msg.peer === this.me ? t('notice.youPromoted') : t('notice.promoted', { name: this.view.nameOf(msg.peer) }));
        }
        break;
      case 'moderator_key':
        capabilities.setModeratorKey(this.room, msg.key);
        break;
      case 'room_updated':
        this.#roomUpdated(msg.room);
        break;
      case 'mute_requested':
        this.#muteRequested(msg.by, msg.peer ?? null);
        break;
      case 'mls_join_request':
      case 'mls_commit':
      case 'mls_commit_result':
      case 'mls_welcome':
      case 'mls_app':
      case 'mls_create_group':
        this.worker.postMessage({ op: 'signal', text: JSON.stringify(msg) });
        break;
      case 'ice_servers':
        this.session?.useIceServers(msg.servers);
        break;
      case 'layers':
        // Encode only the camera layers someone receives.
        this.offers = this.offers.then(() => this.session?.setLayers(msg.source, msg.active));
        break;
      case 'offer':
        // Offers are answered one at a time, in order.
        this.offers = this.offers
          .then(() => this.session.answer(msg))
          .then((sdp) => this.signaling.send({ type: 'answer', sdp }))
          .catch((e) => {
            console.error('answer failed', e);
            banner(t('error.mediaLost'));
          });
        break;

      case 'error':
        this.#serverError(msg.code);
        break;
      default:
        break;
    }
  }

  /** Tiles moved, resized, appeared or left the screen: tell the server (at
   * most every 200 ms, and only what changed) so it sends each video at the
   * layer its tile needs and pauses those nobody sees. */
  #layoutChanged() {
    if (this.viewTimer) return;
    this.viewTimer = setTimeout(() => {
      this.viewTimer = 0;
      if (this.me === null || !this.signaling) return;
      const tiles = this.view.tileViews();
      const speaker = typeof this.view.active === 'number' ? this.view.active : undefined;
      const text = JSON.stringify([tiles, speaker]);
      if (text === this.lastView) return;
      this.lastView = text;
      this.signaling.send({ type: 'view', tiles, speaker });
    }, 200);
  }

  #serverError(code) {
    const known = t(`error.${code}`);
    const text = known !== `error.${code}` ? known : t('error.server', { code });
    if (code === 'passcode_required' || code === 'wrong_passcode') {
      // Back to the pre-join screen, which now asks for the passcode.
      this.passcodeNeeded = true;
      this.#teardown();
      this.prejoin().then(() => {
        $('passcode-error').hidden = false;
        $('passcode-error').textContent = text;
      });
    } else if (FATAL.has(code) || (REFUSALS.has(code) && this.me === null && !this.waiting)) {
      // A removed participant keeps the revoked seat: presenting it again is refused.
      this.#end(text, { final: FINAL.has(code) });
    } else if (REFUSALS.has(code) || ['forbidden', 'too_many_tracks', 'quota_exceeded'].includes(code)) {
      banner(text, 'info');
    } else {
      console.warn('server refused a message:', code);
    }
  }

  async #lobbyRequest(msg) {
    let name = null;
    let readable = true;
    if (msg.name) {
      name = await this.#ask({ op: 'openName', room: this.room, waiter: msg.peer, sealed: msg.name });
      readable = name !== null;
      name = name?.trim().slice(0, MAX_NAME) || null;
    }
    this.panel.waiting(msg.peer, name, readable);
    // A waiter is announced once its sealed name arrives (it follows the
    // first request at once; a client that sends none stays unannounced
    // but listed).
    if (msg.name) announce(t('lobby.arrived', { name: this.panel.lobbyName({ name, readable }) }));
  }

  #roomUpdated(room) {
    const before = this.panel.room;
    this.panel.roomUpdated(room);
    if (before.lobby !== room.lobby) this.#notice(t(room.lobby ? 'notice.lobbyOn' : 'notice.lobbyOff'));
    if (before.locked !== room.locked) this.#notice(t(room.locked ? 'notice.locked' : 'notice.unlocked'));
    if (before.passcode !== room.passcode) this.#notice(t(room.passcode ? 'notice.passcodeSet' : 'notice.passcodeCleared'));
  }

  /** A host or moderator asked one person or everyone to mute: everyone is
   * told; the person asked turns the microphone off (the asker's does not). */
  async #muteRequested(by, peer) {
    const name = by === this.me ? this.name || t('meeting.guest') : this.view.nameOf(by);
    const target = peer === this.me ? this.name || t('meeting.guest') : this.view.nameOf(peer);
    this.#notice(peer === null ? t('notice.muteAll', { name }) : t('notice.muteOne', { name, peer: target }));
    const mine = peer === this.me || (peer === null && by !== this.me);
    if (mine && this.local.micOn) {
      await this.#toggle('mic');
      this.#notice(t('notice.mutedYou'));
    }
  }

  #askEnd() {
    const dialog = $('end-dialog');
    dialog.onclose = () => {
      if (dialog.returnValue === 'end') this.signaling?.send({ type: 'end' });
    };
    dialog.returnValue = '';
    dialog.showModal();
    dialog.querySelector('button[value="cancel"]').focus();
  }

  #broadcastState() {
    if (this.me === null) return;
    if (this.inGroup) this.sendToGroup(this.state());
    this.#renderLocal();
  }

  #mediaState(state) {
    if (state === 'connected') {
      banner('');
      this.#showTransport();
    }
    else if (state === 'disconnected') banner(t('error.mediaReconnecting'), 'info');
    else if (state === 'failed') banner(t('error.mediaLost'));
  }

  /** Says whether media goes over UDP or, where UDP is blocked, over TCP. */
  async #showTransport() {
    this.transport = (await this.session?.transport()) ?? null;
    this.relabelTransport();
  }

  relabelTransport() {
    const el = $('transport');
    el.hidden = !this.transport;
    if (this.transport) el.textContent = t(this.transport === 'tcp' ? 'meeting.transportTcp' : 'meeting.transportUdp');
  }

  #signalingClosed() {
    if (!this.leaving) this.#end(t('error.signalingLost'));
  }

  leave() {
    this.leaving = true;
    this.signaling?.send({ type: 'leave' });
    this.#end('');
  }

  /** Closes everything of this attempt to be in the meeting. */
  #teardown() {
    this.leaving = true;
    clearTimeout(this.slowTimer);
    clearTimeout(this.groupTimer);
    clearInterval(this.statsTimer);
    this.worker?.terminate();
    this.worker = null;
    this.inGroup = false;
    this.signaling?.close();
    this.session?.close();
    this.session = null;
    this.meter?.close();
    this.meter = null;
    this.me = null;
    this.view.clear();
    this.panel.reset();
    this.waiting = false;
    for (const resolve of this.replies.values()) resolve(null);
    this.replies.clear();
    this.local.stopAll();
    banner('');
  }

  #end(reason, { final = false } = {}) {
    this.#teardown();
    $('left-reason').textContent = reason;
    show('left');
    $('rejoin').hidden = final;
    $('rejoin').onclick = () => this.rejoin();
    (final ? document.querySelector('#left a') : $('rejoin')).focus();
  }

  async rejoin() {
    await this.prejoin();
  }

  /** Diagnostics for the browser console and automated tests. */
  diagnostics() {
    return {
      me: this.me,
      waiting: this.waiting ? this.waitingId : null,
      role: this.panel.role,
      room: this.panel.room,
      lobby: [...this.panel.lobby].map(([id, e]) => ({ id, name: e.name, readable: e.readable })),
      notices: [...this.notices],
      mic: this.local.micOn,
      peers: [...this.view.people.keys()].filter((k) => k !== 'local'),
      connection: this.session?.pc.connectionState ?? 'closed',
      stats: () => this.session?.inboundStats() ?? Promise.resolve([]),
      pc: () => this.session?.pc ?? null,
      activeSpeaker: this.view.active,
      levels: () => [...(this.meter?.watched ?? [])].map(([id, w]) => [id, w.level]),
      transport: () => this.session?.transport() ?? Promise.resolve(null),
      e2ee: {
        inGroup: this.inGroup,
        roster: [...this.roster],
        code: this.code?.digits ?? null,
        counters: this.lastCounters ?? null,
      },
    };
  }
}

// ---------------------------------------------------------------- start

function start() {
  const select = $('lang-select');
  select.value = lang();
  const privacy = () => $('privacy-link').setAttribute('href', `/privacy?lang=${lang()}`);
  select.onchange = () => {
    setLang(select.value);
    privacy();
  };
  privacy();
  apply(document);
  renderIcons(document);
  if (!('RTCPeerConnection' in window)) {
    banner(t('error.noWebRTC'));
  }
  const m = location.pathname.match(/^\/m\/([^/]+)$/);
  if (m && ROOM_RE.test(m[1])) {
    const secret = location.hash.slice(1);
    const meeting = new Meeting(m[1], SECRET_RE.test(secret) ? secret : null);
    onLangChange(() => {
      meeting.view.relabel();
      meeting.relabelTransport();
    });
    window.aparte = { diagnostics: () => meeting.diagnostics() };
    meeting.prejoin();
  } else {
    landing();
  }
}

start();
