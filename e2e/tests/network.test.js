// Meetings on impaired networks, in real browsers. One participant's browser
// runs in a network namespace whose only way to the server is aparte-netlab's
// link (rate cap, delay, loss, UDP blocking); the others run on this host.
// What each page decodes comes from its own getStats.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { OUTPUT, cameraFrom, enter, expectLayer, host, newPage, sleep, startServer } from '../lib/harness.js';
import { launchBrowserHere, launchBrowserIn, startLink } from '../lib/netlab.js';

const net = `10.${77 + (process.pid % 50)}.${process.pid % 200}`;
const env = { link: null, server: null, here: null, there: null };

before(async () => {
  env.link = await startLink({ ns: `apnl${process.pid % 100000}`, hostIp: `${net}.1`, nsIp: `${net}.2` });
  env.server = await startServer({ host: env.link.hostIp });
  env.here = await launchBrowserHere(env.server.url);
  env.there = await launchBrowserIn(env.link.ns, env.server.url);
});

after(async () => {
  // The server's log, for reading a failure (APARTE_E2E_LOG sets its level).
  if (env.server) writeFileSync(pathJoin(OUTPUT, 'network-server.log'), env.server.logs.join(''));
  await env.here?.close();
  await env.there?.close();
  await env.server?.stop();
  await env.link?.stop();
});

/** Samples `page`'s decoded frames of `peer` for `ms`; returns the longest
 * stretch without a new frame and the frames decoded. */
async function watchFrames(page, peer, ms) {
  let longest = 0;
  let lastChange = Date.now();
  let prev = (await cameraFrom(page, peer))?.framesDecoded ?? 0;
  const first = prev;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    await sleep(100);
    const now = (await cameraFrom(page, peer))?.framesDecoded ?? 0;
    if (now > prev) {
      longest = Math.max(longest, Date.now() - lastChange);
      lastChange = Date.now();
      prev = now;
    }
  }
  longest = Math.max(longest, Date.now() - lastChange);
  return { longest, frames: prev - first };
}

/** Alice hosts on this host, Bob joins on this host, Carol joins from the
 * namespace; Bob and Carol turn their cameras off (only Alice's matters). */
async function meeting() {
  const alice = await newPage(env.here);
  const link = await host(alice, env.server.url, 'Alice');
  const bob = await newPage(env.here);
  await enter(alice, bob, link, 'Bob');
  const carol = await newPage(env.there);
  await enter(alice, carol, link, 'Carol');
  for (const p of [bob, carol]) await p.click('#cam-toggle');
  const aliceId = await alice.evaluate(() => window.aparte.diagnostics().me);
  // Large windows: Alice's tile is about 1300 px wide, worth the full layer.
  for (const p of [bob, carol]) await p.setViewportSize({ width: 2700, height: 1600 });
  return { alice, bob, carol, aliceId, close: () => Promise.all([alice, bob, carol].map((p) => p.context().close())) };
}

test('3% loss each way and 100 ms round trip: video keeps decoding, repaired by NACK and retransmission', { timeout: 120000 }, async () => {
  const { carol, aliceId, close } = await meeting();
  const start = Date.now();
  while (!((await cameraFrom(carol, aliceId))?.framesDecoded > 30)) {
    assert.ok(Date.now() - start < 20000, 'carol decodes alice');
    await sleep(200);
  }
  const before = await cameraFrom(carol, aliceId);
  await env.link.set('both delay=50 loss=0.03');
  await sleep(2000);
  const watched = await watchFrames(carol, aliceId, 10000);
  const afterLoss = await cameraFrom(carol, aliceId);
  await env.link.set('clear');
  console.log(`# under 3% loss and 100 ms RTT: ${watched.frames} frames in 10 s, longest gap ${watched.longest} ms, NACKs ${afterLoss.nackCount - before.nackCount}, retransmissions ${afterLoss.retransmittedPacketsReceived - before.retransmittedPacketsReceived}`);
  assert.ok(watched.frames > 100, `frames keep coming under loss: ${watched.frames} in 10 s`);
  assert.ok(watched.longest < 1000, `no stall of a second: longest gap ${watched.longest} ms`);
  assert.ok(afterLoss.nackCount > before.nackCount, 'the receiver asked for lost packets');
  assert.ok(afterLoss.retransmittedPacketsReceived > before.retransmittedPacketsReceived, 'and got them again');
  await close();
});

test('a capped subscriber gets the low layer, an uncapped one keeps the high, and back up when lifted', { timeout: 240000 }, async () => {
  const { alice, bob, carol, aliceId, close } = await meeting();
  await expectLayer(bob, alice, aliceId, 'top', 'bob, uncapped');
  await expectLayer(carol, alice, aliceId, 'top', 'carol, before the cap', 30000);

  // Carol's downlink is capped at 300 kbit/s.
  await env.link.set('down rate=300000');
  const adapt = await expectLayer(carol, alice, aliceId, 'l', 'carol, capped at 300 kbps', 20000);
  console.log(`# carol moved to the low layer ${adapt} ms after the cap (link: ${await env.link.set('stats')})`);
  await expectLayer(bob, alice, aliceId, 'top', 'bob, still uncapped', 3000);

  // The cap is lifted: Carol goes back up.
  await env.link.set('clear');
  const recover = await expectLayer(carol, alice, aliceId, 'top', 'carol, cap lifted', 30000);
  console.log(`# carol back on the high layer ${recover} ms after the cap was lifted`);
  await close();
});

test('with UDP blocked, a page sends media over TCP, says so, and decodes', { timeout: 120000 }, async () => {
  await env.link.set('udp block');
  try {
    const { alice, carol, aliceId, close } = await meeting();
    const start = Date.now();
    while (!((await cameraFrom(carol, aliceId))?.framesDecoded > 30)) {
      assert.ok(Date.now() - start < 30000, `carol decodes alice over TCP (${JSON.stringify(await cameraFrom(carol, aliceId))})`);
      await sleep(250);
    }
    assert.equal(await carol.evaluate(() => window.aparte.diagnostics().transport()), 'tcp');
    assert.match(await carol.locator('#transport').textContent(), /TCP/);
    assert.equal(await alice.evaluate(() => window.aparte.diagnostics().transport()), 'udp');
    const link = await env.link.set('stats');
    assert.match(link, /blocked=[1-9]/, `UDP was tried and dropped: ${link}`);
    console.log(`# over TCP: ${link}`);
    await close();
  } finally {
    await env.link.set('udp pass');
  }
});
