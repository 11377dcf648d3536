// Speaking indicators and the speaker layout, measured in each page from the
// decrypted audio (the server never gets an audio level). Chromium's fake
// microphone plays a speech-like tone; a muted one is silent.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enter, host, newPage, serverAndBrowser, sleep, waitFor } from '../lib/harness.js';

const env = serverAndBrowser({ voice: true });

test('the speaker is marked, the speaker layout shows them large, a pin overrides', { timeout: 90000 }, async () => {
  const alice = await newPage(env.browser);
  const link = await host(alice, env.server.url, 'Alice');
  const bob = await newPage(env.browser);
  await enter(alice, bob, link, 'Bob');
  const aliceId = await alice.evaluate(() => window.aparte.diagnostics().me);
  // Bob mutes: only Alice's microphone makes sound.
  await bob.click('#mic-toggle');

  // Bob's page hears Alice speak and marks her tile.
  await waitFor(bob, (id) => !!document.querySelector(`.tile[data-peer="${id}"][data-kind="camera"].speaking`), 20000, 'alice marked speaking on bob', aliceId);
  assert.equal(await bob.evaluate(() => window.aparte.diagnostics().activeSpeaker), aliceId, 'alice is the active speaker');
  // And Alice's page marks her own tile, not Bob's (he is muted).
  await waitFor(alice, () => !!document.querySelector('.tile.local[data-kind="camera"].speaking'), 20000, 'alice marked on her own page');
  assert.equal(await alice.locator('.tile:not(.local).speaking').count(), 0, 'a muted participant is not marked');

  // The speaker layout: Alice's tile is the large one, first in the grid.
  await bob.click('#layout-toggle');
  assert.equal(await bob.getAttribute('#layout-toggle', 'aria-pressed'), 'true');
  await waitFor(bob, (id) => document.querySelector('#grid .tile.main')?.dataset.peer === String(id), 5000, 'alice large', aliceId);
  const sizes = await bob.evaluate(() => [...document.querySelectorAll('#grid .tile')].map((t) => ({ main: t.classList.contains('main'), w: t.getBoundingClientRect().width })));
  const main = sizes.find((s) => s.main);
  const strip = sizes.filter((s) => !s.main);
  assert.ok(strip.every((s) => s.w * 3 < main.w), `the others are a strip: ${JSON.stringify(sizes)}`);

  // Bob pins his own tile (keyboard): it becomes the large one though Alice speaks.
  const pin = bob.locator('.tile.local[data-kind="camera"] .pin');
  await pin.focus();
  await bob.keyboard.press('Enter');
  await waitFor(bob, () => document.querySelector('#grid .tile.main')?.classList.contains('local'), 5000, 'pinned tile large');
  assert.equal(await pin.getAttribute('aria-pressed'), 'true');
  await sleep(2000);
  assert.ok(await bob.evaluate(() => document.querySelector('#grid .tile.main')?.classList.contains('local')), 'the pin holds');

  // Alice mutes: after a moment her tile is no longer marked.
  await alice.click('#mic-toggle');
  await waitFor(bob, (id) => !document.querySelector(`.tile[data-peer="${id}"][data-kind="camera"].speaking`), 10000, 'alice unmarked after muting', aliceId);
});
