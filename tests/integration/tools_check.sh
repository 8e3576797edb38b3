#!/usr/bin/env bash
# Checks behind the ctest entries in tools.cmake: each mode runs one built program and asserts
# on its exit status and output (ctest alone can check one or the other, not both).
# Usage: tools_check.sh MODE BIN_DIR
#   bench      profilis-bench --quick exits 0 and prints every benchmark as "name value unit"
#   quickstart profilis-quickstart exports its 4 spans with OTEL_TRACES_EXPORTER=none
#   demo       profilis-demo runs 2 s and stops cleanly, on --duration and on SIGTERM
#   loadgen    profilis-loadgen accounts for every span; reports loss with a non-zero exit
#   valgrind   quickstart, demo and loadgen (against a closed port) leak and err nothing
set -uo pipefail

mode=$1
bin=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

check_bench() {
  "$bin/profilis-bench" --quick >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/out" "$tmp/err"; fail "profilis-bench --quick exited $?"; }
  cat "$tmp/out"
  local name
  for name in span_start_end_ns span_start_end_2attrs_ns span_start_end_unsampled_ns \
    scoped_span_ns traceparent_parse_ns traceparent_format_ns encode_ns_per_span \
    bytes_per_queued_span bytes_per_queued_span_2attrs allocs_per_span export_spans_per_s; do
    grep -Eq "^$name [0-9]+(\.[0-9]+)? [a-z/]+$" "$tmp/out" || fail "no result line for $name"
  done
  # Values that must hold on any machine: positive timings, a non-empty queued span.
  awk '$1 ~ /_ns$/ && $2 <= 0 { exit 1 } $1 ~ /^bytes_per_queued/ && $2 < 32 { exit 1 }' "$tmp/out" ||
    fail "implausible benchmark value"
  # The design promise: the span hot path allocates nothing in steady state.
  grep -q "^allocs_per_span 0 allocs$" "$tmp/out" || fail "spans allocate in steady state"
  [ "$("$bin/profilis-bench" --only no_such_bench 2>/dev/null; echo $?)" != 0 ] || fail "--only accepted an unknown name"
}

check_quickstart() {
  OTEL_TRACES_EXPORTER=none "$bin/profilis-quickstart" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "quickstart exited non-zero"; }
  cat "$tmp/out"
  grep -q "ended=4 exported=4 dropped=0 failed=0" "$tmp/out" || fail "quickstart did not export its 4 spans"
}

check_demo() {
  OTEL_TRACES_EXPORTER=none timeout 20 "$bin/profilis-demo" --duration 2 --rate 50 >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; fail "demo --duration exited non-zero"; }
  cat "$tmp/out"
  grep -Eq "^demo: stopped: ([0-9]{2,}) traces \| frontend exported=[1-9]" "$tmp/out" || fail "demo sent no traces"
  grep -q "dropped=[1-9]" "$tmp/out" && fail "demo dropped spans"
  # SIGTERM mid-run: a clean shutdown with exit status 0.
  OTEL_TRACES_EXPORTER=none "$bin/profilis-demo" --rate 50 >"$tmp/out2" 2>&1 &
  local pid=$!
  sleep 1
  kill -TERM "$pid"
  local i
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; fail "demo ignored SIGTERM"; }
  wait "$pid" || fail "demo exited non-zero after SIGTERM"
  grep -q "^demo: stopped:" "$tmp/out2" || fail "demo printed no final stats after SIGTERM"
}

check_loadgen() {
  local last
  OTEL_TRACES_EXPORTER=none "$bin/profilis-loadgen" --spans 20000 --workers 2 --depth 3 --attrs 4 \
    --error-ratio 0.1 --block --queue-size 4096 --batch-size 256 >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; fail "loadgen exited non-zero"; }
  last=$(tail -n 1 "$tmp/out")
  echo "$last"
  [[ $last =~ ^sent=20000\ exported=20000\ dropped=0\ failed=0\ elapsed_s=[0-9.]+\ spans_per_s=[0-9]+$ ]] ||
    fail "unexpected summary: $last"
  # Rate limiting: 300 spans at 1000/s take about 0.3 s.
  OTEL_TRACES_EXPORTER=none "$bin/profilis-loadgen" --spans 300 --rate 1000 >"$tmp/out" 2>&1 || fail "paced loadgen failed"
  last=$(tail -n 1 "$tmp/out")
  echo "$last"
  awk -v l="$last" 'BEGIN { split(l, f, /[ =]/); if (f[10] < 0.25 || f[10] > 2) exit 1 }' ||
    fail "--rate 1000 for 300 spans did not take ~0.3 s: $last"
  # Loss is an error unless --allow-loss: a closed port fails every export.
  local port
  port=$(free_port)
  OTEL_BSP_EXPORT_TIMEOUT=300 OTEL_EXPORTER_OTLP_TIMEOUT=100 "$bin/profilis-loadgen" --spans 50 \
    --endpoint "127.0.0.1:$port" >"$tmp/out" 2>&1 && fail "loadgen exited 0 although every span failed"
  tail -n 1 "$tmp/out"
  tail -n 1 "$tmp/out" | grep -q "^sent=50 exported=0 " || fail "unexpected summary after loss"
  "$bin/profilis-loadgen" --spans 1 --bogus >/dev/null 2>&1
  [ $? = 2 ] || fail "an unknown flag did not exit 2"
}

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

check_valgrind() {
  local vg=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1)
  OTEL_TRACES_EXPORTER=console "${vg[@]}" "$bin/profilis-quickstart" >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; fail "valgrind: quickstart"; }
  OTEL_TRACES_EXPORTER=none "${vg[@]}" "$bin/profilis-demo" --duration 1 --rate 50 >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; fail "valgrind: demo"; }
  local port
  port=$(free_port)
  OTEL_BSP_EXPORT_TIMEOUT=500 OTEL_EXPORTER_OTLP_TIMEOUT=200 "${vg[@]}" "$bin/profilis-loadgen" \
    --spans 2000 --endpoint "127.0.0.1:$port" --allow-loss >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; fail "valgrind: loadgen"; }
  tail -n 1 "$tmp/out"
  tail -n 1 "$tmp/out" | grep -q "^sent=2000 exported=0 " || fail "loadgen under valgrind: unexpected summary"
}

case $mode in
  bench | quickstart | demo | loadgen | valgrind) "check_$mode" ;;
  *) fail "unknown mode $mode" ;;
esac
echo "PASS: $mode"
