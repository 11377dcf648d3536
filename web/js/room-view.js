// The meeting grid: one tile per participant camera and one per screen share.
// Everything a participant typed is rendered with textContent, never as HTML.

import { t } from './i18n.js';
import { icon } from './icons.js';

const LOCAL = 'local';

export class RoomView {
  /**
   * @param {HTMLElement} grid
   * @param {() => void} [onLayout] called when a remote video's tile changes
   *   size, appears, disappears or leaves the screen (see `tileViews`).
   */
  constructor(grid, onLayout = () => {}) {
    this.grid = grid;
    this.onLayout = onLayout;
    /** peer id (or 'local') → {name, mic, camera, screen} */
    this.people = new Map();
    /** 'grid', or 'speaker': one large tile and a strip of the others. */
    this.mode = 'grid';
    /** The tile the user pinned as the large one ('peer:kind'), if any. */
    this.pinned = null;
    /** Whom this page hears as the active speaker. */
    this.active = null;
    /** Tiles on screen (intersecting the viewport), from the observer. */
    this.onScreen = new WeakSet();
    this.resizes = new ResizeObserver(() => this.onLayout());
    this.visibility = new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting) this.onScreen.add(e.target);
        else this.onScreen.delete(e.target);
      }
      this.onLayout();
    });
    document.addEventListener('visibilitychange', () => this.onLayout());
  }

  /**
   * How each remote video is shown, for the server to send the layer it
   * needs: its tile's size in device pixels, or 0 × 0 when nobody can see it
   * (off screen, video hidden, or the page in the background).
   * @returns {{peer: number, source: string, width: number, height: number}[]}
   */
  tileViews() {
    const out = [];
    const scale = window.devicePixelRatio || 1;
    for (const tile of this.grid.querySelectorAll('.tile')) {
      if (tile.dataset.peer === LOCAL) continue;
      const video = tile.querySelector('video');
      const seen = !document.hidden && this.onScreen.has(tile) && !video.hidden;
      const box = video.getBoundingClientRect();
      out.push({
        peer: Number(tile.dataset.peer),
        source: tile.dataset.kind,
        width: seen ? Math.min(65535, Math.round(box.width * scale)) : 0,
        height: seen ? Math.min(65535, Math.round(box.height * scale)) : 0,
      });
    }
    return out;
  }

  clear() {
    this.grid.replaceChildren();
    this.people.clear();
    this.pinned = null;
    this.active = null;
  }

  /** Marks the tiles of those speaking now (ids, 'local' for this page). */
  setSpeaking(speaking) {
    for (const tile of this.grid.querySelectorAll('.tile[data-kind="camera"]')) {
      const id = tile.dataset.peer === LOCAL ? LOCAL : Number(tile.dataset.peer);
      tile.classList.toggle('speaking', speaking.has(id));
    }
  }

  /** The active speaker changed: in the speaker layout, theirs is the large tile. */
  setActiveSpeaker(id) {
    this.active = id;
    this.#arrange();
  }

  /** 'grid' or 'speaker'. */
  setMode(mode) {
    this.mode = mode;
    this.#arrange();
  }

  /** Pins a tile as the large one of the speaker layout, or unpins it. */
  togglePin(key) {
    this.pinned = this.pinned === key ? null : key;
    for (const b of this.grid.querySelectorAll('.tile .pin')) {
      b.setAttribute('aria-pressed', String(b.closest('.tile').dataset.key === this.pinned));
    }
    if (this.pinned && this.mode !== 'speaker') this.mode = 'speaker';
    this.#arrange();
  }

  /** The tile shown large in the speaker layout: the pinned one, else a
   * screen share, else the active speaker's camera, else the first other
   * participant's. */
  #mainTile() {
    const tiles = [...this.grid.querySelectorAll('.tile')];
    const byKey = (k) => tiles.find((t) => t.dataset.key === k);
    return (this.pinned && byKey(this.pinned))
      || tiles.find((t) => t.dataset.kind === 'screen' && t.dataset.peer !== LOCAL)
      || (this.active !== null && this.active !== LOCAL && byKey(`${this.active}:camera`))
      || tiles.find((t) => t.dataset.peer !== LOCAL)
      || tiles[0];
  }

  #arrange() {
    const speaker = this.mode === 'speaker';
    this.grid.classList.toggle('speaker-layout', speaker);
    const main = speaker ? this.#mainTile() : null;
    for (const tile of this.grid.querySelectorAll('.tile')) tile.classList.toggle('main', tile === main);
    if (main && this.grid.firstElementChild !== main) this.grid.prepend(main);
    this.onLayout();
  }

  /** Shows or updates the local tile, and the local screen share if any. */
  setLocal(state, cameraTrack, screenTrack) {
    this.#upsert(LOCAL, state);
    this.#setVideo(LOCAL, 'camera', cameraTrack);
    this.#setVideo(LOCAL, 'screen', screenTrack);
    this.#render(LOCAL);
  }

  /** Adds or updates a remote participant's state (name, mic, camera, screen). */
  setPeer(id, state) {
    this.#upsert(id, state);
    if (!state.screen) this.#removeTile(id, 'screen');
    this.#render(id);
  }

  /** Attaches a remote track to its tile. */
  setPeerTrack(id, source, track) {
    this.#upsert(id, {});
    if (source === 'mic' || source === 'screen_audio') {
      this.#setAudio(id, source, track);
    } else {
      this.#setVideo(id, source, track);
    }
    this.#render(id);
  }

  /** Shows a status badge on a participant's tiles (null clears it). */
  setStatus(id, text) {
    for (const tile of this.grid.querySelectorAll(`.tile[data-peer="${CSS.escape(String(id))}"]`)) {
      let badge = tile.querySelector('.status');
      if (!text) {
        badge?.remove();
        continue;
      }
      if (!badge) {
        badge = document.createElement('div');
        badge.className = 'status';
        tile.append(badge);
      }
      badge.textContent = text;
    }
  }

  /** Marks a participant's tiles as outside the encrypted meeting (it is in
   * the room, the server says, but not in the MLS group), or clears it. */
  setOutside(id, outside) {
    const p = this.people.get(id);
    if (!p || p.outside === outside) return;
    p.outside = outside;
    this.#render(id);
  }

  removePeer(id) {
    for (const el of this.grid.querySelectorAll(`[data-peer="${CSS.escape(String(id))}"]`)) el.remove();
    this.people.delete(id);
    this.#layout();
  }

  nameOf(id) {
    return this.people.get(id)?.name || t('meeting.guest');
  }

  /** Re-renders labels after a language change. */
  relabel() {
    for (const id of this.people.keys()) this.#render(id);
  }

  #upsert(id, state) {
    const prev = this.people.get(id) ?? { name: '', mic: true, camera: true, screen: false };
    this.people.set(id, { ...prev, ...state });
    if (!this.#tile(id, 'camera')) this.#makeTile(id, 'camera');
  }

  #tile(id, kind) {
    return this.grid.querySelector(`.tile[data-peer="${CSS.escape(String(id))}"][data-kind="${kind}"]`);
  }

  #makeTile(id, kind) {
    const tile = document.createElement('div');
    tile.className = `tile${id === LOCAL ? ' local' : ''}${kind === 'screen' ? ' screen-share' : ''}`;
    tile.setAttribute('role', 'listitem');
    tile.dataset.peer = String(id);
    tile.dataset.kind = kind;
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // sound plays through the audio elements
    video.setAttribute('aria-hidden', 'true');
    const avatar = document.createElement('div');
    avatar.className = 'avatar';
    avatar.setAttribute('aria-hidden', 'true');
    const label = document.createElement('div');
    label.className = 'label';
    tile.dataset.key = `${id}:${kind}`;
    const pin = document.createElement('button');
    pin.type = 'button';
    pin.className = 'pin';
    pin.setAttribute('aria-pressed', 'false');
    pin.onclick = () => this.togglePin(tile.dataset.key);
    tile.append(video, avatar, label, pin);
    this.grid.append(tile);
    this.resizes.observe(tile);
    this.visibility.observe(tile);
    this.#layout();
    return tile;
  }

  #removeTile(id, kind) {
    const tile = this.#tile(id, kind);
    if (tile) {
      tile.remove();
      this.#layout();
    }
  }

  #setVideo(id, kind, track) {
    let tile = this.#tile(id, kind);
    if (!track) {
      if (kind === 'screen') this.#removeTile(id, kind);
      else if (tile) tile.querySelector('video').srcObject = null;
      return;
    }
    tile ??= this.#makeTile(id, kind);
    const video = tile.querySelector('video');
    if (video.srcObject?.getVideoTracks()[0] !== track) video.srcObject = new MediaStream([track]);
  }

  #setAudio(id, source, track) {
    const tile = this.#tile(id, 'camera');
    let audio = tile.querySelector(`audio[data-source="${source}"]`);
    if (!audio) {
      audio = document.createElement('audio');
      audio.autoplay = true;
      audio.dataset.source = source;
      tile.append(audio);
    }
    audio.srcObject = new MediaStream([track]);
  }

  #render(id) {
    const p = this.people.get(id);
    if (!p) return;
    const name = p.name || t('meeting.guest');
    const camTile = this.#tile(id, 'camera');
    if (camTile) {
      const label = camTile.querySelector('.label');
      label.textContent = id === LOCAL ? t('meeting.you', { name }) : name;
      if (!p.mic) {
        const muted = document.createElement('span');
        muted.className = 'muted-icon';
        muted.setAttribute('role', 'img');
        muted.setAttribute('aria-label', t('meeting.micOff'));
        muted.append(icon('micOff'));
        label.append(muted);
      }
      let outside = camTile.querySelector('.outside');
      if (p.outside) {
        if (!outside) {
          outside = document.createElement('div');
          outside.className = 'outside';
          outside.setAttribute('role', 'note');
          camTile.append(outside);
        }
        outside.textContent = t('meeting.outside');
      } else {
        outside?.remove();
      }
      const showVideo = p.camera && !!camTile.querySelector('video').srcObject;
      if (camTile.querySelector('video').hidden !== !showVideo) {
        camTile.querySelector('video').hidden = !showVideo;
        this.onLayout();
      }
      const avatar = camTile.querySelector('.avatar');
      avatar.hidden = showVideo;
      avatar.textContent = initials(name);
      camTile.setAttribute('aria-label', p.outside ? `${label.textContent}: ${t('meeting.outside')}` : label.textContent);
      const pin = camTile.querySelector('.pin');
      pin.textContent = t('meeting.pin');
      pin.setAttribute('aria-label', t('meeting.pinOf', { name }));
    }
    const screenTile = this.#tile(id, 'screen');
    if (screenTile) {
      const text = id === LOCAL ? t('meeting.yourScreen') : t('meeting.screenOf', { name });
      screenTile.querySelector('.label').textContent = text;
      screenTile.querySelector('.avatar').hidden = true;
      screenTile.setAttribute('aria-label', text);
      const pin = screenTile.querySelector('.pin');
      pin.textContent = t('meeting.pin');
      pin.setAttribute('aria-label', t('meeting.pinOf', { name: text }));
    }
  }

  #layout() {
    const n = this.grid.children.length;
    const cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
    this.grid.style.setProperty('--cols', String(cols));
    // Past 16 tiles the grid scrolls; tiles out of sight pause their video
    // (`tileViews`).
    this.grid.classList.toggle('many', n > 16);
    this.#arrange();
  }
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return parts.slice(0, 2).map((p) => [...p][0].toUpperCase()).join('') || '?';
}
