#!/usr/bin/python3
"""profilis-collector as a process: command line (--version, --help, validate), start-up on
free ports with --data-dir, SIGTERM under load (every span profilis-loadgen saw acknowledged is
in the JSONL output exactly once, and the process exits 0), and SIGHUP (a bad config is
rejected with the reason logged and the old one keeps running; a good one is applied).

usage: collector_process.py BIN_DIR [case ...]   cases: cli validate jsonlog sigterm sighup (default all)
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = None
FAILURES = []


def fail(msg):
    raise AssertionError(msg)


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def http_status(url, timeout=1.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


class Collector:
    """A running profilis-collector with its stderr in a file."""

    def __init__(self, tmp, args):
        self.log_path = os.path.join(tmp, "collector-%d.log" % time.monotonic_ns())
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([os.path.join(BIN, "profilis-collector")] + args,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, admin_port, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail("collector exited early (%s):\n%s" % (self.proc.returncode, self.text()))
            if http_status("http://127.0.0.1:%d/readyz" % admin_port) == 200:
                return
            time.sleep(0.05)
        fail("collector not ready after %ss:\n%s" % (timeout, self.text()))

    def wait_log(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return
            time.sleep(0.05)
        fail("log never matched %r:\n%s" % (pattern, self.text()))

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            fail("collector did not stop within %ss after SIGTERM:\n%s" % (timeout, self.text()))
        self.log.close()
        return rc


def loadgen(grpc_port, *args, env_extra=None):
    env = dict(os.environ)
    # Bounded client timeouts: once the collector is gone, what is left fails fast.
    env.update({"OTEL_EXPORTER_OTLP_TIMEOUT": "2000", "OTEL_BSP_EXPORT_TIMEOUT": "2000",
                "OTEL_BSP_SCHEDULE_DELAY": "50"})
    env.update(env_extra or {})
    cmd = [os.path.join(BIN, "profilis-loadgen"), "--endpoint", "127.0.0.1:%d" % grpc_port]
    return subprocess.Popen(cmd + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def loadgen_summary(proc, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    lines = out.decode().strip().splitlines()
    m = re.match(r"sent=(\d+) exported=(\d+) dropped=(\d+) failed=(\d+)", lines[-1] if lines else "")
    if not m:
        fail("loadgen printed no summary:\n%s\n%s" % (out.decode(), err.decode()))
    return {k: int(v) for k, v in zip(("sent", "exported", "dropped", "failed"), m.groups())}


def span_ids(path):
    """Every span_id in a JSONL file (one span per line); fails on a line that is not JSON."""
    ids = []
    if not os.path.exists(path):
        return ids
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                fail("%s:%d: not JSON (%s): %r" % (path, n, e, line[:200]))
            ids.append(obj["span_id"])
    return ids


def wait_lines(path, n, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(span_ids(path)) >= n:
            break
        time.sleep(0.1)
    return span_ids(path)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def config_text(ports, jsonl_path, extra_exporter_keys=""):
    grpc, http, admin = ports
    return (
        "receivers:\n"
        "  otlp:\n"
        "    grpc: {endpoint: 127.0.0.1:%d}\n"
        "    http: {endpoint: 127.0.0.1:%d}\n"
        "admin: {endpoint: 127.0.0.1:%d}\n"
        "limits: {drain_timeout: 10s}\n"
        "exporters:\n"
        "  jsonl:\n"
        "    path: %s\n"
        "    flush_interval: 100ms\n"
        "%s"
        "  prometheus: {}\n"
        "service:\n"
        "  exporters: [jsonl, prometheus]\n" % (grpc, http, admin, jsonl_path, extra_exporter_keys))


# ---- cases ----


def case_cli(tmp):
    exe = os.path.join(BIN, "profilis-collector")
    r = subprocess.run([exe, "--version"], capture_output=True, timeout=10)
    if r.returncode != 0 or not re.match(rb"profilis-collector \d+\.\d+\.\d+\n$", r.stdout):
        fail("--version: rc=%d out=%r" % (r.returncode, r.stdout))
    r = subprocess.run([exe, "--help"], capture_output=True, timeout=10)
    if r.returncode != 0 or b"validate --config FILE" not in r.stdout:
        fail("--help: rc=%d out=%r" % (r.returncode, r.stdout))
    r = subprocess.run([exe, "--no-such-flag"], capture_output=True, timeout=10)
    if r.returncode != 2 or b"usage:" not in r.stderr:
        fail("unknown flag: rc=%d err=%r" % (r.returncode, r.stderr))
    r = subprocess.run([exe, "--grpc-endpoint", "nonsense"], capture_output=True, timeout=10)
    if r.returncode != 2:
        fail("bad endpoint flag accepted: rc=%d" % r.returncode)
    r = subprocess.run([exe, "--config-doc"], capture_output=True, timeout=10)
    if r.returncode != 0 or b"memory_limit" not in r.stdout:
        fail("--config-doc: rc=%d out=%r" % (r.returncode, r.stdout[:300]))
    # a port that is taken: start-up fails with exit 1 and says why, rather than hanging
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    ports = free_ports(2)
    try:
        r = subprocess.run([exe, "--data-dir", tmp,
                            "--grpc-endpoint", "127.0.0.1:%d" % ports[0],
                            "--http-endpoint", "127.0.0.1:%d" % busy.getsockname()[1],
                            "--admin-endpoint", "127.0.0.1:%d" % ports[1]],
                           capture_output=True, timeout=20)
    finally:
        busy.close()
    if r.returncode != 1 or b"start-up failed" not in r.stderr:
        fail("busy port: rc=%d err=%r" % (r.returncode, r.stderr))


def case_validate(tmp):
    exe = os.path.join(BIN, "profilis-collector")
    good = os.path.join(tmp, "good.yaml")
    write(good, config_text((4317, 4318, 8888), os.path.join(tmp, "v.jsonl")))
    r = subprocess.run([exe, "validate", "--config", good], capture_output=True, timeout=10)
    if r.returncode != 0:
        fail("validate good: rc=%d err=%r" % (r.returncode, r.stderr))
    bad = os.path.join(tmp, "bad.yaml")
    write(bad, "limits:\n  drain_timeout: soon\n  bogus_key: 1\nexporters:\n  jsonl: {}\n"
               "service:\n  exporters: [jsonl, nowhere]\n")
    r = subprocess.run([exe, "validate", "--config", bad], capture_output=True, timeout=10)
    errs = r.stderr.decode().strip().splitlines()
    if r.returncode != 1 or len(errs) < 3:
        fail("validate bad: rc=%d, wanted every error listed, got %r" % (r.returncode, errs))
    for e in errs:
        if not re.match(re.escape(bad) + r":\d+:\d+: ", e):
            fail("validate: error without file:line:col: %r" % e)
    text = "\n".join(errs)
    for word in ("drain_timeout", "bogus_key", "nowhere"):
        if word not in text:
            fail("validate: no error mentions %s: %r" % (word, errs))
    r = subprocess.run([exe, "validate", "--config", os.path.join(tmp, "missing.yaml")],
                       capture_output=True, timeout=10)
    if r.returncode != 1 or not r.stderr:
        fail("validate missing file: rc=%d" % r.returncode)


def metric(admin_port, name):
    """Sum of a metric's samples on /metrics (None when unreachable)."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin_port, timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def case_sigterm(tmp):
    """SIGTERM while loadgen sends into a small memory budget that an unreachable otlp exporter
    keeps full (so requests are refused with a retryable status, and that exporter's leftovers
    are dropped at the drain deadline): every span loadgen saw acknowledged is in the JSONL
    file exactly once, and the process exits 0."""
    ports = free_ports(3)
    data = os.path.join(tmp, "data")
    cfg = os.path.join(tmp, "term.yaml")
    # the config's JSONL path is in the default data directory: --data-dir moves it
    dead = free_ports(1)[0]  # nothing listens: the otlp exporter holds its batches, retrying
    text = config_text(ports, "./profilis-data/spans.jsonl",
                       "  otlp/dead:\n"
                       "    endpoint: http://127.0.0.1:%d\n"
                       "    timeout: 300ms\n"
                       "    retry: {initial_interval: 50ms, max_interval: 200ms, "
                       "max_elapsed_time: 1s}\n" % dead)
    text = text.replace("exporters: [jsonl, prometheus]", "exporters: [jsonl, otlp/dead, prometheus]")
    text = text.replace("limits: {drain_timeout: 10s}",
                        "limits: {drain_timeout: 3s, memory_limit: 2MiB, retry_after: 100ms}")
    text = text.replace("}\n    http: {", ", max_recv_msg_size: 1MiB}\n    http: {")
    text = text.replace("%d}\nadmin" % ports[1], "%d, max_body_size: 1MiB}\nadmin" % ports[1])
    write(cfg, text)
    c = Collector(tmp, ["--config", cfg, "--data-dir", data])
    c.wait_ready(ports[2])
    lg = loadgen(ports[0], "--duration", "3", "--rate", "60000", "--workers", "2", "--depth", "3",
                 "--allow-loss")
    time.sleep(1.5)
    refused = metric(ports[2], "profilis_pipeline_refused_requests_total")
    rc = c.stop()
    log = c.text()
    if rc != 0:
        fail("collector exited %d after SIGTERM:\n%s" % (rc, log))
    if not re.search(r"pipeline: drained|drain deadline", log):
        fail("no drain in the log:\n%s" % log)
    s = loadgen_summary(lg)
    ids = span_ids(os.path.join(data, "spans.jsonl"))
    print("sigterm: loadgen %s, jsonl %d lines, requests refused before SIGTERM: %s"
          % (s, len(ids), refused))
    if not refused:
        fail("the memory budget never pushed back, so the test proved less than it should")
    if s["exported"] < 1000:
        fail("too few spans acknowledged before SIGTERM to mean anything: %s" % s)
    if len(set(ids)) != len(ids):
        fail("duplicate spans in the JSONL output: %d lines, %d distinct" % (len(ids), len(set(ids))))
    if len(ids) < s["exported"]:
        fail("acknowledged spans missing: loadgen saw %d acknowledged, file has %d"
             % (s["exported"], len(ids)))
    if len(ids) > s["sent"]:
        fail("more spans in the file (%d) than were sent (%d)" % (len(ids), s["sent"]))


def case_sighup(tmp):
    """SIGHUP: a bad file is rejected (old config keeps working), a good one is applied."""
    ports = free_ports(4)
    cfg = os.path.join(tmp, "hup.yaml")
    a, b = os.path.join(tmp, "a.jsonl"), os.path.join(tmp, "b.jsonl")
    write(cfg, config_text(ports[:3], a))
    c = Collector(tmp, ["--config", cfg])
    try:
        c.wait_ready(ports[2])
        s = loadgen_summary(loadgen(ports[0], "--spans", "1000"))
        if s["exported"] != 1000:
            fail("first batch not fully acknowledged: %s" % s)
        if len(wait_lines(a, 1000)) != 1000:
            fail("a.jsonl: expected 1000 spans, got %d" % len(span_ids(a)))

        write(cfg, config_text(ports[:3], b, "    no_such_setting: 1\n"))
        c.proc.send_signal(signal.SIGHUP)
        c.wait_log(r"reload: .*hup\.yaml:\d+:\d+: .*no_such_setting")
        c.wait_log(r"keeping the running configuration")
        if c.proc.poll() is not None:
            fail("collector died on a bad reload:\n%s" % c.text())
        s = loadgen_summary(loadgen(ports[0], "--spans", "500"))
        if s["exported"] != 500:
            fail("after the bad reload: %s" % s)
        if len(wait_lines(a, 1500)) != 1500 or os.path.exists(b):
            fail("the bad config was applied: a=%d b exists=%s"
                 % (len(span_ids(a)), os.path.exists(b)))

        # a good config: new JSONL path; a moved admin port needs a restart (logged, ignored)
        write(cfg, config_text((ports[0], ports[1], ports[3]), b))
        c.proc.send_signal(signal.SIGHUP)
        c.wait_log(r"reload: .*hup\.yaml applied")
        c.wait_log(r"admin\.endpoint changed: it takes effect after a restart")
        if http_status("http://127.0.0.1:%d/readyz" % ports[2]) != 200:
            fail("admin endpoint moved on reload although it needs a restart")
        s = loadgen_summary(loadgen(ports[0], "--spans", "700"))
        if s["exported"] != 700:
            fail("after the good reload: %s" % s)
        got_b = wait_lines(b, 700)
        if len(got_b) != 700:
            fail("b.jsonl: expected 700 spans, got %d" % len(got_b))
        got_a = span_ids(a)
        if len(got_a) != 1500 or len(set(got_a) | set(got_b)) != 2200:
            fail("a.jsonl changed or spans repeat: a=%d b=%d" % (len(got_a), len(got_b)))
    finally:
        rc = c.stop()
    if rc != 0:
        fail("collector exited %d:\n%s" % (rc, c.text()))


def case_jsonlog(tmp):
    """log.format json: every line the process writes is a JSON object with ts, level, msg."""
    ports = free_ports(3)
    cfg = os.path.join(tmp, "json.yaml")
    write(cfg, config_text(ports, os.path.join(tmp, "j.jsonl")) + "log: {level: info, format: json}\n")
    c = Collector(tmp, ["--config", cfg])
    try:
        c.wait_ready(ports[2])
        write(cfg, "bogus: [\n")
        c.proc.send_signal(signal.SIGHUP)
        c.wait_log(r"keeping the running configuration")
    finally:
        rc = c.stop()
    if rc != 0:
        fail("collector exited %d:\n%s" % (rc, c.text()))
    levels = set()
    for line in c.text().splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            fail("not a JSON log line: %r" % line)
        if not (re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", obj.get("ts", ""))
                and obj.get("level") in ("error", "warn", "info", "debug") and "msg" in obj):
            fail("log line lacks ts/level/msg: %r" % line)
        levels.add(obj["level"])
    if not {"info", "error"} <= levels:
        fail("expected info and error lines, got %s" % levels)


CASES = {"cli": case_cli, "jsonlog": case_jsonlog, "validate": case_validate, "sigterm": case_sigterm,
         "sighup": case_sighup}


def main():
    global BIN
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    BIN = sys.argv[1]
    names = sys.argv[2:] or list(CASES)
    for name in names:
        with tempfile.TemporaryDirectory(prefix="pf-collector-") as tmp:
            t0 = time.monotonic()
            try:
                CASES[name](tmp)
                print("ok   %s (%.1fs)" % (name, time.monotonic() - t0))
            except AssertionError as e:
                print("FAIL %s: %s" % (name, e))
                FAILURES.append(name)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
