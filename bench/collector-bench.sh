#!/usr/bin/env bash
# Collector benchmark: profilis-loadgen -> profilis-collector (OTLP/gRPC) -> JSONL, on this box.
# Prints RSS idle; RSS and collector CPU per span at 10k spans/s; and at full speed (batches of 512)
# the spans/s delivered, the CPU per span of the collector and of loadgen (the two share the
# machine), and the collector's capacity per core of its own CPU. CPU is thread time from /proc
# (schedstat, in ns), not wall time; the 10k and the full-speed figures are medians of RUNS runs
# each, since the box is shared and noisy; each 10k run also gives its split by thread (pc-grpc:
# the gRPC receiver, pc-export: the exporters). Progress is read from the admin port's counters,
# not by counting lines of a file that grows by a GiB (which would itself eat a core); the lines are
# counted after each phase, outside the timed part, and the file is then emptied: several GiB of
# dirty page cache would start writeback to the disk and throttle the writer, which measures the
# disk rather than the collector. Usage: bench/collector-bench.sh [BUILD_DIR] [SPANS] [RUNS]
# FEATURES=none runs without breakers; FEATURES=all adds a tenant (bearer token, rate limit,
# sampling that keeps every trace but holds it for the decision window) and breakers, so the
# same spans reach the same file (bench/tenancy-bench.sh compares the two); SKIP_10K=1 skips
# the 10k spans/s phase; DEPTH=N sends traces of N spans (default 1); TARGET=N samples to N kept
# traces/s instead of keeping every trace; BATCH=N sets the jsonl exporter's batch.size.
set -euo pipefail
BUILD="${1:-build}"
SPANS="${2:-2000000}"
RUNS="${3:-3}"
BIN="$BUILD/bin"
WD="$(mktemp -d)"
COL=
trap '[ -n "$COL" ] && kill $COL 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WD"' EXIT

. "$(dirname "$0")/lib.sh"
G=$(free_port); H=$(free_port); A=$(free_port)
FEATURES="${FEATURES:-default}"
BATCH_CFG=""
[ -n "${BATCH:-}" ] && BATCH_CFG=", batch: {size: $BATCH}"
BREAKER="" TENANTS="" AUTH=()
[ "$FEATURES" = none ] && BREAKER=", breaker: {enabled: false}"
if [ "$FEATURES" = all ] || [ "$FEATURES" = tenancy ]; then
  TENANTS="tenants:
  - id: bench
    tokens: [bench-token]
    rate_limit: {spans_per_second: 100000000, bytes_per_second: 100GiB}"
  # A target far above the rate: every trace waits out its decision window and is kept (a keep
  # rule would decide each trace as its root arrives, without the window).
  SAMPLING="{target: 10000000}"
  [ -n "${TARGET:-}" ] && SAMPLING="{target: $TARGET}"
  [ "$FEATURES" = all ] && TENANTS="$TENANTS
    sampling: $SAMPLING
sampling: {decision_wait: 1s, max_memory: 768MiB, max_traces: 2000000}"
  AUTH=(--header "authorization=Bearer bench-token")
fi
cat > "$WD/c.yaml" <<YAML
receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:$G"}
    http: {endpoint: "127.0.0.1:$H"}
admin: {endpoint: "127.0.0.1:$A"}
limits: {memory_limit: 1GiB}
exporters:
  jsonl: {path: $WD/spans.jsonl, rotation: {max_size: 0}$BREAKER$BATCH_CFG}
  prometheus: {}
service: {exporters: [jsonl, prometheus]}
$TENANTS
YAML
"$BIN/profilis-collector" --config "$WD/c.yaml" >"$WD/log" 2>&1 &
COL=$!
wait_listen "$G" || true
sleep 1

# CPU of every thread of the collector so far, in ns.
col_cpu_ns() { proc_cpu_ns "$COL"; }
status_kib() { awk -v k="$1:" '$1 == k {print $2}' /proc/$COL/status; }
# Spans the JSONL exporter has taken (rendered and handed to the file); when sampling drops
# spans (TARGET), the spans the span metrics saw, i.e. every accepted one. taken() adds the
# spans the sampler dropped (load degradation may drop some even when it keeps every trace).
EXPORTER=jsonl
[ -n "${TARGET:-}" ] && [ "$FEATURES" = all ] && EXPORTER=prometheus
metric_sum() {
  curl -s "http://127.0.0.1:$A/metrics" |
    awk -v e="$EXPORTER" -v d="$1" 'index($0, "profilis_exporter_sent_spans_total{exporter=\"" e "\"") == 1 ||
      (d && index($0, "profilis_sampler_spans_dropped_total{") == 1) {n += $2} END {printf "%.0f", n}'
}
sent() { metric_sum ""; }
taken() { if [ "$EXPORTER" = jsonl ]; then metric_sum 1; else metric_sum ""; fi; }
wait_sent() { for _ in $(seq 3000); do [ "$(taken)" -ge "$1" ] && return; sleep 0.02; done; }
# After a phase: waits until the file holds every span the exporter took (it is flushed within
# flush_interval), adds them up, and empties the file for the next phase.
delivered=0
collect_lines() {
  local want=$(( $(sent) - delivered_sent )) n=0
  for _ in $(seq 60); do n=$(wc -l < "$WD/spans.jsonl"); [ "$n" -ge "$want" ] && break; sleep 0.5; done
  delivered=$((delivered + n)) delivered_sent=$(sent)
  : > "$WD/spans.jsonl"
}
delivered_sent=0
now() { date +%s.%N; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "rss_idle_kib $(status_kib VmRSS) (anon $(status_kib RssAnon), file $(status_kib RssFile))"

# 10k spans/s for 5 s, RUNS times: the figure is the median, since one 5 s run moves by 10-20%
# with the host's load (other tenants' work slows every cache miss and wake-up alike)
if [ -z "${SKIP_10K:-}" ]; then
peak=0 us10k=
for i in $(seq "$RUNS"); do
base=$(taken); by0=$(proc_cpu_by_name "$COL")
"$BIN/profilis-loadgen" --endpoint 127.0.0.1:$G --duration 5 --rate 10000 --workers 1 --attrs 2 \
  "${AUTH[@]}" >"$WD/lg.out" 2>/dev/null &
LG=$!
while kill -0 $LG 2>/dev/null; do r=$(status_kib VmRSS); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.2; done
wait $LG
# The CPU is read before asking the admin port whether every span was taken: a /metrics scrape
# costs the collector ~0.2 ms, which polling it every 20 ms until the last batch is exported
# (up to batch.timeout, 200 ms) would add to the phase, some 30-50 ns per span. The exporter has
# taken everything by then unless the box stalls; if not, it waits and reads the CPU again.
want=$((base + $(loadgen_sent "$WD/lg.out")))
sleep 0.5
by1=$(proc_cpu_by_name "$COL")
if [ "$(taken)" -lt "$want" ]; then wait_sent "$want"; by1=$(proc_cpu_by_name "$COL"); fi
got=$(( $(taken) - base ))
u=$(awk -v t=$(($(cpu_sum "$by1") - $(cpu_sum "$by0"))) -v n=$got 'BEGIN {printf "%.3f", t / 1e3 / n}')
echo "10k run $i: cpu_us_per_span $u ($(cpu_split "$by0" "$by1" "$got") per span)"
us10k="$us10k $u"
collect_lines
done
echo "rss_10k_spans_per_s_kib $peak"
echo "cpu_us_per_span_at_10k $(echo "$us10k" | median)"
fi

# full speed, RUNS times
rates= col_us= lg_us=
TIMEFORMAT='%U %S'
for i in $(seq "$RUNS"); do
  base=$(taken); c0=$(col_cpu_ns); t0=$(now)
  { time "$BIN/profilis-loadgen" --endpoint 127.0.0.1:$G --spans "$SPANS" --workers 1 --attrs 2 \
      --queue-size 65536 --batch-size 512 --block --depth "${DEPTH:-1}" "${AUTH[@]}" --allow-loss \
      >"$WD/lg.out" 2>/dev/null; } 2>"$WD/lg.time"
  # wait for what loadgen delivered (it may drop a few spans when the box is overloaded)
  wait_sent $((base + $(sed -n 's/.*exported=\([0-9]*\).*/\1/p' "$WD/lg.out")))
  t1=$(now)
  [ "$EXPORTER" = prometheus ] && sleep 2 # the sampler's decisions, after its window, count too
  c1=$(col_cpu_ns); got=$(( $(taken) - base ))
  r=$(awk -v n=$got -v a=$t0 -v b=$t1 'BEGIN {printf "%.0f", n / (b - a)}')
  cu=$(awk -v t=$((c1 - c0)) -v n=$got 'BEGIN {printf "%.3f", t / 1e3 / n}')
  lu=$(awk -v n=$got '{printf "%.3f", ($1 + $2) * 1e6 / n}' "$WD/lg.time")
  echo "run $i: spans_per_s $r collector_cpu_us_per_span $cu loadgen_cpu_us_per_span $lu ($(tail -1 "$WD/lg.out"))"
  rates="$rates $r" col_us="$col_us $cu" lg_us="$lg_us $lu"
  collect_lines
done
cu=$(echo "$col_us" | median)
echo "collector_spans_per_s $(echo "$rates" | median)"
echo "cpu_us_per_span_full_speed $cu"
echo "loadgen_cpu_us_per_span_full_speed $(echo "$lg_us" | median)"
awk -v u="$cu" 'BEGIN {printf "collector_spans_per_s_per_core %.0f\n", 1e6 / u}'
echo "rss_after_full_speed_kib $(status_kib VmRSS)"

# every span the exporter took must have reached the file
echo "delivered $delivered of $(sent)"
