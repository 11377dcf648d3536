// Join click to first remote frame decoded, in headless Chromium, for meetings
// of 2, 5 and 10 pages, against the bare WebRTC connect time (ICE+DTLS, the
// peer connection's 'connected') of the same join. E2EE is always on, so the
// difference is what joining the MLS group and decrypting cost.
// Usage: APARTE_PROFILE=release node bench/join-browser.mjs [sizes=2,5,10]
// (after cargo build --release -p aparte-server, and npm ci in e2e/)

import { host, join, launchBrowser, newPage, startServer, waitFor } from '../e2e/lib/harness.js';

const sizes = (process.argv[2] ?? '2,5,10').split(',').map(Number);
const rows = [];
for (const n of sizes) {
  const server = await startServer();
  const browser = await launchBrowser();
  // The first page makes the meeting (rooms open only with a host key) and
  // turns the lobby off, so the others, and the measured page, walk in.
  const first = await newPage(browser);
  const link = await host(first, server.url, 'P0');
  await first.click('#set-lobby');
  await waitFor(first, () => window.aparte.diagnostics().room.lobby === false, 5000, 'lobby off');
  await waitFor(first, () => window.aparte.diagnostics().e2ee.inGroup, 30000, 'in group');
  const pages = [first];
  for (let i = 1; i < n - 1; i++) {
    const p = await newPage(browser);
    await join(p, link, `P${i}`);
    await waitFor(p, () => window.aparte.diagnostics().e2ee.inGroup, 30000, 'in group');
    pages.push(p);
  }
  await new Promise((r) => setTimeout(r, 2000));
  const last = await newPage(browser);
  await last.goto(link);
  await last.fill('#display-name', 'Measured');
  const result = await last.evaluate(async (peers) => {
    const t0 = performance.now();
    document.querySelector('#join-button').click();
    let connected = null;
    let keys = null;
    const first = new Map();
    while (performance.now() - t0 < 60000) {
      const d = window.aparte?.diagnostics();
      if (d) {
        if (connected === null && d.connection === 'connected') connected = performance.now() - t0;
        if (keys === null && d.e2ee.inGroup) keys = performance.now() - t0;
        for (const s of await d.stats()) {
          if (s.kind === 'video' && s.source === 'camera' && s.framesDecoded > 0 && !first.has(s.peer)) {
            first.set(s.peer, performance.now() - t0);
          }
        }
        if (first.size >= peers && connected !== null) break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const t = [...first.values()];
    return { connected, keys, first: Math.min(...t), all: Math.max(...t), got: t.length };
  }, n - 1);
  rows.push({ n, ...result });
  console.error(JSON.stringify(rows.at(-1)));
  await browser.close();
  await server.stop();
}
console.log(`### Join click to first decoded frame, headless Chromium, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC\n`);
console.log('All pages in one headless Chromium on the 2-core machine, fake camera, E2EE on. `node bench/join-browser.mjs 2,5,10`.\n');
console.log('| pages | peer connection connected (ICE+DTLS) | in the E2EE group (keys) | first remote frame decoded | frames decoded from every peer |');
console.log('|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const f = (x) => (x === null || !Number.isFinite(x) ? 'n/a' : `${Math.round(x)} ms`);
  console.log(`| ${r.n} | ${f(r.connected)} | ${f(r.keys)} | ${f(r.first)} | ${f(r.all)}${r.got < r.n - 1 ? ` (only ${r.got} of ${r.n - 1})` : ''} |`);
}
