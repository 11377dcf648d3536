// A test network: a namespace with its own address, joined to this host by
// aparte-netlab (a userspace link with rate cap, delay, loss and UDP
// blocking per direction; see crates/aparte-netlab), and Chromium started
// inside it. The server listens on the host's end of the link, so a browser
// in the namespace reaches it only through the impaired link, while a
// browser on the host reaches it directly.

import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join as joinPath, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './harness.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * Starts the link: namespace `ns` at `nsIp`, this host at `hostIp`.
 * Resolves with {set(command) → answer, stop()}.
 */
export async function startLink({ ns, hostIp, nsIp }) {
  const profile = process.env.APARTE_PROFILE || 'debug';
  const bin = joinPath(ROOT, `target/${profile}/aparte-netlab`);
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {
    // not there
  }
  const child = spawn(bin, ['--ns', ns, '--host-ip', hostIp, '--ns-ip', nsIp], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const next = () => new Promise((ok) => waiting.push(ok));
  const ready = await Promise.race([
    next(),
    new Promise((_, fail) => child.on('exit', (code) => fail(new Error(`aparte-netlab exited with ${code}`)))),
  ]);
  if (ready !== 'ready') throw new Error(`aparte-netlab: ${ready}`);
  return {
    ns,
    hostIp,
    nsIp,
    /** Sends one command (see aparte-netlab's documentation); resolves with its answer. */
    async set(command) {
      const answer = next();
      child.stdin.write(`${command}\n`);
      const text = await answer;
      if (!text.startsWith('ok')) throw new Error(`aparte-netlab ${command}: ${text}`);
      return text;
    },
    async stop() {
      child.stdin.end();
      await new Promise((ok) => (child.exitCode !== null ? ok() : child.once('exit', ok)));
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    },
  };
}

/**
 * Launches headless Chromium inside namespace `ns` (through a wrapper that
 * runs it under `ip netns exec`), treating `origin` as secure (a plain-HTTP
 * address that is not localhost).
 */
export async function launchBrowserIn(ns, origin) {
  const dir = mkdtempSync(joinPath(tmpdir(), 'aparte-netns-'));
  const wrapper = joinPath(dir, 'chromium');
  const chromiumBin = process.env.CHROMIUM || '/usr/bin/chromium';
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} ${chromiumBin} "$@"\n`);
  chmodSync(wrapper, 0o755);
  const browser = await chromium.launch({
    executablePath: wrapper,
    headless: true,
    args: [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=${origin}`],
  });
  browser.on('disconnected', () => rmSync(dir, { recursive: true, force: true }));
  return browser;
}

/** Launches headless Chromium on this host, treating `origin` as secure. */
export async function launchBrowserHere(origin) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, `--unsafely-treat-insecure-origin-as-secure=${origin}`],
  });
}
