// End-to-end encryption in real browsers: three pages meet, video decodes
// through the E2EE worker (its own sealed/opened counters rise), all three show
// the same security code, chat crosses, and a tap in the server sees neither
// the chat, nor the names, nor the link secret. A page with a wrong secret
// cannot see or hear anyone: its tiles say they cannot be decrypted.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { after, before, test } from 'node:test';
import { OUTPUT, admit, enter, host, join, launchBrowser, newPage, sleep, startServer, waitFor, waitingId } from '../lib/harness.js';

const CHAT = 'the eagle lands at midnight 7781';
const NAMES = ['Alice Quenneville', 'Bob Marchetti', 'Carol Dufresne'];
const TAP_OUT = pathJoin(OUTPUT, 'tap-report.json');

let server;
let browser;
let needles = [...NAMES, CHAT];

before(async () => {
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const e2ee = (page) => page.evaluate(() => window.aparte.diagnostics().e2ee);

test('three browsers meet end-to-end encrypted; the server sees no plaintext', { timeout: 120000 }, async () => {
  // The link (and its secret) is made by the first page; the tap must know the
  // secret to look for it, so the server starts after the link exists.
  const maker = await newPage(browser);
  const probe = await startServer();
  await maker.goto(probe.url);
  await maker.click('#new-meeting');
  await maker.waitForURL(/#/);
  const secret = new URL(maker.url()).hash.slice(1);
  const room = new URL(maker.url()).pathname;
  // The maker's browser holds the host key, for the probe server's origin.
  const hostKey = await maker.evaluate((r) => localStorage.getItem(`aparte.host.${r}`), room.slice(3));
  assert.ok(hostKey, 'the page that made the meeting keeps its host key');
  await maker.context().close();
  await probe.stop();

  needles = [...needles, secret];
  server = await startServer({ tap: { out: TAP_OUT, needles } });
  const link = `${server.url}${room}#${secret}`;

  const pages = [];
  for (const name of NAMES) {
    const p = await newPage(browser);
    if (pages.length === 0) {
      // The first page is the host: it gets the key the maker kept.
      await p.goto(server.url);
      await p.evaluate(([r, k]) => localStorage.setItem(`aparte.host.${r}`, k), [room.slice(3), hostKey]);
      assert.equal(await join(p, link, name), 'welcome');
    } else {
      // The host reads the joiner's name in the lobby (the tap below proves
      // the server could not), then admits.
      assert.equal(await join(p, link, name), 'waiting');
      const id = await waitingId(p);
      await waitFor(pages[0], ([id, n]) => window.aparte.diagnostics().lobby.some((w) => w.id === id && w.name === n), 5000, `${name} named in the lobby`, [id, name]);
      assert.equal(await pages[0].textContent(`#lobby-list li[data-peer="${id}"] .name`), name);
      await admit(pages[0], p, name);
    }
    pages.push(p);
  }
  for (const [i, p] of pages.entries()) {
    await waitFor(p, () => window.aparte.diagnostics().e2ee.inGroup && window.aparte.diagnostics().e2ee.roster.length === 2, 20000, `${NAMES[i]} in the group with 2 others`);
  }
  // One security code for all, shown on screen.
  await sleep(500);
  const codes = await Promise.all(pages.map((p) => p.textContent('#security-digits')));
  assert.match(codes[0], /^\d{5} \d{5} \d{5} \d{5}$/);
  assert.deepEqual(codes, [codes[0], codes[0], codes[0]], 'same security code everywhere');
  for (const p of pages) {
    assert.equal(await p.textContent('#e2ee-status'), '🔒 End-to-end encrypted');
  }

  // Video decodes, and it went through the worker: frames sealed and opened.
  for (const [i, p] of pages.entries()) {
    await waitFor(
      p,
      async () => (await window.aparte.diagnostics().stats()).filter((s) => s.kind === 'video' && s.framesDecoded > 10).length >= 2,
      20000,
      `${NAMES[i]} decodes 2 videos`,
    );
    const a = (await e2ee(p)).counters;
    await sleep(1500);
    const b = (await e2ee(p)).counters;
    assert.ok(b.sealed > a.sealed, `${NAMES[i]} seals frames`);
    assert.ok(b.opened > a.opened, `${NAMES[i]} opens frames`);
  }
  // Names came through MLS.
  const labels = await pages[0].$$eval('.tile[data-kind="camera"] .label', (ls) => ls.map((l) => l.textContent).sort());
  assert.deepEqual(labels, [`${NAMES[0]} (you)`, NAMES[1], NAMES[2]].sort());

  // Chat.
  await pages[0].fill('#chat-input', CHAT);
  await pages[0].click('#chat-form button');
  for (const p of pages.slice(1)) {
    await waitFor(p, (text) => document.querySelector('#chat-log').textContent.includes(text), 5000, 'chat arrives', CHAT);
    const who = await p.textContent('#chat-log li:last-child .who');
    assert.equal(who, NAMES[0]);
  }
  await pages[1].screenshot({ path: pathJoin(OUTPUT, 'meeting-e2ee.png') });

  // A page with the right room but a wrong secret.
  const wrong = await newPage(browser);
  const badLink = `${server.url}${room}#${'A'.repeat(22)}`;
  assert.equal(await join(wrong, badLink, 'Mallory'), 'waiting');
  // Its name was sealed with another link: the host cannot read it, and says so.
  const malloryId = await waitingId(wrong);
  await waitFor(pages[0], (id) => window.aparte.diagnostics().lobby.some((w) => w.id === id && !w.readable), 5000, 'unreadable name in the lobby', malloryId);
  // Admitted anyway, it still gets no keys.
  await admit(pages[0], wrong, 'Mallory');
  await waitFor(wrong, () => document.querySelectorAll('.tile .status').length >= 3, 20000, 'tiles say they cannot be decrypted');
  const statuses = await wrong.$$eval('.tile .status', (s) => s.map((x) => x.textContent));
  assert.ok(statuses.every((s) => s === 'Cannot be decrypted'), String(statuses));
  assert.equal((await e2ee(wrong)).inGroup, false);
  const wrongStats = await wrong.evaluate(() => window.aparte.diagnostics().stats());
  assert.ok(wrongStats.filter((s) => s.kind === 'video').every((s) => s.framesDecoded === 0), 'nothing decodes');
  // Meanwhile the honest pages seal every frame they send (nothing leaves in
  // clear: notSent stays where it was), and what reaches the wrong page is
  // there but does not open. If senders did not encrypt, their sealed
  // counters would stand still.
  const before = await Promise.all(pages.map(async (p) => (await e2ee(p)).counters));
  const wrongBefore = (await e2ee(wrong)).counters;
  await sleep(1500);
  for (const [i, p] of pages.entries()) {
    const after = (await e2ee(p)).counters;
    assert.ok(after.sealed > before[i].sealed + 20, `${NAMES[i]} keeps sealing (${before[i].sealed} -> ${after.sealed})`);
    assert.equal(after.notSent, before[i].notSent, `${NAMES[i]} sends nothing unsealed`);
  }
  const wrongAfter = (await e2ee(wrong)).counters;
  assert.ok(wrongAfter.failed > wrongBefore.failed + 20, `frames reach the wrong page and fail (${wrongBefore.failed} -> ${wrongAfter.failed})`);
  assert.equal(wrongAfter.opened, 0, 'the wrong page opens nothing');
  // Every honest page marks it as outside the encrypted meeting, and nobody
  // else.
  for (const [i, p] of pages.entries()) {
    await waitFor(
      p,
      (id) => document.querySelector(`.tile[data-peer="${id}"] .outside`)?.textContent.includes('Not in the encrypted meeting'),
      10000,
      `${NAMES[i]} marks the outsider`,
      malloryId,
    );
    assert.equal(await p.$$eval('.tile .outside', (els) => els.length), 1, `${NAMES[i]} marks only the outsider`);
  }
  // The others never let it in: same code, same roster.
  for (const p of pages) {
    assert.equal(await p.textContent('#security-digits'), codes[0]);
    assert.equal((await e2ee(p)).roster.length, 2);
  }

  await sleep(800);
  const report = JSON.parse(readFileSync(TAP_OUT, 'utf8'));
  assert.ok(report.packets > 200, `the tap saw media packets (${report.packets})`);
  assert.ok(report.mls_app > 0, 'the tap saw MLS application messages');
  assert.deepEqual(report.hits, [], 'no name, chat text or link secret crossed the server');
});

// A lying server: for the third page, it labels the first two participants'
// tracks the wrong way round (Alice's camera on Bob's tile and Bob's on
// Alice's). That page shows no video under either name: each frame opens only
// with its real sender's key, so the worker drops it and counts it as
// relabelled, and the tiles say why. The first two pages, whose offers are
// honest, see everyone: the attack, not a broken meeting, is what is refused.
test('a server that swaps two participants’ tracks gets no video shown under the wrong name', { timeout: 120000 }, async () => {
  const liar = await startServer({ tap: { out: pathJoin(OUTPUT, 'swap-report.json'), needles: [], swapTracks: true } });
  const pages = [];
  try {
    const alice = await newPage(browser);
    const link = await host(alice, liar.url, NAMES[0]);
    pages.push(alice);
    for (const name of NAMES.slice(1)) {
      const p = await newPage(browser);
      await enter(alice, p, link, name);
      pages.push(p);
    }
    const [carol] = pages.slice(2);
    const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.aparte.diagnostics().me)));
    for (const [i, p] of pages.entries()) {
      await waitFor(p, () => window.aparte.diagnostics().e2ee.roster.length === 2, 20000, `${NAMES[i]} in the group with 2 others`);
    }
    const codes = await Promise.all(pages.map((p) => p.textContent('#security-digits')));
    assert.deepEqual(codes, [codes[0], codes[0], codes[0]], 'the swap does not touch the group');

    // Alice and Bob, told the truth, decode both other videos.
    for (const [i, p] of pages.slice(0, 2).entries()) {
      await waitFor(
        p,
        async () => (await window.aparte.diagnostics().stats()).filter((s) => s.kind === 'video' && s.framesDecoded > 10).length >= 2,
        20000,
        `${NAMES[i]} decodes 2 videos`,
      );
    }
    // Carol gets Alice's and Bob's frames, under each other's names: every one
    // is refused and counted, none opens, nothing decodes.
    const byPeer = async () => (await e2ee(carol)).counters?.byPeer ?? {};
    await waitFor(
      carol,
      ([a, b]) => {
        const c = window.aparte.diagnostics().e2ee.counters?.byPeer ?? {};
        return (c[a]?.relabelled ?? 0) > 20 && (c[b]?.relabelled ?? 0) > 20;
      },
      20000,
      'Carol refuses the swapped frames',
      [ids[0], ids[1]],
    );
    const first = await byPeer();
    await sleep(1500);
    const then = await byPeer();
    for (const id of [ids[0], ids[1]]) {
      assert.equal(then[id].opened, 0, `Carol opened none of ${id}'s frames`);
      assert.ok(then[id].relabelled > first[id].relabelled + 20, `the refusals go on (${first[id].relabelled} -> ${then[id].relabelled})`);
    }
    const stats = await carol.evaluate(() => window.aparte.diagnostics().stats());
    const videos = stats.filter((s) => s.kind === 'video');
    assert.ok(videos.length >= 2, 'Carol receives two videos');
    assert.ok(videos.every((s) => s.framesDecoded === 0), `no video decodes on Carol's page: ${JSON.stringify(videos)}`);
    for (const id of [ids[0], ids[1]]) {
      const status = await carol.textContent(`.tile[data-peer="${id}"] .status`);
      assert.match(status, /someone else/, `Carol's tile for ${id} says why it is empty`);
    }
    for (const p of pages.slice(0, 2)) {
      assert.equal(await p.$$eval('.tile .status', (s) => s.length), 0, 'honest offers, no refusals');
    }
  } finally {
    for (const p of pages) await p.context().close();
    await liar.stop();
  }
});
