#!/usr/bin/env bash
# Collector benchmark: profilis-loadgen -> profilis-collector (OTLP/gRPC) -> JSONL, on this box.
# Prints, per scenario: spans/s delivered, collector CPU per span (user+sys from /proc), and RSS
# (idle, at 10k spans/s, at full speed). Usage: bench/collector-bench.sh [BUILD_DIR] [SPANS]
set -euo pipefail
BUILD="${1:-build}"
SPANS="${2:-2000000}"
BIN="$BUILD/bin"
WD="$(mktemp -d)"
trap 'kill $COL 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WD"' EXIT

port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
G=$(port); H=$(port); A=$(port)
cat > "$WD/c.yaml" <<YAML
receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:$G"}
    http: {endpoint: "127.0.0.1:$H"}
admin: {endpoint: "127.0.0.1:$A"}
limits: {memory_limit: 256MiB}
exporters:
  jsonl: {path: $WD/spans.jsonl, rotation: {max_size: 0}, batch: {size: 512, timeout: 200ms}}
  prometheus: {}
service: {exporters: [jsonl, prometheus]}
YAML
"$BIN/profilis-collector" --config "$WD/c.yaml" >"$WD/log" 2>&1 &
COL=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$G) 2>/dev/null && break; sleep 0.1; done
sleep 1

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' /proc/$COL/stat; }
rss_kib() { awk '/VmRSS/ {print $2}' /proc/$COL/status; }
lines() { wc -l < "$WD/spans.jsonl" 2>/dev/null || echo 0; }
wait_lines() { for _ in $(seq 600); do [ "$(lines)" -ge "$1" ] && return; sleep 0.1; done; }

echo "rss_idle_kib $(rss_kib)"

# 10k spans/s for 5 s
base=$(lines); t0=$(cpu_ticks)
"$BIN/profilis-loadgen" --endpoint 127.0.0.1:$G --duration 5 --rate 10000 --workers 1 --attrs 2 >/dev/null &
LG=$!
peak=0; while kill -0 $LG 2>/dev/null; do r=$(rss_kib); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.2; done
wait $LG; wait_lines $((base + 50000))
t1=$(cpu_ticks)
echo "rss_10k_spans_per_s_kib $peak"
awk -v t=$((t1 - t0)) -v hz=$clk -v n=50000 'BEGIN {printf "cpu_us_per_span_at_10k %.3f\n", t / hz * 1e6 / n}'

# full speed
base=$(lines); t0=$(cpu_ticks); s0=$(date +%s.%N)
out=$("$BIN/profilis-loadgen" --endpoint 127.0.0.1:$G --spans "$SPANS" --workers 1 --attrs 2 \
  --queue-size 65536 --batch-size 512 --block | tail -1)
wait_lines $((base + SPANS)); s1=$(date +%s.%N); t1=$(cpu_ticks)
echo "loadgen: $out"
got=$(( $(lines) - base ))
awk -v n=$got -v a=$s0 -v b=$s1 'BEGIN {printf "collector_spans_per_s %.0f\n", n / (b - a)}'
awk -v t=$((t1 - t0)) -v hz=$clk -v n=$got 'BEGIN {printf "cpu_us_per_span_full_speed %.3f\n", t / hz * 1e6 / n}'
echo "rss_after_full_speed_kib $(rss_kib)"
echo "delivered $got of $SPANS"
