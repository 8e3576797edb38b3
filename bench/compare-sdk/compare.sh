#!/usr/bin/env bash
# Side-by-side figure: the OpenTelemetry JS SDK and Profilis on the same span loop (start, two
# attributes, end; always_on; a batch processor whose exporter discards), both measured in
# this run as the median of 7 runs. Installs the pinned JS SDK into ./node_modules on first use.
# Usage: bench/compare-sdk/compare.sh [BUILD_DIR]   (default: build)
# Prints: otel_js_ns=<ns/span> profilis_ns=<ns/span> ratio=<js/profilis>
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
bench=$build/bin/profilis-bench

if [ ! -x "$bench" ]; then
  echo "compare-sdk: $bench not found; build first (make build)" >&2
  exit 1
fi
if ! command -v node >/dev/null 2>&1; then
  echo "compare-sdk: node not found (scripts/deps.sh installs it)" >&2
  exit 1
fi
if [ ! -d "$here/node_modules/@opentelemetry/sdk-trace-base" ]; then
  echo "compare-sdk: installing the pinned OpenTelemetry JS SDK into $here/node_modules" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

js=$(cd "$here" && node otel-js-bench.js | sed -n 's/^otel_js_ns=//p')
pf=$("$bench" --only span_start_end_2attrs_ns | awk '$1 == "span_start_end_2attrs_ns" { print $2 }')
if [ -z "$js" ] || [ -z "$pf" ]; then
  echo "compare-sdk: a measurement failed (otel_js_ns='$js' profilis_ns='$pf')" >&2
  exit 1
fi
ratio=$(awk -v a="$js" -v b="$pf" 'BEGIN { printf "%.1f", a / b }')
echo "otel_js_ns=$js profilis_ns=$pf ratio=$ratio"
