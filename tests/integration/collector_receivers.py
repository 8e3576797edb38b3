#!/usr/bin/python3
"""Integration tests of the collector's OTLP receivers and admin port, against the real binary.

Each case starts build/bin/profilis-collector on free loopback ports with a config written
here (a jsonl exporter in a temporary directory), drives it with real clients, stops it with
SIGTERM and then checks that the process exited 0 and that the JSONL output holds exactly the
spans the collector acknowledged (every accepted span, nothing refused or invalid).

  grpc    Python grpcio client: valid, gzip, partial success, truncated, garbage, oversized,
          deeply nested AnyValue, invalid UTF-8, unknown method, concurrent clients; metrics
  http    urllib/http.client: protobuf and JSON (charset parameter), gzip, gzip bomb, corrupt
          gzip, 415/405/404, malformed JSON, garbage protobuf, nesting, invalid UTF-8,
          100 MB declared and chunked bodies (fast 413, RSS flat), keep-alive
  refuse  a 1 MiB memory budget: UNAVAILABLE with grpc-retry-pushback-ms and RetryInfo,
          503 with Retry-After and a google.rpc.Status body; small requests still accepted
  abuse   3000 connections opened and dropped (half requests, garbage, half HTTP/2 prefaces),
          idle connections past max_connections closed by read_timeout; the process survives
  tls     certificates made with the openssl CLI: TLS and mutual TLS on both receivers
  sigterm SIGTERM while gRPC and HTTP clients keep sending: nothing acknowledged is lost
  admin   /, /healthz, /readyz, /metrics (content type), 404 and 405 on the admin port

Run with /usr/bin/python3 (Debian's grpcio is installed for that interpreter only).
"""

import argparse
import concurrent.futures
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import otlp_sink  # noqa: E402  (generate_protos)

import grpc  # noqa: E402

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MIB = 1 << 20

LIVE = []       # every Collector started, killed at the end whatever happens
RSS_SCALE = 1   # 4 under sanitizers: their allocator keeps freed memory resident
pb = None       # trace_service_pb2, set in main()


class TestFailure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise TestFailure(what)
    print("  ok: " + what, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- protobuf helpers

def uvarint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def pb_fields(buf):
    """(field, value) pairs of one message level: ints for varints, bytes otherwise."""
    i, out = 0, []
    while i < len(buf):
        tag, i = uvarint(buf, i)
        f, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = uvarint(buf, i)
        elif wt == 2:
            n, i = uvarint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((f, v))
    return out


def parse_rpc_status(buf):
    """google.rpc.Status -> {code, message, retry_ms (RetryInfo, or None)}."""
    st = {"code": 0, "message": "", "retry_ms": None}
    for f, v in pb_fields(buf):
        if f == 1:
            st["code"] = v
        elif f == 2:
            st["message"] = v.decode("utf-8", "replace")
        elif f == 3:
            any_ = dict(pb_fields(v))
            if any_.get(1) == b"type.googleapis.com/google.rpc.RetryInfo":
                dur = dict(pb_fields(dict(pb_fields(any_[2]))[1]))
                st["retry_ms"] = dur.get(1, 0) * 1000 + dur.get(2, 0) // 1000000
    return st


def make_request(n, name="op", bad_trace_ids=0, big_attr=0, nested=0, raw_name=None):
    """An ExportTraceServiceRequest of n spans; returns (bytes, ids of the valid spans)."""
    req = pb.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key = "service.name"
    kv.value.string_value = "recv-test"
    ss = rs.scope_spans.add()
    ss.scope.name = "collector_receivers"
    ids = []
    now = time.time_ns()
    for i in range(n):
        sp = ss.spans.add()
        sp.trace_id = bytes(16) if i < bad_trace_ids else os.urandom(16)
        sp.span_id = os.urandom(8)
        sp.name = "%s-%d" % (name, i)
        sp.kind = 2
        sp.start_time_unix_nano = now - 1000000
        sp.end_time_unix_nano = now
        a = sp.attributes.add()
        a.key = "i"
        a.value.int_value = i
        if big_attr:
            a = sp.attributes.add()
            a.key = "blob"
            a.value.string_value = "x" * big_attr
        if nested:
            a = sp.attributes.add()
            a.key = "deep"
            v = a.value
            for _ in range(nested):
                inner = v.kvlist_value.values.add()
                inner.key = "k"
                v = inner.value
            v.string_value = "bottom"
        if i >= bad_trace_ids:
            ids.append(sp.span_id.hex())
    data = req.SerializeToString()
    if raw_name is not None:
        # protobuf refuses to serialize invalid UTF-8, so patch the bytes: same length name
        placeholder = ("%s-%d" % (name, 0)).encode()
        assert len(raw_name) == len(placeholder)
        data = data.replace(placeholder, raw_name, 1)
    return data, ids


def json_request(n, bad_trace_ids=0, nested=0, span_name=None):
    spans, ids = [], []
    now = time.time_ns()
    for i in range(n):
        tid = "00" * 16 if i < bad_trace_ids else os.urandom(16).hex()
        sid = os.urandom(8).hex()
        attrs = [{"key": "i", "value": {"intValue": str(i)}}]
        if nested:
            v = {"stringValue": "bottom"}
            for _ in range(nested):
                v = {"kvlistValue": {"values": [{"key": "k", "value": v}]}}
            attrs.append({"key": "deep", "value": v})
        spans.append({"traceId": tid, "spanId": sid, "name": span_name or "json-%d" % i,
                      "kind": 2, "startTimeUnixNano": str(now - 1000000),
                      "endTimeUnixNano": str(now), "attributes": attrs})
        if i >= bad_trace_ids:
            ids.append(sid)
    body = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name",
                                     "value": {"stringValue": "recv-test"}}]},
        "scopeSpans": [{"scope": {"name": "collector_receivers"}, "spans": spans}]}]}
    return json.dumps(body).encode(), ids


# ---------------------------------------------------------------- the collector process

class Collector:
    def __init__(self, binary, workdir, name, grpc_tls=None, http_tls=None, memory_limit="64MiB",
                 max_recv="1MiB", max_body="1MiB", max_connections=1024, read_timeout="5s",
                 grpc_extra=""):
        LIVE.append(self)
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.grpc_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
        self.jsonl = os.path.join(self.dir, "spans.jsonl")
        self.log_path = os.path.join(self.dir, "collector.log")
        self.accepted = set()  # span ids the collector acknowledged
        cfg = os.path.join(self.dir, "config.yaml")
        with open(cfg, "w") as f:
            f.write(self.config(grpc_tls, http_tls, memory_limit, max_recv, max_body,
                                max_connections, read_timeout, grpc_extra))
        self.log = open(self.log_path, "wb")
        env = dict(os.environ)
        # Under AddressSanitizer freed memory waits in a quarantine (256 MiB by default) that
        # counts as RSS; keep it small so the RSS bounds below measure the collector itself.
        asan = env.get("ASAN_OPTIONS", "")
        if "quarantine_size_mb" not in asan:
            env["ASAN_OPTIONS"] = (asan + ":" if asan else "") + "quarantine_size_mb=8"
        self.proc = subprocess.Popen([binary, "--config", cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=env)
        self.wait_ready()

    def config(self, grpc_tls, http_tls, memory_limit, max_recv, max_body, max_connections,
               read_timeout, grpc_extra):
        def tls_block(t):
            if not t:
                return ""
            s = "      tls:\n        cert_file: %s\n        key_file: %s\n" % (t["cert"], t["key"])
            if t.get("client_ca"):
                s += "        client_ca_file: %s\n" % t["client_ca"]
            return s
        return ("receivers:\n  otlp:\n    grpc:\n      endpoint: 127.0.0.1:%d\n"
                "      max_recv_msg_size: %s\n%s%s"
                "    http:\n      endpoint: 127.0.0.1:%d\n      max_body_size: %s\n"
                "      max_connections: %d\n      read_timeout: %s\n%s"
                "admin:\n  endpoint: 127.0.0.1:%d\n"
                "limits:\n  memory_limit: %s\n  retry_after: 2s\n  drain_timeout: 10s\n"
                "log:\n  level: info\n"
                "exporters:\n  jsonl:\n    path: %s\n    flush_interval: 100ms\n"
                "    batch: {size: 512, timeout: 50ms}\n  prometheus: {}\n"
                "service:\n  exporters: [jsonl, prometheus]\n"
                % (self.grpc_port, max_recv, grpc_extra, tls_block(grpc_tls), self.http_port, max_body,
                   max_connections, read_timeout, tls_block(http_tls), self.admin_port,
                   memory_limit, self.jsonl))

    def admin(self, path, timeout=5):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.admin_port, path),
                                        timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_ready(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure("collector exited with %s at start:\n%s"
                                  % (self.proc.returncode, self.log_text()))
            try:
                if self.admin("/readyz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TestFailure("collector not ready after 20 s:\n" + self.log_text())

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-6000:]

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None

    def metric(self, name, **labels):
        """The value of one sample of /metrics, 0 when absent."""
        status, text = self.admin("/metrics")
        if status != 200:
            raise TestFailure("/metrics answered %d" % status)
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all('%s="%s"' % (k, v) in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self):
        """SIGTERM; returns the exit code and the span ids in the JSONL output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TestFailure("collector did not stop within 30 s of SIGTERM")
        self.log.close()
        ids = []
        for name in sorted(os.listdir(self.dir)):  # spans.jsonl and any rotated spans.jsonl.N
            if name == "spans.jsonl" or name.startswith("spans.jsonl."):
                with open(os.path.join(self.dir, name), encoding="utf-8") as f:
                    for line in f:
                        ids.append(json.loads(line)["span_id"])
        return self.proc.returncode, ids

    def finish(self, failed=None, in_doubt=()):
        """Stops the collector and checks the output holds exactly the accepted spans. failed
        maps the span ids of requests that were not acknowledged to what the client saw;
        in_doubt holds those of requests that failed while the collector was stopping: the
        answer may have been cut after the spans were taken (at-least-once: a client retries
        them), so they may be written or not."""
        rc, ids = self.stop()
        check(rc == 0, "collector exited 0 after SIGTERM (got %s)" % rc)
        check(len(ids) == len(set(ids)), "no span written twice (%d lines)" % len(ids))
        missing = self.accepted - set(ids)
        extra = set(ids) - self.accepted
        doubtful = extra & set(in_doubt)
        extra -= doubtful
        seen = {("unexpected spans" if i in extra else "written though its answer failed "
                 "during the stop", (failed or {}).get(i, "a request the test did not send"))
                for i in extra | doubtful}
        for what, why in sorted(seen):
            print("  %s: %s" % (what, why))
        check(not missing and not extra,
              "JSONL holds exactly the %d accepted spans (missing %d, unexpected %d; %d more of "
              "requests whose answer failed during the stop)"
              % (len(self.accepted), len(missing), len(extra), len(doubtful)))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- clients

class GrpcClient:
    def __init__(self, port, creds=None):
        opts = [("grpc.max_send_message_length", 256 * MIB),
                ("grpc.max_receive_message_length", 64 * MIB),
                ("grpc.enable_retries", 0)]
        target = "127.0.0.1:%d" % port
        self.channel = (grpc.secure_channel(target, creds, options=opts) if creds
                        else grpc.insecure_channel(target, options=opts))
        self.export = self.channel.unary_unary(EXPORT)

    def call(self, data, compression=None, method=None, timeout=10):
        """Returns (code, details, response bytes or None, trailing metadata dict)."""
        fn = self.channel.unary_unary(method) if method else self.export
        try:
            resp, call = fn.with_call(data, timeout=timeout, compression=compression)
            return grpc.StatusCode.OK, "", resp, dict(call.trailing_metadata() or ())
        except grpc.RpcError as e:
            return e.code(), e.details() or "", None, dict(e.trailing_metadata() or ())

    def close(self):
        self.channel.close()


def http_post(port, body, ctype="application/x-protobuf", headers=None, method="POST",
              path="/v1/traces", conn=None, timeout=10):
    """Returns (status, headers dict lowercased, body)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": ctype} if ctype else {}
    h.update(headers or {})
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        if own:
            conn.close()


def response_rejected(data, ctype):
    """partial_success.rejected_spans of an ExportTraceServiceResponse body."""
    if ctype.startswith("application/json"):
        ps = json.loads(data or b"{}").get("partialSuccess") or {}
        return int(ps.get("rejectedSpans", 0)), ps.get("errorMessage", "")
    resp = pb.ExportTraceServiceResponse.FromString(data)
    return resp.partial_success.rejected_spans, resp.partial_success.error_message


# ---------------------------------------------------------------- case: grpc

def case_grpc(args, work):
    c = Collector(args.collector, work, "grpc")
    cli = GrpcClient(c.grpc_port)
    try:
        data, ids = make_request(10)
        code, _, resp, _ = cli.call(data)
        check(code == grpc.StatusCode.OK, "valid request: OK (%s)" % code)
        check(pb.ExportTraceServiceResponse.FromString(resp).partial_success.rejected_spans == 0,
              "no partial_success on a clean request")
        c.accepted.update(ids)

        data, ids = make_request(50, name="gz")
        code, _, _, _ = cli.call(data, compression=grpc.Compression.Gzip)
        check(code == grpc.StatusCode.OK, "gzip-compressed request: OK (%s)" % code)
        c.accepted.update(ids)

        data, ids = make_request(3, bad_trace_ids=1)
        code, _, resp, _ = cli.call(data)
        ps = pb.ExportTraceServiceResponse.FromString(resp).partial_success
        check(code == grpc.StatusCode.OK and ps.rejected_spans == 1 and ps.error_message,
              "all-zero trace id: OK with partial_success rejected_spans=1 (%s, %d, %r)"
              % (code, ps.rejected_spans, ps.error_message))
        c.accepted.update(ids)

        code, _, resp, _ = cli.call(b"")
        check(code == grpc.StatusCode.OK, "empty request: OK")

        data, ids = make_request(5)
        code, details, _, _ = cli.call(data[:-7])
        check(code == grpc.StatusCode.INVALID_ARGUMENT and details,
              "truncated protobuf: INVALID_ARGUMENT with a message (%s: %s)" % (code, details))
        for garbage in (b"\xff" * 64, b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 20,
                        b"\x0a\x05\x12\x03\x12\x01"):
            code, details, _, _ = cli.call(garbage)
            check(code == grpc.StatusCode.INVALID_ARGUMENT,
                  "garbage %r...: INVALID_ARGUMENT (%s: %s)" % (garbage[:6], code, details))

        data, ids = make_request(1, big_attr=2 * MIB)
        code, details, _, _ = cli.call(data)
        check(code == grpc.StatusCode.RESOURCE_EXHAUSTED,
              "2 MiB message over max_recv_msg_size 1MiB: RESOURCE_EXHAUSTED (%s)" % code)
        code, _, _, _ = cli.call(data, compression=grpc.Compression.Gzip)
        check(code == grpc.StatusCode.RESOURCE_EXHAUSTED,
              "same message gzip-compressed (small on the wire): RESOURCE_EXHAUSTED (%s)" % code)

        data, _ = make_request(1, nested=40)
        code, details, _, _ = cli.call(data)
        check(code == grpc.StatusCode.INVALID_ARGUMENT,
              "AnyValue nested 40 deep: INVALID_ARGUMENT (%s: %s)" % (code, details))
        data, ids = make_request(1, nested=10)
        code, _, _, _ = cli.call(data)
        check(code == grpc.StatusCode.OK, "AnyValue nested 10 deep: OK (%s)" % code)
        c.accepted.update(ids)

        data, ids = make_request(1, name="ab", raw_name=b"a\xff-0")
        code, _, _, _ = cli.call(data)
        check(code == grpc.StatusCode.OK, "invalid UTF-8 span name: OK (repaired) (%s)" % code)
        c.accepted.update(ids)

        code, details, _, _ = cli.call(b"", method="/opentelemetry.proto.collector.metrics.v1."
                                       "MetricsService/Export")
        check(code == grpc.StatusCode.UNIMPLEMENTED, "metrics Export: UNIMPLEMENTED (%s)" % code)

        # concurrent clients, each on its own channel
        def worker(k):
            w = GrpcClient(c.grpc_port)
            got = []
            try:
                for _ in range(15):
                    d, i = make_request(5, name="w%d" % k)
                    code, _, _, _ = w.call(d)
                    if code != grpc.StatusCode.OK:
                        return None
                    got.extend(i)
            finally:
                w.close()
            return got
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(worker, range(8)))
        check(all(r is not None for r in results), "8 concurrent clients x 15 calls: all OK")
        for r in results:
            c.accepted.update(r)

        time.sleep(0.3)
        ok = c.metric("profilis_receiver_requests_total", protocol="grpc", status="OK")
        check(ok >= 8 * 15 + 6, "requests_total{status=OK} counts the calls (%d)" % ok)
        acc = c.metric("profilis_receiver_accepted_spans_total", protocol="grpc")
        check(acc == len(c.accepted), "accepted_spans_total == %d (%d)" % (len(c.accepted), acc))
        rej = c.metric("profilis_receiver_rejected_spans_total", protocol="grpc")
        check(rej == 1, "rejected_spans_total == 1 (%d)" % rej)
        bad = c.metric("profilis_receiver_requests_total", protocol="grpc",
                       status="INVALID_ARGUMENT")
        check(bad >= 5, "requests_total{status=INVALID_ARGUMENT} >= 5 (%d)" % bad)
        check(c.metric("profilis_receiver_bytes_total", protocol="grpc") > 0, "bytes_total > 0")
        check(c.admin("/healthz")[0] == 200, "/healthz 200")
    finally:
        cli.close()
    c.finish()


# ---------------------------------------------------------------- case: http

def raw_http(port, head, body_chunks=(), read_timeout=5):
    """Sends head (bytes) and body chunks on a plain socket while watching for an early
    answer. Returns (status or None, bytes of body actually sent, seconds until the answer)."""
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    sent = 0
    status = None
    try:
        s.sendall(head)
        s.settimeout(0.0)
        for chunk in body_chunks:
            try:
                data = s.recv(4096)
                if data:
                    status = int(data.split(b" ", 2)[1])
                    break
                break  # closed
            except BlockingIOError:
                pass
            except OSError:
                break
            try:
                s.settimeout(2)
                s.sendall(chunk)
                sent += len(chunk)
                s.settimeout(0.0)
            except OSError:
                break
        if status is None:
            s.settimeout(read_timeout)
            try:
                data = s.recv(4096)
                if data:
                    status = int(data.split(b" ", 2)[1])
            except OSError:
                pass
        return status, sent, time.time() - t0
    finally:
        s.close()


def case_http(args, work):
    c = Collector(args.collector, work, "http")
    p = c.http_port

    data, ids = make_request(10)
    st, h, body = http_post(p, data)
    check(st == 200 and h.get("content-type") == "application/x-protobuf",
          "protobuf: 200 application/x-protobuf (%d %s)" % (st, h.get("content-type")))
    check(response_rejected(body, h["content-type"])[0] == 0, "protobuf: no partial success")
    c.accepted.update(ids)

    data, ids = json_request(10)
    st, h, body = http_post(p, data, "application/json; charset=utf-8")
    check(st == 200 and h.get("content-type", "").startswith("application/json"),
          "JSON with charset parameter: 200 application/json (%d %s)" % (st, h.get("content-type")))
    json.loads(body or b"{}")
    c.accepted.update(ids)

    data, ids = make_request(20, name="gz")
    st, _, _ = http_post(p, gzip.compress(data), headers={"Content-Encoding": "gzip"})
    check(st == 200, "gzip protobuf: 200 (%d)" % st)
    c.accepted.update(ids)
    data, ids = json_request(20)
    st, _, _ = http_post(p, gzip.compress(data), "application/json",
                         headers={"Content-Encoding": "gzip"})
    check(st == 200, "gzip JSON: 200 (%d)" % st)
    c.accepted.update(ids)
    data, ids = make_request(4, name="mm")
    st, _, _ = http_post(p, gzip.compress(data[:30]) + gzip.compress(data[30:]),
                         headers={"Content-Encoding": "gzip"})
    check(st == 200, "gzip body in two members: 200 (%d)" % st)
    c.accepted.update(ids)

    rss0 = c.rss_kib()
    bomb = gzip.compress(b"\0" * (64 * MIB), 9)
    t0 = time.time()
    st, h, body = http_post(p, bomb, headers={"Content-Encoding": "gzip"})
    check(st == 413, "gzip bomb (%d KiB -> 64 MiB): 413 (%d) in %.2fs"
          % (len(bomb) // 1024, st, time.time() - t0))
    st, _, body = http_post(p, gzip.compress(data)[:-10], headers={"Content-Encoding": "gzip"})
    check(st == 400, "truncated gzip: 400 (%d)" % st)
    st, _, _ = http_post(p, b"not gzip at all", headers={"Content-Encoding": "gzip"})
    check(st == 400, "corrupt gzip: 400 (%d)" % st)
    st, _, _ = http_post(p, data, headers={"Content-Encoding": "br"})
    check(st == 415, "Content-Encoding br: 415 (%d)" % st)

    for ct in ("text/plain", "application/protobuf", "application/jsonx", None):
        st, h, body = http_post(p, data, ct)
        check(st == 415 and body,
              "Content-Type %r: 415 with a message (%d %r)" % (ct, st, body[:60]))
    for m in ("GET", "PUT", "DELETE"):
        st, h, _ = http_post(p, b"" if m != "GET" else None, method=m)
        check(st == 405 and h.get("allow") == "POST", "%s /v1/traces: 405 Allow: POST (%d %s)"
              % (m, st, h.get("allow")))
    for path in ("/", "/v1/metrics", "/v1/traces/", "/v1/traces/x", "/v1/logs"):
        st, _, _ = http_post(p, data, path=path)
        check(st == 404, "POST %s: 404 (%d)" % (path, st))

    st, h, body = http_post(p, b'{"resourceSpans": [', "application/json")
    err = json.loads(body)
    check(st == 400 and h["content-type"].startswith("application/json") and err.get("code") == 3
          and err.get("message"), "malformed JSON: 400 with JSON Status %s" % err)
    st, h, body = http_post(p, b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 20)
    err = parse_rpc_status(body)
    check(st == 400 and h["content-type"] == "application/x-protobuf" and err["code"] == 3
          and err["message"], "garbage protobuf: 400 with google.rpc.Status %s" % err)
    st, _, body = http_post(p, make_request(3)[0][:-5])
    check(st == 400, "truncated protobuf: 400 (%d) %s" % (st, parse_rpc_status(body)["message"]))

    data, ids = make_request(3, bad_trace_ids=1)
    st, h, body = http_post(p, data)
    rej, msg = response_rejected(body, h["content-type"])
    check(st == 200 and rej == 1 and msg, "protobuf partial success: 200 rejected=1 %r" % msg)
    c.accepted.update(ids)
    data, ids = json_request(4, bad_trace_ids=2)
    st, h, body = http_post(p, data, "application/json")
    rej, msg = response_rejected(body, h["content-type"])
    check(st == 200 and rej == 2, "JSON partial success: 200 rejectedSpans=2 (%s)" % body)
    c.accepted.update(ids)

    st, _, _ = http_post(p, make_request(1, nested=40)[0])
    check(st == 400, "protobuf AnyValue nested 40 deep: 400 (%d)" % st)
    st, _, _ = http_post(p, json_request(1, nested=40)[0], "application/json")
    check(st == 400, "JSON AnyValue nested 40 deep: 400 (%d)" % st)
    st, _, _ = http_post(p, b"[" * 100000 + b"]" * 100000, "application/json")
    check(st == 400, "JSON nested 100000 arrays: 400 (%d)" % st)

    data, ids = make_request(1, name="ab", raw_name=b"a\xff-0")
    st, _, _ = http_post(p, data)
    check(st == 200, "invalid UTF-8 in a protobuf name: 200 (repaired) (%d)" % st)
    c.accepted.update(ids)
    data, ids = json_request(1, span_name="\udcff")
    data = data.replace(b"\\udcff", b"\xff")  # raw invalid byte inside the JSON string
    st, h, body = http_post(p, data, "application/json")
    check(st in (200, 400), "invalid UTF-8 inside JSON: 200 or 400 (%d %s)" % (st, body[:80]))
    if st == 200:
        c.accepted.update(ids)

    # keep-alive: two requests on one connection
    conn = http.client.HTTPConnection("127.0.0.1", p, timeout=10)
    for k in range(2):
        data, ids = make_request(2, name="ka%d" % k)
        st, _, _ = http_post(p, data, conn=conn)
        check(st == 200, "keep-alive request %d: 200" % k)
        c.accepted.update(ids)
    conn.close()

    # 100 MB bodies: refused on the declared length, or cut off while streaming
    chunk = b"\0" * MIB
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 104857600\r\n\r\n")
    st, sent, secs = raw_http(p, head, [chunk] * 100)
    check(st == 413 and secs < 3, "100 MB with Content-Length: 413 in %.2fs after %d MiB sent"
          % (secs, sent // MIB))
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    piece = b"100000\r\n" + chunk + b"\r\n"
    st, sent, secs = raw_http(p, head, [piece] * 100 + [b"0\r\n\r\n"])
    check(sent < 100 * MIB and secs < 10,
          "100 MB chunked: cut off after %d MiB in %.2fs (status %s)" % (sent // MIB, secs, st))
    st, sent, secs = raw_http(p, head, [piece] * 2 + [b"0\r\n\r\n"])
    check(st == 413, "2 MiB chunked (limit 1 MiB): 413 (%s)" % st)
    rss1 = c.rss_kib()
    check(rss1 - rss0 < 48 * 1024 * RSS_SCALE,
          "RSS grew %d KiB over the large bodies (< %d MiB)" % (rss1 - rss0, 48 * RSS_SCALE))

    time.sleep(0.3)
    for status in ("200", "400", "404", "405", "413", "415"):
        n = c.metric("profilis_receiver_requests_total", protocol="http", status=status)
        check(n > 0, "requests_total{protocol=http,status=%s} = %d" % (status, n))
    acc = c.metric("profilis_receiver_accepted_spans_total", protocol="http")
    check(acc == len(c.accepted), "accepted_spans_total == %d (%d)" % (len(c.accepted), acc))
    check(c.alive() and c.admin("/healthz")[0] == 200, "alive, /healthz 200")
    c.finish()


# ---------------------------------------------------------------- case: refuse

def case_refuse(args, work):
    # 12000 small spans: 0.8 MB on the wire (under max_recv_msg_size and max_body_size, which
    # may not exceed the budget) but over the 1 MiB budget once decoded, so submit refuses.
    c = Collector(args.collector, work, "refuse", memory_limit="1MiB")
    cli = GrpcClient(c.grpc_port)
    try:
        big, big_ids = make_request(12000)
        code, details, _, md = cli.call(big)
        check(code == grpc.StatusCode.UNAVAILABLE, "gRPC over the budget: UNAVAILABLE (%s)" % code)
        check(md.get("grpc-retry-pushback-ms") == "2000",
              "grpc-retry-pushback-ms: 2000 (%r)" % md.get("grpc-retry-pushback-ms"))
        st = parse_rpc_status(md.get("grpc-status-details-bin", b""))
        check(st["code"] == 14 and st["retry_ms"] == 2000,
              "grpc-status-details-bin: Status UNAVAILABLE with RetryInfo 2s (%s)" % st)

        sh, hh, body = http_post(c.http_port, big)
        check(sh == 503 and hh.get("retry-after") == "2",
              "HTTP over the budget: 503 Retry-After: 2 (%d %r)" % (sh, hh.get("retry-after")))
        st = parse_rpc_status(body)
        check(st["code"] == 14 and st["retry_ms"] == 2000, "503 body: google.rpc.Status %s" % st)

        data, ids = make_request(5)
        code, _, _, _ = cli.call(data)
        check(code == grpc.StatusCode.OK, "small gRPC request still accepted")
        c.accepted.update(ids)
        data, ids = json_request(5)
        sh, _, _ = http_post(c.http_port, data, "application/json")
        check(sh == 200, "small HTTP request still accepted")
        c.accepted.update(ids)
        time.sleep(0.2)
        n = c.metric("profilis_receiver_requests_total", protocol="grpc", status="UNAVAILABLE")
        check(n == 1, "requests_total{grpc,UNAVAILABLE} == 1 (%d)" % n)
        n = c.metric("profilis_receiver_requests_total", protocol="http", status="503")
        check(n == 1, "requests_total{http,503} == 1 (%d)" % n)
        n = c.metric("profilis_receiver_refused_spans_total", reason="budget")
        check(n == 2 * len(big_ids), "refused_spans_total{reason=budget} == %d (%d)"
              % (2 * len(big_ids), n))
    finally:
        cli.close()
    c.finish()


# ---------------------------------------------------------------- case: abuse

def abuse_once(port, mode, rnd):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return  # refused past the connection limit is a fine answer too
    try:
        if mode == 0:  # close with a reset
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        elif mode == 1:
            s.sendall(b"POST /v1/tra")
        elif mode == 2:
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf"
                      b"\r\nContent-Length: 1000\r\n\r\n" + rnd[:100])
        elif mode == 3:
            s.sendall(rnd)
        elif mode == 4:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00")  # half an HTTP/2 preface
        elif mode == 5:
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rnd[:40])  # TLS-ish
    except OSError:
        pass
    finally:
        s.close()


def case_abuse(args, work):
    c = Collector(args.collector, work, "abuse", max_connections=32, read_timeout="2s")
    data, ids = make_request(5)
    check(http_post(c.http_port, data)[0] == 200, "baseline HTTP request accepted")
    c.accepted.update(ids)
    rss0 = c.rss_kib()
    rnd = os.urandom(512)
    t0 = time.time()
    for i in range(3000):
        port = c.http_port if i % 2 == 0 else c.grpc_port
        abuse_once(port, i % 6, rnd)
    check(c.alive(), "3000 connections opened and dropped in %.1fs: collector alive"
          % (time.time() - t0))

    # idle connections beyond max_connections: the excess is refused, the rest time out
    idle = []
    for _ in range(48):
        try:
            s = socket.create_connection(("127.0.0.1", c.http_port), timeout=2)
            s.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")  # never finished
            idle.append(s)
        except OSError:
            pass
    # past the limit a connection waits in the backlog until a slot frees, so the last ones
    # are closed about two read_timeouts after they connected
    deadline = time.time() + 10
    open_ = list(idle)
    while open_ and time.time() < deadline:
        still = []
        for s in open_:
            s.settimeout(0.05)
            try:
                s.recv(4096)  # EOF, a reset or an error answer: the server let go of it
                s.close()
            except socket.timeout:
                still.append(s)  # held open for now
            except OSError:
                s.close()
        open_ = still
        time.sleep(0.2)
    for s in open_:
        s.close()
    check(not open_, "all %d stalled connections closed by the server after read_timeout "
          "(%d still open after %.1fs)" % (len(idle), len(open_), time.time() - deadline + 10))

    for k in range(3):
        data, ids = make_request(5, name="after%d" % k)
        st, _, _ = http_post(c.http_port, data)
        check(st == 200, "HTTP request after the abuse: 200 (%d)" % st)
        c.accepted.update(ids)
    cli = GrpcClient(c.grpc_port)
    data, ids = make_request(5, name="after-grpc")
    code, _, _, _ = cli.call(data)
    cli.close()
    check(code == grpc.StatusCode.OK, "gRPC request after the abuse: OK (%s)" % code)
    c.accepted.update(ids)
    rss1 = c.rss_kib()
    check(c.admin("/healthz")[0] == 200, "/healthz 200")
    check(rss1 < rss0 + 32 * 1024 * RSS_SCALE, "RSS %d KiB -> %d KiB (growth < %d MiB)"
          % (rss0, rss1, 32 * RSS_SCALE))
    c.finish()


# ---------------------------------------------------------------- case: grpc_limits

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def closed_within(s, seconds):
    """Reads (and discards) until the server closes s; returns when (time.time()), or None."""
    t0 = time.time()
    s.settimeout(0.2)
    while time.time() - t0 < seconds:
        try:
            if not s.recv(65536):
                return time.time()
        except socket.timeout:
            continue
        except OSError:
            return time.time()
    return None


def case_grpc_limits(args, work):
    """Connection limit and keepalive of the gRPC receiver: HTTP/2 clients that never answer
    the server's pings are closed; past max_connections a connection is closed at once and
    counted; a real client is served afterwards."""
    c = Collector(args.collector, work, "limits",
                  grpc_extra="      max_connections: 4\n      keepalive: {time: 1s, timeout: 1s}\n")
    silent = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", c.grpc_port), timeout=2)
        s.sendall(H2_PREFACE)  # a client preface, then nothing: pings go unanswered
        silent.append(s)
    t_open = time.time()
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", c.grpc_port), timeout=2)
    t_extra = time.time()
    took = closed_within(extra, 3)
    took = None if took is None else took - t_extra
    check(took is not None, "a 5th connection over max_connections 4 is closed at once (%s s)"
          % (None if took is None else "%.2f" % took))
    extra.close()
    check(c.metric("profilis_receiver_refused_connections_total", protocol="grpc") >= 1,
          "the refused connection is counted")
    times = [closed_within(s, 8) for s in silent]
    times = [None if t is None else t - t_open for t in times]
    for s in silent:
        s.close()
    check(all(t is not None for t in times),
          "the 4 clients that never answer pings are closed after keepalive time + timeout "
          "(%s)" % ", ".join("open" if t is None else "%.1fs" % t for t in times))
    check(all(t >= 1.5 for t in times if t is not None),
          "not before the ping was due and unanswered (%s)" % times)
    check("keepalive ping unanswered" in c.log_text(), "the log says why they were closed")
    cli = GrpcClient(c.grpc_port)
    for k in range(3):  # over 3 s: the client's answers to the pings keep its connection
        data, ids = make_request(5, name="limits%d" % k)
        code, _, _, _ = cli.call(data)
        check(code == grpc.StatusCode.OK, "a gRPC client answering pings is served (%s)" % code)
        c.accepted.update(ids)
        time.sleep(1.5)
    cli.close()
    c.finish()


# ---------------------------------------------------------------- case: sigterm

def case_sigterm(args, work):
    """SIGTERM while gRPC and HTTP clients keep sending: every acknowledged span is written
    once, nothing else is but maybe the spans of a request whose answer the stop cut off (the
    client saw an error and would retry), and the process exits 0."""
    c = Collector(args.collector, work, "sigterm")
    lock = threading.Lock()
    stop = threading.Event()
    counts = {"ok": 0, "err": 0}
    failed, in_doubt = {}, set()
    term = None  # when SIGTERM was sent (the workers' closure sees it once set)

    def record(ok, ids, what):
        with lock:
            counts["ok" if ok else "err"] += 1
            if ok:
                c.accepted.update(ids)
                return
            failed.update((i, "%s at +%.3f s" % (what, time.monotonic() - t0)) for i in ids)
            if term is not None:
                in_doubt.update(ids)

    def grpc_worker(k):
        cli = GrpcClient(c.grpc_port)
        while not stop.is_set():
            data, ids = make_request(20, name="g%d" % k)
            code, details, _, _ = cli.call(data, timeout=20)
            record(code == grpc.StatusCode.OK, ids, "gRPC client %d: %s %s" % (k, code, details))
            if code != grpc.StatusCode.OK:
                time.sleep(0.05)
        cli.close()

    def http_worker(k):
        while not stop.is_set():
            data, ids = (make_request(20, name="h%d" % k) if k % 2 else json_request(20))
            try:
                st = http_post(c.http_port, data, "application/x-protobuf" if k % 2
                               else "application/json", timeout=20)[0]
            except (OSError, http.client.HTTPException) as e:
                st = "%s: %s" % (type(e).__name__, e)
            record(st == 200, ids, "HTTP client %d: %s" % (k, st))
            if st != 200:
                time.sleep(0.05)

    threads = [threading.Thread(target=grpc_worker, args=(k,)) for k in range(3)]
    threads += [threading.Thread(target=http_worker, args=(k,)) for k in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(1.5)
    with lock:
        term = time.monotonic() - t0
    print("  SIGTERM at +%.3f s" % term)
    c.proc.send_signal(signal.SIGTERM)
    try:
        c.proc.wait(timeout=30)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    check(counts["ok"] > 20, "%d requests acknowledged before and during the stop (%d failed)"
          % (counts["ok"], counts["err"]))
    c.finish(failed, in_doubt)


# ---------------------------------------------------------------- case: tls

def openssl(*a, cwd):
    subprocess.run(("openssl",) + a, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
SERVER_EXT = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


def make_ca(d, ca):
    """A self-signed test CA: <ca>.pem and <ca>.key in d."""
    openssl("req", "-x509", *EC, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
            "-subj", "/CN=%s test CA" % ca, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def issue_cert(d, name, ca, ext, days="2", cn=None):
    """<name>.pem / <name>.key (subject CN=cn, default name) signed by CA <ca> with the
    extensions ext (openssl extfile text); days -1 makes one that expired a day ago."""
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    openssl("req", *EC, "-keyout", name + ".key", "-out", name + ".csr", "-subj",
            "/CN=" + (cn or name), cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", days, "-extfile", name + ".ext",
            cwd=d)


def make_certs(d):
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate from the same
    CA and one from a CA the collector does not trust."""
    for ca in ("ca", "rogue"):
        make_ca(d, ca)
    issue_cert(d, "server", "ca", SERVER_EXT)
    issue_cert(d, "client", "ca", CLIENT_EXT)
    issue_cert(d, "intruder", "rogue", CLIENT_EXT)
    return {k: os.path.join(d, k) for k in os.listdir(d)}


def read(p):
    with open(p, "rb") as f:
        return f.read()


def https_post(port, data, f, client=None, timeout=10):
    ctx = ssl.create_default_context(cafile=f["ca.pem"])
    if client:
        ctx.load_cert_chain(f[client + ".pem"], f[client + ".key"])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=timeout)
    return http_post(port, data, conn=conn)


def expect_https_refused(port, data, f, client, what):
    try:
        st, _, _ = https_post(port, data, f, client)
    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
        check(True, "%s: refused (%s)" % (what, type(e).__name__))
        return
    raise TestFailure("%s: answered %d instead of failing the handshake" % (what, st))


def case_tls(args, work):
    cdir = os.path.join(work, "certs")
    os.makedirs(cdir)
    f = make_certs(cdir)
    server = {"cert": f["server.pem"], "key": f["server.key"]}
    mutual = dict(server, client_ca=f["ca.pem"])
    root = read(f["ca.pem"])

    # TLS only
    c = Collector(args.collector, work, "tls", grpc_tls=server, http_tls=server)
    cli = GrpcClient(c.grpc_port, grpc.ssl_channel_credentials(root_certificates=root))
    data, ids = make_request(5, name="tls-grpc")
    code, _, _, _ = cli.call(data)
    cli.close()
    check(code == grpc.StatusCode.OK, "gRPC over TLS: OK (%s)" % code)
    c.accepted.update(ids)
    plain = GrpcClient(c.grpc_port)
    code, _, _, _ = plain.call(make_request(1)[0], timeout=3)
    plain.close()
    check(code != grpc.StatusCode.OK, "plaintext gRPC to the TLS port fails (%s)" % code)
    data, ids = make_request(5, name="tls-http")
    st, _, _ = https_post(c.http_port, data, f)
    check(st == 200, "HTTPS: 200 (%d)" % st)
    c.accepted.update(ids)
    try:
        st = http_post(c.http_port, make_request(1)[0], timeout=3)[0]
    except (OSError, http.client.HTTPException):
        st = None
    check(st != 200, "plain HTTP to the TLS port fails (%s)" % st)
    c.finish()

    # mutual TLS
    c = Collector(args.collector, work, "mtls", grpc_tls=mutual, http_tls=mutual)
    good = grpc.ssl_channel_credentials(root, read(f["client.key"]), read(f["client.pem"]))
    cli = GrpcClient(c.grpc_port, good)
    data, ids = make_request(5, name="mtls-grpc")
    code, _, _, _ = cli.call(data)
    cli.close()
    check(code == grpc.StatusCode.OK, "gRPC with a trusted client certificate: OK (%s)" % code)
    c.accepted.update(ids)
    for creds, what in ((grpc.ssl_channel_credentials(root), "no client certificate"),
                        (grpc.ssl_channel_credentials(root, read(f["intruder.key"]),
                                                      read(f["intruder.pem"])),
                         "a client certificate from an untrusted CA")):
        bad = GrpcClient(c.grpc_port, creds)
        code, _, _, _ = bad.call(make_request(1)[0], timeout=5)
        bad.close()
        check(code == grpc.StatusCode.UNAVAILABLE, "gRPC with %s: UNAVAILABLE (%s)" % (what, code))
    data, ids = make_request(5, name="mtls-http")
    st, _, _ = https_post(c.http_port, data, f, "client")
    check(st == 200, "HTTPS with a trusted client certificate: 200 (%d)" % st)
    c.accepted.update(ids)
    expect_https_refused(c.http_port, make_request(1)[0], f, None, "HTTPS without a client cert")
    expect_https_refused(c.http_port, make_request(1)[0], f, "intruder",
                         "HTTPS with a certificate from an untrusted CA")
    check(c.admin("/healthz")[0] == 200, "/healthz 200")
    c.finish()


# ---------------------------------------------------------------- admin checks (every case)

def check_admin_basics(args, work):
    c = Collector(args.collector, work, "admin")
    st, body = c.admin("/")
    check(st == 200 and "/metrics" in body, "admin / lists the endpoints")
    check(c.admin("/healthz") == (200, "ok\n"), "/healthz: 200 ok")
    check(c.admin("/readyz")[0] == 200, "/readyz: 200 once listening")
    check(c.admin("/nope")[0] == 404, "admin /nope: 404")
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % c.admin_port, timeout=5) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    check(ctype.startswith("text/plain; version=0.0.4"), "/metrics content type %r" % ctype)
    check("profilis_receiver_" in text, "/metrics has the receiver metrics")
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % c.admin_port, data=b"x",
                                 method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        st = 200
    except urllib.error.HTTPError as e:
        st = e.code
    check(st == 405, "POST /metrics: 405 (%d)" % st)
    c.finish()


CASES = {"grpc": case_grpc, "http": case_http, "refuse": case_refuse, "abuse": case_abuse,
         "tls": case_tls, "sigterm": case_sigterm, "admin": check_admin_basics,
         "grpc_limits": case_grpc_limits}


def main():
    global pb
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--collector", required=True, help="the profilis-collector binary")
    ap.add_argument("--proto-dir", required=True, help="directory holding opentelemetry/proto")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (debugging)")
    ap.add_argument("--sanitized", action="store_true",
                    help="the collector is an ASan/UBSan build: RSS bounds are scaled up")
    args = ap.parse_args()
    global RSS_SCALE
    if args.sanitized:
        RSS_SCALE = 4
    work = tempfile.mkdtemp(prefix="collector_receivers_")
    try:
        os.makedirs(os.path.join(work, "py"))
        otlp_sink.generate_protos(os.path.abspath(args.proto_dir), os.path.join(work, "py"))
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        pb = trace_service_pb2
        print("case %s" % args.case, flush=True)
        CASES[args.case](args, work)
        print("PASS", flush=True)
        return 0
    except Exception as e:  # a failed check, or a client error the collector caused
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        for c in LIVE:
            if os.path.exists(getattr(c, "log_path", "")):
                text = read(c.log_path).decode(errors="replace")[-6000:]
                print("---- %s log ----\n%s" % (c.dir, text))
        return 1
    finally:
        for c in LIVE:
            if hasattr(c, "proc"):
                c.kill()
        if args.keep:
            print("work directory kept: " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
