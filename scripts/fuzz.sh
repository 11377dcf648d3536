#!/usr/bin/env bash
# Fuzzes the signaling parser for a bounded time (default 60 s; FUZZ_SECONDS
# overrides) with libFuzzer, on the stable toolchain: the target is built with
# the same coverage instrumentation cargo-fuzz uses (sanitizer-coverage
# passes), without a sanitizer runtime, which needs nightly. Exits non-zero
# on a crash, leaving the input that caused it under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --bin signaling --target "$host"
mkdir -p artifacts/signaling work/signaling
# A copy of the seeds: libFuzzer adds what it finds to the first corpus
# directory, and the committed seeds stay as they are.
cp -n corpus/signaling/* work/signaling/ 2>/dev/null || true
./target/"$host"/release/signaling work/signaling \
  -max_total_time="$seconds" -max_len=4096 -timeout=5 -rss_limit_mb=2048 \
  -artifact_prefix=artifacts/signaling/ -print_final_stats=1
