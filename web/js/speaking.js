// Who is speaking, measured in this page from decrypted audio: the server
// never gets an audio level (none is sent in clear, see docs/e2ee.md).
//
// Each watched audio track feeds an AnalyserNode; every 100 ms its loudness
// (RMS of the waveform) is read. A participant speaks after two loud readings
// in a row and stops after eight quiet ones; the active speaker is the
// loudest one speaking, held for at least 1.5 s so the layout does not jump.
// Remote tracks also play through <audio> elements: Chromium gives WebAudio
// silence for a remote track nothing else plays.

const INTERVAL_MS = 100;
const LOUD = 0.02;
const ON_AFTER = 2;
const OFF_AFTER = 8;
const HOLD_MS = 1500;

export class SpeakingMeter {
  /**
   * @param {(speaking: Set<string|number>, active: string|number|null) => void} onChange
   */
  constructor(onChange) {
    this.onChange = onChange;
    this.context = null;
    /** id → {source, analyser, samples, loud, quiet, speaking, level} */
    this.watched = new Map();
    this.active = null;
    this.activeSince = 0;
    this.timer = 0;
  }

  /** Measures `track` as `id`'s voice (replacing what was watched for it). */
  watch(id, track) {
    this.unwatch(id);
    if (!track) return;
    this.context ??= new AudioContext();
    // A page without a user gesture may start suspended; it resumes on the
    // first one, and the meter reads silence until then.
    if (this.context.state === 'suspended') this.context.resume().catch(() => {});
    const source = this.context.createMediaStreamSource(new MediaStream([track]));
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    this.watched.set(id, { source, analyser, samples: new Float32Array(analyser.fftSize), loud: 0, quiet: 0, speaking: false, level: 0 });
    if (!this.timer) this.timer = setInterval(() => this.#tick(), INTERVAL_MS);
  }

  unwatch(id) {
    const w = this.watched.get(id);
    if (!w) return;
    w.source.disconnect();
    this.watched.delete(id);
    if (w.speaking || this.active === id) this.#report(true);
  }

  close() {
    for (const id of [...this.watched.keys()]) this.unwatch(id);
    clearInterval(this.timer);
    this.timer = 0;
    this.context?.close().catch(() => {});
    this.context = null;
  }

  #tick() {
    let changed = false;
    for (const w of this.watched.values()) {
      w.analyser.getFloatTimeDomainData(w.samples);
      let sum = 0;
      for (const x of w.samples) sum += x * x;
      w.level = Math.sqrt(sum / w.samples.length);
      if (w.level >= LOUD) {
        w.loud += 1;
        w.quiet = 0;
      } else {
        w.quiet += 1;
        w.loud = 0;
      }
      const speaking = w.speaking ? w.quiet < OFF_AFTER : w.loud >= ON_AFTER;
      if (speaking !== w.speaking) {
        w.speaking = speaking;
        changed = true;
      }
    }
    this.#report(changed);
  }

  #report(changed) {
    const speaking = new Set([...this.watched].filter(([, w]) => w.speaking).map(([id]) => id));
    const now = Date.now();
    const current = this.watched.get(this.active);
    // The active speaker stays the last one heard until someone else speaks
    // (and at least HOLD_MS), or until it is no longer watched.
    if (!current?.speaking || now - this.activeSince >= HOLD_MS) {
      let loudest = null;
      let level = 0;
      for (const id of speaking) {
        const w = this.watched.get(id);
        if (w.level > level) {
          loudest = id;
          level = w.level;
        }
      }
      if (loudest !== null && loudest !== this.active) {
        this.active = loudest;
        this.activeSince = now;
        changed = true;
      } else if (!current && this.active !== null) {
        this.active = null;
        changed = true;
      }
    }
    if (changed) this.onChange(speaking, this.active);
  }
}
