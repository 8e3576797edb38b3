# Helpers shared by the collector benchmarks (sourced by collector-bench.sh and collector-ab.sh).

# A free TCP port on loopback.
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 10 s for something to listen on loopback PORT; returns 1 if nothing does.
wait_listen() {
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# CPU of every thread of process PID so far, in ns (schedstat: thread time, not wall time).
proc_cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f", s}'; }

# The same per thread name ("pc-grpc 123 pc-export 456 "), for the split of a phase's CPU.
proc_cpu_by_name() {
  for t in /proc/"$1"/task/*; do
    echo "$(cat "$t/comm" 2>/dev/null) $(cut -d' ' -f1 "$t/schedstat" 2>/dev/null)"
  done | awk 'NF == 2 {s[$1] += $2} END {for (k in s) printf "%s %.0f ", k, s[k]}'
}

# The total of a proc_cpu_by_name reading, in ns.
cpu_sum() { echo "$1" | awk '{for (i = 2; i <= NF; i += 2) s += $i} END {printf "%.0f", s}'; }

# "name N ns, ..." per span (N over $3 spans) for the names whose CPU grew between two
# proc_cpu_by_name readings.
cpu_split() {
  awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {
    k = split(a, x, " "); for (i = 1; i < k; i += 2) v[x[i]] = x[i + 1]
    k = split(b, y, " "); for (i = 1; i < k; i += 2) if (y[i + 1] - v[y[i]] > 0)
      printf "%s%s %.0f ns", (o++ ? ", " : ""), y[i], (y[i + 1] - v[y[i]]) / n }'
}

# Spans profilis-loadgen sent, from its output file.
loadgen_sent() { sed -n 's/^sent=\([0-9]*\).*/\1/p' "$1"; }
