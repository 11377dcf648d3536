// The lobby and the host's controls in real browsers. A joiner waits and
// receives nothing until the host admits them; a denied joiner is told so; a
// passcode is asked for and checked; the host asks everyone to mute (and
// everyone sees it), promotes a moderator, removes a participant (whose
// reload is refused), locks the meeting, and ends it for all. Every request
// any page made went to the server's own origin.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { admit, host, join, newPage, serverAndBrowser, sleep, waitFor, waitingId } from '../lib/harness.js';

const env = serverAndBrowser();
const diag = (page) => page.evaluate(() => {
  const d = window.aparte.diagnostics();
  return { me: d.me, waiting: d.waiting, role: d.role, room: d.room, peers: d.peers, lobby: d.lobby, notices: d.notices, mic: d.mic };
});
const leftReason = async (page) => {
  await waitFor(page, () => !document.querySelector('#left').hidden, 10000, 'left screen');
  return page.textContent('#left-reason');
};

test('the lobby: waiting gives nothing, admitted and denied paths, passcode', { timeout: 120000 }, async () => {
  const pages = [];
  const alice = await newPage(env.browser);
  pages.push(alice);
  const link = await host(alice, env.server.url, 'Alice');
  assert.equal((await diag(alice)).role, 'host');
  assert.equal((await diag(alice)).room.lobby, true, 'the lobby is on by default');

  // Bob waits: he sees the waiting screen and nothing of the meeting.
  const bob = await newPage(env.browser);
  pages.push(bob);
  assert.equal(await join(bob, link, 'Bob'), 'waiting');
  assert.equal(await bob.isVisible('#waiting'), true);
  assert.equal(await bob.isVisible('#meeting'), false);
  const bobId = await waitingId(bob);
  await waitFor(alice, (id) => window.aparte.diagnostics().lobby.some((w) => w.id === id && w.name === 'Bob'), 5000, 'Bob named in the lobby', bobId);
  assert.equal(await alice.isVisible('#lobby-panel'), true);
  await sleep(1500);
  const waitingBob = await diag(bob);
  assert.deepEqual(waitingBob.peers, [], 'no roster while waiting');
  assert.equal(await bob.evaluate(() => document.querySelectorAll('.tile').length), 0, 'no tiles while waiting');
  assert.deepEqual(await bob.evaluate(() => window.aparte.diagnostics().stats()), [], 'no media while waiting');
  assert.equal(await bob.evaluate(() => window.aparte.diagnostics().e2ee.inGroup), false, 'no group while waiting');

  // Admitted with the keyboard: focus the Admit button and press Enter.
  await alice.focus(`#lobby-list li[data-peer="${bobId}"] button.primary`);
  await alice.keyboard.press('Enter');
  await waitFor(bob, () => window.aparte.diagnostics().me !== null, 10000, 'Bob admitted');
  await waitFor(bob, () => window.aparte.diagnostics().e2ee.inGroup, 20000, 'Bob in the group');
  await waitFor(alice, () => window.aparte.diagnostics().lobby.length === 0, 5000, 'lobby empty');
  assert.equal(await alice.isVisible('#lobby-panel'), false);

  // Carol is denied.
  const carol = await newPage(env.browser);
  pages.push(carol);
  assert.equal(await join(carol, link, 'Carol'), 'waiting');
  const carolId = await waitingId(carol);
  await alice.click(`#lobby-list li[data-peer="${carolId}"] button:not(.primary)`);
  assert.equal(await leftReason(carol), 'The host did not let you in.');
  assert.equal(await carol.isVisible('#rejoin'), false, 'no rejoin after a denial');

  // A passcode: asked for, a wrong one refused, the right one leads to the lobby.
  await alice.fill('#new-passcode', 'blue door 42');
  await alice.click('#passcode-form button[type="submit"]');
  await waitFor(alice, () => window.aparte.diagnostics().room.passcode === true, 5000, 'passcode set');
  await waitFor(bob, () => window.aparte.diagnostics().room.passcode === true, 5000, 'Bob told the passcode is on');
  const dave = await newPage(env.browser);
  pages.push(dave);
  await dave.goto(link);
  await dave.fill('#display-name', 'Dave');
  await dave.click('#join-button');
  await waitFor(dave, () => !document.querySelector('#passcode-box').hidden, 10000, 'passcode asked');
  await waitFor(dave, () => document.querySelector('#passcode-error').textContent === 'This meeting needs a passcode.', 5000, 'passcode asked for');
  await waitFor(dave, () => document.activeElement?.id === 'passcode', 5000, 'passcode field focused');
  await dave.fill('#passcode', 'red door');
  await dave.click('#join-button');
  await waitFor(dave, () => document.querySelector('#passcode-error').textContent === 'That passcode is not right.' && !document.querySelector('#prejoin').hidden, 10000, 'wrong passcode said');
  await dave.fill('#passcode', 'blue door 42');
  await dave.click('#join-button');
  await waitFor(dave, () => window.aparte.diagnostics().waiting !== null, 10000, 'Dave in the lobby');
  await admit(alice, dave, 'Dave');

  // Every request of every page went to the server's own origin.
  const origin = new URL(env.server.url).host;
  for (const p of pages) {
    const foreign = p.requests.filter((u) => !u.startsWith('data:') && !u.startsWith('blob:') && new URL(u).host !== origin);
    assert.deepEqual(foreign, [], 'no request to anyone but the server');
    assert.ok(p.requests.some((u) => u.endsWith('/ws')), 'the signaling socket was recorded');
  }
  for (const p of pages) await p.context().close();
});

test('host controls: mute all, promote, remove (reload refused), lock, end', { timeout: 120000 }, async () => {
  const alice = await newPage(env.browser);
  const link = await host(alice, env.server.url, 'Alice');
  await alice.click('#set-lobby');
  await waitFor(alice, () => window.aparte.diagnostics().room.lobby === false, 5000, 'lobby off');
  const bob = await newPage(env.browser);
  const carol = await newPage(env.browser);
  assert.equal(await join(bob, link, 'Bob'), 'welcome');
  assert.equal(await join(carol, link, 'Carol'), 'welcome');
  for (const p of [alice, bob, carol]) {
    await waitFor(p, () => window.aparte.diagnostics().e2ee.inGroup && window.aparte.diagnostics().e2ee.roster.length === 2, 20000, 'all three in the group');
  }
  const bobId = await bob.evaluate(() => window.aparte.diagnostics().me);
  const carolId = await carol.evaluate(() => window.aparte.diagnostics().me);
  await waitFor(alice, (id) => document.querySelector(`#people-list li[data-peer="${id}"] .name`)?.textContent === 'Carol', 10000, 'Carol named in the people list', carolId);

  // Mute all: Bob's and Carol's microphones go off, Alice's stays on; all see it.
  await alice.click('#mute-all');
  for (const p of [bob, carol]) await waitFor(p, () => window.aparte.diagnostics().mic === false, 5000, 'mic off on request');
  assert.equal(await bob.getAttribute('#mic-toggle', 'aria-pressed'), 'false');
  assert.equal((await diag(alice)).mic, true, 'the asker keeps the microphone');
  for (const p of [alice, bob, carol]) {
    await waitFor(p, () => window.aparte.diagnostics().notices.includes('Alice asked everyone to mute.'), 5000, 'mute request shown');
  }

  // Promote Bob: he becomes a moderator and gets the settings panel.
  await alice.click(`#people-list li[data-peer="${bobId}"] button[aria-label="Make Bob a moderator"]`);
  await waitFor(bob, () => window.aparte.diagnostics().role === 'moderator', 5000, 'Bob moderator');
  assert.equal(await bob.isVisible('#settings-panel'), true);
  assert.equal(await bob.isVisible('#end-meeting'), false, 'only the host ends the meeting');
  await waitFor(carol, () => window.aparte.diagnostics().notices.includes('Bob is now a moderator.'), 5000, 'promotion shown');

  // Remove Carol: she is told, her tile goes, and reloading does not bring her back.
  await alice.click(`#people-list li[data-peer="${carolId}"] button.danger`);
  assert.equal(await leftReason(carol), 'The host removed you from the meeting.');
  await waitFor(bob, (id) => !document.querySelector(`.tile[data-peer="${id}"]`), 5000, 'Carol tile gone on Bob', carolId);
  await carol.reload();
  await carol.locator('#join-button').waitFor();
  await carol.click('#join-button');
  assert.equal(await leftReason(carol), 'The host removed you from the meeting.');

  // Lock: a newcomer is told the meeting is not open (as for an unknown room).
  await bob.click('#set-locked');
  await waitFor(alice, () => window.aparte.diagnostics().room.locked === true, 5000, 'locked');
  const dave = await newPage(env.browser);
  await dave.goto(link);
  await dave.fill('#display-name', 'Dave');
  await dave.click('#join-button');
  const daveReason = await leftReason(dave);
  assert.match(daveReason, /not open/);
  const unknown = await newPage(env.browser);
  await unknown.goto(`${env.server.url}/m/AAAAAAAAAAAAAAAA#${'B'.repeat(22)}`);
  await unknown.fill('#display-name', 'Eve');
  await unknown.click('#join-button');
  assert.equal(await leftReason(unknown), daveReason, 'a locked room and an unknown room answer the same');

  // End for all, through the confirmation dialog.
  await alice.click('#end-meeting');
  await alice.locator('#end-dialog').waitFor();
  await alice.click('#end-confirm');
  for (const p of [alice, bob]) assert.equal(await leftReason(p), 'The host ended the meeting.');
  for (const p of [alice, bob, carol, dave, unknown]) await p.context().close();
});
