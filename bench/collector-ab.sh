#!/usr/bin/env bash
# Side-by-side comparison of the collector's CPU per span at a steady rate: two collectors run at
# once, each fed by its own profilis-loadgen, so both see the same host load (on a shared VM one
# run moves by 10-20% with the neighbours). Side A runs build A, side B build B; ON_B is a shell
# command run on side B's collector (its pid in $PID) and OFF_B one run on side A's, e.g. a
# scheduling policy to try without rebuilding. Each round starts both collectors afresh, warms
# them up for a second, and swaps which side (collector and loadgen) starts first, so neither has
# a fixed advantage (two long-lived collectors measured ~15% apart whatever they ran). It prints
# the geometric mean of the per-round B/A ratios; an A/A run (the defaults) shows the spread to
# expect: here per-round ratios 0.88-1.15, a mean of 0.99 over 8 rounds.
# Usage: A=build B=build-other R=10 bench/collector-ab.sh
# env: A, B (build dirs), R (rounds, 10), DUR (seconds per round, 5), RATE (spans/s, 10000),
#      ON_B, OFF_B (commands, default none)
set -euo pipefail
A="${A:-build}" B="${B:-$A}" R="${R:-10}" DUR="${DUR:-5}" RATE="${RATE:-10000}"
WD="$(mktemp -d)"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WD"' EXIT

. "$(dirname "$0")/lib.sh"

# start NAME BUILD: a collector writing JSONL, its gRPC port in $WD/NAME.port, pid in $WD/NAME.pid.
start() {
  local g h a
  g=$(free_port) h=$(free_port) a=$(free_port)
  cat >"$WD/$1.yaml" <<YAML
receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:$g"}
    http: {endpoint: "127.0.0.1:$h"}
admin: {endpoint: "127.0.0.1:$a"}
limits: {memory_limit: 1GiB}
exporters:
  jsonl: {path: $WD/$1.jsonl, rotation: {max_size: 0}}
  prometheus: {}
service: {exporters: [jsonl, prometheus]}
YAML
  "$2/bin/profilis-collector" --config "$WD/$1.yaml" >"$WD/$1.log" 2>&1 &
  PIDS+=($!)
  echo $! >"$WD/$1.pid"
  echo "$g" >"$WD/$1.port"
  wait_listen "$g" && return
  echo "collector $1 did not start: $(cat "$WD/$1.log")" >&2
  exit 1
}

# load NAME: profilis-loadgen (of build A, for both sides) into collector NAME, in the background.
load() {
  "$A/bin/profilis-loadgen" --endpoint 127.0.0.1:"$(cat "$WD/$1.port")" --duration "$DUR" \
    --rate "$RATE" --workers 1 --attrs 2 >"$WD/lg$1" 2>/dev/null &
  LOADS+=($!)
}

ratios=
for i in $(seq "$R"); do
  if [ $((i % 2)) = 1 ]; then start a "$A"; start b "$B"; else start b "$B"; start a "$A"; fi
  pa=$(cat "$WD/a.pid") pb=$(cat "$WD/b.pid")
  LOADS=()
  DUR=1 load a
  DUR=1 load b
  wait "${LOADS[@]}" # warm both up (first requests fault in their buffers)
  PID=$pb bash -c "${ON_B:-true}"
  PID=$pa bash -c "${OFF_B:-true}"
  a0=$(proc_cpu_ns "$pa") b0=$(proc_cpu_ns "$pb")
  LOADS=()
  if [ $((i % 2)) = 1 ]; then load a; load b; else load b; load a; fi
  wait "${LOADS[@]}"
  sleep 0.5 # the last batches leave within batch.timeout
  a1=$(proc_cpu_ns "$pa") b1=$(proc_cpu_ns "$pb")
  na=$(loadgen_sent "$WD/lga") nb=$(loadgen_sent "$WD/lgb")
  kill "$pa" "$pb"
  wait 2>/dev/null || true
  PIDS=()
  r=$(awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v na="$na" -v nb="$nb" \
    'BEGIN {printf "A %.0f B %.0f ns/span ratio %.3f", a / na, b / nb, (b / nb) / (a / na)}')
  echo "round $i ($([ $((i % 2)) = 1 ] && echo "A first" || echo "B first")): $r"
  ratios="$ratios ${r##* }"
done
echo "geomean_ratio_b_over_a $(echo "$ratios" | tr ' ' '\n' |
  awk 'NF {s += log($1); n++} END {printf "%.3f", exp(s / n)}') over $R rounds"
