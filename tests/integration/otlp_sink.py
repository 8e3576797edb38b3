#!/usr/bin/python3
"""OTLP/gRPC trace receiver for tests.

Serves opentelemetry.proto.collector.trace.v1.TraceService/Export with grpcio and appends one
JSON object per received span to --out (ids as lowercase hex, attributes as {key: value},
resource attributes, scope, and the request metadata). The protobuf classes are generated at
start-up with protoc from --proto-dir into a temporary directory, so the sink decodes exactly
the .proto files the project ships. Failure modes (--fail-first, --status, --partial-reject,
--delay-ms, --require-header, --garbage) let tests drive retries and errors. Transport faults
(--reset-after-bytes, --garbage-connections) put a TCP relay in front of the gRPC server that
resets connections mid-request or answers with bytes that are not HTTP/2. Stops cleanly on
SIGTERM, and on its own when the process that started it goes away.

Run it with /usr/bin/python3: Debian's grpcio is installed for that interpreter only.
"""

import argparse
import base64
import glob
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def generate_protos(proto_dir, out_dir):
    """Compiles every .proto under proto_dir into Python modules under out_dir."""
    files = sorted(os.path.relpath(p, proto_dir)
                   for p in glob.glob(os.path.join(proto_dir, "**", "*.proto"), recursive=True))
    if not files:
        raise SystemExit("otlp_sink: no .proto files under %s" % proto_dir)
    subprocess.run(["protoc", "--python_out=" + out_dir, "-I", proto_dir] + files, check=True)
    # Regular packages, so an installed "opentelemetry" distribution cannot shadow them.
    for root, _dirs, _files in os.walk(out_dir):
        open(os.path.join(root, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)


def hexid(b):
    return b.hex()


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def span_json(span, resource, scope, metadata, call):
    return {
        "trace_id": hexid(span.trace_id),
        "span_id": hexid(span.span_id),
        "parent_span_id": hexid(span.parent_span_id),
        "trace_state": span.trace_state,
        "name": span.name,
        "kind": span.kind,
        "flags": span.flags,
        "start_time_unix_nano": span.start_time_unix_nano,
        "end_time_unix_nano": span.end_time_unix_nano,
        "attributes": attrs(span.attributes),
        "dropped_attributes_count": span.dropped_attributes_count,
        "events": [{"name": e.name, "time_unix_nano": e.time_unix_nano,
                    "attributes": attrs(e.attributes),
                    "dropped_attributes_count": e.dropped_attributes_count}
                   for e in span.events],
        "dropped_events_count": span.dropped_events_count,
        "links": [{"trace_id": hexid(l.trace_id), "span_id": hexid(l.span_id),
                   "trace_state": l.trace_state, "flags": l.flags,
                   "attributes": attrs(l.attributes),
                   "dropped_attributes_count": l.dropped_attributes_count}
                  for l in span.links],
        "dropped_links_count": span.dropped_links_count,
        "status": {"code": span.status.code, "message": span.status.message},
        "resource": attrs(resource.attributes),
        "scope": {"name": scope.name, "version": scope.version},
        "metadata": metadata,
        "call": call,
    }


def status_code(n):
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c
    raise SystemExit("otlp_sink: unknown status code %d" % n)


def retry_info_status(code, message, delay_ms):
    """Serialized google.rpc.Status carrying a RetryInfo, written by hand (no extra protos)."""
    def varint(x):
        out = bytearray()
        while True:
            b = x & 0x7F
            x >>= 7
            out.append(b | (0x80 if x else 0))
            if not x:
                return bytes(out)

    def ld(field, payload):
        return varint(field << 3 | 2) + varint(len(payload)) + payload

    secs, ms = divmod(delay_ms, 1000)
    duration = varint(1 << 3) + varint(secs) + varint(2 << 3) + varint(ms * 1000000)
    any_msg = ld(1, b"type.googleapis.com/google.rpc.RetryInfo") + ld(2, ld(1, duration))
    return varint(1 << 3) + varint(code) + ld(2, message.encode()) + ld(3, any_msg)


class Sink:
    def __init__(self, args, pb):
        self.args = args
        self.pb = pb
        self.lock = threading.Lock()
        self.calls = 0
        self.out = open(args.out, "a", encoding="utf-8") if args.out else None
        self.calls_log = open(args.calls, "a", encoding="utf-8") if args.calls else None
        self.required = [kv.split("=", 1) for kv in args.require_header]
        self.dying = threading.Event()

    def log_call(self, call, code, nspans, nbytes, metadata):
        if self.calls_log:
            with self.lock:
                self.calls_log.write(json.dumps({"call": call, "status": code, "spans": nspans,
                                                 "bytes": nbytes, "metadata": metadata,
                                                 "time": time.time()}) + "\n")
                self.calls_log.flush()

    def refuse(self, context, call, code, message, nbytes, metadata):
        trailers = []
        if self.args.pushback_ms is not None:
            trailers.append(("grpc-retry-pushback-ms", str(self.args.pushback_ms)))
        if self.args.retry_info_ms is not None:
            trailers.append(("grpc-status-details-bin",
                             retry_info_status(code, message, self.args.retry_info_ms)))
        if trailers:
            context.set_trailing_metadata(trailers)
        self.log_call(call, code, 0, nbytes, metadata)
        context.abort(status_code(code), message)

    def export(self, raw, context):
        if self.dying.is_set():
            # A controlled crash between requests: nothing of this one is recorded and the
            # client sees the connection drop, as when a backend process dies.
            os._exit(137)
        with self.lock:
            self.calls += 1
            call = self.calls
        metadata = {}
        for k, v in context.invocation_metadata():
            metadata[k] = v if isinstance(v, str) else base64.b64encode(v).decode()
        if self.args.delay_ms and (not self.args.delay_first or call <= self.args.delay_first):
            time.sleep(self.args.delay_ms / 1000.0)
        for k, v in self.required:
            if metadata.get(k) != v:
                self.refuse(context, call, 16, "missing header %s" % k, len(raw), metadata)
        if call <= self.args.fail_first:
            self.refuse(context, call, self.args.fail_status, "fail-first %d" % call, len(raw),
                        metadata)
        if self.args.status:
            self.refuse(context, call, self.args.status, "status set by test", len(raw), metadata)
        try:
            req = self.pb.ExportTraceServiceRequest.FromString(raw)
        except Exception as exc:  # undecodable request: that is the test failing
            self.refuse(context, call, 3, "cannot decode: %s" % exc, len(raw), metadata)
        lines = []
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    if self.args.ids_only:  # long runs: a hex span id per line, cheap to write
                        lines.append(span.span_id.hex())
                    else:
                        lines.append(json.dumps(span_json(span, rs.resource, ss.scope, metadata,
                                                          call)))
        with self.lock:
            if self.out:
                for line in lines:
                    self.out.write(line + "\n")
                self.out.flush()
        self.log_call(call, 0, len(lines), len(raw), metadata)
        if self.args.garbage:
            # Status OK, but the message is no ExportTraceServiceResponse: field 1 claims more
            # bytes than follow.
            return b"\x0a\xff\xff\x03garbage"
        resp = self.pb.ExportTraceServiceResponse()
        if self.args.partial_reject:
            resp.partial_success.rejected_spans = self.args.partial_reject
            resp.partial_success.error_message = self.args.reject_message
        return resp.SerializeToString()

    def close(self):
        for f in (self.out, self.calls_log):
            if f:
                f.close()


class Relay:
    """TCP relay from the public port to the gRPC server, for transport faults: the first
    `resets` connections that carry `reset_after` bytes from the client are reset (RST) there,
    and the first `garbage` connections that send anything are answered with bytes that are not
    HTTP/2, then closed. Connections that send nothing (port probes) do not count."""

    def __init__(self, port, backend_port, args):
        self.backend = backend_port
        self.reset_after, self.resets = args.reset_after_bytes, args.resets
        self.garbage = args.garbage_connections
        self.lock = threading.Lock()
        self.n_conn = 0
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def take(self, what):
        """Takes one of the faults left of a kind; False when none is left."""
        with self.lock:
            if getattr(self, what) <= 0:
                return False
            setattr(self, what, getattr(self, what) - 1)
            self.n_conn += 1
            return True

    @staticmethod
    def hard_close(s):
        try:  # linger 0: close sends RST instead of FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        s.close()

    def serve(self, c):
        try:
            first = c.recv(65536)
        except OSError:
            first = b""
        if not first:
            c.close()
            return
        if self.take("garbage"):
            try:
                c.sendall(b"HTTP/1.1 400 garbage\r\n\r\n" + bytes(range(256)) * 4)
                # Left open until the client gives up on it, so what it sees is the garbage,
                # not a reset (closing with unread input would send RST).
                c.settimeout(5)
                while c.recv(65536):
                    pass
            except OSError:
                pass
            print("otlp_sink: a connection answered with garbage", file=sys.stderr, flush=True)
            c.close()
            return
        try:
            b = socket.create_connection(("127.0.0.1", self.backend))
        except OSError:
            c.close()
            return
        threading.Thread(target=self.pump, args=(b, c, b"", False), daemon=True).start()
        self.pump(c, b, first, self.reset_after > 0)

    def pump(self, src, dst, data, may_reset):
        seen = 0
        try:
            while True:
                if not data:
                    data = src.recv(65536)
                    if not data:
                        break
                if may_reset and seen + len(data) >= self.reset_after and self.take("resets"):
                    dst.sendall(data[:self.reset_after - seen])
                    print("otlp_sink: connection reset after %d bytes" % self.reset_after,
                          file=sys.stderr, flush=True)
                    self.hard_close(src)
                    self.hard_close(dst)
                    return
                seen += len(data)
                dst.sendall(data)
                data = b""
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the bound port here once serving")
    ap.add_argument("--out", help="append one JSON object per span here")
    ap.add_argument("--calls", help="append one JSON object per call here")
    ap.add_argument("--proto-dir", required=True, help="directory holding opentelemetry/proto")
    ap.add_argument("--fail-first", type=int, default=0, help="answer UNAVAILABLE to N calls")
    ap.add_argument("--fail-status", type=int, default=14,
                    help="status --fail-first answers with (default 14, UNAVAILABLE)")
    ap.add_argument("--status", type=int, default=0, help="always answer with this status")
    ap.add_argument("--pushback-ms", type=int, help="send grpc-retry-pushback-ms on errors")
    ap.add_argument("--retry-info-ms", type=int, help="send RetryInfo on errors")
    ap.add_argument("--partial-reject", type=int, default=0, help="report N rejected spans")
    ap.add_argument("--reject-message", default="rejected by test sink",
                    help="error_message sent with --partial-reject")
    ap.add_argument("--delay-ms", type=int, default=0, help="sleep before answering")
    ap.add_argument("--delay-first", type=int, default=0,
                    help="apply --delay-ms to the first N calls only (0: to every call)")
    ap.add_argument("--garbage", action="store_true",
                    help="record the spans, then answer OK with bytes that are not an "
                         "ExportTraceServiceResponse")
    ap.add_argument("--reset-after-bytes", type=int, default=0,
                    help="reset (RST) a connection once N bytes came from the client")
    ap.add_argument("--resets", type=int, default=1,
                    help="connections --reset-after-bytes applies to (the first N that get "
                         "that far)")
    ap.add_argument("--garbage-connections", type=int, default=0,
                    help="answer the first N connections with bytes that are not HTTP/2")
    ap.add_argument("--gzip-responses", action="store_true", help="compress responses")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve TLS")
    ap.add_argument("--client-ca", help="require client certificates signed by this CA")
    ap.add_argument("--ids-only", action="store_true",
                    help="write only each span's hex span id, one per line, to --out")
    ap.add_argument("--die-on-usr1", action="store_true",
                    help="on SIGUSR1, exit at the start of the next call (a crash that never "
                         "leaves a request half recorded)")
    ap.add_argument("--require-header", action="append", default=[], metavar="K=V",
                    help="answer UNAUTHENTICATED unless this metadata is present")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="otlp_sink_")
    try:
        generate_protos(os.path.abspath(args.proto_dir), tmp)
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb

        sink = Sink(args, pb)
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(sink.export),
        })
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            handlers=[handler],
            compression=grpc.Compression.Gzip if args.gzip_responses else None,
            options=[("grpc.max_receive_message_length", 64 << 20),
                     ("grpc.so_reuseport", 0)])
        relay = args.reset_after_bytes > 0 or args.garbage_connections > 0
        addr = "127.0.0.1:%d" % (0 if relay else args.port)
        if args.tls:
            creds = grpc.ssl_server_credentials(
                [(read(args.tls[1]), read(args.tls[0]))],
                root_certificates=read(args.client_ca) if args.client_ca else None,
                require_client_auth=bool(args.client_ca))
            port = server.add_secure_port(addr, creds)
        else:
            port = server.add_insecure_port(addr)
        if port == 0:
            raise SystemExit("otlp_sink: cannot bind %s" % addr)
        server.start()
        if relay:  # clients talk to the relay; the gRPC server sits behind it
            port = Relay(args.port, port, args).port

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        if args.die_on_usr1:
            signal.signal(signal.SIGUSR1, lambda *_: sink.dying.set())
        if args.port_file:
            tmpf = args.port_file + ".tmp"
            with open(tmpf, "w") as f:
                f.write("%d\n" % port)
            os.rename(tmpf, args.port_file)
        parent = os.getppid()
        # A test that dies without stopping us must not leave a server behind.
        while not stop.wait(0.2) and os.getppid() == parent:
            pass
        server.stop(0).wait(2)
        sink.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
