#!/usr/bin/python3
"""The loadbalancing exporter end to end: the collector (route [loadbalancing]) in front of three
Python grpcio sinks standing for collector replicas, fed by profilis-loadgen (3-span traces).
  1. static list of 3: every span exactly once, every trace on one sink, the sink the hash model
     below picks, load spread evenly;
  2. one sink stopped: its traces' spans are counted as failed, the others land as before and
     nothing is sent twice;
  3. a collector listing the 2 survivors: traces owned by a survivor stay on it, the removed
     sink's traces spread over both;
  4. resolver.hostname localhost (resolved with getaddrinfo) finds the sink on 127.0.0.1;
  5. two tiers of real collectors: a front collector over three collector replicas, each trace
     whole in the JSONL file of the replica the hash picks.
The model is the documented hash of collector/pc_loadbalance.h, written again here, so the test
also checks that the exporter routes by exactly that function.
Usage: loadbalance.py --bin BUILD/bin --src SOURCE_DIR"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_e2e import (PY, Collector, check, free_port, read_jsonl, wait_for,  # noqa: E402
                           wait_port)

M64 = (1 << 64) - 1
SPANS = 3000  # per phase: 1000 traces of 3 spans


def mix(x):
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def addr_key(addr):
    h = 0xCBF29CE484222325
    for b in addr.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def owner(trace_hex, addrs):
    tid = bytes.fromhex(trace_hex)
    tk = mix(int.from_bytes(tid[:8], "little") ^ mix(int.from_bytes(tid[8:], "little")))
    return max(addrs, key=lambda a: (mix(tk ^ addr_key(a)), -addr_key(a)))


class Sink:
    def __init__(self, args, wd, name):
        self.port = free_port()
        self.addr = "127.0.0.1:%d" % self.port
        self.out = os.path.join(wd, name + ".jsonl")
        self.proc = subprocess.Popen([PY, os.path.join(args.src, "tests/integration/otlp_sink.py"),
                                      "--port", str(self.port), "--out", self.out, "--proto-dir",
                                      os.path.join(args.src, "proto")])
        wait_port(self.port, self.proc)

    def spans(self, service):
        got = read_jsonl(self.out)
        return [s for s in got if s["resource"].get("service.name") == service]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def lb_exporter(resolver):
    return """  loadbalancing:
    resolver: %s
    tls: {insecure: true}
    timeout: 5s
    retry: {initial_interval: 50ms, max_interval: 200ms, max_elapsed_time: 1s}
    batch: {size: 512, timeout: 50ms}
""" % resolver


def static(sinks):
    return "{static: [%s]}" % ", ".join('"%s"' % s.addr for s in sinks)


def send(args, col, service):
    lg = subprocess.run([os.path.join(args.bin, "profilis-loadgen"), "--endpoint",
                         "127.0.0.1:%d" % col.grpc, "--spans", str(SPANS), "--depth", "3",
                         "--service", service, "--block"],
                        capture_output=True, text=True, timeout=60)
    last = (lg.stdout.strip().splitlines() or [""])[-1]
    check(lg.returncode == 0 and last.startswith("sent=%d exported=%d" % (SPANS, SPANS)),
          "loadgen sent %d spans as %s: %s" % (SPANS, service, last))


def received(sinks, service, expect):
    """Waits until the sinks hold `expect` spans of service; returns {addr: [spans]}."""
    wait_for(lambda: sum(len(s.spans(service)) for s in sinks) >= expect, 30)
    return {s.addr: s.spans(service) for s in sinks}


def placement(got):
    """{trace id: set of sink addrs}, and checks that no span arrived twice."""
    where, ids = {}, []
    for addr, spans in got.items():
        for s in spans:
            where.setdefault(s["trace_id"], set()).add(addr)
            ids.append(s["span_id"])
    return where, len(ids) == len(set(ids))


def failed_spans(col):
    _st, body = col.get("/metrics")
    m = re.search(r'^profilis_exporter_failed_spans_total\{exporter="loadbalancing"[^}]*\} (\d+)',
                  body, re.M)
    return int(m.group(1)) if m else 0


def phase_static(args, wd, sinks):
    col = Collector(args, wd, lb_exporter(static(sinks)), "[loadbalancing]")
    try:
        addrs = [s.addr for s in sinks]
        send(args, col, "lb-three")
        got = received(sinks, "lb-three", SPANS)
        where, once = placement(got)
        check(sum(len(v) for v in got.values()) == SPANS and once, "every span exactly once")
        check(len(where) == SPANS // 3 and all(len(v) == 1 for v in where.values()),
              "each of the %d traces on exactly one sink" % len(where))
        check(all(next(iter(v)) == owner(t, addrs) for t, v in where.items()),
              "each trace on the sink the rendezvous hash picks")
        per = [sum(1 for v in where.values() if a in v) for a in addrs]
        check(all(len(where) * 0.25 <= n <= len(where) * 0.42 for n in per),
              "load spread evenly: %s traces per sink" % per)

        sinks[2].stop()
        send(args, col, "lb-one-down")
        live = sinks[:2]
        check(wait_for(lambda: sum(len(s.spans("lb-one-down")) for s in live) + failed_spans(col)
                       >= SPANS, 30), "every span delivered or counted as failed")
        failed = failed_spans(col)
        got = {s.addr: s.spans("lb-one-down") for s in live}
        where, once = placement(got)
        delivered = sum(len(v) for v in got.values())
        check(once and delivered + failed == SPANS,
              "live sinks got %d spans, once each; %d counted as failed" % (delivered, failed))
        check(all(len(v) == 1 and next(iter(v)) == owner(t, addrs) for t, v in where.items()),
              "the live sinks' traces stayed where the 3-sink hash puts them")
        check(failed % 3 == 0 and 0.2 <= failed / SPANS <= 0.47,
              "the dead sink's traces failed whole: %d spans, about a third" % failed)
    finally:
        check(col.stop() == 0, "collector exited 0 on SIGTERM")


def phase_two_left(args, wd, sinks):
    live = sinks[:2]
    col = Collector(args, wd, lb_exporter(static(live)), "[loadbalancing]")
    try:
        three, two = [s.addr for s in sinks], [s.addr for s in live]
        send(args, col, "lb-two")
        got = received(live, "lb-two", SPANS)
        where, once = placement(got)
        check(sum(len(v) for v in got.values()) == SPANS and once, "every span exactly once")
        check(all(len(v) == 1 and next(iter(v)) == owner(t, two) for t, v in where.items()),
              "each trace on the sink the 2-sink hash picks")
        stayed = [t for t in where if owner(t, three) in two]
        check(all(next(iter(where[t])) == owner(t, three) for t in stayed),
              "%d traces of the surviving sinks did not move" % len(stayed))
        moved = [next(iter(where[t])) for t in where if owner(t, three) == sinks[2].addr]
        spread = [moved.count(a) for a in two]
        check(len(moved) > 0 and all(n > len(moved) * 0.3 for n in spread),
              "the removed sink's %d traces spread over both survivors: %s" % (len(moved), spread))
    finally:
        check(col.stop() == 0, "collector exited 0 on SIGTERM")


def phase_dns(args, wd, sinks):
    family = {ai[0] for ai in socket.getaddrinfo("localhost", 1, type=socket.SOCK_STREAM)}
    if family != {socket.AF_INET}:
        print("skip: localhost resolves to more than 127.0.0.1 here (%s)" % family)
        return
    sink = sinks[0]
    col = Collector(args, wd, lb_exporter("{hostname: localhost, port: %d, interval: 1s}"
                                          % sink.port), "[loadbalancing]")
    try:
        send(args, col, "lb-dns")
        got = received([sink], "lb-dns", SPANS)
        where, once = placement(got)
        check(len(got[sink.addr]) == SPANS and once, "localhost resolved: every span reached the "
              "sink on 127.0.0.1 once")
    finally:
        check(col.stop() == 0, "collector exited 0 on SIGTERM")


def phase_collector_replicas(args, wd):
    """Two tiers of real collectors: a front collector's loadbalancing exporter over three
    collector replicas (each writing JSONL): every trace lands whole on the replica the hash
    picks, so tail rules on the replicas see whole traces."""
    replicas = []
    for n in ("r1", "r2", "r3"):
        d = os.path.join(wd, n)
        os.mkdir(d)
        replicas.append(Collector(args, d))
    front_dir = os.path.join(wd, "front")
    os.mkdir(front_dir)
    addrs = ["127.0.0.1:%d" % r.grpc for r in replicas]
    front = Collector(args, front_dir,
                      lb_exporter("{static: [%s]}" % ", ".join('"%s"' % a for a in addrs)),
                      "[loadbalancing]")
    try:
        send(args, front, "lb-replicas")
        check(wait_for(lambda: sum(len(r.spans()) for r in replicas) >= SPANS, 30),
              "all %d spans reached the replicas' JSONL files" % SPANS)
        got = {a: [s for s in r.spans() if s["resource"].get("service.name") == "lb-replicas"]
               for a, r in zip(addrs, replicas)}
        where, once = placement(got)
        check(sum(len(v) for v in got.values()) == SPANS and once, "every span exactly once")
        check(len(where) == SPANS // 3 and
              all(len(v) == 1 and next(iter(v)) == owner(t, addrs) for t, v in where.items()),
              "each of the %d traces whole on the one replica the hash picks" % len(where))
        per = [sum(1 for v in where.values() if a in v) for a in addrs]
        check(min(per) > 0, "every replica got traces: %s" % per)
    finally:
        check(front.stop() == 0, "front collector exited 0 on SIGTERM")
        for r in replicas:
            check(r.stop() == 0, "replica exited 0 on SIGTERM")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--src", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as wd:
        sinks = []
        try:
            sinks = [Sink(args, wd, n) for n in ("a", "b", "c")]
            phase_static(args, wd, sinks)
            phase_two_left(args, wd, sinks)
            phase_dns(args, wd, sinks)
            phase_collector_replicas(args, wd)
        except SystemExit:
            log = os.path.join(wd, "collector.log")
            if os.path.exists(log):
                print(open(log).read()[-3000:])
            raise
        finally:
            for s in sinks:
                s.stop()
    print("PASS loadbalance")


if __name__ == "__main__":
    main()
