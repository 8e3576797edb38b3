#!/usr/bin/env python3
"""Chart test: renders helm/profilis-collector with tests/helm/render (Go text/template + sprig,
Helm's engine) for several values files and checks what Kubernetes and the collector need.

For each case: the merged values pass values.schema.json; every document parses as YAML and has
apiVersion, kind and a DNS-1123 metadata.name; each kind's required spec holds together (selectors
match the pod labels, containers have images, probes hit /healthz and /readyz on a declared port,
Services expose 4317/4318/8888 with target ports the pods declare, the HPA/PDB/ServiceMonitor/
NetworkPolicy point at objects that exist, volume mounts name declared volumes, the pod runs
non-root with a read-only root filesystem); limits.memory_limit is memoryLimitPercent of the
container limit; the collector config in the ConfigMap passes `profilis-collector validate` with
the Secret's tokens written to files. Also: values.yaml comments every key, a config change changes
the checksum annotation, bad values make the render fail, and deploy/k8s/ is what
scripts/gen-k8s.sh generates now.

usage: check.py --render BIN --collector BIN --src REPO [--case NAME]...
"""
import argparse
import base64
import filecmp
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

try:
    import jsonschema
except ImportError:  # scripts/deps.sh installs python3-jsonschema
    jsonschema = None

CHART = "helm/profilis-collector"
CASES = {
    "default": [],
    "tenants": ["tests/helm/values-tenants.yaml"],
    "daemonset": ["tests/helm/values-daemonset.yaml"],
}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")

failures = []


def fail(case, msg):
    failures.append("%s: %s" % (case, msg))
    print("FAIL [%s] %s" % (case, msg))


def render(args, files, out, extra=()):
    cmd = [args.render, "-chart", os.path.join(args.src, CHART), "-name", "profilis-collector",
           "-namespace", "observability", "-out", out, "-values-out",
           os.path.join(out, "values.json")] + list(extra)
    for f in files:
        cmd += ["-f", os.path.join(args.src, f) if not os.path.isabs(f) else f]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def load_docs(out):
    docs = []
    for name in sorted(os.listdir(out)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(out, name)) as f:
            for d in yaml.safe_load_all(f):
                if d is not None:
                    docs.append((name, d))
    return docs


def subset(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def check_meta(case, src, d):
    for k in ("apiVersion", "kind", "metadata"):
        if k not in d:
            fail(case, "%s: document without %s" % (src, k))
            return False
    name = d["metadata"].get("name", "")
    if not name or len(name) > 63 or not DNS1123.match(name):
        fail(case, "%s: %s name %r is not a DNS-1123 label" % (src, d["kind"], name))
    for k, v in (d["metadata"].get("labels") or {}).items():
        if not isinstance(v, str) or len(v) > 63:
            fail(case, "%s: label %s=%r is not a string of <= 63 characters" % (src, k, v))
    return True


def check_pod(case, kind, w, values):
    """Pod template of a workload: returns (pod labels, container port names)."""
    spec = w.get("spec", {})
    tmpl = spec.get("template", {})
    labels = tmpl.get("metadata", {}).get("labels", {})
    sel = spec.get("selector", {}).get("matchLabels", {})
    if not subset(sel, labels):
        fail(case, "%s: selector %s does not match the pod labels %s" % (kind, sel, labels))
    if not tmpl.get("metadata", {}).get("annotations", {}).get("checksum/config"):
        fail(case, "%s: no checksum/config annotation" % kind)
    pod = tmpl.get("spec", {})
    containers = pod.get("containers") or []
    if not containers:
        fail(case, "%s: no containers" % kind)
        return labels, set()
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot") or psc.get("runAsUser", 0) == 0:
        fail(case, "%s: pod is not forced to run as non-root" % kind)
    volumes = {v["name"] for v in pod.get("volumes") or []}
    volumes |= {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates") or []}
    ports = set()
    for c in containers:
        if not c.get("name") or not c.get("image"):
            fail(case, "%s: container without name or image" % kind)
        for p in c.get("ports") or []:
            if len(p.get("name", "")) > 15 or not 0 < p.get("containerPort", 0) < 65536:
                fail(case, "%s: bad container port %s" % (kind, p))
            ports.add(p.get("name"))
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            g = (c.get(probe) or {}).get("httpGet") or {}
            if g.get("path") != path or g.get("port") not in ports:
                fail(case, "%s: %s is not GET %s on a declared port (%s)" % (kind, probe, path, g))
        sc = c.get("securityContext", {})
        if not sc.get("readOnlyRootFilesystem") or "ALL" not in sc.get(
                "capabilities", {}).get("drop", []) or sc.get("allowPrivilegeEscalation", True):
            fail(case, "%s: container security context is not read-only/no-caps: %s" % (kind, sc))
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
        for path, name in mounts.items():
            if name not in volumes:
                fail(case, "%s: mount %s names undeclared volume %s" % (kind, path, name))
        if mounts.get("/var/lib/profilis") is None:
            fail(case, "%s: /var/lib/profilis (the only writable path) is not a volume" % kind)
        lim = c.get("resources", {}).get("limits", {})
        if not lim.get("memory"):
            fail(case, "%s: no memory limit" % kind)
    if values.get("tenants") and "tokens" not in volumes:
        fail(case, "%s: tenants configured but no tokens volume" % kind)
    return labels, ports


def quantity_bytes(q):
    m = re.match(r"^([0-9.]+)([KMGT]i?|k)?$", str(q))
    mult = {None: 1, "k": 1000, "K": 1000, "M": 10**6, "G": 10**9, "T": 10**12,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[m.group(2)]
    return int(float(m.group(1)) * mult)


def check_docs(case, docs, values):
    by_kind = {}
    for src, d in docs:
        if check_meta(case, src, d):
            by_kind.setdefault(d["kind"], []).append(d)
            if d["metadata"].get("namespace") != "observability":
                fail(case, "%s %s: namespace %r" % (d["kind"], d["metadata"]["name"],
                                                      d["metadata"].get("namespace")))
    workloads = [d for k in WORKLOADS for d in by_kind.get(k, [])]
    mode = values["mode"]
    want = {"deployment": "Deployment", "daemonset": "DaemonSet", "statefulset": "StatefulSet"}[mode]
    if [w["kind"] for w in workloads] != [want]:
        fail(case, "mode %s rendered workloads %s" % (mode, [w["kind"] for w in workloads]))
        return None
    w = workloads[0]
    labels, ports = check_pod(case, want, w, values)
    pod = w["spec"]["template"]["spec"]
    names = {(d["kind"], d["metadata"]["name"]) for _, d in docs}

    if want == "StatefulSet":
        svc = w["spec"].get("serviceName")
        heads = [s for s in by_kind.get("Service", []) if s["metadata"]["name"] == svc]
        if not heads or heads[0]["spec"].get("clusterIP") != "None":
            fail(case, "StatefulSet serviceName %r is not a headless Service" % svc)
        vct = w["spec"].get("volumeClaimTemplates") or []
        if values["durableQueue"]["enabled"]:
            if [c["metadata"]["name"] for c in vct] != ["data"] or not vct[0]["spec"].get(
                    "resources", {}).get("requests", {}).get("storage"):
                fail(case, "durable queue on, but no 'data' volumeClaimTemplate with storage")
            if any(v["name"] == "data" for v in pod.get("volumes", [])):
                fail(case, "'data' is both a pod volume and a claim template")
    if want in ("Deployment", "StatefulSet") and not values["autoscaling"]["enabled"]:
        if w["spec"].get("replicas") != values["replicaCount"]:
            fail(case, "replicas %s != replicaCount" % w["spec"].get("replicas"))

    sa = pod.get("serviceAccountName")
    if values["serviceAccount"]["create"] and ("ServiceAccount", sa) not in names:
        fail(case, "serviceAccountName %s has no ServiceAccount" % sa)
    for v in pod.get("volumes", []):
        if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
            fail(case, "volume %s: no ConfigMap %s" % (v["name"], v["configMap"]["name"]))
        if "secret" in v and ("Secret", v["secret"]["secretName"]) not in names \
                and v["secret"]["secretName"] != values.get("existingSecret"):
            fail(case, "volume %s: no Secret %s" % (v["name"], v["secret"]["secretName"]))

    services = by_kind.get("Service", [])
    if not services:
        fail(case, "no Service")
    main_ports = set()
    for s in services:
        sp = s.get("spec", {})
        if not subset(sp.get("selector"), labels):
            fail(case, "Service %s selects %s, not the pods" % (s["metadata"]["name"],
                                                                sp.get("selector")))
        if not sp.get("ports"):
            fail(case, "Service %s has no ports" % s["metadata"]["name"])
        for p in sp.get("ports", []):
            if not 0 < p.get("port", 0) < 65536 or p.get("targetPort") not in ports:
                fail(case, "Service %s port %s targets an undeclared port" % (
                    s["metadata"]["name"], p))
            if sp.get("clusterIP") != "None":
                main_ports.add(p["port"])
    vp = values["ports"]
    if {vp["otlpGrpc"], vp["otlpHttp"], vp["admin"]} - main_ports:
        fail(case, "the Service misses one of the ports %s (has %s)" % (vp, main_ports))

    for h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != (want, w["metadata"]["name"]) or not h["spec"].get(
                "metrics") or h["spec"]["minReplicas"] > h["spec"]["maxReplicas"]:
            fail(case, "HPA does not target the workload sensibly: %s" % h["spec"])
        if "replicas" in w["spec"]:
            fail(case, "HPA on, but the workload also fixes replicas")
    if values["autoscaling"]["enabled"] and mode != "daemonset" \
            and not by_kind.get("HorizontalPodAutoscaler"):
        fail(case, "autoscaling on but no HPA")
    for p in by_kind.get("PodDisruptionBudget", []):
        if not subset(p["spec"].get("selector", {}).get("matchLabels"), labels) or (
                "minAvailable" in p["spec"]) == ("maxUnavailable" in p["spec"]):
            fail(case, "PDB does not select the pods with one of minAvailable/maxUnavailable")
    for m in by_kind.get("ServiceMonitor", []):
        sport = {p["name"] for s in services for p in s["spec"]["ports"]}
        for e in m["spec"].get("endpoints", []):
            if e.get("port") not in sport or e.get("path") != "/metrics":
                fail(case, "ServiceMonitor endpoint %s is not a Service port's /metrics" % e)
    for n in by_kind.get("NetworkPolicy", []):
        if not subset(n["spec"].get("podSelector", {}).get("matchLabels"), labels):
            fail(case, "NetworkPolicy does not select the pods")
        opened = {p["port"] for r in n["spec"].get("ingress", []) for p in r.get("ports", [])}
        if {vp["otlpGrpc"], vp["otlpHttp"], vp["admin"]} - opened:
            fail(case, "NetworkPolicy closes a collector port: opens %s" % opened)
    for k, flag in (("ServiceMonitor", "serviceMonitor"), ("NetworkPolicy", "networkPolicy")):
        if bool(by_kind.get(k)) != bool(values[flag]["enabled"]):
            fail(case, "%s rendered=%s but %s.enabled=%s" % (k, bool(by_kind.get(k)), flag,
                                                              values[flag]["enabled"]))

    cms = by_kind.get("ConfigMap", [])
    if len(cms) != 1 or "collector.yaml" not in cms[0].get("data", {}):
        fail(case, "expected one ConfigMap with collector.yaml")
        return None
    cfg_text = cms[0]["data"]["collector.yaml"]
    cfg = yaml.safe_load(cfg_text)
    mem = values["resources"].get("limits", {}).get("memory")
    user_limit = (values.get("config") or {}).get("limits", {}).get("memory_limit")
    if mem and not user_limit:
        want_mib = quantity_bytes(mem) * values["memoryLimitPercent"] // 100 // 2**20
        if cfg["limits"]["memory_limit"] != "%dMiB" % want_mib:
            fail(case, "limits.memory_limit %s, want %d%% of %s = %dMiB" % (
                cfg["limits"]["memory_limit"], values["memoryLimitPercent"], mem, want_mib))
    for key in ("grpc", "http"):
        ep = cfg["receivers"]["otlp"][key]["endpoint"]
        if not ep.startswith("0.0.0.0:"):
            fail(case, "receiver %s listens on %s, not every interface" % (key, ep))
    if cfg["admin"]["endpoint"] != "0.0.0.0:%d" % vp["admin"]:
        fail(case, "admin endpoint %s is not reachable by the probes" % cfg["admin"]["endpoint"])
    if "tokens" in cfg_text and any(t.get("tokens") for t in cfg.get("tenants", [])):
        fail(case, "tokens are written into the ConfigMap")
    secrets = {}
    for s in by_kind.get("Secret", []):
        for k, v in (s.get("data") or {}).items():
            secrets[k] = base64.b64decode(v).decode()
    for t in values.get("tenants") or []:
        if t.get("tokens") and not values.get("existingSecret"):
            if secrets.get(t["id"], "").split() != t["tokens"]:
                fail(case, "Secret does not hold tenant %s's tokens" % t["id"])
    return cfg_text, cfg, secrets


def check_config(case, args, cfg_text, cfg, secrets, tmp):
    """Runs `profilis-collector validate` on the rendered config, token files made real."""
    tokdir = os.path.join(tmp, "tokens")
    os.makedirs(tokdir, exist_ok=True)
    for t in cfg.get("tenants") or []:
        if t.get("token_file"):
            with open(os.path.join(tokdir, t["id"]), "w") as f:
                f.write(secrets.get(t["id"], "token-of-%s\n" % t["id"]))
    text = cfg_text.replace("/etc/profilis/tokens/", tokdir + "/")
    path = os.path.join(tmp, "collector.yaml")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([args.collector, "validate", "--config", path], capture_output=True,
                       text=True, timeout=30)
    if r.returncode == 0:
        print("ok [%s] rendered collector config validates: %s" % (case, r.stdout.strip()))
        return
    errors = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
    fail(case, "rendered collector config does not validate:\n  " + "\n  ".join(errors)
         + "\n--- config ---\n" + text)


def check_values_comments(args):
    """Every key of values.yaml has a comment on its line or in the lines just above."""
    lines = open(os.path.join(args.src, CHART, "values.yaml")).read().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        if "#" in line:
            continue
        j = i - 1
        if j >= 0 and lines[j].strip().startswith("#"):
            continue
        fail("values.yaml", "line %d: key %s has no comment" % (i + 1, m.group(2)))


def run_case(args, case, files, schema):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out")
        os.makedirs(out)
        r = render(args, files, out)
        if r.returncode != 0:
            fail(case, "render failed: " + r.stderr)
            return
        values = json.load(open(os.path.join(out, "values.json")))
        if schema is not None:
            try:
                jsonschema.validate(values, schema)
            except jsonschema.ValidationError as e:
                fail(case, "values do not match values.schema.json: %s" % e.message)
        docs = load_docs(out)
        kinds = sorted("%s/%s" % (d["kind"], d["metadata"]["name"]) for _, d in docs)
        print("ok [%s] rendered %d documents: %s" % (case, len(docs), " ".join(kinds)))
        if not os.path.exists(os.path.join(out, "NOTES.txt")):
            fail(case, "NOTES.txt rendered nothing")
        res = check_docs(case, docs, values)
        if res:
            check_config(case, args, *res, tmp=tmp)


def checksum_of(args, files, tmp):
    out = tempfile.mkdtemp(dir=tmp)
    if render(args, files, out).returncode != 0:
        return None
    for _, d in load_docs(out):
        if d["kind"] in WORKLOADS:
            return d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    return None


def check_checksum_and_failures(args):
    with tempfile.TemporaryDirectory() as tmp:
        alt = os.path.join(tmp, "alt.yaml")
        with open(alt, "w") as f:
            f.write("config:\n  log:\n    level: debug\n")
        a, b = checksum_of(args, [], tmp), checksum_of(args, [alt], tmp)
        if not a or a == b:
            fail("checksum", "a config change does not change checksum/config (%s, %s)" % (a, b))
        else:
            print("ok [checksum] a config change rolls the pods")
        bad = {"mode": "mode: sidecar\n", "memory": "resources: {limits: {memory: 512m}}\n",
               "tenant-id": "tenants: [{tokens: [x]}]\n",
               "hpa": "autoscaling: {enabled: true, targetCPUUtilizationPercentage: 0}\n"}
        for name, text in bad.items():
            p = os.path.join(tmp, name + ".yaml")
            with open(p, "w") as f:
                f.write(text)
            if render(args, [p], tempfile.mkdtemp(dir=tmp)).returncode == 0:
                fail("bad-values", "%s: the render accepted %r" % (name, text.strip()))
        print("ok [bad-values] %d bad values files refused" % len(bad))


def check_k8s_sync(args):
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, RENDER=args.render)
        r = subprocess.run([os.path.join(args.src, "scripts/gen-k8s.sh"), tmp], env=env,
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail("k8s", "scripts/gen-k8s.sh failed: " + r.stderr)
            return
        ref = os.path.join(args.src, "deploy/k8s")
        gen = sorted(os.listdir(tmp))
        have = sorted(os.listdir(ref)) if os.path.isdir(ref) else []
        if gen != have:
            fail("k8s", "deploy/k8s holds %s, the chart renders %s: run scripts/gen-k8s.sh"
                 % (have, gen))
            return
        _, mismatch, errors = filecmp.cmpfiles(ref, tmp, gen, shallow=False)
        if mismatch or errors:
            fail("k8s", "deploy/k8s is out of date (%s): run scripts/gen-k8s.sh"
                 % ", ".join(mismatch + errors))
        else:
            print("ok [k8s] deploy/k8s matches the chart (%d files)" % len(gen))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--render", required=True)
    ap.add_argument("--collector", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--case", action="append")
    args = ap.parse_args()
    schema = None
    if jsonschema is None:
        fail("schema", "python3-jsonschema is not installed (scripts/deps.sh installs it)")
    else:
        schema = json.load(open(os.path.join(args.src, CHART, "values.schema.json")))
        jsonschema.Draft7Validator.check_schema(schema)
    check_values_comments(args)
    for case in args.case or sorted(CASES):
        run_case(args, case, CASES[case], schema)
    if not args.case:
        check_checksum_and_failures(args)
        check_k8s_sync(args)
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("chart checks passed")


if __name__ == "__main__":
    main()
