// The E2EE worker: it owns the MLS session and every media key (the page's
// main thread never holds one), and it seals each outgoing frame and opens each
// incoming one inside the encoded transforms. Fail closed: without keys,
// nothing is sent; a frame that does not authenticate is dropped and counted.

import init, { Engine } from '/wasm/aparte_e2ee_wasm.js';

const loaded = init({ module_or_path: '/wasm/aparte_e2ee_wasm_bg.wasm' });
let engine = null;
let timer = null;
const counters = { sealed: 0, opened: 0, failed: 0, relabelled: 0, replayed: 0, behind: 0, notSent: 0, byPeer: {} };
const REFUSALS = new Set(['relabelled', 'replayed', 'behind']);

function peerCounters(peer) {
  counters.byPeer[peer] ??= { opened: 0, failed: 0, relabelled: 0, replayed: 0, behind: 0 };
  return counters.byPeer[peer];
}

/** Hands the engine's outputs to the page and re-arms its timer. */
function pump() {
  if (!engine) return;
  for (let out = engine.pollOutput(); out; out = engine.pollOutput()) postMessage({ op: 'send', msg: JSON.parse(out) });
  for (let ev = engine.pollEvent(); ev; ev = engine.pollEvent()) postMessage({ op: 'event', event: JSON.parse(ev) });
  clearTimeout(timer);
  const at = engine.pollTimeout();
  if (at !== undefined && at !== null) {
    timer = setTimeout(() => {
      engine.handleTimeout(performance.now());
      pump();
    }, Math.max(0, at - performance.now()));
  }
}

onmessage = async (e) => {
  await loaded;
  const m = e.data;
  try {
    switch (m.op) {
      case 'init':
        engine = new Engine(m.secret, m.graceMs);
        postMessage({ op: 'ready' });
        return;
      case 'start':
        engine.start(performance.now(), m.id, m.createGroup, m.room);
        break;
      case 'remove':
        engine.remove(performance.now(), m.peer);
        break;
      case 'signal':
        engine.signal(performance.now(), m.text);
        break;
      case 'send':
        if (!engine.isReady()) break;
        if (m.to?.length) engine.sendTo(m.to, m.text);
        else engine.send(m.text);
        break;
      case 'sealName':
        postMessage({ op: 'reply', id: m.id, value: engine.sealName(m.room, m.waiter, m.name) });
        return;
      case 'openName':
        postMessage({ op: 'reply', id: m.id, value: engine.openName(m.room, m.waiter, m.sealed) ?? null });
        return;
      case 'stats':
        postMessage({ op: 'stats', id: m.id, counters });
        return;
      case 'stream':
        // Chromium's older encoded-streams API: the page transfers the streams here.
        m.readable.pipeThrough(transformer(m.options)).pipeTo(m.writable);
        return;
      default:
        return;
    }
  } catch (err) {
    postMessage({ op: 'error', message: String(err?.message ?? err) });
  }
  pump();
};

/** A transform that seals (send side) or opens (receive side) every frame. */
function transformer(options) {
  const video = options.kind === 'video';
  if (options.side === 'send') {
    return new TransformStream({
      transform(frame, controller) {
        if (!engine?.isReady()) {
          counters.notSent++;
          return;
        }
        try {
          frame.data = engine.seal(video, new Uint8Array(frame.data)).buffer;
          counters.sealed++;
          controller.enqueue(frame);
        } catch {
          counters.notSent++;
        }
      },
    });
  }
  const peer = options.peer;
  return new TransformStream({
    transform(frame, controller) {
      const c = peerCounters(peer);
      try {
        if (!engine) throw new Error('no keys');
        // The frame opens only with the key of the member whose track it came
        // on: a frame the server moved to another tile is dropped, and so is
        // a replay.
        frame.data = engine.open(performance.now(), video, Number(peer), new Uint8Array(frame.data)).buffer;
        counters.opened++;
        c.opened++;
        controller.enqueue(frame);
      } catch (e) {
        const why = REFUSALS.has(e?.message) ? e.message : 'failed';
        counters[why]++;
        c[why]++;
      }
    },
  });
}

// RTCRtpScriptTransform: the page created the transform with its options.
self.onrtctransform = (ev) => {
  const t = ev.transformer;
  t.readable.pipeThrough(transformer(t.options)).pipeTo(t.writable);
};
