// The page's entry point: picks the screen from the URL and wires the landing,
// pre-join and meeting screens to the modules that do the work.

import { apply, lang, onLangChange, setLang, t } from './i18n.js';
import { renderIcons } from './icons.js';
import { LocalMedia, deviceErrorKey } from './media.js';
import { PeerSession } from './peer.js';
import { RoomView } from './room-view.js';
import { Signaling } from './signaling.js';

const $ = (id) => document.getElementById(id);
const ROOM_RE = /^[A-Za-z0-9_-]{6,64}$/;
const NAME_KEY = 'aparte.name';
const MAX_NAME = 64;
const MEDIA_SLOW_MS = 10000;

const ui = {
  screens: ['landing', 'prejoin', 'meeting', 'left'].map($),
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

/** A fresh, unguessable room id (96 random bits, base64url). */
function newRoomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_');
}

// ---------------------------------------------------------------- landing

function landing() {
  show('landing');
  $('new-meeting').onclick = () => location.assign(`/m/${newRoomId()}`);
  $('join-form').onsubmit = (ev) => {
    ev.preventDefault();
    const text = $('join-link').value.trim();
    let room = text;
    try {
      const url = new URL(text, location.origin);
      const m = url.pathname.match(/^\/m\/([^/]+)$/);
      if (m) room = m[1];
    } catch {
      // not a URL: maybe a bare room id
    }
    if (ROOM_RE.test(room)) {
      location.assign(`/m/${room}`);
    } else {
      $('join-error').hidden = false;
      $('join-error').textContent = t('landing.badLink');
    }
  };
}

// ---------------------------------------------------------------- meeting

class Meeting {
  constructor(room) {
    this.room = room;
    this.local = new LocalMedia((source, track) => this.#localTrack(source, track));
    this.view = new RoomView($('grid'));
    this.me = null;
    this.signaling = null;
    this.session = null;
    this.offers = Promise.resolve();
    this.leaving = false;
  }

  get name() {
    return $('display-name').value.trim().slice(0, MAX_NAME);
  }

  state() {
    return { t: 'state', name: this.name, mic: this.local.micOn, camera: this.local.camOn, screen: this.local.screenOn };
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
    try {
      await this.local.start();
    } catch (e) {
      this.#deviceError(e);
    }
    this.#syncButtons();
    await this.#fillDevices();
    if (!this.name) $('display-name').focus();
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
    this.view.clear();
    this.me = null;
    this.session = new PeerSession({
      onTrack: (peer, source, track) => this.view.setPeerTrack(peer, source, track),
      onState: (state) => this.#mediaState(state),
    });
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
    this.signaling.send({ type: 'join', room: this.room });
    // If media has not connected after a while, say so instead of waiting silently.
    clearTimeout(this.slowTimer);
    this.slowTimer = setTimeout(() => {
      const state = this.session?.pc.connectionState;
      if (this.session && state !== 'connected') banner(t('error.mediaBlocked'));
    }, MEDIA_SLOW_MS);
  }

  #onMessage(msg) {
    switch (msg.type) {
      case 'welcome':
        this.me = msg.you;
        this.#renderLocal();
        for (const p of msg.peers) this.view.setPeer(p.id, {});
        this.#broadcastState();
        break;
      case 'peer_joined':
        this.view.setPeer(msg.peer.id, {});
        this.signaling.send({ type: 'relay', to: msg.peer.id, payload: JSON.stringify(this.state()) });
        break;
      case 'peer_left':
        announce(t('meeting.leftPeer', { name: this.view.nameOf(msg.peer) }));
        this.view.removePeer(msg.peer);
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
      case 'relay':
        this.#onRelay(msg.from, msg.payload);
        break;
      case 'error':
        if (['room_full', 'connection_lost', 'invalid_sdp', 'internal'].includes(msg.code)) {
          this.#end(t(`error.${msg.code}`) !== `error.${msg.code}` ? t(`error.${msg.code}`) : t('error.server', { code: msg.code }));
        } else {
          console.warn('server refused a message:', msg.code);
        }
        break;
      default:
        break;
    }
  }

  #onRelay(from, payload) {
    let m;
    try {
      m = JSON.parse(payload);
    } catch {
      return;
    }
    if (!m || m.t !== 'state') return;
    const known = this.view.people.has(from) && this.view.people.get(from).name;
    const state = {
      name: typeof m.name === 'string' ? m.name.trim().slice(0, MAX_NAME) : '',
      mic: m.mic === true,
      camera: m.camera === true,
      screen: m.screen === true,
    };
    this.view.setPeer(from, state);
    if (!known && state.name) announce(t('meeting.joined', { name: state.name }));
  }

  #broadcastState() {
    if (this.me === null) return;
    this.signaling.send({ type: 'relay', payload: JSON.stringify(this.state()) });
    this.#renderLocal();
  }

  #mediaState(state) {
    if (state === 'connected') banner('');
    else if (state === 'disconnected') banner(t('error.mediaReconnecting'), 'info');
    else if (state === 'failed') banner(t('error.mediaLost'));
  }

  #signalingClosed() {
    if (!this.leaving) this.#end(t('error.signalingLost'));
  }

  leave() {
    this.leaving = true;
    this.signaling?.send({ type: 'leave' });
    this.#end('');
  }

  #end(reason) {
    this.leaving = true;
    clearTimeout(this.slowTimer);
    this.signaling?.close();
    this.session?.close();
    this.session = null;
    this.me = null;
    this.view.clear();
    this.local.stopAll();
    banner('');
    $('left-reason').textContent = reason;
    show('left');
    $('rejoin').onclick = () => this.rejoin();
    $('rejoin').focus();
  }

  async rejoin() {
    await this.prejoin();
  }

  /** Diagnostics for the browser console and automated tests. */
  diagnostics() {
    return {
      me: this.me,
      peers: [...this.view.people.keys()].filter((k) => k !== 'local'),
      connection: this.session?.pc.connectionState ?? 'closed',
      stats: () => this.session?.inboundStats() ?? Promise.resolve([]),
    };
  }
}

// ---------------------------------------------------------------- start

function start() {
  const select = $('lang-select');
  select.value = lang();
  select.onchange = () => setLang(select.value);
  apply(document);
  renderIcons(document);
  if (!('RTCPeerConnection' in window)) {
    banner(t('error.noWebRTC'));
  }
  const m = location.pathname.match(/^\/m\/([^/]+)$/);
  if (m && ROOM_RE.test(m[1])) {
    const meeting = new Meeting(m[1]);
    onLangChange(() => meeting.view.relabel());
    window.aparte = { diagnostics: () => meeting.diagnostics() };
    meeting.prejoin();
  } else {
    landing();
  }
}

start();
