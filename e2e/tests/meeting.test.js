// Real browsers meet through the real server: 2 then 3 headless Chromium pages
// join through the UI, see and hear each other, turn a camera off, and leave.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { join as pathJoin } from 'node:path';
import { OUTPUT, enter, host, newPage, serverAndBrowser, sleep, stats, waitFor } from '../lib/harness.js';

const env = serverAndBrowser();

/** Remote video tracks decoding on `page`: {peer → framesDecoded}. */
async function decodedVideo(page) {
  const out = {};
  for (const s of await stats(page)) {
    if (s.kind === 'video' && s.source === 'camera') out[s.peer] = s.framesDecoded;
  }
  return out;
}

/** Waits until `page` decodes camera video from `n` peers, with frames rising and a real size. */
async function expectVideoFrom(page, n, who) {
  await waitFor(page, (n) => document.querySelectorAll('.tile:not(.local) video').length >= n, 15000, `${who}: ${n} remote tiles`, n);
  await waitFor(
    page,
    async (n) => {
      const s = await window.aparte.diagnostics().stats();
      return s.filter((x) => x.kind === 'video' && x.framesDecoded > 10).length >= n;
    },
    20000,
    `${who}: video decoding from ${n} peers`,
    n,
  );
  const first = await decodedVideo(page);
  await sleep(1000);
  const second = await decodedVideo(page);
  for (const peer of Object.keys(first)) assert.ok(second[peer] > first[peer], `${who}: frames from ${peer} keep rising`);
  // The element reports its size once it has presented a decoded frame.
  await waitFor(
    page,
    (n) => {
      const vs = [...document.querySelectorAll('.tile:not(.local)[data-kind="camera"] video')];
      return vs.length === n && vs.every((v) => v.videoWidth > 0);
    },
    5000,
    `${who}: ${n} remote camera videos with a size`,
    n,
  );
}

/** Waits until `page` receives audio samples from `n` peers, rising. */
async function expectAudioFrom(page, n, who) {
  await waitFor(
    page,
    async (n) => {
      const s = await window.aparte.diagnostics().stats();
      return s.filter((x) => x.kind === 'audio' && x.totalSamplesReceived > 0).length >= n;
    },
    15000,
    `${who}: audio from ${n} peers`,
    n,
  );
  const audio = async () => Object.fromEntries((await stats(page)).filter((s) => s.kind === 'audio').map((s) => [s.peer, s.totalSamplesReceived]));
  const a = await audio();
  await sleep(500);
  const b = await audio();
  for (const peer of Object.keys(a)) assert.ok(b[peer] > a[peer], `${who}: audio samples from ${peer} keep rising`);
}

test('two then three browsers meet, a camera goes off, one leaves', { timeout: 120000 }, async () => {
  const alice = await newPage(env.browser);
  const link = await host(alice, env.server.url, 'Alice');

  const bob = await newPage(env.browser);
  await enter(alice, bob, link, 'Bob');
  await expectVideoFrom(alice, 1, 'alice');
  await expectVideoFrom(bob, 1, 'bob');
  await expectAudioFrom(alice, 1, 'alice');
  await expectAudioFrom(bob, 1, 'bob');

  const carol = await newPage(env.browser);
  await enter(alice, carol, link, 'Carol');
  for (const [page, who] of [[alice, 'alice'], [bob, 'bob'], [carol, 'carol']]) {
    await expectVideoFrom(page, 2, who);
    await expectAudioFrom(page, 2, who);
  }
  // Names travel between participants and label the tiles.
  await waitFor(alice, () => [...document.querySelectorAll('.tile .label')].map((l) => l.textContent).join('|').includes('Carol'), 5000, 'Carol named on alice');
  const labels = await alice.$$eval('.tile[data-kind="camera"] .label', (ls) => ls.map((l) => l.textContent).sort());
  assert.deepEqual(labels, ['Alice (you)', 'Bob', 'Carol']);
  // The latecomer learns the others' names from what they send to newcomers only.
  await waitFor(carol, () => [...document.querySelectorAll('.tile .label')].map((l) => l.textContent).join('|').includes('Bob'), 5000, 'Bob named on carol');
  const carolSees = await carol.$$eval('.tile[data-kind="camera"] .label', (ls) => ls.map((l) => l.textContent).sort());
  assert.deepEqual(carolSees, ['Alice', 'Bob', 'Carol (you)']);
  await alice.screenshot({ path: pathJoin(OUTPUT, 'meeting-3.png') });

  // Bob turns his camera off: Alice and Carol stop receiving his video frames.
  const bobId = await bob.evaluate(() => window.aparte.diagnostics().me);
  await bob.click('#cam-toggle');
  assert.equal(await bob.getAttribute('#cam-toggle', 'aria-pressed'), 'false');
  await sleep(1500);
  for (const [page, who] of [[alice, 'alice'], [carol, 'carol']]) {
    const frames = async () => (await stats(page)).find((s) => s.peer === bobId && s.source === 'camera')?.framesReceived ?? 0;
    const f1 = await frames();
    await sleep(1500);
    const f2 = await frames();
    assert.equal(f2, f1, `${who}: no video frames from Bob while his camera is off`);
    // Carol's video still flows.
    const carolId = await carol.evaluate(() => window.aparte.diagnostics().me);
    if (page === alice) {
      const c1 = (await stats(alice)).find((s) => s.peer === carolId && s.source === 'camera').framesDecoded;
      await sleep(500);
      const c2 = (await stats(alice)).find((s) => s.peer === carolId && s.source === 'camera').framesDecoded;
      assert.ok(c2 > c1, 'alice still decodes Carol');
    }
  }

  // Carol leaves: her tile disappears from the others within 2 s.
  const carolId = await carol.evaluate(() => window.aparte.diagnostics().me);
  await carol.click('#leave');
  const t0 = Date.now();
  for (const page of [alice, bob]) {
    await waitFor(page, (id) => !document.querySelector(`.tile[data-peer="${id}"]`), 2000, 'Carol tile removed', carolId);
  }
  assert.ok(Date.now() - t0 <= 2000);
  assert.ok(await carol.isVisible('#left'));

  // Every request any page made went to the server's own origin.
  // (The signaling WebSocket is ws:// to the same host and port.)
  const serverHost = new URL(env.server.url).host;
  for (const page of [alice, bob, carol]) {
    for (const u of page.requests) {
      const parsed = new URL(u);
      assert.ok(parsed.host === serverHost || parsed.protocol === 'data:' || parsed.protocol === 'blob:', `third-party request: ${u}`);
    }
  }
});
