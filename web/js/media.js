// Local capture: microphone, camera and screen. Turning a device off stops its
// track (the camera light goes out and nothing is sent); turning it on opens it again.

export class LocalMedia {
  /** @param {(source: string, track: MediaStreamTrack|null) => void} onTrack */
  constructor(onTrack) {
    this.onTrack = onTrack;
    this.tracks = { mic: null, camera: null, screen: null, screen_audio: null };
    this.want = { mic: true, camera: true };
    this.deviceIds = { mic: localStorage.getItem('aparte.mic') || '', camera: localStorage.getItem('aparte.camera') || '' };
  }

  get micOn() { return !!this.tracks.mic; }
  get camOn() { return !!this.tracks.camera; }
  get screenOn() { return !!this.tracks.screen; }

  /** Opens the wanted devices. Throws a DOMException the caller can explain. */
  async start() {
    const constraints = {
      audio: this.want.mic ? this.#audioConstraints() : false,
      video: this.want.camera ? this.#videoConstraints() : false,
    };
    if (!constraints.audio && !constraints.video) return;
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const [a] = stream.getAudioTracks();
    const [v] = stream.getVideoTracks();
    if (a) this.#set('mic', a);
    if (v) this.#set('camera', v);
  }

  async setMic(on) {
    this.want.mic = on;
    if (!on) return this.#set('mic', null);
    const s = await navigator.mediaDevices.getUserMedia({ audio: this.#audioConstraints() });
    this.#set('mic', s.getAudioTracks()[0]);
  }

  async setCamera(on) {
    this.want.camera = on;
    if (!on) return this.#set('camera', null);
    const s = await navigator.mediaDevices.getUserMedia({ video: this.#videoConstraints() });
    this.#set('camera', s.getVideoTracks()[0]);
  }

  async chooseDevice(kind, deviceId) {
    this.deviceIds[kind] = deviceId;
    localStorage.setItem(`aparte.${kind}`, deviceId);
    if (kind === 'mic' && this.micOn) await this.setMic(true);
    if (kind === 'camera' && this.camOn) await this.setCamera(true);
  }

  /** Starts sharing a screen, window or tab (with its sound when the browser offers it). */
  async startScreen() {
    const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 }, audio: true });
    const [v] = s.getVideoTracks();
    const [a] = s.getAudioTracks();
    // Text and slides matter more than motion: keep resolution, drop frames.
    v.contentHint = 'detail';
    // The browser's own "Stop sharing" button ends the track.
    v.addEventListener('ended', () => this.stopScreen());
    this.#set('screen', v);
    if (a) this.#set('screen_audio', a);
  }

  stopScreen() {
    this.#set('screen', null);
    this.#set('screen_audio', null);
  }

  /** Lists microphones and cameras (labels appear once permission is given). */
  async devices() {
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      mic: all.filter((d) => d.kind === 'audioinput'),
      camera: all.filter((d) => d.kind === 'videoinput'),
    };
  }

  stopAll() {
    for (const source of Object.keys(this.tracks)) this.#set(source, null);
  }

  #audioConstraints() {
    const c = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    if (this.deviceIds.mic) c.deviceId = { exact: this.deviceIds.mic };
    return c;
  }

  #videoConstraints() {
    const c = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } };
    if (this.deviceIds.camera) c.deviceId = { exact: this.deviceIds.camera };
    return c;
  }

  #set(source, track) {
    const old = this.tracks[source];
    if (old === track) return;
    if (old) old.stop();
    this.tracks[source] = track;
    this.onTrack(source, track);
  }
}

/** A sentence (i18n key) for why devices could not be opened. */
export function deviceErrorKey(err) {
  switch (err?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'prejoin.permissionDenied';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'prejoin.deviceMissing';
    case 'NotReadableError':
      return 'prejoin.deviceBusy';
    default:
      return 'prejoin.deviceMissing';
  }
}
