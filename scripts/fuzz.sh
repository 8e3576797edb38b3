#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each on its seed corpus, keeping
# new inputs in build-fuzz/corpus/<target>: for FUZZ_SECONDS (default 300) each, or until
# FUZZ_RUNS executions (then FUZZ_SECONDS is only a cap). FUZZ_TARGETS="a b" picks targets
# and their order.
# Prints each target's executions and any finding; exits non-zero when a target failed.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${FUZZ_SECONDS:-300}"
# Optimized (-O2) but with assertions on: an -O0 sanitizer build runs 2-4x fewer executions.
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS_DEBUG="-O2 -g -fno-omit-frame-pointer" -DPROFILIS_SANITIZE=ON >/dev/null
shopt -s nullglob
failed=0
all=$(for c in tests/fuzz/fuzz_*.c; do c="${c##*/fuzz_}"; echo "${c%.c}"; done)
targets="${FUZZ_TARGETS:-$all}"
cmake --build build-fuzz -j "$(nproc)" --target $(for t in $targets; do echo "fuzz_$t"; done) >/dev/null
for target in $targets; do
  bin="build-fuzz/fuzz/fuzz_$target"
  name="fuzz_$target"
  [ -x "$bin" ] || { echo "no fuzz target $target" >&2; failed=1; continue; }
  seeds="tests/fuzz/corpus/$target"
  work="build-fuzz/corpus/$target"
  dict=()
  [ -f "tests/fuzz/$target.dict" ] && dict=(-dict="tests/fuzz/$target.dict")
  runs=()
  [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
  mkdir -p "$work" "build-fuzz/artifacts/$target"
  echo "== $name (${FUZZ_RUNS:+$FUZZ_RUNS runs, }at most ${SECONDS_PER_TARGET}s)"
  start=$(date +%s) status=clean
  if ! "$bin" -max_total_time="$SECONDS_PER_TARGET" "${runs[@]}" "${dict[@]}" -print_final_stats=1 \
      -artifact_prefix="build-fuzz/artifacts/$target/" "$work" "$seeds" >"build-fuzz/$target.log" 2>&1; then
    failed=1 status=FAILED
    grep -E "ERROR|SUMMARY" "build-fuzz/$target.log" || true
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "build-fuzz/$target.log" | tail -1)
  echo "$target executions ${execs:-?} seconds $(( $(date +%s) - start )) $status"
done
exit $failed
