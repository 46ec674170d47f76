#!/usr/bin/env python3
"""deploy/k8s rendered with `kubectl kustomize`, every resource validated strictly against the
Kubernetes 1.30 OpenAPI schemas (`kubernetes-validate` from PyPI), and checked for the wiring that
schemas cannot see: selectors match their pods, every Service, Secret and PVC a pod names
exists, probes hit the coordinator's side port, and every schism command line only uses
subcommands and flags the real binary lists in `schism <command> --help`: the binary of each
container's image (deploy/docker): schism-coordinator (no model runtime) for the
schism-coordinator image, schism for schism-worker and schism-export-worker.

  k8s_manifests_test.py SCHISM_BINARY SOURCE_DIR      (exit 77: kubectl or kubernetes-validate missing)
"""
import os
import re
import shutil
import subprocess
import sys

try:
    import kubernetes_validate
    import yaml
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

schism, source = sys.argv[1:3]
if shutil.which("kubectl") is None:
    print("skipped: kubectl not installed")
    sys.exit(77)

rendered = subprocess.run(["kubectl", "kustomize", f"{source}/deploy/k8s"], check=True, capture_output=True,
                          text=True).stdout
docs = [d for d in yaml.safe_load_all(rendered) if d]
failures = []
for d in docs:
    try:
        kubernetes_validate.validate(d, "1.30.0", strict=True)
    except kubernetes_validate.ValidationError as e:
        failures.append(f"{d['kind']}/{d['metadata']['name']}: {e.message}")

by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "schism":
        failures.append(f"{d['kind']}/{d['metadata']['name']} is not in namespace schism")
for kind in ("Deployment", "StatefulSet", "Service", "Secret", "PersistentVolumeClaim", "Job"):
    if kind not in by_kind:
        failures.append(f"no {kind}")

# The binary each image runs (its ENTRYPOINT); the coordinator's lacks the model commands.
binary_of = {"schism-coordinator": os.path.join(os.path.dirname(schism), "schism-coordinator"),
             "schism-worker": schism, "schism-export-worker": schism}
flags_of = {}  # (binary, subcommand) -> the flags its --help lists (None: no such subcommand)


def listed_flags(binary, sub):
    if (binary, sub) not in flags_of:
        help_run = subprocess.run([binary, sub, "--help"], capture_output=True, text=True)
        flags_of[(binary, sub)] = set(re.findall(r"^  (--[a-z0-9-]+)", help_run.stdout, re.M)) \
            if help_run.returncode == 0 else None
    return flags_of[(binary, sub)]


services = {name: svc for name, svc in by_kind.get("Service", {}).items()}
for kind in ("Deployment", "StatefulSet", "Job"):
    for name, obj in by_kind.get(kind, {}).items():
        pod = obj["spec"]["template"]
        labels = pod.get("metadata", {}).get("labels", {})
        selector = obj["spec"].get("selector", {}).get("matchLabels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            failures.append(f"{kind}/{name}: selector {selector} does not match pod labels {labels}")
        for vol in pod["spec"].get("volumes", []):
            if "secret" in vol and vol["secret"]["secretName"] not in by_kind.get("Secret", {}):
                failures.append(f"{kind}/{name}: no Secret {vol['secret']['secretName']}")
            if "persistentVolumeClaim" in vol and \
                    vol["persistentVolumeClaim"]["claimName"] not in by_kind.get("PersistentVolumeClaim", {}):
                failures.append(f"{kind}/{name}: no PVC {vol['persistentVolumeClaim']['claimName']}")
        for c in pod["spec"]["containers"]:
            image = c["image"].split(":")[0].split("/")[-1]
            if not image.startswith("schism"):
                continue
            if image not in binary_of:
                failures.append(f"{kind}/{name}: image {c['image']} is none of deploy/docker's")
                continue
            args = c["args"]
            flags = listed_flags(binary_of[image], args[0])
            if flags is None:
                failures.append(f"{kind}/{name}: `{args[0]}` is not a subcommand of the {image} image")
                continue
            for a in args[1:]:
                if a.startswith("--") and a not in flags:
                    failures.append(f"{kind}/{name}: `schism {args[0]}` does not list {a}")
            for flag in ("--coordinator", "--store"):
                if flag in args:
                    value = args[args.index(flag) + 1]
                    host = value.replace("redis://", "").split(":")[0]
                    port = int(value.rsplit(":", 1)[1])
                    svc = services.get(host)
                    if svc is None or port not in [p["port"] for p in svc["spec"]["ports"]]:
                        failures.append(f"{kind}/{name}: {flag} {value} names no Service port")
            for probe in ("readinessProbe", "livenessProbe"):
                http = c.get(probe, {}).get("httpGet")
                if http and http["path"] not in ("/readyz", "/healthz"):
                    failures.append(f"{kind}/{name}: {probe} on {http['path']}")
                if http and http["port"] not in [p["name"] for p in c.get("ports", [])]:
                    failures.append(f"{kind}/{name}: {probe} port {http['port']} is not a container port")
            if "--http" in args and c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
                failures.append(f"{kind}/{name}: the coordinator has no /readyz readiness probe")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"PASSED: {len(docs)} resources valid for Kubernetes 1.30 and wired together")
