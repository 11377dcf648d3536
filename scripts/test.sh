#!/usr/bin/env bash
# Runs every test of Aparté: Rust unit, simulation and integration tests, then
# the real-browser tests (headless Chromium against the real server binary).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== Rust tests (unit, SFU simulation, server integration with bots)"
cargo test --workspace --all-targets

echo "== Fuzzing every parser of peer input (${FUZZ_SECONDS:-20} s per target, libFuzzer)"
bash scripts/fuzz.sh

echo "== Server build for the browser tests (and its tap-server example)"
# The test profile's build: dependencies are optimized (see Cargo.toml). Building
# the whole workspace keeps the features cargo test resolved, so it reuses what
# cargo test just compiled instead of rebuilding dependencies.
cargo build --workspace --all-targets

echo "== Browser tests"
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium_bin" ]; then
  echo "error: browser tests need Chromium at $chromium_bin; install it with 'apt-get install chromium' (or set CHROMIUM=/path)." >&2
  exit 1
fi
firefox_bin="${FIREFOX:-/usr/bin/firefox-esr}"
if [ ! -x "$firefox_bin" ]; then
  echo "error: browser tests need Firefox ESR at $firefox_bin; install it with 'apt-get install firefox-esr' (or set FIREFOX=/path)." >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "error: browser tests need Node.js and npm; install them with 'apt-get install nodejs npm'." >&2
  exit 1
fi
cd e2e
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/puppeteer-core ]; then
  npm ci --no-audit --no-fund
fi
npm test
