#!/usr/bin/env bash
# What tenancy, sampling and breakers cost at full speed: bench/collector-bench.sh alternately
# without them (FEATURES=none) and with all of them (FEATURES=all: a bearer token, a rate limit,
# sampling that holds every trace for its decision window and keeps it, breakers), one run each
# per round, so both sides see the same machine. Prints the median spans/s and collector CPU per
# span of each side and the throughput ratio. Usage: bench/tenancy-bench.sh [BUILD] [SPANS] [ROUNDS]
set -euo pipefail
BUILD="${1:-build}"
SPANS="${2:-1000000}"
ROUNDS="${3:-3}"
HERE="$(cd "$(dirname "$0")" && pwd)"
declare -A rate cpu
for r in $(seq "$ROUNDS"); do
  for f in none all; do
    out=$(FEATURES=$f SKIP_10K=1 "$HERE/collector-bench.sh" "$BUILD" "$SPANS" 1)
    s=$(awk '$1 == "collector_spans_per_s" {print $2}' <<<"$out")
    c=$(awk '$1 == "cpu_us_per_span_full_speed" {print $2}' <<<"$out")
    d=$(awk '$1 == "delivered" {print $2 "/" $4}' <<<"$out")
    echo "round $r $f: spans_per_s $s collector_cpu_us_per_span $c delivered $d"
    rate[$f]="${rate[$f]:-} $s" cpu[$f]="${cpu[$f]:-} $c"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
for f in none all; do
  echo "$f: spans_per_s $(echo "${rate[$f]}" | median) collector_cpu_us_per_span $(echo "${cpu[$f]}" | median)"
done
awk -v a="$(echo "${rate[all]}" | median)" -v n="$(echo "${rate[none]}" | median)" \
  'BEGIN {printf "throughput_with_features_ratio %.3f (cost %.1f%%)\n", a / n, (1 - a / n) * 100}'
