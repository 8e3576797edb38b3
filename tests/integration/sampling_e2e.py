#!/usr/bin/python3
"""Adaptive sampling end to end (issue 4, must show): a tenant with a sampling target T gets
10x T from one hot operation plus a trickle of a rare one, for about 40 s, over OTLP/JSON
(HTTP, bearer token). The spans of a trace are split across requests (the root one request
later), 1% of hot traces have an ERROR child, /healthz traces (some failing) match a drop rule
and /checkout traces a keep rule. From the collector's JSONL output and its admin port:
  (a) kept traces per 5-second window (by the root's start time) within +-20% of T in every
      window from t = 20 s: settled in under 30 s
  (b) the rare operation keeps >= 90% of its traces   (c) every error trace is kept
  (d) every exported trace is complete, no span twice (e) /healthz traces are dropped
  (f) traces_span_metrics_calls_total of the tenant counts every span sent (before sampling)
  (g) kept spans carry ot=th:T in tracestate, consistent with the trace id (R >= T), the other
      members kept       (h) /api/tenants shows the tenant sampled, the hot probability << 1
The default target is 100 traces/s: kept traces are a binomial draw from the trace ids, so a
5-second window of about 500 traces puts +-20% near 5 standard deviations away (at 20/s it is
about 2, and the test would fail now and then by chance alone).
Usage: sampling_e2e.py --bin BUILD/bin [--target T] [--duration S]"""
import argparse
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_e2e import free_port, check, wait_port, wait_for, metric  # noqa: E402

TENANT = "acme"
TICK_S = 0.1           # one request every 100 ms
WINDOW_S = 5           # rate windows of the root start time
SETTLED_FROM_S = 20    # every window from here on must be within the band
BAND = 0.20
VENDOR_TS = "gen=a1"   # an incoming tracestate member on every root: it must survive

HOT = ("shop", "GET /products", "/products")
RARE = ("billing", "POST /invoices/monthly", "/invoices/monthly")
HEALTH = ("shop", "GET /healthz", "/healthz")
CHECKOUT = ("shop", "POST /checkout/confirm", "/checkout/confirm")


def config(wd, ports, token, target):
    return """receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:%d"}
    http: {endpoint: "127.0.0.1:%d", max_body_size: 16MiB}
admin: {endpoint: "127.0.0.1:%d"}
sampling:
  decision_wait: 1s
tenants:
  - id: %s
    tokens: ["%s"]
    sampling:
      target: %s
      rules:
        - {route: /healthz, action: drop}
        - {route: /checkout*, action: keep}
exporters:
  jsonl:
    path: %s
    flush_interval: 100ms
    batch: {size: 512, timeout: 50ms}
  prometheus: {}
service:
  exporters: [jsonl, prometheus]
""" % (ports[0], ports[1], ports[2], TENANT, token, target, os.path.join(wd, "spans.jsonl"))


def attr(k, v):
    return '{"key":"%s","value":{"stringValue":"%s"}}' % (k, v)


def span_json(tid, sid, parent, name, kind, start, end, attrs, error, ts):
    return ('{"traceId":"%s","spanId":"%s","parentSpanId":"%s","traceState":"%s","name":"%s",'
            '"kind":%d,"startTimeUnixNano":"%d","endTimeUnixNano":"%d","attributes":[%s],'
            '"status":{"code":%d}}' % (tid, sid, parent, ts, name, kind, start, end, attrs,
                                       2 if error else 0))


class Generator:
    """Traces of four operations at fixed rates, scheduled on absolute time so a stalled
    sender catches up; every trace remembered (spans, operation, error, root start)."""

    def __init__(self, port, token, target):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        self.headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
        self.rates = {HOT: 10.0 * target, RARE: 1.0, HEALTH: 5.0, CHECKOUT: 0.5}
        self.made = {op: 0 for op in self.rates}
        self.traces = {}     # trace id -> {op, spans: set, error, start}
        self.pending = []    # (service, span json) held back for the next request
        self.spans_sent = 0
        self.requests = 0

    def trace(self, op, now_ns, idx):
        service, root_name, route = op
        tid, root = secrets.token_hex(16), secrets.token_hex(8)
        c1, c2 = secrets.token_hex(8), secrets.token_hex(8)
        error = (op == HOT and idx % 100 == 99) or (op == HEALTH and idx % 5 == 4)
        ms = 1000000
        root_s = span_json(tid, root, "", root_name, 2, now_ns, now_ns + 40 * ms,
                           attr("http.route", route), False, VENDOR_TS)
        db = span_json(tid, c1, root, "SELECT items", 3, now_ns + 2 * ms, now_ns + 12 * ms,
                       attr("db.system", "postgresql"), error, "")
        cache = span_json(tid, c2, root, "cache get", 1, now_ns + 14 * ms, now_ns + 15 * ms,
                          "", False, "")
        self.traces[tid] = {"op": op, "spans": {root, c1, c2}, "error": error, "start": now_ns}
        # split across requests: all at once; the root a request later; the root and the
        # database child (the error one, when any) a request later
        pattern = idx % 3
        now, later = {0: ([root_s, db, cache], []), 1: ([db, cache], [root_s]),
                      2: ([cache], [db, root_s])}[pattern]
        return [(service, s) for s in now], [(service, s) for s in later]

    def body(self, spans):
        by_service = {}
        for service, s in spans:
            by_service.setdefault(service, []).append(s)
        rs = []
        for service, lst in by_service.items():
            rs.append('{"resource":{"attributes":[%s]},"scopeSpans":[{"scope":{"name":'
                      '"sampling-e2e","version":"1"},"spans":[%s]}]}'
                      % (attr("service.name", service), ",".join(lst)))
        return '{"resourceSpans":[%s]}' % ",".join(rs)

    def post(self, spans):
        if not spans:
            return
        self.conn.request("POST", "/v1/traces", self.body(spans).encode(), self.headers)
        r = self.conn.getresponse()
        text = r.read()
        if r.status != 200:
            check(False, "request accepted (%d %s)" % (r.status, text[:200]))
        self.spans_sent += len(spans)
        self.requests += 1

    def step(self, elapsed_s, now_ns):
        out, later = list(self.pending), []
        for op, rate in self.rates.items():
            due = int(rate * elapsed_s)
            while self.made[op] < due:
                a, b = self.trace(op, now_ns, self.made[op])
                out += a
                later += b
                self.made[op] += 1
        self.post(out)
        self.pending = later

    def finish(self):
        self.post(self.pending)
        self.pending = []
        self.conn.close()


def api_tenants(admin):
    with urllib.request.urlopen("http://127.0.0.1:%d/api/tenants" % admin, timeout=5) as r:
        return json.loads(r.read())


def get_metrics(admin):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5) as r:
        return r.read().decode()


def run(args, wd):
    ports = [free_port() for _ in range(3)]
    token = "tok-" + secrets.token_hex(12)
    cfg = os.path.join(wd, "collector.yaml")
    with open(cfg, "w") as f:
        f.write(config(wd, ports, token, args.target))
    log = open(os.path.join(wd, "collector.log"), "w")
    proc = subprocess.Popen([os.path.join(args.bin, "profilis-collector"), "--config", cfg],
                            stdout=log, stderr=subprocess.STDOUT)
    stopped = False
    try:
        for p in ports:
            wait_port(p, proc)
        gen = Generator(ports[1], token, args.target)
        api_mid = None
        t0_wall, t0 = time.time_ns(), time.monotonic()
        k = 0
        while True:
            k += 1
            wake = t0 + k * TICK_S
            if wake > t0 + args.duration + 1e-9:
                break
            delay = wake - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            gen.step(k * TICK_S, t0_wall + int(k * TICK_S * 1e9))
            if api_mid is None and k * TICK_S >= args.duration * 0.75:
                api_mid = api_tenants(ports[2])
        gen.finish()
        lag = time.monotonic() - (t0 + args.duration)
        print("sent %d spans of %d traces in %d requests (sender finished %.2f s late)"
              % (gen.spans_sent, len(gen.traces), gen.requests, lag), flush=True)

        # (h) while the hot operation was running
        ten = [t for t in api_mid.get("tenants", []) if t.get("id") == TENANT]
        check(ten and ten[0].get("sampled") is True, "/api/tenants: tenant %s is sampled" % TENANT)
        samp = [t for t in api_mid.get("sampling", []) if t.get("tenant") == TENANT]
        check(len(samp) == 1 and samp[0]["target_traces_per_second"] == args.target,
              "/api/tenants: sampling figures of %s with target %s" % (TENANT, args.target))
        ops = {(o["service"], o["name"]): o for o in samp[0]["operations"]}
        hot, rare = ops.get(HOT[:2]), ops.get(RARE[:2])
        print("api at t=%.0fs: input %.1f/s kept %.1f/s effective target %.1f; hot rate %.1f p %.4f;"
              " rare rate %.2f p %.3f" % (args.duration * 0.75, samp[0]["input_traces_per_second"],
                                          samp[0]["kept_traces_per_second"], samp[0]["effective_target"],
                                          hot["rate"] if hot else -1, hot["probability"] if hot else -1,
                                          rare["rate"] if rare else -1, rare["probability"] if rare else -1))
        check(hot is not None and hot["probability"] < 0.3,
              "/api/tenants: hot operation probability well below 1 (%s)" % (hot and hot["probability"]))
        check(rare is not None and rare["probability"] >= 0.9,
              "/api/tenants: rare operation probability near 1 (%s)" % (rare and rare["probability"]))

        # (f) span metrics before sampling: every span sent, counted once
        def calls():
            return metric(get_metrics(ports[2]), "traces_span_metrics_calls_total",
                          ['tenant="%s"' % TENANT])
        check(wait_for(lambda: calls() == gen.spans_sent, 10),
              "traces_span_metrics_calls_total{tenant=%s} == spans sent (%d vs %d)"
              % (TENANT, calls(), gen.spans_sent))
        wait_for(lambda: metric(get_metrics(ports[2]), "profilis_sampler_held_traces") == 0, 10)
        body = get_metrics(ports[2])
        for name in ("profilis_sampler_traces_total", "profilis_sampler_spans_kept_total",
                     "profilis_sampler_spans_dropped_total", "profilis_sampler_late_spans_total",
                     "profilis_sampler_lost_spans_total", "profilis_sampler_invalid_spans_total"):
            print("  %s = %d" % (name, metric(body, name)))
        check(metric(body, "profilis_sampler_lost_spans_total") == 0 and
              metric(body, "profilis_sampler_invalid_spans_total") == 0, "sampler lost nothing")

        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
        stopped = True
        check(rc == 0, "collector exited 0 on SIGTERM")
        analyse(args, wd, gen, t0_wall)
    finally:
        if not stopped and proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def analyse(args, wd, gen, t0_wall):
    path = os.path.join(wd, "spans.jsonl")
    with open(path) as f:
        out = [json.loads(l) for l in f if l.strip()]
    print("exported %d spans" % len(out))
    check(len(out) > 0, "spans were exported")
    check(all(s["tenant"] == TENANT for s in out), "every exported span is the tenant's")

    # (d) complete traces, no span twice
    seen, by_trace = set(), {}
    for s in out:
        seen.add((s["trace_id"], s["span_id"]))
        by_trace.setdefault(s["trace_id"], []).append(s)
    check(len(seen) == len(out), "no span exported twice (%d spans)" % len(out))
    unknown = [t for t in by_trace if t not in gen.traces]
    check(not unknown, "every exported trace was sent (%d unknown)" % len(unknown))
    split = [t for t, sp in by_trace.items() if {s["span_id"] for s in sp} != gen.traces[t]["spans"]]
    check(not split, "every exported trace is complete: %d traces, %d split" % (len(by_trace), len(split)))

    # (g) ot=th on every kept span, the same in a trace, consistent with R, other members kept
    th_re = re.compile(r"^ot=th:([0-9a-f]{1,14})$")
    bad_ts, inconsistent = [], []
    for tid, sp in by_trace.items():
        ths = set()
        for s in sp:
            parts = s["trace_state"].split(",")
            m = th_re.match(parts[0])
            rest = parts[1:]
            want_rest = [VENDOR_TS] if s["parent_span_id"] == "" else []
            if not m or rest != want_rest:
                bad_ts.append(s["trace_state"])
                continue
            ths.add(m.group(1))
        if len(ths) > 1:
            inconsistent.append(tid)
            continue
        if ths:
            t = int(ths.pop().ljust(14, "0"), 16)
            r = int(tid[18:32], 16)  # bytes 9..15 of the trace id
            info = gen.traces[tid]
            forced = info["error"] or info["op"] == CHECKOUT
            if (forced and t != 0) or r < t:
                inconsistent.append(tid)
    check(not bad_ts, "kept spans carry ot=th:<T> first, other members kept (%d bad, e.g. %s)"
          % (len(bad_ts), bad_ts[:3]))
    check(not inconsistent, "one th per trace, th:0 for rule keeps, R >= T otherwise (%d bad)"
          % len(inconsistent))

    def kept_of(pred):
        sent = [t for t, i in gen.traces.items() if pred(i)]
        return sum(1 for t in sent if t in by_trace), len(sent)

    # (b) rare, (c) errors, (e) healthz, and the keep rule
    k, n = kept_of(lambda i: i["op"] == RARE)
    check(n > 0 and k >= 0.9 * n, "rare operation kept %d/%d traces (>= 90%%)" % (k, n))
    k, n = kept_of(lambda i: i["op"] == HOT and i["error"])
    check(n > 0 and k == n, "error traces kept %d/%d (100%%)" % (k, n))
    k, n = kept_of(lambda i: i["op"] == HEALTH)
    check(n > 0 and k == 0, "/healthz traces dropped by the rule, failing ones too (%d/%d kept)" % (k, n))
    k, n = kept_of(lambda i: i["op"] == CHECKOUT)
    check(n > 0 and k == n, "/checkout* traces kept by the rule %d/%d" % (k, n))
    k, n = kept_of(lambda i: i["op"] == HOT)
    print("hot operation: kept %d/%d traces (%.3f)" % (k, n, k / n))

    # (a) the tenant's kept traces per window of root start time
    n_win = int(args.duration // WINDOW_S)
    counts = [0] * n_win
    for tid in by_trace:
        w = int((gen.traces[tid]["start"] - t0_wall) / 1e9 // WINDOW_S)
        if 0 <= w < n_win:
            counts[w] += 1
    lo, hi = args.target * (1 - BAND), args.target * (1 + BAND)
    figures = []
    for w, c in enumerate(counts):
        rate = c / WINDOW_S
        figures.append("%d-%ds: %.1f/s" % (w * WINDOW_S, (w + 1) * WINDOW_S, rate))
    print("WINDOWS target %s/s: %s" % (args.target, "; ".join(figures)), flush=True)
    for w, c in enumerate(counts):
        if w * WINDOW_S >= SETTLED_FROM_S:
            rate = c / WINDOW_S
            check(lo <= rate <= hi, "window %d-%d s: %.1f traces/s within +-20%% of %s"
                  % (w * WINDOW_S, (w + 1) * WINDOW_S, rate, args.target))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--target", type=float, default=100)
    ap.add_argument("--duration", type=float, default=40)
    args = ap.parse_args()
    if args.target == int(args.target):
        args.target = int(args.target)
    with tempfile.TemporaryDirectory() as wd:
        try:
            run(args, wd)
        except (SystemExit, Exception):
            logf = os.path.join(wd, "collector.log")
            if os.path.exists(logf):
                print(open(logf).read()[-3000:])
            raise
    print("PASS sampling_e2e")


if __name__ == "__main__":
    main()
