#!/usr/bin/env python3
"""The checks of .ci/deploy-checks.sh that read rendered manifests and other
structured files. Run with the deploy-checks venv's python (PyYAML comes with
yamllint).

usage: deploy_checks.py COMMAND ARGS...

  readme-overlay NAME DIR REPO
      Write the kustomization that deploy/README.md shows after the marker
      `<!-- overlay: NAME -->` (the next ```yaml block) into DIR, with the
      example path prefix `../voxproxy/` pointed at REPO, so the overlays the
      README tells operators to write are the ones CI renders.
  operator-data RENDERED...
      `kubectl apply -k` of what we ship must never carry a Secret or a
      ConfigMap: the credentials and the clients file are the operator's, and
      an object of the same name in the kustomization would overwrite them on
      every apply.
  clients-overlay RENDERED CLIENTS_TOML
      The README's "clients from git" overlay: exactly one ConfigMap
      voxproxy-clients, not renamed by a hash (so it updates in place and
      voxproxy reloads it), holding CLIENTS_TOML byte for byte, mounted by the
      gateway.

Each command prints what it checked, a line per problem, and exits 1 when
there is a problem.
"""

import os
import re
import sys

import yaml


def docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def ident(doc):
    meta = doc.get("metadata", {})
    ns = meta.get("namespace")
    return f"{doc.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return spec.get("template", {}).get("spec", {})
    if doc.get("kind") == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
    if doc.get("kind") == "Pod":
        return spec
    return None


def data_references(doc):
    """{(kind, name)} of the ConfigMaps and Secrets a workload reads."""
    pod = pod_spec(doc)
    refs = set()
    if pod is None:
        return refs
    for v in pod.get("volumes", []):
        if "configMap" in v:
            refs.add(("ConfigMap", v["configMap"].get("name")))
        if "secret" in v:
            refs.add(("Secret", v["secret"].get("secretName")))
        for src in v.get("projected", {}).get("sources", []):
            if "configMap" in src:
                refs.add(("ConfigMap", src["configMap"].get("name")))
            if "secret" in src:
                refs.add(("Secret", src["secret"].get("name")))
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        for e in c.get("envFrom", []):
            if "configMapRef" in e:
                refs.add(("ConfigMap", e["configMapRef"].get("name")))
            if "secretRef" in e:
                refs.add(("Secret", e["secretRef"].get("name")))
        for e in c.get("env", []):
            vf = e.get("valueFrom", {})
            if "configMapKeyRef" in vf:
                refs.add(("ConfigMap", vf["configMapKeyRef"].get("name")))
            if "secretKeyRef" in vf:
                refs.add(("Secret", vf["secretKeyRef"].get("name")))
    return refs


def cmd_readme_overlay(name, out_dir, repo):
    readme = os.path.join(repo, "deploy", "README.md")
    text = open(readme, encoding="utf-8").read()
    marker = f"<!-- overlay: {name} -->"
    at = text.find(marker)
    if at < 0:
        print(f"{readme}: no {marker}")
        return 1
    m = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M).search(text, at)
    if not m:
        print(f"{readme}: no ```yaml block after {marker}")
        return 1
    prefix = os.path.relpath(repo, out_dir) + "/"
    body = m.group(1).replace("../voxproxy/", prefix)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "kustomization.yaml"), "w", encoding="utf-8") as f:
        f.write(body)
    print(f"overlay {name!r} from deploy/README.md written to {out_dir}")
    return 0


def cmd_operator_data(paths):
    problems = []
    for path in paths:
        where = os.path.basename(path)
        objects = docs(path)
        refs = set()
        for d in objects:
            refs |= {(kind, ref, ident(d)) for kind, ref in data_references(d)}
        for d in objects:
            kind, name = d.get("kind"), d.get("metadata", {}).get("name")
            if kind not in ("Secret", "ConfigMap"):
                continue
            users = sorted(u for k, n, u in refs if (k, n) == (kind, name))
            problems.append(
                f"{where}: renders {ident(d)}"
                + (f" (read by {', '.join(users)})" if users else "")
                + ": `kubectl apply -k` would overwrite the operator's own on every apply")
        owned = sorted({f"{k} {n}" for k, n, _ in refs})
        rendered = [ident(d) for d in objects if d.get("kind") in ("Secret", "ConfigMap")]
        print(f"{where}: {len(objects)} objects; Secrets and ConfigMaps rendered: "
              f"{', '.join(rendered) or 'none'}; the pods read: {', '.join(owned) or 'nothing'}")
    for p in problems:
        print(p)
    return 1 if problems else 0


def cmd_clients_overlay(path, clients_toml):
    want = open(clients_toml, encoding="utf-8").read()
    objects = docs(path)
    problems = []
    maps = [d for d in objects if d.get("kind") == "ConfigMap"]
    names = [d["metadata"]["name"] for d in maps]
    if names != ["voxproxy-clients"]:
        problems.append(f"ConfigMaps rendered: {names}, want exactly ['voxproxy-clients'] (no hash suffix)")
    for d in maps:
        if d.get("metadata", {}).get("namespace") != "voxproxy":
            problems.append(f"{ident(d)} is not in namespace voxproxy")
        if d.get("data", {}).get("clients.toml") != want:
            problems.append(f"{ident(d)} does not hold {clients_toml} byte for byte")
    gateway = [d for d in objects if d.get("kind") == "Deployment" and d["metadata"]["name"] == "voxproxy"]
    if not gateway or ("ConfigMap", "voxproxy-clients") not in data_references(gateway[0]):
        problems.append("the gateway Deployment does not mount the ConfigMap voxproxy-clients")
    for p in problems:
        print(p)
    print(f"{len(objects)} objects; ConfigMaps {names}")
    return 1 if problems else 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "readme-overlay" and len(args) == 3:
        return cmd_readme_overlay(*args)
    if cmd == "operator-data" and args:
        return cmd_operator_data(args)
    if cmd == "clients-overlay" and len(args) == 2:
        return cmd_clients_overlay(*args)
    print(f"deploy_checks.py: bad command line: {' '.join(argv[1:])}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
