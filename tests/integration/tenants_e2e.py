#!/usr/bin/python3
"""Multi-tenant collector end to end (issue 4's must-shows), against real processes on loopback:

  tenants  two tenants with their own tokens and routes: each tenant's spans land only in its own
           JSONL file and its own OTLP receiver (Python grpcio, checking x-scope-orgid);
           cross-tenant, unknown-token and unauthenticated requests are refused and counted.
  breaker  tenant acme's backend dies for 30 s under load: its breaker opens, batches wait in the
           durable queue on disk, RSS stays flat; when the backend is back every accepted span
           arrives exactly once (by span id), and tenant globex's delivery rate never drops.
  crash    kill -9 of the collector in the middle of an outage, then a restart: every span that
           was queued on disk is delivered, exactly once.

Usage: tenants_e2e.py CASE --bin BUILD/bin --src SOURCE_DIR
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_e2e import (PY, check, free_port, listen_yaml, metric, read_jsonl, rss_kib,  # noqa: E402
                           sanitized, wait_for, wait_port)
from collector_receivers import CLIENT_EXT, issue_cert, make_certs  # noqa: E402

TOKENS = {"acme": "tok-acme-7f3a", "globex": "tok-globex-91c2"}


class Sink:
    """One Python grpcio OTLP receiver (tests/integration/otlp_sink.py) for one tenant."""

    def __init__(self, args, wd, tenant, port=None):
        self.args, self.tenant = args, tenant
        self.port = port or free_port()
        self.out = os.path.join(wd, "sink-%s.jsonl" % tenant)
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [PY, os.path.join(self.args.src, "tests/integration/otlp_sink.py"), "--port",
             str(self.port), "--out", self.out, "--proto-dir",
             os.path.join(self.args.src, "proto"), "--require-header",
             "x-scope-orgid=%s" % self.tenant, "--die-on-usr1"])
        wait_port(self.port, self.proc)

    def crash(self):
        """Dies at the start of its next call (never half way through recording one)."""
        self.proc.send_signal(signal.SIGUSR1)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # no call came: nothing in flight to cut
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)

    def spans(self):
        return read_jsonl(self.out)


class Collector:
    """The collector on a generated multi-tenant config; restartable on the same ports."""

    def __init__(self, args, wd, sinks, queue=False, rate=0, tls=None):
        self.args, self.wd = args, wd
        self.grpc, self.http, self.admin = free_port(), free_port(), free_port()
        self.cfg = os.path.join(wd, "collector.yaml")
        self.write_config(sinks, queue, rate, tls=tls)
        self.log = open(os.path.join(wd, "collector.log"), "a")
        self.start()

    def write_config(self, sinks, queue=False, rate=0, batch_timeout="50ms", tls=None):
        """The config for these tenants (one per sink); a later call plus reload() changes it.
        tls: a function naming the files of collector_receivers.make_certs: then the gRPC
        receiver requires client certificates and each tenant also accepts one subject."""
        wd = self.wd
        self.tls = tls
        resilience = ""
        if queue:
            resilience = """
    timeout: 10s
    breaker: {failures: 3, open: 500ms, open_max: 2s}
    queue: {enabled: true, directory: "%s", max_size: 512MiB, fsync: false}""" % os.path.join(wd, "queue")
        exporters = "".join("""
  otlp/%s:
    endpoint: "http://127.0.0.1:%d"
    headers: {x-scope-orgid: "${tenant}"}%s""" % (t, s.port, resilience) for t, s in sinks.items())
        limit = "\n    rate_limit: {spans_per_second: %d}" % rate if rate else ""
        if tls:
            limit += '\n    client_subjects: ["CN=%s-agent"]'
        tenants = "".join(("""
  - id: %s
    tokens: ["%s"]""" + limit + """
    exporters: [jsonl/tenant, otlp/%s, prometheus]""") % ((t, TOKENS[t]) + ((t,) if tls else ()) + (t,))
                          for t in sinks)
        grpc_tls = ""
        if tls:
            grpc_tls = ', tls: {cert_file: "%s", key_file: "%s", client_ca_file: "%s"}' % (
                tls("server.pem"), tls("server.key"), tls("ca.pem"))
        with open(self.cfg + ".tmp", "w") as f:
            f.write(listen_yaml(self.grpc, self.http, self.admin,
                                "{memory_limit: 64MiB, drain_timeout: 10s}", grpc_tls) + """tenants:%s
exporters:
  jsonl/tenant:
    path: "%s/${tenant}.jsonl"
    flush_interval: 100ms
    batch: {timeout: %s}%s
  prometheus: {}
service:
  exporters: [prometheus]
""" % (tenants, wd, batch_timeout, exporters))
        os.rename(self.cfg + ".tmp", self.cfg)

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def start(self):
        self.proc = subprocess.Popen(
            [os.path.join(self.args.bin, "profilis-collector"), "--config", self.cfg],
            stdout=self.log, stderr=subprocess.STDOUT)
        for p in (self.grpc, self.http, self.admin):
            wait_port(p, self.proc)

    def get(self, path):
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin, path), timeout=5) as r:
            return r.read().decode()

    def metrics(self):
        return self.get("/metrics")

    def api(self):
        return json.loads(self.get("/api/tenants"))

    def tenant(self, tid):
        return next(t for t in self.api()["tenants"] if t["id"] == tid)

    def otlp(self, tid):
        """The tenant's otlp exporter as /api/tenants shows it."""
        return next(e for e in self.tenant(tid)["exporters"] if e["name"] == "otlp/" + tid)

    def jsonl(self, tenant):
        return read_jsonl(os.path.join(self.wd, "%s.jsonl" % tenant))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return self.proc.returncode

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


def loadgen(args, col, token, service, extra, wait=True, header=None, cert=None):
    """Runs the SDK's loadgen; cert names a client certificate of col.tls (mTLS)."""
    env = dict(os.environ)
    endpoint = "127.0.0.1:%d" % col.grpc
    if col.tls:
        endpoint = "https://" + endpoint
        env["OTEL_EXPORTER_OTLP_CERTIFICATE"] = col.tls("ca.pem")
        if cert:
            env["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] = col.tls(cert + ".pem")
            env["OTEL_EXPORTER_OTLP_CLIENT_KEY"] = col.tls(cert + ".key")
    cmd = [os.path.join(args.bin, "profilis-loadgen"), "--endpoint", endpoint,
           "--service", service, "--allow-loss"] + extra
    if token:
        cmd += ["--header", "authorization=Bearer " + token]
    if header:
        cmd += ["--header", header]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    last = r.stdout.strip().splitlines()[-1]
    return dict(kv.split("=") for kv in last.split())


def http_post(col, headers):
    """An OTLP/JSON request of one span; returns the HTTP status."""
    body = json.dumps({"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "curl"}}]},
        "scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c",
                                   "spanId": "eee19b7ec3c1b174", "name": "probe",
                                   "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}).encode()
    req = urllib.request.Request("http://127.0.0.1:%d/v1/traces" % col.http, data=body,
                                 headers=dict({"Content-Type": "application/json"}, **headers))
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def ids(spans):
    return [s["span_id"] for s in spans]


def case_tenants(args, wd):
    sinks = {t: Sink(args, wd, t) for t in TOKENS}
    col = Collector(args, wd, sinks)
    try:
        a = loadgen(args, col, TOKENS["acme"], "svc-acme", ["--spans", "3000", "--depth", "3", "--block"])
        g = loadgen(args, col, TOKENS["globex"], "svc-globex", ["--spans", "2000", "--block"])
        check(a["exported"] == "3000" and g["exported"] == "2000", "both tenants' SDKs exported all")
        check(wait_for(lambda: len(sinks["acme"].spans()) >= 3000 and
                       len(sinks["globex"].spans()) >= 2000 and len(col.jsonl("acme")) >= 3000 and
                       len(col.jsonl("globex")) >= 2000, 30), "every span reached its routes")
        for t, n, svc in (("acme", 3000, "svc-acme"), ("globex", 2000, "svc-globex")):
            sink, js = sinks[t].spans(), col.jsonl(t)
            check(len(sink) == n and len(set(ids(sink))) == n, "%s: %d spans at its own OTLP receiver, once each" % (t, n))
            check(sorted(ids(sink)) == sorted(ids(js)), "%s: the same spans in its own JSONL file" % t)
            check(all(s["resource"].get("service.name") == svc for s in sink) and
                  all(s["resource"].get("service.name") == svc for s in js), "%s: only its own service's spans" % t)
            check(all(s.get("tenant") == t for s in js), "%s: JSONL lines carry tenant=%s" % (t, t))
            check(all(s["metadata"].get("x-scope-orgid") == t for s in sink), "%s: x-scope-orgid=%s on every export" % (t, t))
            check(all(s["metadata"].get("authorization") is None for s in sink), "%s: client tokens are not forwarded" % t)
        before = {t: len(col.jsonl(t)) for t in TOKENS}

        # Cross-tenant and unauthenticated writes, over gRPC (the SDK) and HTTP.
        x = loadgen(args, col, TOKENS["acme"], "svc-evil", ["--spans", "200"], header="x-scope-orgid=globex")
        check(x["exported"] == "0", "gRPC: acme's token naming globex is refused (%s)" % x)
        u = loadgen(args, col, None, "svc-anon", ["--spans", "200"])
        check(u["exported"] == "0", "gRPC: no token is refused")
        b = loadgen(args, col, "not-a-token", "svc-bad", ["--spans", "200"], header="x-scope-orgid=acme")
        check(b["exported"] == "0", "gRPC: an unknown token is refused")
        st = {
            "cross": http_post(col, {"Authorization": "Bearer " + TOKENS["globex"], "x-scope-orgid": "acme"}),
            "none": http_post(col, {}),
            "named": http_post(col, {"x-scope-orgid": "acme"}),
            "bad": http_post(col, {"Authorization": "Bearer nope"}),
            "malformed": http_post(col, {"Authorization": "Basic Zm9vOmJhcg=="}),
            "good": http_post(col, {"Authorization": "Bearer " + TOKENS["globex"], "x-scope-orgid": "globex"}),
        }
        check(st == {"cross": 403, "none": 401, "named": 401, "bad": 401, "malformed": 401, "good": 200},
              "HTTP: 403 cross-tenant, 401 without a valid token, 200 with one: %s" % st)
        m = col.metrics()
        cross = metric(m, "profilis_tenant_refused_requests_total", ['tenant="acme"', 'reason="cross_tenant"'])
        cross_g = metric(m, "profilis_tenant_refused_requests_total", ['tenant="globex"', 'reason="cross_tenant"'])
        unauth = metric(m, "profilis_tenant_refused_requests_total", ['reason="unauthenticated"'])
        check(cross >= 1 and cross_g == 1, "cross-tenant attempts counted for the authenticated tenant (%d, %d)" % (cross, cross_g))
        check(unauth >= 6, "unauthenticated attempts counted (%d)" % unauth)
        time.sleep(0.5)
        after = {t: len(col.jsonl(t)) for t in TOKENS}
        check(after == {"acme": before["acme"], "globex": before["globex"] + 1},
              "no refused span was written anywhere (only the one good HTTP span)")
        api = col.api()
        check(api["tenancy"] and {t["id"] for t in api["tenants"]} == set(TOKENS), "/api/tenants lists both tenants")
        check(col.tenant("acme")["accepted_spans"] == 3000, "/api/tenants: acme accepted 3000")
        logs = open(os.path.join(wd, "collector.log")).read()
        check(all(tok not in logs for tok in TOKENS.values()) and all(
            tok not in json.dumps(api) + m for tok in TOKENS.values()), "tokens never appear in logs, /metrics or /api")
    finally:
        check(col.stop() == 0, "collector exited 0 on SIGTERM")
        for s in sinks.values():
            s.stop()


def count_lines(path):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def sample_rates(sink, stop, out):
    """Spans the sink holds, once a second, until stop is set."""
    while not stop.is_set():
        out.append((time.time(), count_lines(sink.out)))
        stop.wait(1)


def case_breaker(args, wd):
    sinks = {t: Sink(args, wd, t) for t in TOKENS}
    col = Collector(args, wd, sinks, queue=True)
    stop, globex_counts, rss = threading.Event(), [], []
    try:
        gens = [loadgen(args, col, TOKENS[t], "svc-" + t,
                        ["--duration", "48", "--rate", "2500", "--block", "--depth", "2"], wait=False)
                for t in TOKENS]
        sampler = threading.Thread(target=sample_rates, args=(sinks["globex"], stop, globex_counts))
        sampler.start()
        time.sleep(6)
        sinks["acme"].crash()
        t_down = time.time()
        check(wait_for(lambda: col.otlp("acme").get("breaker") in ("open", "half_open"), 10),
              "acme's breaker opened after its backend died")
        queued = 0
        while time.time() < t_down + 30:
            rss.append(rss_kib(col.proc.pid))
            queued = max(queued, col.otlp("acme")["durable_queue_spans"])
            time.sleep(1)
        check(queued > 10000, "batches waited in the durable queue on disk (peak %d spans)" % queued)
        steady = rss[3:]
        growth = (max(steady) - min(steady)) / 1024.0
        rss_msg = "RSS stayed flat during the outage (%.1f MiB spread, %d..%d KiB)" % (
            growth, min(steady), max(steady))
        if sanitized(os.path.join(args.bin, "profilis-collector")):
            print("info: AddressSanitizer build, not judged:", rss_msg)
        else:
            check(growth < 12, rss_msg)
        sinks["acme"].start()
        t_up = time.time()
        outs = [g.communicate(timeout=60)[0].strip().splitlines()[-1] for g in gens]
        print("loadgen:", outs, flush=True)
        stop.set()
        sampler.join()
        accepted = col.tenant("acme")["accepted_spans"]
        check(wait_for(lambda: len(sinks["acme"].spans()) >= accepted, 60), "the backlog drained after recovery")
        got = ids(sinks["acme"].spans())
        check(len(got) == accepted and len(set(got)) == accepted,
              "acme: every accepted span delivered exactly once (%d accepted, %d received, %d distinct)" %
              (accepted, len(got), len(set(got))))
        m = col.metrics()
        check(metric(m, "profilis_breaker_transitions_total", ['exporter="otlp/acme"', 'state="open"']) >= 1,
              "breaker transitions are in /metrics")
        g_acc = col.tenant("globex")["accepted_spans"]
        check(wait_for(lambda: len(sinks["globex"].spans()) >= g_acc, 20), "globex: every span delivered")
        # globex's delivery rate per 5 s window, before, during and after acme's outage
        windows = []
        for i in range(len(globex_counts) - 5):
            t0, c0 = globex_counts[i]
            t1, c1 = globex_counts[i + 5]
            if t0 >= t_down - 10 and t1 <= t_up:
                windows.append((round(t0 - t_down), (c1 - c0) / (t1 - t0)))
        before = [r for t, r in windows if t < 0]
        during = [r for t, r in windows if t >= 0]
        ref = sum(before) / len(before)
        print("globex spans/s by window (s from outage):", [(t, round(r)) for t, r in windows], flush=True)
        check(during and min(during) >= 0.8 * ref,
              "globex's delivery rate held during acme's outage (min %.0f vs %.0f before)" % (min(during), ref))
    finally:
        stop.set()
        check(col.stop() == 0, "collector exited 0 on SIGTERM")
        for s in sinks.values():
            s.stop()


def case_crash(args, wd):
    sinks = {"acme": Sink(args, wd, "acme")}
    sinks["acme"].crash()  # the backend is down from the start
    col = Collector(args, wd, sinks, queue=True)
    try:
        r = loadgen(args, col, TOKENS["acme"], "svc-acme", ["--spans", "20000", "--depth", "4", "--block"])
        check(r["exported"] == "20000", "the SDK's 20000 spans were accepted")

        def on_disk():
            ex = col.otlp("acme")
            return ex["durable_queue_spans"] == 20000 and ex["queued_spans"] == 0
        check(wait_for(on_disk, 30), "all 20000 spans wait in the durable queue")
        col.kill9()
        check(col.proc.returncode == -9, "collector killed with SIGKILL mid-outage")
        col.start()
        sinks["acme"].start()
        check(wait_for(lambda: len(sinks["acme"].spans()) >= 20000, 60), "after the restart the queue replayed")
        time.sleep(1)
        got = ids(sinks["acme"].spans())
        check(len(got) == 20000 and len(set(got)) == 20000, "every queued span delivered exactly once (%d, %d distinct)" %
              (len(got), len(set(got))))
        check(col.otlp("acme")["durable_queue_spans"] == 0, "the queue is empty")
    finally:
        check(col.stop() == 0, "collector exited 0 on SIGTERM")
        for s in sinks.values():
            s.stop()


def case_reload(args, wd):
    """SIGHUP adds a tenant, changes one and removes one while spans are in flight: nothing
    that was accepted is lost."""
    sinks = {"acme": Sink(args, wd, "acme"), "globex": Sink(args, wd, "globex")}
    col = Collector(args, wd, {"acme": sinks["acme"]})
    try:
        lg = loadgen(args, col, TOKENS["acme"], "svc-acme",
                     ["--duration", "10", "--rate", "3000", "--block", "--depth", "2"], wait=False)
        time.sleep(2)
        g0 = loadgen(args, col, TOKENS["globex"], "svc-globex", ["--spans", "300"])
        check(g0["exported"] == "0", "globex is unknown before the reload")
        col.write_config(sinks, batch_timeout="80ms")  # adds globex, changes jsonl/tenant
        col.reload()
        check(wait_for(lambda: loadgen(args, col, TOKENS["globex"], "svc-globex",
                                       ["--spans", "500", "--block"])["exported"] == "500", 10),
              "after SIGHUP globex is accepted")
        time.sleep(2)
        col.write_config({"acme": sinks["acme"]})  # removes globex again
        col.reload()
        check(wait_for(lambda: loadgen(args, col, TOKENS["globex"], "svc-globex",
                                       ["--spans", "10"])["exported"] == "0", 10),
              "after the second SIGHUP globex is refused")
        out = lg.communicate(timeout=60)[0].strip().splitlines()[-1]
        print("acme loadgen:", out, flush=True)
        acc = col.tenant("acme")["accepted_spans"]
        check(wait_for(lambda: len(sinks["acme"].spans()) >= acc and len(col.jsonl("acme")) >= acc, 30),
              "acme's spans all delivered across two reloads")
        a_sink, a_file = ids(sinks["acme"].spans()), ids(col.jsonl("acme"))
        check(len(a_sink) == acc and len(set(a_sink)) == acc and sorted(a_file) == sorted(a_sink),
              "acme: %d accepted = %d at its receiver = %d in its file, no duplicates" %
              (acc, len(a_sink), len(a_file)))
        check(len(set(ids(sinks["globex"].spans()))) == len(ids(col.jsonl("globex"))) >= 500,
              "globex's spans accepted while it existed were delivered")
        logs = open(os.path.join(wd, "collector.log")).read()
        check(logs.count("configuration") >= 2 and "2 tenants" in logs, "both reloads logged")
    finally:
        check(col.stop() == 0, "collector exited 0 on SIGTERM")
        for s_ in sinks.values():
            s_.stop()


def case_tenants_tls(args, wd):
    """Tenant isolation over mutual TLS: each tenant is recognised by its client certificate's
    subject alone; a certificate of one tenant can write as no other, whatever else it sends."""
    certs = os.path.join(wd, "certs")
    os.mkdir(certs)
    make_certs(certs)

    def tls(name):
        return os.path.join(certs, name)
    for n in ("acme", "globex"):
        issue_cert(certs, n, "ca", CLIENT_EXT, cn=n + "-agent")
    sinks = {t: Sink(args, wd, t) for t in TOKENS}
    col = Collector(args, wd, sinks, tls=tls)
    try:
        a = loadgen(args, col, None, "svc-acme", ["--spans", "1500", "--block"], cert="acme")
        g = loadgen(args, col, None, "svc-globex", ["--spans", "1000", "--block"], cert="globex")
        check(a["exported"] == "1500" and g["exported"] == "1000",
              "each tenant authenticated by its client certificate alone (%s / %s)" %
              (a["exported"], g["exported"]))
        check(wait_for(lambda: len(col.jsonl("acme")) >= 1500 and len(col.jsonl("globex")) >= 1000 and
                       len(sinks["acme"].spans()) >= 1500 and len(sinks["globex"].spans()) >= 1000, 30),
              "every span reached its tenant's routes")
        for t, svc in (("acme", "svc-acme"), ("globex", "svc-globex")):
            check({s["resource"]["service.name"] for s in col.jsonl(t)} == {svc} and
                  {s["resource"]["service.name"] for s in sinks[t].spans()} == {svc},
                  "%s: only its own spans, in its file and at its receiver" % t)
        x = loadgen(args, col, None, "svc-evil", ["--spans", "100"], cert="acme",
                    header="x-scope-orgid=globex")
        y = loadgen(args, col, TOKENS["globex"], "svc-evil", ["--spans", "100"], cert="acme")
        n = loadgen(args, col, None, "svc-anon", ["--spans", "100"], cert="client")
        check(x["exported"] == y["exported"] == n["exported"] == "0",
              "acme's certificate naming globex, or with globex's token, and an unlisted "
              "certificate are refused")
        m = col.metrics()
        check(metric(m, "profilis_tenant_refused_requests_total", ['reason="cross_tenant"']) >= 2 and
              metric(m, "profilis_tenant_refused_requests_total", ['tenant=""', 'reason="unauthenticated"']) >= 1,
              "cross-tenant and unlisted-certificate attempts over mTLS counted")
        check(len(col.jsonl("acme")) == 1500 and len(col.jsonl("globex")) == 1000,
              "nothing refused was written")
    finally:
        check(col.stop() == 0, "collector exited 0 on SIGTERM")
        for s_ in sinks.values():
            s_.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["tenants", "tenants_tls", "breaker", "crash", "reload"])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--src", required=True)
    args = ap.parse_args()
    wd = tempfile.mkdtemp(prefix="profilis-tenants-")
    try:
        globals()["case_" + args.case](args, wd)
    finally:
        log = os.path.join(wd, "collector.log")
        if os.environ.get("PROFILIS_TEST_SHOW_LOG") and os.path.exists(log):
            print(open(log).read()[-6000:])
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
