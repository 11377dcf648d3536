// Screen sharing between two real browsers: the share appears as its own tile
// on the other page, decodes, and goes away when the presenter stops.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { host, join, newPage, serverAndBrowser, sleep, stats, waitFor } from '../lib/harness.js';

const env = serverAndBrowser();

test('a screen share reaches the other participant and stops', { timeout: 60000 }, async () => {
  const alice = await newPage(env.browser);
  const link = await host(alice, env.server.url, 'Alice');
  // The host turns the lobby off: Bob walks straight in.
  await alice.click('#set-lobby');
  await waitFor(alice, () => window.aparte.diagnostics().room.lobby === false, 5000, 'lobby off');
  const bob = await newPage(env.browser);
  assert.equal(await join(bob, link, 'Bob'), 'welcome');
  const aliceId = await alice.evaluate(() => window.aparte.diagnostics().me);

  await alice.click('#screen-toggle');
  await waitFor(alice, () => document.querySelector('#screen-toggle').getAttribute('aria-pressed') === 'true', 5000, 'sharing started');
  await waitFor(bob, (id) => !!document.querySelector(`.tile[data-peer="${id}"][data-kind="screen"] video`), 15000, 'screen tile on bob', aliceId);
  await waitFor(
    bob,
    async () => (await window.aparte.diagnostics().stats()).some((s) => s.source === 'screen' && s.framesDecoded > 3),
    15000,
    'screen frames decoded on bob',
  );
  const label = await bob.textContent(`.tile[data-peer="${aliceId}"][data-kind="screen"] .label`);
  assert.equal(label, "Alice's screen");

  await alice.click('#screen-toggle');
  await waitFor(bob, (id) => !document.querySelector(`.tile[data-peer="${id}"][data-kind="screen"]`), 5000, 'screen tile removed', aliceId);
  const frames = async () => (await stats(bob)).find((s) => s.source === 'screen')?.framesReceived ?? 0;
  // A frame already in flight when the tile went may still land; then the
  // count must stop and stay stopped.
  let f1 = await frames();
  for (let i = 0; i < 10; i++) {
    await sleep(500);
    const f = await frames();
    if (f === f1) break;
    f1 = f;
  }
  await sleep(1000);
  assert.equal(await frames(), f1, 'no screen frames after the share stopped');
});
