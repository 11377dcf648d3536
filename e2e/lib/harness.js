// Test harness: starts the real Aparté server binary on ephemeral loopback
// ports and headless Chromium (Debian's) with fake camera and microphone.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join as joinPath, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const OUTPUT = joinPath(ROOT, 'e2e/output');
mkdirSync(OUTPUT, { recursive: true });

/**
 * Starts the server binary (target/debug/aparte-server as scripts/test.sh
 * builds it, or $APARTE_BIN); resolves with {url, logs, stop}.
 * With `tap: {out, needles}`, starts the tap-server example instead (the same
 * server with a tap that reports which needles crossed it), see its source;
 * `tap.swapTracks` makes it label the first two participants' tracks the
 * wrong way round for the third.
 */
export async function startServer({ tap, args: extraArgs = [], host = '127.0.0.1' } = {}) {
  const profile = process.env.APARTE_PROFILE || 'debug';
  let bin = process.env.APARTE_BIN || joinPath(ROOT, `target/${profile}/aparte-server`);
  const dataDir = mkdtempSync(joinPath(tmpdir(), 'aparte-e2e-'));
  let args = ['--listen', `${host}:0`, '--media-listen', `${host}:0`, '--data-dir', dataDir, ...extraArgs];
  if (tap) {
    bin = joinPath(ROOT, `target/${profile}/examples/tap-server`);
    args = ['--out', tap.out, ...tap.needles.flatMap((n) => ['--needle', n]), ...(tap.swapTracks ? ['--swap-tracks'] : [])];
  }
  const child = spawn(bin, args, {
    env: { ...process.env, APARTE_LOG: process.env.APARTE_E2E_LOG || 'info', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = [];
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${logs.join('')}`)), 15000);
    const onData = (buf) => {
      const text = buf.toString();
      logs.push(text);
      const m = text.match(/(https?):\/\/(?:localhost|[0-9.]+):(\d+)/);
      if (m) {
        clearTimeout(timer);
        ok(`${m[1]}://${host}:${m[2]}`);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => fail(new Error(`server exited with ${code}:\n${logs.join('')}`)));
  });
  const stop = () =>
    new Promise((ok) => {
      if (child.exitCode !== null) return ok();
      child.once('exit', ok);
      child.kill('SIGTERM');
    }).then(() => rmSync(dataDir, { recursive: true, force: true }));
  return { url, logs, stop, dataDir };
}

/** Chromium's flags for every test: fake media devices, no outside traffic. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
];

/** Launches headless Chromium with fake media devices and no outside traffic.
 * With `voice`, the fake microphone plays a speech-like tone (see `voiceFile`)
 * instead of Chromium's short beeps, which its noise suppression flattens. */
export async function launchBrowser({ voice = false } = {}) {
  const args = voice ? [...CHROMIUM_ARGS, `--use-file-for-fake-audio-capture=${voiceFile()}`] : CHROMIUM_ARGS;
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args,
  });
}

/** A WAV file of "syllables": 300 ms of a 220 Hz tone with harmonics, 150 ms
 * of silence, for 20 s (Chromium loops it). Written once into e2e/output. */
export function voiceFile() {
  const path = joinPath(OUTPUT, 'voice.wav');
  const rate = 48000;
  const seconds = 20;
  const n = rate * seconds;
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const on = t % 0.45 < 0.3;
    const v = on ? 0.3 * Math.sin(2 * Math.PI * 220 * t) + 0.15 * Math.sin(2 * Math.PI * 440 * t) + 0.08 * Math.sin(2 * Math.PI * 880 * t) : 0;
    data.writeInt16LE(Math.round(v * 32767), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8);
  header.write('fmt ', 12);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  writeFileSync(path, Buffer.concat([header, data]));
  return path;
}

/** A new page in its own context (own devices, own storage), recording every
 * request; `ignoreHTTPSErrors` for a server with a self-signed certificate. */
export async function newPage(browser, { ignoreHTTPSErrors = false } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', ignoreHTTPSErrors });
  const page = await context.newPage();
  page.requests = [];
  page.on('request', (r) => page.requests.push(r.url()));
  page.on('websocket', (ws) => page.requests.push(ws.url()));
  page.on('pageerror', (e) => console.error('page error:', e.message));
  return page;
}

/**
 * Opens `link`, fills the name (and the passcode, when given) and joins;
 * resolves once welcomed or waiting in the lobby, with 'welcome' or 'waiting'.
 */
export async function join(page, link, name, { passcode } = {}) {
  await page.goto(link);
  await page.locator('#join-button').waitFor();
  await page.fill('#display-name', name);
  if (passcode !== undefined) await page.fill('#passcode', passcode);
  await page.click('#join-button');
  await waitFor(page, () => window.aparte.diagnostics().me !== null || window.aparte.diagnostics().waiting !== null, 10000, `${name} welcomed or waiting`);
  return page.evaluate(() => (window.aparte.diagnostics().me !== null ? 'welcome' : 'waiting'));
}

/** Creates a meeting from the landing page and joins it as its host; resolves with the link. */
export async function host(page, serverUrl, name) {
  await page.goto(serverUrl);
  await page.click('#new-meeting');
  await page.waitForURL(/\/m\/[A-Za-z0-9_-]{16}#[A-Za-z0-9_-]{22}$/);
  const link = page.url();
  assert.equal(await join(page, link, name), 'welcome', 'the host walks in');
  return link;
}

/** The id `page` waits in the lobby with (null when not waiting). */
export function waitingId(page) {
  return page.evaluate(() => window.aparte.diagnostics().waiting);
}

/** The host admits `page` (waiting in the lobby) with the lobby panel's button. */
export async function admit(hostPage, page, name = 'guest') {
  const id = await waitingId(page);
  assert.notEqual(id, null, `${name} waits in the lobby`);
  const button = hostPage.locator(`#lobby-list li[data-peer="${id}"] button.primary`);
  await button.click({ timeout: 10000 });
  await waitFor(page, () => window.aparte.diagnostics().me !== null, 10000, `${name} admitted`);
}

/** `page` joins through the lobby and `hostPage` lets it in. */
export async function enter(hostPage, page, link, name) {
  if ((await join(page, link, name)) === 'waiting') await admit(hostPage, page, name);
}

/** Polls `fn` in the page until it returns truthy. */
export async function waitFor(page, fn, timeout = 10000, what = 'condition', arg = undefined) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}: ${e.message}`);
  }
}

/** Inbound stats of one page, per remote track. */
export function stats(page) {
  return page.evaluate(() => window.aparte.diagnostics().stats());
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `page`'s inbound camera stats from `peer` (null until it has some). */
export async function cameraFrom(page, peer) {
  return (await stats(page)).find((s) => s.kind === 'video' && s.source === 'camera' && s.peer === peer) ?? null;
}

/** The width the publisher encodes each camera layer at now (rid → px; 0
 * for a layer it does not encode now: stopped by the server, or by the
 * browser's own estimate of its uplink, when its last width stays in the
 * stats). The browser may encode a layer smaller than asked when its CPU is
 * busy, so a receiver's layer is told by comparing with these, not with
 * fixed sizes. */
export async function layerWidths(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const s of (await window.aparte.diagnostics().pc().getStats()).values()) {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) out[s.rid] = s.framesPerSecond > 0 ? (s.frameWidth ?? 0) : 0;
    }
    return out;
  });
}

/** Waits until `page` decodes `peer`'s camera (published by `publisher`) at
 * the width of layer `wanted` ('l', 'm', 'h', or 'top': the highest layer
 * the publisher encodes now, as its own bandwidth estimate may suspend the
 * top one), frames rising; returns how long it took. */
export async function expectLayer(page, publisher, peer, wanted, what, timeout = 20000) {
  const start = Date.now();
  let last = null;
  let widths = {};
  let rid = wanted;
  const onLayer = async () => {
    widths = await layerWidths(publisher);
    rid = wanted === 'top' ? ['h', 'm', 'l'].find((r) => widths[r] > 0) : wanted;
    last = await cameraFrom(page, peer);
    const others = Object.entries(widths).filter(([r]) => r !== rid).map(([, w]) => w);
    return last?.frameWidth > 0 && last.frameWidth === widths[rid] && !others.includes(widths[rid]);
  };
  while (Date.now() - start < timeout) {
    if (await onLayer()) {
      const took = Date.now() - start;
      const frames = last.framesDecoded;
      await sleep(2000);
      assert.ok(await onLayer(), `${what}: stays on layer ${rid} (${JSON.stringify(widths)}, got ${last.frameWidth})`);
      assert.ok(last.framesDecoded > frames, `${what}: frames keep coming`);
      return took;
    }
    await sleep(200);
  }
  assert.fail(`${what}: expected layer ${rid} within ${timeout} ms; layers ${JSON.stringify(widths)}, got ${JSON.stringify(last)}`);
}


/** Remote video tracks decoding on `page`: {peer → framesDecoded}. */
export async function decodedVideo(page) {
  const out = {};
  for (const s of await stats(page)) {
    if (s.kind === 'video' && s.source === 'camera') out[s.peer] = s.framesDecoded;
  }
  return out;
}

/** Waits until `page` decodes camera video from `n` peers, with frames rising and a real size. */
export async function expectVideoFrom(page, n, who) {
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
export async function expectAudioFrom(page, n, who) {
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

/** Asserts that every request each page made went to the server's own origin
 * (the signaling WebSocket included: same host and port). */
export function assertSameOrigin(pages, serverUrl) {
  const serverHost = new URL(serverUrl).host;
  for (const page of pages) {
    assert.ok(page.requests.length > 0, 'requests were recorded');
    for (const u of page.requests) {
      const parsed = new URL(u);
      assert.ok(parsed.host === serverHost || parsed.protocol === 'data:' || parsed.protocol === 'blob:', `third-party request: ${u}`);
    }
  }
}

/** Starts a server and a browser before a test file's tests and stops both after. */
export function serverAndBrowser({ voice = false } = {}) {
  const env = { server: null, browser: null };
  before(async () => {
    env.server = await startServer();
    env.browser = await launchBrowser({ voice });
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}
