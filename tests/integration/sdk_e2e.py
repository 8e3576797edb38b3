#!/usr/bin/python3
"""SDK end-to-end tests against a gRPC server that is not ours (tests/integration/otlp_sink.py,
Python grpcio). Each case drives build/tests/sdk_driver over stdin and checks what the sink
received. Usage: sdk_e2e.py CASE --driver PATH --sink PATH --proto-dir DIR"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_e2e import read_jsonl  # noqa: E402

PY = "/usr/bin/python3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    def __init__(self, args, workdir, port, extra=()):
        self.out = os.path.join(workdir, "received.jsonl")
        self.port = port
        cmd = [PY, args.sink, "--port", str(port), "--out", self.out,
               "--proto-dir", args.proto_dir, *extra]
        self.proc = subprocess.Popen(cmd)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("sink exited early")
                time.sleep(0.05)
        raise RuntimeError("sink did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def spans(self):
        return read_jsonl(self.out)


class Driver:
    def __init__(self, args, env):
        e = dict(os.environ)
        e.update(env)
        self.proc = subprocess.Popen([args.driver], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=e, text=True, bufsize=1)

    def cmd(self, line, until=None):
        """Sends a command; returns the JSON lines answered up to the one with key `until`."""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        key = until or {"send": "sent"}.get(line.split()[0], line.split()[0])
        got = []
        while True:
            l = self.proc.stdout.readline()
            if not l:
                raise RuntimeError("driver exited during %r" % line)
            obj = json.loads(l)
            got.append(obj)
            if key in obj:
                return got

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        rc = self.proc.wait(30)
        return rc


def env_for(port, **kw):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:%d" % port,
           "OTEL_SERVICE_NAME": "e2e-svc",
           "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=core%20infra",
           "OTEL_BSP_SCHEDULE_DELAY": "50"}
    env.update({k: str(v) for k, v in kw.items()})
    return env


def check(cond, msg):
    if not cond:
        print("FAIL:", msg)
        sys.exit(1)
    print("ok:", msg)


def wait_for(pred, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def case_interop(args, wd):
    sink = Sink(args, wd, free_port())
    try:
        d = Driver(args, env_for(sink.port))
        sent = [o for o in d.cmd("interop") if o.get("span")]
        fl = d.cmd("flush 10000")[-1]
        check(fl["flush"] == 0, "flush succeeded")
        d.cmd("shutdown 5000", "final")
        check(d.close() == 0, "driver exit 0")
        got = sink.spans()
        check(len(got) == len(sent) == 6, "receiver got exactly the 6 spans sent (%d)" % len(got))
        by_id = {s["span_id"]: s for s in got}
        for m in sent:
            r = by_id.get(m["span_id"])
            check(r is not None, "span %s arrived" % m["span_id"])
            check(r["trace_id"] == m["trace_id"], "trace id of %s" % m["name"])
            check(r["name"] == m["name"], "name %s" % m["name"])
            check(r.get("parent_span_id", "") == m["parent"], "parent of %s" % m["name"])
            res = r["resource"]
            check(res.get("service.name") == "e2e-svc", "resource service.name")
            check(res.get("team") == "core infra", "percent-decoded resource attribute")
            check(res.get("telemetry.sdk.language") == "c", "telemetry.sdk.language")
            check(r["scope"]["name"] == "sdk-e2e" and r["scope"]["version"] == "1.2.3", "scope")
        roots = [s for s in got if s["name"] == "GET /orders"]
        a = roots[0]["attributes"]
        check(a["http.request.method"] == "GET" and a["ratio"] == 0.5 and
              a["tags"] == ["a", "b"] and isinstance(a["cached"], bool), "typed attributes")
        check(sorted(s["attributes"]["http.response.status_code"] for s in roots) == [200, 201, 202],
              "int attributes")
        check(all(s["kind"] == 2 for s in roots), "server kind")
        errs = [s for s in got if s["name"] == "SELECT orders" and s["status"]["code"] == 2]
        check(len(errs) == 1 and errs[0]["events"][0]["name"] == "exception", "exception recorded")
    finally:
        sink.stop()


def case_outage(args, wd):
    port = free_port()
    sink = Sink(args, wd, port)
    d = Driver(args, env_for(port, OTEL_BSP_MAX_QUEUE_SIZE=2000, OTEL_BSP_MAX_EXPORT_BATCH_SIZE=200,
                             OTEL_EXPORTER_OTLP_TIMEOUT=500, OTEL_BSP_EXPORT_TIMEOUT=10000))
    try:
        d.cmd("send 50 before")
        check(d.cmd("flush 10000")[-1]["flush"] == 0, "delivered before the outage")
        sink.stop()
        # 400 spans while the server is down: within the queue bound
        t0 = time.time()
        d.cmd("send 200 during")
        check(time.time() - t0 < 2, "producer did not block during the outage")
        time.sleep(1.5)
        sink = Sink(args, wd, port)
        ok = wait_for(lambda: sum(1 for s in sink.spans() if s["name"].startswith("during")) >= 400, 20)
        st = d.cmd("stats")[-1]
        got = sink.spans()
        during = [s for s in got if s["name"].startswith("during")]
        check(ok, "spans queued during the outage were delivered after it (%d/400, stats %s)"
              % (len(during), st))
        check(len({s["span_id"] for s in during}) == len(during), "no duplicates")
        # now an outage longer than the queue: the excess is dropped and counted
        sink.stop()
        t0 = time.time()
        d.cmd("send 3000 flood")
        check(time.time() - t0 < 3, "producer did not block with the queue full")
        fin = d.cmd("shutdown 3000", "final")[-1]
        check(fin["dropped"] > 0, "excess spans counted as dropped")
        check(fin["exported"] + fin["dropped"] + fin["failed"] == fin["started"],
              "sent = exported + dropped + failed: %s" % fin)
        d.close()
    finally:
        sink.stop()


def case_backpressure(args, wd):
    port = free_port()  # nothing listens here
    d = Driver(args, env_for(port, OTEL_EXPORTER_OTLP_TIMEOUT=200, OTEL_BSP_EXPORT_TIMEOUT=500))
    fl = d.cmd("flood 3")[-1]
    print(json.dumps(fl))
    check(fl["sent"] > 100000, "producer kept creating spans (%d)" % fl["sent"])
    # Blocking shows as voluntary context switches of the producing thread; being preempted on a
    # busy machine does not. A handful is allowed for the rare moment the producer wakes the
    # exporter thread while that one holds the processor's mutex.
    check(fl["voluntary_switches"] <= 5 + fl["sent"] // 200000,
          "producer thread never blocked: %d voluntary switches for %d spans (slowest %.1f ms)"
          % (fl["voluntary_switches"], fl["sent"], fl["slowest_ns"] / 1e6))
    check(fl["rss_max_kib"] - fl["rss_start_kib"] < 16 * 1024,
          "RSS flat: grew %d KiB" % (fl["rss_max_kib"] - fl["rss_start_kib"]))
    t0 = time.time()
    fin = d.cmd("shutdown 1000", "final")[-1]
    check(time.time() - t0 < 2.0, "shutdown returned within its timeout")
    check(fin["exported"] == 0, "nothing exported without a receiver")
    check(fin["started"] == fl["sent"], "every span counted as started")
    check(fin["exported"] + fin["dropped"] + fin["failed"] == fl["sent"],
          "sent = exported + dropped + failed exactly: %s" % fin)
    d.close()


def case_fork(args, wd):
    sink = Sink(args, wd, free_port())
    try:
        d = Driver(args, env_for(sink.port))
        d.cmd("send 20 pre")
        check(d.cmd("flush 10000")[-1]["flush"] == 0, "exported before fork")
        res = d.cmd("fork f 100")
        fk = res[-1]
        check(fk["parent_flush"] == 0 and fk["child_exit"] == 0, "both processes flushed: %s" % res)
        d.cmd("send 10 post")
        check(d.cmd("flush 10000")[-1]["flush"] == 0, "parent still exports after the fork")
        d.cmd("shutdown 5000", "final")
        d.close()
        got = sink.spans()
        names = {}
        for s in got:
            names[s["name"]] = names.get(s["name"], 0) + 1
        check(names.get("pre-root") == 20, "pre-fork spans exported once (%s)" % names.get("pre-root"))
        check(names.get("f-child-root") == 100 and names.get("f-child-child") == 100, "child exported")
        check(names.get("f-parent-root") == 100, "parent exported")
        check(names.get("post-root") == 10, "parent exported after the child exited")
        ids = [s["span_id"] for s in got]
        check(len(ids) == len(set(ids)), "no span id repeated across parent and child")
    finally:
        sink.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--driver", required=True)
    ap.add_argument("--sink", required=True)
    ap.add_argument("--proto-dir", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as wd:
        globals()["case_" + args.case](args, wd)
    print("PASS", args.case)


if __name__ == "__main__":
    main()
