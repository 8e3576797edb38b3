#!/usr/bin/env python3
"""Static checks of deploy/Dockerfile, since no test here can run docker.

Parses the Dockerfile's instructions and checks what a build and a read-only, non-root run need:
every COPY source exists, the build stage installs only packages scripts/deps.sh knows, every
runtime package exists in Debian 12 (apt-cache), every shared library the collector binary links
comes from a runtime package, the final stage runs as a non-root uid, has a HEALTHCHECK on /healthz
that really works (run against a live collector) and exposes 4317/4318/8888, and the image's
default config validates, listens on 0.0.0.0 and writes only below /var/lib/profilis.

usage: check_dockerfile.py REPO_ROOT COLLECTOR_BINARY
"""
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time

import yaml

WRITABLE = "/var/lib/profilis"
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def ok(msg):
    print("ok: " + msg)


def instructions(text):
    """Yields (line, KEYWORD, argument text) with continuations joined, comments dropped."""
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        kw, _, rest = buf.partition(" ")
        yield start, kw.upper(), rest.strip()
        buf = ""


def stages(text):
    """Splits the instructions into stages: list of dicts {name, base, ins: [(line, kw, arg)]}."""
    args, out = {}, []
    for line, kw, arg in instructions(text):
        if kw == "ARG" and not out:
            k, _, v = arg.partition("=")
            args[k] = v
            continue
        if kw == "FROM":
            words = arg.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(out))
            out.append({"name": name, "base": base, "ins": []})
            continue
        if not out:
            fail("line %d: %s before FROM" % (line, kw))
            continue
        out[-1]["ins"].append((line, kw, arg))
    return out


def apt_packages(stage):
    pkgs = []
    for _, kw, arg in stage["ins"]:
        if kw != "RUN":
            continue
        for cmd in re.split(r"&&|;", arg):
            words = shlex.split(cmd)
            if "apt-get" in words and "install" in words:
                pkgs += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def deps_sh_packages(root):
    text = open(os.path.join(root, "scripts/deps.sh")).read()
    m = re.search(r"PKGS=\((.*?)\n\)", text, re.S)
    return set(re.sub(r"#.*", "", m.group(1)).split()) if m else set()


def archive_versions(pkgs):
    """{package: candidate version} for those of pkgs that apt knows (one apt-cache call)."""
    r = subprocess.run(["apt-cache", "show", "--no-all-versions"] + list(pkgs),
                       capture_output=True, text=True)
    found = {}
    for stanza in r.stdout.split("\n\n"):
        name = re.search(r"^Package: (\S+)", stanza, re.M)
        ver = re.search(r"^Version: (\S+)", stanza, re.M)
        if name and ver:
            found.setdefault(name.group(1), ver.group(1))
    return found


def package_of(path):
    """The Debian package owning a file (tries the path as given and its real path)."""
    for p in (path, os.path.realpath(path), path.replace("/lib/", "/usr/lib/", 1)):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout:
            return r.stdout.split(":")[0].strip()
    return None


def needed_packages(binary):
    """Maps each DT_NEEDED library of binary to its package, through ldd's resolved paths."""
    dyn = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True).stdout
    needed = re.findall(r"Shared library: \[(.+?)\]", dyn)
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
        ["ldd", binary], capture_output=True, text=True).stdout, re.M))
    return {lib: package_of(paths[lib]) if lib in paths else None for lib in needed}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_healthcheck(script, addr):
    env = dict(os.environ, PROFILIS_HEALTH_ADDR=addr)
    return subprocess.run([script], env=env, capture_output=True, timeout=10).returncode


def check_healthcheck_live(root, binary, script):
    """The HEALTHCHECK script passes against a live collector and fails once it is gone."""
    with tempfile.TemporaryDirectory() as tmp:
        ports = [free_port() for _ in range(3)]
        admin = "127.0.0.1:%d" % ports[2]
        proc = subprocess.Popen([binary, "--data-dir", tmp,
                                 "--grpc-endpoint", "127.0.0.1:%d" % ports[0],
                                 "--http-endpoint", "127.0.0.1:%d" % ports[1],
                                 "--admin-endpoint", admin],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rc = 1
            deadline = time.time() + 10
            while time.time() < deadline and rc != 0:
                rc = run_healthcheck(script, admin)
                if rc != 0:
                    time.sleep(0.1)
            if rc == 0:
                ok("healthcheck script passes against a live collector")
            else:
                fail("healthcheck script fails against a live collector on %s" % admin)
        finally:
            proc.terminate()
            proc.wait(timeout=40)
        if run_healthcheck(script, admin) == 0:
            fail("healthcheck script passes with no collector listening")
        else:
            ok("healthcheck script fails with no collector listening")


def check_default_config(root, binary, rel):
    path = os.path.join(root, rel)
    r = subprocess.run([binary, "validate", "--config", path], capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        fail("%s does not validate:\n%s%s" % (rel, r.stdout, r.stderr))
    else:
        ok("%s validates" % rel)
    cfg = yaml.safe_load(open(path))
    otlp = cfg.get("receivers", {}).get("otlp", {})
    for name, ep in (("grpc", otlp.get("grpc", {}).get("endpoint")),
                     ("http", otlp.get("http", {}).get("endpoint")),
                     ("admin", cfg.get("admin", {}).get("endpoint"))):
        if not ep or not ep.startswith("0.0.0.0:"):
            fail("%s: %s endpoint %r does not listen on 0.0.0.0" % (rel, name, ep))
    for name, exp in (cfg.get("exporters") or {}).items():
        exp = exp or {}
        for key, val in (("path", exp.get("path")),
                         ("queue.directory", (exp.get("queue") or {}).get("directory"))):
            if name.split("/")[0] == "jsonl" and key == "path" and val is None:
                fail("%s: exporter %s has no path (the default ./profilis-data is relative)"
                     % (rel, name))
            elif val is not None and not str(val).startswith(WRITABLE + "/"):
                fail("%s: exporter %s writes %s=%s outside %s" % (rel, name, key, val, WRITABLE))


def main():
    root, binary = sys.argv[1], os.path.abspath(sys.argv[2])
    df = os.path.join(root, "deploy/Dockerfile")
    st = stages(open(df).read())
    if len(st) < 2:
        fail("expected a multi-stage build, found %d stage(s)" % len(st))
        return
    build, final = st[0], st[-1]
    for s in st:
        if s["base"] != "debian:12-slim":
            fail("stage %s is based on %r, not debian:12-slim" % (s["name"], s["base"]))
    ok("%d stages on debian:12-slim" % len(st))

    # COPY sources
    names = {s["name"] for s in st}
    for s in st:
        for line, kw, arg in s["ins"]:
            if kw not in ("COPY", "ADD"):
                continue
            words = shlex.split(arg)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            srcs = paths[:-1]
            frm = [f.split("=", 1)[1] for f in flags if f.startswith("--from=")]
            if frm:
                if frm[0] not in names:
                    fail("line %d: COPY --from=%s names no stage" % (line, frm[0]))
                continue
            for src in srcs:
                if not os.path.exists(os.path.join(root, src)):
                    fail("line %d: COPY source %s does not exist" % (line, src))
    ok("COPY sources checked")

    # packages
    known = deps_sh_packages(root)
    for p in apt_packages(build):
        if p not in known:
            fail("build stage installs %s, which scripts/deps.sh does not list" % p)
    runtime = apt_packages(final)
    if not runtime:
        fail("the runtime stage installs no packages")
    versions = archive_versions(runtime + ["libc6"])
    if "libc6" not in versions:
        fail("apt-cache knows no packages: run `apt-get update` first")
    else:
        for p in runtime:
            v = versions.get(p)
            if v is None:
                fail("runtime package %s does not exist in this Debian's archive" % p)
            else:
                print("   %s %s" % (p, v))
        ok("%d runtime packages exist" % len(runtime))
    base = {"libc6", "libgcc-s1", "libstdc++6"}  # in every Debian image
    for lib, pkg in needed_packages(binary).items():
        if pkg is None:
            fail("cannot tell which package provides %s (linked by the collector)" % lib)
        elif pkg not in runtime and pkg not in base:
            fail("the collector links %s from %s, which the runtime stage does not install"
                 % (lib, pkg))
    ok("every linked library comes from a runtime package")

    # final stage: user, healthcheck, ports, entrypoint
    kws = {}
    for line, kw, arg in final["ins"]:
        kws.setdefault(kw, []).append(arg)
    user = (kws.get("USER") or [""])[-1].split(":")[0]
    if user in ("", "0", "root"):
        fail("the final stage runs as root (USER %r)" % user)
    elif user != "10001":
        fail("USER is %s, expected uid 10001" % user)
    else:
        ok("USER 10001")
    runs = " ".join(kws.get("RUN", []))
    if "--uid 10001" not in runs:
        fail("no user with uid 10001 is created")
    if ("-o 10001" not in runs and "chown" not in runs) or WRITABLE not in runs:
        fail("%s is not created writable by uid 10001" % WRITABLE)
    if WRITABLE not in " ".join(kws.get("VOLUME", [])):
        fail("%s is not a VOLUME" % WRITABLE)
    hc = kws.get("HEALTHCHECK", [])
    if not hc:
        fail("no HEALTHCHECK")
    else:
        m = re.search(r'CMD \["([^"]+)"', hc[-1])
        script = None
        for _, kw, arg in final["ins"]:
            if kw == "COPY" and m and arg.split()[-1] == m.group(1):
                script = os.path.join(root, arg.split()[-2])
        if not script or not os.access(script, os.X_OK):
            fail("HEALTHCHECK command is not an executable file COPYed into the image")
        elif "/healthz" not in open(script).read():
            fail("HEALTHCHECK script does not query /healthz")
        else:
            ok("HEALTHCHECK %s" % m.group(1))
            check_healthcheck_live(root, binary, script)
    ports = set(" ".join(kws.get("EXPOSE", [])).split())
    if not {"4317", "4318", "8888"} <= ports:
        fail("EXPOSE %s misses one of 4317 4318 8888" % sorted(ports))
    ep = " ".join(kws.get("ENTRYPOINT", []) + kws.get("CMD", []))
    m = re.search(r'"--config", "([^"]+)"', ep)
    if not m:
        fail("the image does not start the collector with --config")
    else:
        target = m.group(1)
        src = None
        for _, kw, arg in final["ins"]:
            if kw == "COPY" and arg.split()[-1] == target:
                src = arg.split()[-2]
        if not src:
            fail("the --config file %s is not COPYed into the image" % target)
        else:
            check_default_config(root, binary, src)


if __name__ == "__main__":
    main()
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("Dockerfile checks passed")
