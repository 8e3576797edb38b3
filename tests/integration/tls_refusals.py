#!/usr/bin/python3
"""TLS refusals end to end: the SDK's OTLP/gRPC exporter (tests/integration/sdk_driver, configured
by OTEL_EXPORTER_OTLP_* like any application) against the collector's gRPC receiver, and Python's
ssl module against the collector's HTTP receiver, each facing what must be refused:

  expired        the server certificate's validity ended
  wrong_ca       the server certificate comes from a CA the client does not trust
  wrong_host     the certificate names collector.example, the client dials localhost
  no_client_cert the receiver asks for mutual TLS and the client presents no certificate

Certificates are made here with the openssl CLI. Each case must fail (nothing accepted: the
collector's JSONL output stays empty) with an error that says why, checked on the SDK's log
line and on the Python exception text. A good certificate is tried first against the same
collector so a refusal cannot come from something unrelated. Run with /usr/bin/python3.
"""
import argparse
import http.client
import os
import shutil
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collector_receivers import (CLIENT_EXT, LIVE, SERVER_EXT, Collector,  # noqa: E402
                                 TestFailure, check, issue_cert, make_ca)

def make_certs(d):
    """CA and rogue CA; server certificates valid, expired and for another name; a client one."""
    for ca in ("ca", "rogue"):
        make_ca(d, ca)
    other = "subjectAltName=DNS:collector.example\nextendedKeyUsage=serverAuth\n"
    for name, ext, days in (("server", SERVER_EXT, "2"), ("expired", SERVER_EXT, "-1"),
                            ("otherhost", other, "2"), ("client", CLIENT_EXT, "2")):
        issue_cert(d, name, "ca", ext, days)
    return lambda n: os.path.join(d, n)


# ---------------------------------------------------------------- the SDK side

def sdk_export(driver, port, f, host="127.0.0.1", ca="ca.pem", client=None):
    """Sends 2 spans through the SDK's OTLP exporter; returns (spans exported, stderr text)."""
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("OTEL_"):
            del env[k]
    env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://%s:%d" % (host, port),
                "OTEL_EXPORTER_OTLP_CERTIFICATE": f(ca),
                "OTEL_EXPORTER_OTLP_TIMEOUT": "5000",
                "OTEL_BSP_SCHEDULE_DELAY": "50",
                "OTEL_SERVICE_NAME": "tls-refusals"})
    if client:
        env["OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] = f(client + ".pem")
        env["OTEL_EXPORTER_OTLP_CLIENT_KEY"] = f(client + ".key")
    p = subprocess.run([driver], input="send 1 tls\nflush 8000\nstats\nshutdown 1000\n",
                       env=env, capture_output=True, text=True, timeout=60)
    exported = 0
    for line in p.stdout.splitlines():
        if '"exported"' in line:
            exported = int(line.split('"exported":')[1].split(",")[0].split("}")[0])
    return exported, p.stderr


def sdk_refused(driver, port, f, what, needles, **kw):
    exported, err = sdk_export(driver, port, f, **kw)
    lines = [l for l in err.splitlines() if "otlp" in l]
    hit = [l for l in lines if any(n in l for n in needles)]
    check(exported == 0 and hit, "SDK -> gRPC receiver, %s: refused, log says %r"
          % (what, (hit or lines or [err[-300:]])[0]))


# ---------------------------------------------------------------- the HTTP side

def https_post(port, f, host="127.0.0.1", ca="ca.pem", client=None):
    ctx = ssl.create_default_context(cafile=f(ca))
    if client:
        ctx.load_cert_chain(f(client + ".pem"), f(client + ".key"))
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=10)
    try:
        conn.request("POST", "/v1/traces", body=b"",
                     headers={"Content-Type": "application/x-protobuf"})
        return conn.getresponse().status
    finally:
        conn.close()


def http_refused(port, f, what, needles, **kw):
    try:
        st = https_post(port, f, **kw)
    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
        text = "%s: %s" % (type(e).__name__, e)
        check(any(n in text for n in needles), "Python ssl -> HTTP receiver, %s: refused (%s)"
              % (what, text))
        return
    raise TestFailure("%s: the HTTP receiver answered %d instead of failing the handshake"
                      % (what, st))


# ---------------------------------------------------------------- cases

def run(args, work):
    cdir = os.path.join(work, "certs")
    os.makedirs(cdir)
    f = make_certs(cdir)
    tls = lambda n: {"cert": f(n + ".pem"), "key": f(n + ".key")}  # noqa: E731

    # One collector with a good certificate and mutual TLS: the baseline, wrong CA, no client cert.
    mutual = dict(tls("server"), client_ca=f("ca.pem"))
    c = Collector(args.collector, work, "mtls", grpc_tls=mutual, http_tls=mutual)
    n, err = sdk_export(args.driver, c.grpc_port, f, client="client")
    check(n == 2, "SDK with a trusted client certificate: 2 spans exported (%d; %s)"
          % (n, err.strip()[-200:]))
    check(https_post(c.http_port, f, client="client") in (200, 400),
          "HTTPS with a trusted client certificate reaches the receiver")
    sdk_refused(args.driver, c.grpc_port, f, "server certificate from an untrusted CA",
                ("unable to get local issuer certificate", "self-signed certificate"),
                ca="rogue.pem", client="client")
    http_refused(c.http_port, f, "server certificate from an untrusted CA",
                 ("unable to get local issuer certificate", "self-signed certificate"),
                 ca="rogue.pem", client="client")
    sdk_refused(args.driver, c.grpc_port, f, "no client certificate under mTLS",
                ("requires a client certificate (mutual TLS) and none is configured",))
    # With TLS 1.3 the client finishes its side of the handshake before the server checks the
    # client certificate, so depending on timing the refusal shows as a handshake error, an EOF
    # or a connection closed before any response: every form means "no request got through",
    # which the JSONL check below confirms.
    http_refused(c.http_port, f, "no client certificate under mTLS",
                 ("CERTIFICATE_REQUIRED", "certificate required", "HANDSHAKE_FAILURE",
                  "handshake failure", "Connection reset by peer", "EOF occurred",
                  "closed connection without response"))
    c.stop()
    lines = open(c.jsonl).read().count("\n") if os.path.exists(c.jsonl) else 0
    check(lines == 2, "the collector wrote only the 2 spans of the trusted client (%d)" % lines)

    # An expired server certificate.
    c = Collector(args.collector, work, "expired", grpc_tls=tls("expired"), http_tls=tls("expired"))
    sdk_refused(args.driver, c.grpc_port, f, "expired server certificate",
                ("certificate has expired",))
    http_refused(c.http_port, f, "expired server certificate", ("certificate has expired",))
    c.stop()

    # A certificate for another name (dialled as localhost).
    c = Collector(args.collector, work, "otherhost", grpc_tls=tls("otherhost"),
                  http_tls=tls("otherhost"))
    sdk_refused(args.driver, c.grpc_port, f, "certificate for another host name",
                ("hostname mismatch",), host="localhost")
    http_refused(c.http_port, f, "certificate for another host name",
                 ("Hostname mismatch", "hostname mismatch"), host="localhost")
    c.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collector", required=True, help="the profilis-collector binary")
    ap.add_argument("--driver", required=True, help="the sdk_driver binary")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (debugging)")
    args = ap.parse_args()
    args.collector, args.driver = os.path.abspath(args.collector), os.path.abspath(args.driver)
    work = tempfile.mkdtemp(prefix="tls_refusals_")
    try:
        run(args, work)
        print("PASS", flush=True)
        return 0
    except Exception as e:  # a failed check or an unexpected error
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        for c in LIVE:
            if os.path.exists(getattr(c, "log_path", "")):
                print("---- %s log ----\n%s" % (c.dir, c.log_text()))
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
