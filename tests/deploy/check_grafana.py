#!/usr/bin/env python3
"""Checks the Grafana dashboards in deploy/grafana/ against what the collector really exports.

Starts the collector on free loopback ports, sends it one span over OTLP/HTTP (so the span
metrics exist), scrapes /metrics and collects every metric name and label name. Then each
dashboard must be valid JSON with a uid, a title and panels, and every PromQL expression (panel
targets and template variable queries) may use only metric names and label names that the
collector exports, or that are in COMING (series announced for the tenancy work and not yet in
the binary). A name in neither is an error: a dashboard panel that would stay empty.

usage: check_grafana.py REPO_ROOT COLLECTOR_BINARY
"""
import glob
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

# metric -> labels, for series being added with tenancy, breakers and durable queues.
COMING = {
    "profilis_breaker_state": {"exporter", "tenant", "state"},
    "profilis_queue_records": {"exporter", "tenant"},
    "profilis_queue_bytes": {"exporter", "tenant"},
    "profilis_queue_spans": {"exporter", "tenant"},
    "profilis_sampler_probability": {"tenant", "service", "operation"},
    "profilis_tenant_refused_requests_total": {"tenant", "reason"},
}
COMING_SPAN_LABELS = {"tenant"}  # the span metrics gain a tenant label
PROMETHEUS_LABELS = {"instance", "job", "le"}  # added by the scrape, or histogram buckets
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


SPAN = {"resourceSpans": [{"resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": "checkout"}}]},
    "scopeSpans": [{"spans": [{
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708",
        "name": "GET /cart", "kind": 2, "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000050000000", "status": {"code": 2}}]}]}]}


def scrape(binary):
    """Returns {metric name: set of label names} from a live collector's /metrics."""
    with tempfile.TemporaryDirectory() as tmp:
        g, h, a = free_port(), free_port(), free_port()
        proc = subprocess.Popen([binary, "--data-dir", tmp,
                                 "--grpc-endpoint", "127.0.0.1:%d" % g,
                                 "--http-endpoint", "127.0.0.1:%d" % h,
                                 "--admin-endpoint", "127.0.0.1:%d" % a],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 15
            text = ""
            sent = False
            while time.time() < deadline:
                try:
                    if not sent:
                        req = urllib.request.Request(
                            "http://127.0.0.1:%d/v1/traces" % h, data=json.dumps(SPAN).encode(),
                            headers={"Content-Type": "application/json"})
                        urllib.request.urlopen(req, timeout=2).read()
                        sent = True
                    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % a,
                                                  timeout=2).read().decode()
                    if "traces_span_metrics_calls_total{" in text:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=40)
    metrics = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        if m:
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            metrics.setdefault(m.group(1), set()).update(labels)
    return metrics


def expressions(dash):
    """Yields (where, PromQL) for every panel target and query variable."""
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield "panel %r" % p.get("title"), t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.match(r"^\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*$", q or "")
            if m:
                yield "variable %s" % v["name"], "%s{}" % m.group(1) if "{" not in m.group(
                    1) else m.group(1)
                yield "variable %s label" % v["name"], "__label__ " + m.group(2)
            elif q:
                yield "variable %s" % v["name"], q


def names_in(expr):
    """(metric names, label names) used by a PromQL expression."""
    labels = set()
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)       # string literals
    e = re.sub(r"\$\{?\w+\}?", "", e)                 # Grafana variables
    for body in re.findall(r"\{([^}]*)\}", e):        # label matchers
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", body))
    e = re.sub(r"\{[^}]*\}", " ", e)
    for body in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        labels |= set(re.findall(r"[a-zA-Z_]\w*", body))
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)                 # range selectors
    metrics = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue                                  # a function or an operator
        if re.match(r"^\d", word) or (m.start() > 0 and e[m.start() - 1].isdigit()):
            continue
        metrics.add(word)
    return metrics, labels


def main():
    root, binary = sys.argv[1], os.path.abspath(sys.argv[2])
    real = scrape(binary)
    if "traces_span_metrics_calls_total" not in real:
        fail("the collector's /metrics never showed the span metrics (scrape failed?)")
    known = {}
    for name, labels in real.items():
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        known.setdefault(name, set()).update(labels)
        known.setdefault(base, set()).update(labels)
    for name, labels in COMING.items():
        known.setdefault(name, set()).update(labels)
    for name in list(known):
        if name.startswith("traces_span_metrics"):
            known[name] |= COMING_SPAN_LABELS
    all_labels = set().union(*known.values()) | PROMETHEUS_LABELS
    print("ok: %d metric names from /metrics, %d coming" % (len(real), len(COMING)))

    files = sorted(glob.glob(os.path.join(root, "deploy/grafana/*.json")))
    if len(files) < 2:
        fail("expected two dashboards in deploy/grafana, found %d" % len(files))
    uids = set()
    for path in files:
        rel = os.path.relpath(path, root)
        try:
            dash = json.load(open(path))
        except ValueError as e:
            fail("%s: not JSON: %s" % (rel, e))
            continue
        for k in ("uid", "title", "panels", "schemaVersion"):
            if not dash.get(k):
                fail("%s: no %s" % (rel, k))
        if dash.get("uid") in uids:
            fail("%s: duplicate uid %s" % (rel, dash.get("uid")))
        uids.add(dash.get("uid"))
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)):
            fail("%s: duplicate panel ids" % rel)
        n = 0
        for where, expr in expressions(dash):
            n += 1
            if expr.startswith("__label__ "):
                label = expr.split()[1]
                if label not in all_labels:
                    fail("%s %s: label %s is exported by no metric" % (rel, where, label))
                continue
            metrics, labels = names_in(expr)
            if not metrics:
                fail("%s %s: no metric in %r" % (rel, where, expr))
            for m in metrics:
                if m not in known:
                    fail("%s %s: metric %s is not exported by the collector (expr %r)"
                         % (rel, where, m, expr))
            allowed = set().union(*(known.get(m, set()) for m in metrics)) | PROMETHEUS_LABELS
            for label in labels - allowed:
                fail("%s %s: label %s is not on %s" % (rel, where, label, sorted(metrics)))
        print("ok: %s: %d expressions checked" % (rel, n))
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("dashboard checks passed")


if __name__ == "__main__":
    main()
