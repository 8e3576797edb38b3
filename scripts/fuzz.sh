#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for FUZZ_SECONDS
# (default 300) on its seed corpus, keeping new inputs in build-fuzz/corpus/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${FUZZ_SECONDS:-300}"
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DPROFILIS_SANITIZE=ON >/dev/null
cmake --build build-fuzz -j "$(nproc)" >/dev/null
shopt -s nullglob
for bin in build-fuzz/fuzz/fuzz_*; do
  name="$(basename "$bin")"
  seeds="tests/fuzz/corpus/${name#fuzz_}"
  work="build-fuzz/corpus/${name#fuzz_}"
  mkdir -p "$work"
  echo "== $name for ${SECONDS_PER_TARGET}s"
  "$bin" -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 "$work" "$seeds" 2>&1 |
    grep -E "stat::number_of_executed_units|ERROR|SUMMARY" || true
done
