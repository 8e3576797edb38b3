#!/usr/bin/env bash
# `make run`: starts the collector with its built-in default config plus the demo app sending a
# realistic mix of traces to it, says where to look, and stops both cleanly on Ctrl-C. When the
# collector has not been built, the demo writes its spans to a JSONL file instead.
# Usage: scripts/run.sh [BUILD_DIR]   (default: build)
set -euo pipefail

build=${1:-build}
bin=$build/bin
data=./profilis-data
pids=()

if [ ! -x "$bin/profilis-demo" ]; then
  echo "run: $bin/profilis-demo not found; build first (make build)" >&2
  exit 1
fi

# Stops in reverse start order: the demo flushes its last spans while the collector still runs.
stop_all() {
  trap - INT TERM EXIT
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  echo "run: stopped"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Waits up to 10 s for something to listen on 127.0.0.1:$1.
wait_port() {
  local i
  for i in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "${pids[0]}" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

mkdir -p "$data"
if [ -x "$bin/profilis-collector" ]; then
  "$bin/profilis-collector" &
  pids+=($!)
  if ! wait_port 4317; then
    echo "run: the collector did not start listening on 127.0.0.1:4317" >&2
    exit 1
  fi
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 "$bin/profilis-demo" &
  pids+=($!)
  cat <<EOF

run: collector and demo are running. Look at:
  dashboard   http://127.0.0.1:8888/
  spans       $data/spans.jsonl
  metrics     http://127.0.0.1:8888/metrics
  health      http://127.0.0.1:8888/healthz   http://127.0.0.1:8888/readyz
  OTLP in     127.0.0.1:4317 (gRPC), 127.0.0.1:4318 (HTTP)
Press Ctrl-C to stop.

EOF
else
  OTEL_TRACES_EXPORTER=jsonl PROFILIS_JSONL_PATH="$data/spans.jsonl" "$bin/profilis-demo" &
  pids+=($!)
  cat <<EOF

run: $bin/profilis-collector is not built, so the demo writes its spans straight to a file:
  spans       $data/spans.jsonl   (one JSON object per span per line)
Press Ctrl-C to stop.

EOF
fi

# Runs until Ctrl-C, or until either process exits on its own.
set +e
wait -n "${pids[@]}"
status=$?
set -e
echo "run: a process exited (status $status); stopping the rest"
exit "$status"
