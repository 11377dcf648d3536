// Simulcast in real browsers: the publisher's camera goes out in three layers
// (quarter, half and full size), and what each receiver gets follows how
// large it shows the tile. Which layer a receiver decodes is told by its
// frame width (its getStats) against the width the publisher encodes each
// layer at (its own getStats): a busy browser may encode a layer smaller
// than asked.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enter, expectLayer, host, newPage, serverAndBrowser, sleep, stats, waitFor } from '../lib/harness.js';

const env = serverAndBrowser();

/** The frames `page` decoded of its first remote camera. */
async function cameraFrames(page) {
  const s = (await stats(page)).find((x) => x.kind === 'video' && x.source === 'camera');
  return s?.framesDecoded ?? 0;
}

/** Bytes the page sent per camera layer (rid → bytesSent). */
async function sentByLayer(page) {
  return page.evaluate(async () => {
    const out = {};
    const pc = window.aparte.diagnostics().pc();
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) out[s.rid] = s.bytesSent;
    }
    return out;
  });
}

test('each receiver gets the camera layer its tile needs; hidden tiles pause', { timeout: 120000 }, async () => {
  const alice = await newPage(env.browser);
  const link = await host(alice, env.server.url, 'Alice');
  const bob = await newPage(env.browser);
  await enter(alice, bob, link, 'Bob');

  // The publisher sends three layers.
  await waitFor(alice, async () => {
    const pc = window.aparte.diagnostics().pc();
    const rids = new Set();
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid && s.bytesSent > 0) rids.add(s.rid);
    }
    return rids.size === 3;
  }, 15000, 'alice sends three camera layers');

  const aliceId = await alice.evaluate(() => window.aparte.diagnostics().me);
  // 1280 × 800, two tiles side by side: about 620 px wide, the middle layer.
  await expectLayer(bob, alice, aliceId, 'm', 'a tile about 620 px wide');
  // A small window: the lowest.
  await bob.setViewportSize({ width: 360, height: 300 });
  await expectLayer(bob, alice, aliceId, 'l', 'a tile about 170 px wide');
  // A large one: the full size.
  await bob.setViewportSize({ width: 2700, height: 1600 });
  await expectLayer(bob, alice, aliceId, 'top', 'a tile about 1300 px wide');

  // Bob's tile is off screen: its video pauses, and as nobody else receives
  // Alice's camera, she stops encoding the two upper layers.
  await bob.evaluate(() => {
    document.querySelector('.tile:not(.local)').style.display = 'none';
  });
  await sleep(2000);
  const paused = await cameraFrames(bob);
  const sent = await sentByLayer(alice);
  await sleep(2000);
  assert.equal(await cameraFrames(bob), paused, 'no frames for a hidden tile');
  const later = await sentByLayer(alice);
  assert.equal(later.h, sent.h, 'the high layer is not encoded');
  assert.equal(later.m, sent.m, 'the middle layer is not encoded');
  assert.ok(later.l > sent.l, 'the lowest layer stays on');

  // Back on screen: video resumes at the size it needs.
  await bob.evaluate(() => {
    document.querySelector('.tile:not(.local)').style.display = '';
  });
  await expectLayer(bob, alice, aliceId, 'top', 'the tile is back');
});
