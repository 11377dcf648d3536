// Real browsers meet through the real server: 2 then 3 headless Chromium pages
// join through the UI, see and hear each other, turn a camera off, and leave.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { join as pathJoin } from 'node:path';
import { OUTPUT, assertSameOrigin, enter, expectAudioFrom, expectVideoFrom, host, newPage, serverAndBrowser, sleep, stats, waitFor } from '../lib/harness.js';

const env = serverAndBrowser();

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
  assertSameOrigin([alice, bob, carol], env.server.url);
});
