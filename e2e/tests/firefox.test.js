// Firefox ESR in meetings: two Firefox pages meet (join through the lobby,
// decode each other, camera off and on, leave) with the same E2EE as
// Chromium, and a mixed meeting of one Chromium page and one Firefox page.
// Firefox pairs no loopback ICE candidates, so the server listens on the host
// end of an aparte-netlab link (unimpaired here) and serves TLS.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { join as pathJoin } from 'node:path';
import {
  OUTPUT,
  assertSameOrigin,
  enter,
  expectAudioFrom,
  expectVideoFrom,
  host,
  launchBrowser,
  newPage,
  sleep,
  stats,
  startServer,
  waitFor,
} from '../lib/harness.js';
import { launchFirefox, newFirefoxPage } from '../lib/firefox.js';
import { startLink } from '../lib/netlab.js';

const net = `10.${130 + (process.pid % 50)}.${process.pid % 200}`;
const env = { link: null, server: null, firefox: null, chromium: null };

before(async () => {
  env.link = await startLink({ ns: `apff${process.pid % 100000}`, hostIp: `${net}.1`, nsIp: `${net}.2` });
  env.server = await startServer({ host: env.link.hostIp, args: ['--tls-self-signed'] });
  assert.match(env.server.url, /^https:\/\/10\./, 'the server serves TLS on the link address');
  env.firefox = await launchFirefox();
});

after(async () => {
  await env.firefox?.close();
  await env.chromium?.close();
  await env.server?.stop();
  await env.link?.stop();
});

const e2ee = (page) => page.evaluate(() => window.aparte.diagnostics().e2ee);
const securityCode = (page) => page.evaluate(() => document.querySelector('#security-digits').textContent);

/** Both pages are in one MLS group of 2, show one security code, and their
 * E2EE workers keep sealing and opening frames. */
async function expectSameE2ee(pages, who) {
  for (const [i, p] of pages.entries()) {
    await waitFor(p, () => window.aparte.diagnostics().e2ee.inGroup && window.aparte.diagnostics().e2ee.roster.length === 1, 20000, `${who[i]} in the group with the other`);
  }
  const codes = await Promise.all(pages.map(securityCode));
  assert.match(codes[0], /^\d{5} \d{5} \d{5} \d{5}$/);
  assert.equal(codes[1], codes[0], 'same security code on both pages');
  const before = await Promise.all(pages.map(async (p) => (await e2ee(p)).counters));
  await sleep(1000);
  for (const [i, p] of pages.entries()) {
    const now = (await e2ee(p)).counters;
    assert.ok(now.sealed > before[i].sealed + 20, `${who[i]}: frames sealed (${before[i].sealed} -> ${now.sealed})`);
    assert.ok(now.opened > before[i].opened + 20, `${who[i]}: frames opened (${before[i].opened} -> ${now.opened})`);
  }
}

/** Two pages of one meeting decode each other's video and audio, and share
 * one E2EE group (see `expectSameE2ee`). */
async function expectBothWays(pages, who) {
  for (const [i, p] of pages.entries()) await expectVideoFrom(p, 1, who[i]);
  for (const [i, p] of pages.entries()) await expectAudioFrom(p, 1, who[i]);
  await expectSameE2ee(pages, who);
}

/** Video frames `page` has received from `peer`'s camera. */
async function framesFrom(page, peer) {
  return (await stats(page)).find((s) => s.peer === peer && s.source === 'camera')?.framesReceived ?? 0;
}

test('two Firefox pages meet: lobby, video and audio both ways, camera off and on, leave', { timeout: 120000 }, async () => {
  const alice = await newFirefoxPage(env.firefox);
  const link = await host(alice, env.server.url, 'Alice');
  const bob = await newFirefoxPage(env.firefox);
  await enter(alice, bob, link, 'Bob');

  await expectBothWays([alice, bob], ['alice (firefox)', 'bob (firefox)']);
  await waitFor(alice, () => [...document.querySelectorAll('.tile .label')].some((l) => l.textContent === 'Bob'), 5000, 'Bob named on alice');
  await alice.screenshot({ path: pathJoin(OUTPUT, 'firefox-meeting.png') });

  // Bob turns his camera off: Alice stops receiving his frames; on again, they come back.
  const bobId = await bob.evaluate(() => window.aparte.diagnostics().me);
  await bob.click('#cam-toggle');
  assert.equal(await bob.getAttribute('#cam-toggle', 'aria-pressed'), 'false');
  await sleep(1500);
  const off1 = await framesFrom(alice, bobId);
  await sleep(1500);
  assert.equal(await framesFrom(alice, bobId), off1, 'no video frames from Bob while his camera is off');
  await bob.click('#cam-toggle');
  assert.equal(await bob.getAttribute('#cam-toggle', 'aria-pressed'), 'true');
  await waitFor(
    alice,
    async ([peer, before]) => {
      const s = (await window.aparte.diagnostics().stats()).find((x) => x.peer === peer && x.source === 'camera');
      return (s?.framesDecoded ?? 0) > before + 10;
    },
    15000,
    "Bob's video back on alice",
    [bobId, off1],
  );

  // Bob leaves: his tile disappears from Alice's page.
  await bob.click('#leave');
  await waitFor(alice, (id) => !document.querySelector(`.tile[data-peer="${id}"]`), 3000, 'Bob tile removed', bobId);
  assert.ok(await bob.isVisible('#left'), 'bob sees that he left');

  assertSameOrigin([alice, bob], env.server.url);
});

test('a mixed meeting: a Chromium page and a Firefox page see, hear and decrypt each other', { timeout: 120000 }, async () => {
  env.chromium = await launchBrowser();
  const chrome = await newPage(env.chromium, { ignoreHTTPSErrors: true });
  const link = await host(chrome, env.server.url, 'Chloé');
  const fox = await newFirefoxPage(env.firefox);
  await enter(chrome, fox, link, 'Félix');

  await expectBothWays([chrome, fox], ['chromium', 'firefox']);
  // Each sees the other's name, which travelled end-to-end encrypted.
  await waitFor(chrome, () => [...document.querySelectorAll('.tile .label')].some((l) => l.textContent === 'Félix'), 5000, 'Félix named on chromium');
  await waitFor(fox, () => [...document.querySelectorAll('.tile .label')].some((l) => l.textContent === 'Chloé'), 5000, 'Chloé named on firefox');

  assertSameOrigin([chrome, fox], env.server.url);
});
