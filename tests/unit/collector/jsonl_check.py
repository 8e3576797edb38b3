#!/usr/bin/python3
"""Checks a JSONL file written by the collector's jsonl exporter against expectations.

usage: jsonl_check.py FILE EXPECTED [--otlp PROTO_DIR]

EXPECTED is a JSON array with one element per line of FILE. Each line must parse as strict
JSON and contain the element: objects match when every expected key is present with a matching
value (extra keys are allowed), lists must have the same length and match element by element,
everything else must be equal. With --otlp every line must also parse as an
ExportTraceServiceRequest with protobuf's own JSON parser, which refuses unknown field names and
wrong value types (ids are checked through the plain JSON: OTLP writes them as hex). Exits 0 when
everything matches, else prints the first difference and exits 1.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile


def match(want, got, path):
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return "%s: want an object, got %r" % (path, got)
        for k, v in want.items():
            if k not in got:
                return "%s.%s: missing (keys: %s)" % (path, k, sorted(got))
            err = match(v, got[k], path + "." + k)
            if err:
                return err
        return None
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return "%s: want %d elements, got %r" % (path, len(want), got)
        for i, (w, g) in enumerate(zip(want, got)):
            err = match(w, g, "%s[%d]" % (path, i))
            if err:
                return err
        return None
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        # JSON does not tell 2 from 2.0: compare numbers by value, never against booleans.
        if isinstance(got, bool) or not isinstance(got, (int, float)) or got != want:
            return "%s: want %r, got %r" % (path, want, got)
        return None
    if want != got or type(want) is not type(got):
        return "%s: want %r, got %r" % (path, want, got)
    return None


def no_constants(name):
    raise ValueError("bare %s is not JSON" % name)


def otlp_parser(proto_dir):
    out = tempfile.mkdtemp(prefix="jsonl_check_")
    files = sorted(os.path.relpath(p, proto_dir)
                   for p in glob.glob(os.path.join(proto_dir, "**", "*.proto"), recursive=True))
    subprocess.run(["protoc", "--python_out=" + out, "-I", proto_dir] + files, check=True)
    for root, _dirs, _files in os.walk(out):
        open(os.path.join(root, "__init__.py"), "a").close()
    sys.path.insert(0, out)
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb

    def parse(line):
        json_format.Parse(line, pb.ExportTraceServiceRequest())

    return parse


def main():
    args = sys.argv[1:]
    parse = None
    if "--otlp" in args:
        i = args.index("--otlp")
        parse = otlp_parser(os.path.abspath(args[i + 1]))
        del args[i:i + 2]
    path, expected = args
    with open(expected, encoding="utf-8") as f:
        want = json.load(f)
    with open(path, "rb") as f:
        raw = f.read()
    if raw and not raw.endswith(b"\n"):
        print("the file does not end with a new line")
        return 1
    lines = raw.decode("utf-8").splitlines()
    if len(lines) != len(want):
        print("want %d lines, got %d" % (len(want), len(lines)))
        return 1
    for n, (w, line) in enumerate(zip(want, lines)):
        try:
            got = json.loads(line, parse_constant=no_constants)
        except ValueError as exc:
            print("line %d is not JSON: %s" % (n + 1, exc))
            return 1
        err = match(w, got, "line%d" % (n + 1))
        if err:
            print(err)
            return 1
        if parse:
            try:
                parse(line)
            except Exception as exc:  # json_format.ParseError and friends
                print("line %d is not OTLP/JSON: %s" % (n + 1, exc))
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
