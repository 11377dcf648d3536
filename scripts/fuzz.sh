#!/usr/bin/env bash
# Fuzzes every parser and entry point of peer input (fuzz/fuzz_targets/), each
# for a bounded time (FUZZ_SECONDS each, default 20; FUZZ_TARGETS picks some),
# with libFuzzer on the stable toolchain: the targets are built with the same
# coverage instrumentation cargo-fuzz uses (sanitizer-coverage passes),
# without a sanitizer runtime, which needs nightly. Exits non-zero on the
# first crash, leaving the input that caused it under fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-20}"
all="signaling sfu_datagram sfu_messages mls_process sframe_open lobby_name config_toml http"
targets="${FUZZ_TARGETS:-$all}"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
bins=()
for t in $targets; do bins+=(--bin "$t"); done
cargo build --release "${bins[@]}" --target "$host"
for t in $targets; do
  echo "== fuzz $t (${seconds} s)"
  mkdir -p "artifacts/$t" "work/$t" "corpus/$t"
  # A copy of the seeds: libFuzzer adds what it finds to the first corpus
  # directory, and the committed seeds stay as they are.
  cp -n "corpus/$t"/* "work/$t"/ 2>/dev/null || true
  status=0
  ./target/"$host"/release/"$t" "work/$t" \
    -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 > "work/$t.log" 2>&1 || status=$?
  # libFuzzer's progress lines stay in the log; its verdict and counts show.
  grep -E "stat::number_of_executed_units|stat::peak_rss|panicked|ERROR|SUMMARY|Test unit written" "work/$t.log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "work/$t.log" >&2
    echo "fuzz target $t failed (exit $status): see fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
