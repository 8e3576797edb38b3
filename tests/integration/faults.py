#!/usr/bin/python3
"""Fault injection against the real collector binary (issue 5). Each case drives one fault and
checks that the collector keeps running (and exits 0 on SIGTERM), counts what happened in
/metrics, loses nothing it accepted where the design promises it (the durable queue), and says
in its log what is wrong.

  disk_full_jsonl     the JSONL exporter's file on a 256 KiB tmpfs that fills up; freed later
  disk_full_queue     durable queues on small tmpfs: one capped by queue.max_size (drop_oldest),
                      one whose disk runs out before its max_size (ENOSPC)
  read_only           JSONL output directory made read-only under a running collector (seen at
                      rotation), a durable queue directory on a read-only mount, and a JSONL
                      path on a read-only mount at start (refused with a clear error)
  slow_backend        backend answering after 3 s: timeout above the delay -> late success,
                      exactly once; timeout below it -> at-least-once, duplicates counted
  partial_success     backend reports rejected spans
  exhausted_retry_info    RESOURCE_EXHAUSTED with RetryInfo: retried after the delay
  exhausted_no_retry_info RESOURCE_EXHAUSTED without RetryInfo: not retried (OTLP spec)
  unavailable         UNAVAILABLE: retried, delivered once
  garbage             status OK with a body that is no ExportTraceServiceResponse, and a peer
                      that answers with bytes that are not HTTP/2
  conn_reset          the backend's side resets the TCP connection in the middle of a request
  clock_jump          FAKE clock jumps (LD_PRELOAD shim clockjump.so): wall clock +1 h, then -1 h

Mounts need root (CAP_SYS_ADMIN); without it those cases exit 77 (ctest SKIP) saying so.
Usage: faults.py CASE --bin BUILD/bin --src SOURCE_DIR [--clockjump LIB]
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_e2e import Collector as E2ECollector  # noqa: E402
from collector_e2e import (check, free_port, listen_yaml, metric, read_jsonl, wait_for,  # noqa: E402
                           wait_port)
from tenants_e2e import Sink, loadgen  # noqa: E402

SKIP = 77


class Collector(E2ECollector):
    """The collector on a config of our own: `exporters` is the YAML under `exporters:` and
    `route` the service's exporter list. Keeps collector_e2e's get() and stop()."""

    def __init__(self, args, wd, exporters, route, env=None, name="collector", wait=True,
                 top=""):
        self.grpc, self.http, self.admin = free_port(), free_port(), free_port()
        self.tls = None  # plaintext (tenants_e2e.loadgen reads it)
        self.cfg = os.path.join(wd, name + ".yaml")
        with open(self.cfg, "w") as f:
            f.write(listen_yaml(self.grpc, self.http, self.admin,
                                "{memory_limit: 64MiB, drain_timeout: 10s}") + """%s
exporters:
%s
service:
  exporters: %s
""" % (top, exporters, route))
        self.log_path = os.path.join(wd, name + ".log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(args.bin, "profilis-collector"), "--config",
                                      self.cfg], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})))
        if wait:
            for p in (self.grpc, self.http, self.admin):
                wait_port(p, self.proc)

    def metrics(self):
        return self.get("/metrics")[1]

    def m(self, name, *labels):
        return metric(self.metrics(), name, list(labels))

    def exp(self, exporter, what):
        """profilis_exporter_<what>_spans_total of one exporter."""
        return self.m("profilis_exporter_%s_spans_total" % what, 'exporter="%s"' % exporter)

    def accepted(self):
        return self.m("profilis_receiver_accepted_spans_total")

    def settled(self, exporter):
        """True when every accepted span is sent, failed or dropped by the exporter."""
        acc = self.accepted()
        done = sum(self.exp(exporter, w) for w in ("sent", "failed", "dropped"))
        return acc > 0 and done == acc

    def text(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None and self.get("/healthz")[0] == 200


class FaultSink(Sink):
    """tests/integration/otlp_sink.py with fault options and a per-call log. The exporter must
    send x-scope-orgid=<name> (the tenants_e2e Sink requires it)."""

    def __init__(self, args, wd, name, opts, start=True, port=None):
        self.opts = opts
        self.calls_path = os.path.join(wd, "calls-%s.jsonl" % name)
        if start:
            super().__init__(args, wd, name, port)
        else:  # a backend that is down: its port stays closed until start()
            self.args, self.tenant, self.port, self.proc = args, name, port or free_port(), None
            self.out = os.path.join(wd, "sink-%s.jsonl" % name)

    def start(self):
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(self.args.src, "tests/integration/otlp_sink.py"),
             "--port", str(self.port), "--out", self.out, "--calls", self.calls_path,
             "--proto-dir", os.path.join(self.args.src, "proto"),
             "--require-header", "x-scope-orgid=%s" % self.tenant] + self.opts,
            stderr=open(self.calls_path + ".stderr", "w"))
        wait_port(self.port, self.proc)

    def calls(self):
        return read_jsonl(self.calls_path)

    def ids(self):
        return [s["span_id"] for s in self.spans()]


def otlp_yaml(name, sink, extra="", batch="{size: 512, timeout: 50ms}"):
    return """  %s:
    endpoint: "http://127.0.0.1:%d"
    headers: {x-scope-orgid: %s}
    batch: %s%s
""" % (name, sink.port, sink.tenant, batch, extra)


def lines(path, strict=True):
    """Lines of a file, each parsed as JSON: a cut or mixed line fails the test, unless not
    strict (while waiting: a full disk may leave the last line half written, to be finished
    when there is room again)."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for n, l in enumerate(f):
            try:
                out.append(json.loads(l))
            except ValueError:
                if strict:
                    check(False, "%s line %d is whole JSON: %r" % (path, n + 1, l[:120]))
    return out


class Mount:
    """A tmpfs (or a read-only bind) mounted for the duration of a case; unmounted by
    unmount_all() in main's finally."""
    mounted = []

    @classmethod
    def tmpfs(cls, path, size):
        os.makedirs(path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print("SKIP: cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): %s" % r.stderr.strip(),
                  flush=True)
            sys.exit(SKIP)
        cls.mounted.append(path)

    @classmethod
    def readonly_over(cls, path):
        """Mounts path read-only over itself (open files keep writing; new opens and renames
        fail with EROFS): a running process cannot hold off a remount this way."""
        r = subprocess.run(["mount", "--bind", "-o", "ro", path, path], capture_output=True,
                           text=True)
        check(r.returncode == 0, "read-only bind mount over %s (%s)" % (path, r.stderr.strip()))
        cls.mounted.append(path)

    @classmethod
    def umount(cls, path):
        subprocess.run(["umount", path], check=True)
        cls.mounted.remove(path)

    @classmethod
    def unmount_all(cls):
        for p in reversed(cls.mounted):
            subprocess.run(["umount", "-l", p])
        cls.mounted.clear()


def fill(path):
    """Writes path until the disk is full. Returns the bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                n += f.write(b"\0" * 4096)
        except OSError:
            pass
    return n


def finish(col, *sinks):
    try:
        check(col.alive(), "the collector is still running and healthy")
    finally:
        check(col.stop() == 0, "collector exited 0 on SIGTERM")
        for s in sinks:
            s.stop()


# ---- 1. disk full ----

def case_disk_full_jsonl(args, wd):
    d = os.path.join(wd, "small")
    Mount.tmpfs(d, "256k")
    out = os.path.join(d, "spans.jsonl")
    col = Collector(args, wd, """  jsonl:
    path: %s
    flush_interval: 50ms
    fsync: batch
    batch: {size: 50, timeout: 50ms}
    breaker: {failures: 3, open: 200ms, open_max: 400ms}
  prometheus: {}""" % out, "[jsonl, prometheus]")
    try:
        # Small SDK batches: a request is one chunk, never split, and must fit the small disk.
        loadgen(args, col, None, "before", ["--spans", "100", "--block", "--batch-size", "50"])
        check(wait_for(lambda: len(lines(out)) == 100, 10), "100 spans written while there is room")
        filler = os.path.join(d, "filler")
        print("filler: %d bytes" % fill(filler), flush=True)
        r = loadgen(args, col, None, "full", ["--spans", "1000", "--block", "--batch-size", "50"])
        check(r["exported"] == "1000", "the receiver accepted the spans while the disk is full")
        check(wait_for(lambda: col.settled("jsonl"), 15), "every accepted span is counted")
        failed = col.exp("jsonl", "failed")
        check(failed > 0, "spans the full disk refused are counted failed (%d)" % failed)
        log = col.text()
        check("No space left on device" in log and "jsonl: write to %s failed" % out in log,
              "the log names the file and says No space left on device")
        check(col.alive(), "still running with a full disk")
        os.unlink(filler)
        time.sleep(0.5)  # past the breaker's cool-down
        r = loadgen(args, col, None, "after", ["--spans", "200", "--block", "--batch-size", "50"])

        def after_ok():
            got = lines(out, strict=False)
            return col.settled("jsonl") and len(got) == col.exp("jsonl", "sent") and \
                sum(1 for s in got if s["resource"].get("service.name") == "after") == 200
        check(wait_for(after_ok, 15), "after space came back, later batches are written (%d lines, "
              "%d sent)" % (len(lines(out, False)), col.exp("jsonl", "sent")))
        got = lines(out)
        sent, failed = col.exp("jsonl", "sent"), col.exp("jsonl", "failed")
        check(len(got) == sent and len({s["span_id"] for s in got}) == sent,
              "the file holds exactly the spans counted sent, once each, no cut lines (%d)" % sent)
        check(sent + failed == col.accepted() == 1300, "sent %d + failed %d == accepted 1300" %
              (sent, failed))
    finally:
        finish(col)


def case_disk_full_queue(args, wd):
    cap_dir, nospace_dir = os.path.join(wd, "q-capped"), os.path.join(wd, "q-nospace")
    Mount.tmpfs(cap_dir, "16m")
    Mount.tmpfs(nospace_dir, "1m")
    sinks = {n: FaultSink(args, wd, n, [], start=False) for n in ("capped", "nospace")}
    q = """
    timeout: 1s
    breaker: {failures: 2, open: 200ms, open_max: 500ms}
    queue: {enabled: true, directory: "%s", max_size: %s, fsync: false}"""
    col = Collector(args, wd, otlp_yaml("otlp/capped", sinks["capped"], q % (cap_dir, "1MiB")) +
                    otlp_yaml("otlp/nospace", sinks["nospace"], q % (nospace_dir, "64MiB")),
                    "[otlp/capped, otlp/nospace]")
    try:
        r = loadgen(args, col, None, "queued", ["--spans", "20000", "--depth", "4", "--attrs", "6",
                                                "--block"])
        check(r["exported"] == "20000", "20000 spans accepted while both backends are down")
        for n in sinks:
            check(wait_for(lambda: col.settled("otlp/" + n) or col.m(
                "profilis_queue_spans", 'exporter="otlp/%s"' % n) + sum(
                col.exp("otlp/" + n, w) for w in ("failed", "dropped")) == 20000, 20),
                "otlp/%s: every span is on disk or counted" % n)
        dropped = col.exp("otlp/capped", "dropped")
        check(dropped > 0 and col.exp("otlp/capped", "failed") == 0,
              "queue.max_size reached: the oldest records dropped and counted (%d)" % dropped)
        nospace_failed = col.exp("otlp/nospace", "failed")
        check(nospace_failed > 0, "disk full under the queue: spans that could not be queued are "
              "counted failed (%d)" % nospace_failed)
        log = col.text()
        check("durable queue full: dropped the oldest record" in log, "the log says the capped "
              "queue dropped its oldest records")
        # LMDB reports a page write cut short by a full disk as EIO (mdb_page_flush), so the
        # log can only say "Input/output error", not ENOSPC.
        check("q-nospace/otlp_nospace/_: push: Input/output error" in log and
              "exporter otlp/nospace: 512 spans failed: cannot queue them" in log,
              "the log says the queue could not store the batches (LMDB: Input/output error)")
        check(col.alive(), "still running with a full queue disk")
        for s in sinks.values():
            s.start()
        for n, s in sinks.items():
            ok = wait_for(lambda: col.m("profilis_queue_spans", 'exporter="otlp/%s"' % n) == 0
                          and col.settled("otlp/" + n), 30)
            sent = col.exp("otlp/" + n, "sent")
            lost = col.exp("otlp/" + n, "failed") + col.exp("otlp/" + n, "dropped")
            check(ok and sent + lost == 20000, "otlp/%s: the backlog drained: sent %d + counted lost "
                  "%d == accepted 20000" % (n, sent, lost))
            ids = s.ids()
            check(len(ids) == sent and len(set(ids)) == sent,
                  "otlp/%s: the backend got exactly the spans counted sent, once each (%d)" %
                  (n, len(ids)))
        # A queue that hit ENOSPC keeps working once there is room again.
        r = loadgen(args, col, None, "later", ["--spans", "1000", "--block"])
        check(wait_for(lambda: sum(1 for x in sinks["nospace"].spans()
                                   if x["resource"]["service.name"] == "later") == 1000, 15),
              "otlp/nospace delivers new batches after the disk-full episode")
    finally:
        finish(col, *sinks.values())


# ---- 2. read-only directories ----

def case_read_only(args, wd):
    d = os.path.join(wd, "out")
    Mount.tmpfs(d, "4m")
    out = os.path.join(d, "spans.jsonl")
    qdir = os.path.join(wd, "q-ro")
    Mount.tmpfs(qdir, "1m")
    Mount.readonly_over(qdir)
    sink = FaultSink(args, wd, "acme", [])
    col = Collector(args, wd, """  jsonl:
    path: %s
    flush_interval: 50ms
    batch: {size: 200, timeout: 50ms}
    rotation: {max_size: 64KiB, max_backups: 1000}
    breaker: {failures: 3, open: 200ms, open_max: 400ms}
""" % out + otlp_yaml("otlp/acme", sink, """
    queue: {enabled: true, directory: "%s"}""" % qdir), "[jsonl, otlp/acme]")
    try:
        loadgen(args, col, None, "rw", ["--spans", "200", "--block"])
        check(wait_for(lambda: col.settled("jsonl") and col.exp("jsonl", "sent") == 200, 10),
              "200 spans written while the directory is writable")
        # The queue opens lazily on the exporter's first batch. (dqueue.c logs "cannot create
        # the directory" without the reason, EROFS.)
        check(wait_for(lambda: "cannot open the durable queue %s/otlp_acme/_" % qdir in col.text()
                       and "running without it" in col.text(), 10),
              "a queue directory on a read-only mount: the log says it runs without the queue")
        check(wait_for(lambda: len(sink.spans()) == 200, 10),
              "otlp/acme still delivers without its queue")
        Mount.readonly_over(d)  # the open file keeps taking writes; rotation cannot rename
        r = loadgen(args, col, None, "ro", ["--spans", "1500", "--block"])
        check(r["exported"] == "1500", "the receiver accepted spans meanwhile")
        check(wait_for(lambda: col.settled("jsonl"), 15), "every accepted span is counted")
        failed = col.exp("jsonl", "failed")
        check(failed > 0, "spans that could not be written after a failed rotation counted failed (%d)"
              % failed)
        log = col.text()
        check("jsonl: cannot rotate %s: Read-only file system" % out in log,
              "the log says rotation failed: Read-only file system")
        check("jsonl: cannot open %s: Read-only file system" % out in log,
              "the log says the file cannot be reopened: Read-only file system")
        check(col.alive(), "still running with a read-only directory")
        Mount.umount(d)
        loadgen(args, col, None, "rw-again", ["--spans", "300", "--block"])

        def written_again():
            got = [s for p in sorted(os.listdir(d)) if p.startswith("spans.jsonl")
                   for s in lines(os.path.join(d, p))]
            return col.settled("jsonl") and \
                sum(1 for s in got if s["resource"]["service.name"] == "rw-again") == 300, got
        check(wait_for(lambda: written_again()[0], 15), "writable again: later batches are written "
              "(%d sent, %d failed, %d accepted, files %s)" % (
                  col.exp("jsonl", "sent"), col.exp("jsonl", "failed"), col.accepted(),
                  sorted(os.listdir(d))))
        got = written_again()[1]
        sent = col.exp("jsonl", "sent")
        check(len(got) == sent and len({s["span_id"] for s in got}) == sent,
              "the files hold exactly the spans counted sent (%d), once each" % sent)
        check(sent + col.exp("jsonl", "failed") == col.accepted(), "sent + failed == accepted")
    finally:
        finish(col, sink)
    # At start: a JSONL file that cannot be created stops the start, with the reason.
    Mount.readonly_over(d)
    col = Collector(args, wd, """  jsonl:
    path: %s/never.jsonl""" % d, "[jsonl]", name="ro-start", wait=False)
    try:
        rc = col.proc.wait(20)
    except subprocess.TimeoutExpired:
        col.stop()
        rc = None
    log = col.text()
    check(rc not in (0, None), "a JSONL path on a read-only mount at start: the collector refuses to "
          "start (rc %s)" % rc)
    check("cannot open %s/never.jsonl: Read-only file system" % d in log,
          "and says why: Read-only file system")


# ---- 3. slow backend ----

def case_slow_backend(args, wd):
    # (a) timeout 5 s > delay 3 s: every export succeeds late, each span once; the breaker
    # never opens (a late answer is a success).
    slow = FaultSink(args, wd, "slow", ["--delay-ms", "3000"])
    # (b) timeout 1 s < delay 3 s for the first 2 calls: those attempts time out and the batch
    # waits in the durable queue, yet the backend did record them when it answered late. The
    # replay sends them again: at-least-once, and the duplicates are exactly the spans of the
    # timed-out calls (a client cannot tell "lost" from "answered after I stopped waiting").
    late = FaultSink(args, wd, "late", ["--delay-ms", "3000", "--delay-first", "2"])
    col = Collector(args, wd, otlp_yaml("otlp/slow", slow, """
    timeout: 5s
    queue: {enabled: true, directory: "%s/q", fsync: false}""" % wd,
                              "{size: 5000, timeout: 300ms}") + otlp_yaml("otlp/late", late, """
    timeout: 1s
    breaker: {failures: 2, open: 300ms, open_max: 1s}
    queue: {enabled: true, directory: "%s/q", fsync: false}""" % wd, "{size: 5000, timeout: 300ms}"),
                    "[otlp/slow, otlp/late]")
    try:
        t0 = time.time()
        r = loadgen(args, col, None, "slow", ["--spans", "3000", "--block"])
        check(r["exported"] == "3000", "3000 spans accepted: receiving does not wait for the backend")
        check(time.time() - t0 < 10, "the client was not held up by the slow backend (%.1f s)" %
              (time.time() - t0))
        check(wait_for(lambda: col.settled("otlp/slow") and col.settled("otlp/late") and
                       col.m("profilis_queue_spans") == 0, 40), "both exporters finished")
        ids = slow.ids()
        check(col.exp("otlp/slow", "sent") == 3000 and len(ids) == 3000 and len(set(ids)) == 3000,
              "timeout > delay: all 3000 delivered late, exactly once")
        check(col.m("profilis_breaker_transitions_total", 'exporter="otlp/slow"', 'state="open"') == 0,
              "late answers do not open the breaker")
        ids = late.ids()
        timed_out = sum(c["spans"] for c in late.calls() if c["call"] <= 2)
        check(col.exp("otlp/late", "sent") == 3000 and len(set(ids)) == 3000,
              "timeout < delay: every accepted span delivered (at least once)")
        check(len(ids) - 3000 == timed_out and timed_out > 0,
              "duplicates (%d) are exactly the spans of the 2 calls answered after the timeout (%d)"
              % (len(ids) - 3000, timed_out))
        check(col.exp("otlp/late", "failed") == 0 and col.exp("otlp/late", "dropped") == 0,
              "nothing failed or dropped")
        log = col.text()
        # our deadline passes first ("gave up at the deadline"), or the backend enforces the
        # grpc-timeout we sent and answers DEADLINE_EXCEEDED a moment before it, which with a
        # queue (no retries in the exporter) logs "retries exhausted: DEADLINE_EXCEEDED"
        check("otlp/late: export gave up at the deadline: " in log or
              "otlp/late: export failed, retries exhausted: DEADLINE_EXCEEDED" in log,
              "the log says the export timed out")
    finally:
        finish(col, slow, late)


# ---- 4. backend statuses ----

def status_case(args, wd, sink_opts, extra="", spans=2000):
    sink = FaultSink(args, wd, "acme", sink_opts)
    col = Collector(args, wd, otlp_yaml("otlp/acme", sink, """
    retry: {initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 5s}""" + extra),
                    "[otlp/acme]")
    r = loadgen(args, col, None, "status", ["--spans", str(spans), "--block"])
    check(r["exported"] == str(spans), "%d spans accepted" % spans)
    check(wait_for(lambda: col.settled("otlp/acme"), 20), "every accepted span is counted")
    return col, sink


def case_partial_success(args, wd):
    col, sink = status_case(args, wd, ["--partial-reject", "7", "--reject-message", "too old"])
    try:
        calls = sink.calls()
        rej = 7 * len(calls)
        check(col.exp("otlp/acme", "rejected") == rej,
              "profilis_exporter_rejected_spans_total == 7 per call (%d calls)" % len(calls))
        check(col.exp("otlp/acme", "sent") == 2000 - rej and col.exp("otlp/acme", "failed") == rej,
              "rejected spans count as failed, the rest as sent")
        check(all(c["status"] == 0 for c in calls) and len(sink.ids()) == 2000,
              "partial success is final: not retried, the backend saw each span once")
        check("backend rejected 7 spans: too old" in col.text(), "the log quotes the backend's message")
    finally:
        finish(col, sink)


def case_exhausted_retry_info(args, wd):
    col, sink = status_case(args, wd, ["--fail-first", "2", "--fail-status", "8",
                                       "--retry-info-ms", "700"])
    try:
        calls = sink.calls()
        check([c["status"] for c in calls[:2]] == [8, 8] and calls[2]["status"] == 0,
              "two RESOURCE_EXHAUSTED answers, then success")
        gaps = [calls[i + 1]["time"] - calls[i]["time"] for i in range(2)]
        check(all(g >= 0.65 for g in gaps), "each retry waited the 700 ms RetryInfo asked for (%s)" %
              ["%.2f" % g for g in gaps])
        ids = sink.ids()
        check(col.exp("otlp/acme", "sent") == 2000 and col.exp("otlp/acme", "failed") == 0 and
              len(ids) == 2000 and len(set(ids)) == 2000, "all 2000 delivered, exactly once")
    finally:
        finish(col, sink)


def case_exhausted_no_retry_info(args, wd):
    col, sink = status_case(args, wd, ["--status", "8"])
    try:
        calls = sink.calls()
        sent_calls = sum(c["spans"] for c in calls)  # refused calls record 0 spans
        check(all(c["status"] == 8 for c in calls) and sent_calls == 0, "every call refused")
        check(col.exp("otlp/acme", "failed") == 2000 and col.exp("otlp/acme", "sent") == 0,
              "all 2000 counted failed")
        batches = (2000 + 511) // 512
        check(batches <= len(calls) <= 2 * batches,
              "not retried: one call per batch (%d calls for about %d batches)" % (len(calls), batches))
        check("otlp/acme: export failed permanently: RESOURCE_EXHAUSTED (8)" in col.text(),
              "the log says RESOURCE_EXHAUSTED, failed permanently")
    finally:
        finish(col, sink)


def case_unavailable(args, wd):
    col, sink = status_case(args, wd, ["--fail-first", "3"])
    try:
        calls = sink.calls()
        check([c["status"] for c in calls[:3]] == [14, 14, 14] and calls[3]["status"] == 0,
              "three UNAVAILABLE answers, then success")
        ids = sink.ids()
        check(col.exp("otlp/acme", "sent") == 2000 and col.exp("otlp/acme", "failed") == 0 and
              len(ids) == 2000 and len(set(ids)) == 2000, "retried: all 2000 delivered, exactly once")
    finally:
        finish(col, sink)


def case_garbage(args, wd):
    # (a) status OK whose body is no ExportTraceServiceResponse. The backend said OK, so the
    # collector counts the spans sent (retrying would duplicate what the backend took) and
    # warns that the response was malformed.
    ok_junk = FaultSink(args, wd, "junk", ["--garbage"])
    # (b) a peer answering its first 2 connections with bytes that are not HTTP/2: transport
    # errors, retried on a new connection, then delivered.
    not_h2 = FaultSink(args, wd, "noth2", ["--garbage-connections", "2"])
    # (c) a peer that never speaks HTTP/2: retries run out, the spans count failed, the log
    # says what the peer sent was not understood.
    never = FaultSink(args, wd, "never", ["--garbage-connections", "1000000"])
    retry = """
    retry: {initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: %s}"""
    col = Collector(args, wd, otlp_yaml("otlp/junk", ok_junk, retry % "10s") +
                    otlp_yaml("otlp/noth2", not_h2, retry % "10s") +
                    otlp_yaml("otlp/never", never, retry % "1s" + """
    breaker: {enabled: false}"""), "[otlp/junk, otlp/noth2, otlp/never]")
    try:
        loadgen(args, col, None, "garbage", ["--spans", "2000", "--block"])
        check(wait_for(lambda: col.settled("otlp/junk") and col.settled("otlp/noth2") and
                       col.settled("otlp/never"), 20),
              "every accepted span is counted")
        log = col.text()
        check("otlp/junk: malformed export response (11 bytes) ignored" in log,
              "malformed OK response: the log says so")
        check(col.exp("otlp/junk", "sent") == 2000 and len(ok_junk.ids()) == 2000,
              "malformed OK response: counted sent, as the backend took them (no resend)")
        ids = not_h2.ids()
        check(col.exp("otlp/noth2", "sent") == 2000 and len(ids) == 2000 and len(set(ids)) == 2000,
              "non-HTTP/2 answers: retried on a new connection, all delivered once")
        with open(not_h2.calls_path + ".stderr") as f:
            check(f.read().count("answered with garbage") == 2,
                  "the peer did answer 2 connections with garbage")
        check(col.exp("otlp/never", "failed") == 2000 and not never.spans(),
              "a peer that never speaks HTTP/2: all 2000 counted failed")
        bad = [l for l in log.splitlines() if "otlp/never: export failed, retries exhausted" in l]
        print("log:", bad[:1], flush=True)
        check(bad and "protocol error" in bad[0], "and the log says the peer broke the protocol")
    finally:
        finish(col, ok_junk, not_h2, never)


# ---- 5. connection resets ----

def case_conn_reset(args, wd):
    # The relay in front of each backend resets its first 3 connections after 3000 bytes from the
    # collector: past the HTTP/2 preface and headers, in the middle of a request's DATA.
    opts = ["--reset-after-bytes", "3000", "--resets", "3"]
    direct = FaultSink(args, wd, "direct", opts)   # retries inside the exporter
    queued = FaultSink(args, wd, "queued", opts)   # one attempt, then the durable queue
    col = Collector(args, wd, otlp_yaml("otlp/direct", direct, """
    retry: {initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 10s}""") +
                    otlp_yaml("otlp/queued", queued, """
    breaker: {failures: 10, open: 200ms}
    queue: {enabled: true, directory: "%s/q", fsync: false}""" % wd), "[otlp/direct, otlp/queued]")
    try:
        r = loadgen(args, col, None, "reset", ["--spans", "3000", "--attrs", "6", "--block"])
        check(r["exported"] == "3000", "3000 spans accepted")
        for s in (direct, queued):
            name = "otlp/" + s.tenant
            check(wait_for(lambda: col.settled(name) and col.m("profilis_queue_spans") == 0, 20),
                  "%s: every span counted" % name)
            with open(s.calls_path + ".stderr") as f:
                relay_log = f.read()
            resets = relay_log.count("reset after 3000 bytes")
            check(resets == 3, "%s: the backend side reset 3 connections mid-request" % name)
            ids = s.ids()
            check(col.exp(name, "sent") == 3000 and col.exp(name, "failed") == 0 and
                  len(ids) == 3000 and len(set(ids)) == 3000,
                  "%s: retried on a new connection, all 3000 delivered exactly once" % name)
        log = col.text()
        check("otlp/queued: export failed, retries exhausted" in log,
              "with a queue, each reset attempt is logged (then replayed from the queue)")
    finally:
        finish(col, direct, queued)


# ---- 6. clock jumps (FAKE: LD_PRELOAD shim) ----

def case_clock_jump(args, wd):
    """The wall clock the collector sees jumps +1 h 2 s after start and back 5 s after start
    (tests/integration/clockjump.c; the machine's clock is not touched). Timers, the breaker and
    rotation run on CLOCK_MONOTONIC, so: exports keep going, nothing is dropped, span timestamps
    are the clients' and stay as sent, rotation.max_age does not fire on the jump, and only log
    timestamps (and durable-queue record times) show it. The backend is down until 2.5 s: the
    backlog queued before the jump is replayed while the clock is 1 h ahead."""
    sink = FaultSink(args, wd, "acme", [], start=False)
    out = os.path.join(wd, "spans.jsonl")
    env = {"LD_PRELOAD": args.clockjump, "CLOCKJUMP_FORWARD_MS": "2000",
           "CLOCKJUMP_BACK_MS": "5000", "CLOCKJUMP_SECONDS": "3600"}
    t_start = time.time()
    col = Collector(args, wd, """  jsonl:
    path: %s
    flush_interval: 50ms
    batch: {size: 512, timeout: 50ms}
    rotation: {max_age: 30s}
""" % out + otlp_yaml("otlp/acme", sink, """
    breaker: {failures: 2, open: 300ms, open_max: 600ms}
    queue: {enabled: true, directory: "%s/q", fsync: false}""" % wd), "[jsonl, otlp/acme]", env=env,
                    top="log: {format: json}")
    try:
        g = loadgen(args, col, None, "clock", ["--duration", "7", "--rate", "1000", "--block"],
                    wait=False)
        for at in (2.5, 3.5, 6.0):  # SIGHUP: a log line before, during and after the +1 h
            time.sleep(max(0, t_start + at - time.time()))
            if at == 2.5:
                sink.start()
            else:
                col.proc.send_signal(signal.SIGHUP)
        g.communicate(timeout=60)
        t_end = time.time()
        acc = col.accepted()
        check(acc >= 5000, "spans accepted throughout the jumps (%d)" % acc)
        check(wait_for(lambda: col.settled("jsonl") and col.settled("otlp/acme") and
                       len(lines(out, False)) == acc and len(sink.spans()) >= acc, 20),
              "both exporters kept exporting")
        got = lines(out)
        check(col.exp("jsonl", "sent") == acc and len({s["span_id"] for s in got}) == acc,
              "jsonl: all %d accepted spans written once, nothing dropped" % acc)
        ids = sink.ids()
        check(col.exp("otlp/acme", "sent") == acc and len(ids) == acc and len(set(ids)) == acc,
              "otlp: all delivered once (the pre-jump backlog replayed from the durable queue)")
        lo, hi = (t_start - 1) * 1e9, (t_end + 1) * 1e9
        starts = [int(s["start_time_unix_nano"]) for s in got]
        check(all(lo <= t <= hi for t in starts),
              "span timestamps are the clients' (within the real test window, none shifted by 1 h)")
        check(not os.path.exists(out + ".1"), "rotation.max_age (30 s) did not fire on the +1 h jump")
        reloads = [json.loads(l)["ts"] for l in col.text().splitlines()
                   if l.startswith('{"ts"') and "reload:" in l]
        secs = [datetime.datetime.strptime(t[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=datetime.timezone.utc).timestamp() - t_start for t in reloads]
        print("reload log times, s after start:", ["%.0f" % x for x in secs], flush=True)
        check(len(secs) == 2 and 3590 < secs[0] < 3610 and -2 < secs[1] < 10,
              "the shim was active: the log stamped the reload in the jump 1 h ahead, the next one "
              "back at the true time")
        check(col.m("profilis_breaker_transitions_total", 'exporter="otlp/acme"', 'state="open"') >= 1
              and col.m("profilis_breaker_state", 'exporter="otlp/acme"', 'state="closed"') == 1,
              "the breaker opened while the backend was down and closed again across the jumps")
    finally:
        finish(col, sink)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--clockjump", default="")
    args = ap.parse_args()
    wd = tempfile.mkdtemp(prefix="profilis-faults-")
    ok = False
    try:
        globals()["case_" + args.case](args, wd)
        ok = True
    finally:
        Mount.unmount_all()
        if not ok:
            for p in sorted(os.listdir(wd)):
                if p.endswith(".log"):
                    print("---- %s (tail)" % p)
                    print(open(os.path.join(wd, p), errors="replace").read()[-4000:])
        shutil.rmtree(wd, ignore_errors=True)
    print("PASS", args.case)


if __name__ == "__main__":
    main()
