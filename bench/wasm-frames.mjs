// SFrame seal/open cost per 720p-sized frame in the browser's E2EE engine
// (the exact wasm the server embeds), run in Node's WebAssembly.
// Usage: node bench/wasm-frames.mjs   (after cargo build --release -p aparte-server)

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const build = 'target/release/build';
const dirs = readdirSync(build)
  .filter((d) => d.startsWith('aparte-server-'))
  .map((d) => join(build, d, 'out/wasm'))
  .filter((d) => { try { return statSync(join(d, 'aparte_e2ee_wasm_bg.wasm')).isFile(); } catch { return false; } })
  .sort((a, b) => statSync(join(b, 'aparte_e2ee_wasm_bg.wasm')).mtimeMs - statSync(join(a, 'aparte_e2ee_wasm_bg.wasm')).mtimeMs);
if (!dirs.length) throw new Error('build the server first: cargo build --release -p aparte-server');
const dir = dirs[0];
const mod = await import(pathToFileURL(join(dir, 'aparte_e2ee_wasm.js')).href);
await mod.default({ module_or_path: readFileSync(join(dir, 'aparte_e2ee_wasm_bg.wasm')) });
const { Engine } = mod;

const secret = 'AQEBAQEBAQEBAQEBAQEBAQ';
const a = new Engine(secret, 1000);
const b = new Engine(secret, 1000);
a.start(0, 1, true, 'bench-room');
b.start(0, 2, false, 'bench-room');
const kp = JSON.parse(b.pollOutput());
a.signal(0, JSON.stringify({ type: 'mls_join_request', from: 2, data: kp.data }));
const commit = JSON.parse(a.pollOutput());
a.signal(0, JSON.stringify({ type: 'mls_commit_result', epoch: commit.epoch, accepted: true }));
b.signal(0, JSON.stringify({ type: 'mls_welcome', data: commit.welcome }));
if (!a.isReady() || !b.isReady()) throw new Error('engines not in one group');

const rows = [];
for (const [label, size, iters] of [['720p delta (6 KB)', 6250, 3000], ['720p key (60 KB)', 60000, 500]]) {
  const frame = new Uint8Array(size).fill(label.includes('key') ? 0x10 : 0x11);
  // Every frame is sealed once and opened once (a second open is a replay).
  const sealed = [];
  let t = performance.now();
  for (let i = 0; i < iters; i++) sealed.push(a.seal(true, frame));
  const seal = ((performance.now() - t) * 1000) / iters;
  t = performance.now();
  for (const s of sealed) {
    const opened = b.open(0, true, 1, s);
    if (opened.length !== size) throw new Error('open failed');
  }
  const open = ((performance.now() - t) * 1000) / iters;
  rows.push(`| ${label} | ${seal.toFixed(1)} µs | ${open.toFixed(1)} µs |`);
}
const wasmKb = Math.round(statSync(join(dir, 'aparte_e2ee_wasm_bg.wasm')).size / 1024);
console.log(`### SFrame per frame, wasm (Node ${process.version}), ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC\n`);
console.log(`The engine the page runs (${wasmKb} KB of wasm), \`node bench/wasm-frames.mjs\`.\n`);
console.log('| frame | seal | open |\n|---|---:|---:|');
for (const r of rows) console.log(r);
