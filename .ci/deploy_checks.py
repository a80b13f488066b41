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
  runbooks README RULES...
      Every alert in RULES (Prometheus rule files, or rendered manifests with
      PrometheusRules) has a runbook_url RUNBOOK_BASE#<alert name in lower
      case>, and deploy/README.md has that section under "Runbooks", with its
      Means, Check and Do paragraphs.
  readme-links README
      Every in-page link (`](#anchor)`) of README names a heading.
  prometheusrule RENDERED ALERTS OUT
      RENDERED holds exactly one PrometheusRule whose spec.groups equal the
      groups of ALERTS; its spec is written to OUT for promtool.
  builtin-only RENDERED OUT
      Copy the objects of built-in Kubernetes API groups to OUT, for
      kubernetes-validate, which has no schema for a custom resource and
      would pass one with only a warning; those are left to `crds`.
  crds RENDERED...
      The Prometheus Operator's objects (monitoring.coreos.com/v1) against
      the operator's own CRD schemas (the pinned cloudcoil models, generated
      from them): every field known and well-typed, nothing dropped. Then the
      ServiceMonitor's wiring: it selects the gateway Service and no other,
      in its namespace, on a named port that leads to the admin port 9090.
  redis-wiring RENDERED
      The Redis component as rendered with the gateway: voxproxy gets
      VOXPROXY_LIMITS_REDIS=redis://voxproxy-redis:6379, the Service leads to
      the Redis pods' 6379, only gateway pods may reach Redis (and only on
      6379), Redis may reach nothing, and the gateway may reach Redis.
  redis-args FILE
      Print the redis-server command line, one argument a line, of the Redis
      in FILE: a rendered kustomization (the Redis component's container) or
      the Compose file (service redis).
  compose COMPOSE_FILE DOCKERFILE
      The docker-compose example: two voxproxy replicas with Redis for the
      shared limits, key and clients mounted read-only as directories, admin
      on 9090 and published on loopback only, the health check the
      Dockerfile's HEALTHCHECK (the binary's own probe of /readyz), and the
      same hardening as the Kubernetes pods.

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


RUNBOOK_BASE = "https://git.example.com/voxproxy/blob/main/deploy/README.md"


def github_anchors(markdown):
    """{anchor: heading} the way GitHub names headings, outside code blocks."""
    anchors, seen, fenced = {}, {}, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(2).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors[slug if n == 0 else f"{slug}-{n}"] = (len(m.group(1)), m.group(2))
    return anchors


def sections(markdown):
    """[(level, title, body)] for every heading outside code blocks."""
    out, fenced, cur = [], False, None
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if m:
            cur = [len(m.group(1)), m.group(2), []]
            out.append(cur)
        elif cur:
            cur[2].append(line)
    return [(lvl, title, "\n".join(body)) for lvl, title, body in out]


def rule_groups(path):
    """[(where, groups)] from a rules file or PrometheusRules in manifests."""
    found = []
    for d in docs(path):
        if d.get("kind") == "PrometheusRule":
            found.append((f"{os.path.basename(path)}: {ident(d)}", d.get("spec", {}).get("groups", [])))
        elif "groups" in d and "kind" not in d:
            found.append((os.path.basename(path), d["groups"]))
    return found


def cmd_runbooks(readme, rule_paths):
    text = open(readme, encoding="utf-8").read()
    anchors = github_anchors(text)
    runbook_sections = {}
    in_runbooks = False
    for lvl, title, body in sections(text):
        if lvl <= 2:
            in_runbooks = title == "Runbooks"
        elif in_runbooks and lvl == 3:
            runbook_sections[title] = body
    problems, alerts = [], set()
    sources = [g for path in rule_paths for g in rule_groups(path)]
    if not sources:
        problems.append(f"no rules found in {rule_paths}")
    for where, groups in sources:
        for group in groups:
            for rule in group.get("rules", []):
                alert = rule.get("alert")
                if not alert:
                    continue
                alerts.add(alert)
                url = rule.get("annotations", {}).get("runbook_url")
                want = f"{RUNBOOK_BASE}#{alert.lower()}"
                if url != want:
                    problems.append(f"{where}: {alert}: runbook_url is {url!r}, want {want!r}")
                    continue
                fragment = url.split("#", 1)[1]
                if fragment not in anchors:
                    problems.append(f"{where}: {alert}: {readme} has no heading with anchor #{fragment}")
                elif alert not in runbook_sections:
                    problems.append(f"{where}: {alert}: #{fragment} is not a section under \"## Runbooks\"")
    for alert in sorted(alerts & set(runbook_sections)):
        body = runbook_sections[alert]
        for part in ("**Means.**", "**Check.**", "**Do.**"):
            if part not in body:
                problems.append(f"{readme}: runbook {alert} has no {part} paragraph")
    for title in sorted(set(runbook_sections) - alerts):
        problems.append(f"{readme}: runbook section {title!r} has no alert of that name")
    for p in problems:
        print(p)
    print(f"{len(alerts)} alerts in {len(sources)} rule sets; {len(runbook_sections)} runbook sections")
    return 1 if problems else 0


def cmd_readme_links(readme):
    text = open(readme, encoding="utf-8").read()
    anchors = github_anchors(text)
    links = re.findall(r"\]\(#([^)\s]+)\)", text)
    missing = sorted({a for a in links if a not in anchors})
    for a in missing:
        print(f"{readme}: link to #{a}, but no heading has that anchor")
    print(f"{len(links)} in-page links, {len(anchors)} headings")
    return 1 if missing else 0


def cmd_prometheusrule(rendered, alerts, out):
    rules = [d for d in docs(rendered) if d.get("kind") == "PrometheusRule"]
    want = yaml.safe_load(open(alerts, encoding="utf-8"))["groups"]
    if len(rules) != 1:
        print(f"{len(rules)} PrometheusRules rendered, want 1")
        return 1
    have = rules[0].get("spec", {}).get("groups")
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": have}, f, sort_keys=False)
    if have != want:
        print(f"{ident(rules[0])}: spec.groups differ from {alerts}")
        for g_have, g_want in zip(have or [], want):
            names_h = [r.get("alert") or r.get("record") for r in g_have.get("rules", [])]
            names_w = [r.get("alert") or r.get("record") for r in g_want.get("rules", [])]
            if names_h != names_w:
                print(f"  group {g_want.get('name')}: rules {names_h} vs {names_w}")
        return 1
    n = sum(len(g.get("rules", [])) for g in want)
    print(f"{ident(rules[0])}: the same {len(want)} group(s) and {n} rules as {os.path.basename(alerts)}")
    return 0


def cmd_crds(paths):
    from cloudcoil.models.prometheus_operator import v1 as monitoring_v1

    models = {"ServiceMonitor": monitoring_v1.ServiceMonitor,
              "PrometheusRule": monitoring_v1.PrometheusRule,
              "PodMonitor": monitoring_v1.PodMonitor}
    problems, counted = [], 0
    for path in paths:
        where = os.path.basename(path)
        objects = docs(path)
        for d in objects:
            if not str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
                continue
            counted += 1
            model = models.get(d.get("kind"))
            if d.get("apiVersion") != "monitoring.coreos.com/v1" or model is None:
                problems.append(f"{where}: {ident(d)}: unexpected {d.get('apiVersion')} {d.get('kind')}")
                continue
            try:
                parsed = model.model_validate(d)
            except Exception as e:  # pydantic.ValidationError, with every field at fault
                problems.append(f"{where}: {ident(d)}: {e}")
                continue
            # The models ignore unknown fields: a field that does not come
            # back is one the CRD does not have (a typo the API server would
            # prune or refuse).
            back = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
            if back != d:
                problems.append(f"{where}: {ident(d)}: fields the CRD does not know: "
                                f"{', '.join(unknown_fields(d, back)) or '(values changed)'}")
        problems += service_monitor_wiring(where, objects)
    for p in problems:
        print(p)
    print(f"{counted} monitoring.coreos.com objects in {len(paths)} rendered files checked")
    return 1 if problems else 0


def unknown_fields(have, back, at=""):
    out = []
    if isinstance(have, dict) and isinstance(back, dict):
        for k, v in have.items():
            if k not in back:
                out.append(f"{at}.{k}".lstrip("."))
            else:
                out += unknown_fields(v, back[k], f"{at}.{k}")
    elif isinstance(have, list) and isinstance(back, list):
        for i, (a, b) in enumerate(zip(have, back)):
            out += unknown_fields(a, b, f"{at}[{i}]")
    return out


def service_monitor_wiring(where, objects):
    problems = []
    services = [d for d in objects if d.get("kind") == "Service"]
    deployments = [d for d in objects if d.get("kind") == "Deployment"]
    for sm in (d for d in objects if d.get("kind") == "ServiceMonitor"):
        ns = sm["metadata"].get("namespace")
        want = sm["spec"].get("selector", {}).get("matchLabels", {})
        if sm["spec"].get("namespaceSelector") or sm["spec"].get("selector", {}).get("matchExpressions"):
            problems.append(f"{where}: {ident(sm)}: use matchLabels in its own namespace only")
        hits = [s for s in services if s["metadata"].get("namespace") == ns
                and want and all(s["metadata"].get("labels", {}).get(k) == v for k, v in want.items())]
        if [s["metadata"]["name"] for s in hits] != ["voxproxy"]:
            problems.append(f"{where}: {ident(sm)} selects {[ident(s) for s in hits]}, want the gateway "
                            "Service voxproxy alone (its name is the job label the alerts select)")
            continue
        svc = hits[0]
        ports = {p.get("name"): p for p in svc["spec"].get("ports", [])}
        for ep in sm["spec"].get("endpoints", []):
            port = ports.get(ep.get("port"))
            if port is None:
                problems.append(f"{where}: {ident(sm)}: port {ep.get('port')!r} is not a named port of {ident(svc)}")
                continue
            if ep.get("path", "/metrics") != "/metrics":
                problems.append(f"{where}: {ident(sm)}: path {ep.get('path')!r} is not /metrics")
            if "jobLabel" in sm["spec"]:
                problems.append(f"{where}: {ident(sm)}: jobLabel changes the job the alerts select")
            target = port.get("targetPort")
            for dep in deployments:
                labels = dep["spec"]["template"]["metadata"].get("labels", {})
                if not all(labels.get(k) == v for k, v in svc["spec"].get("selector", {}).items()):
                    continue
                cports = [cp for c in dep["spec"]["template"]["spec"].get("containers", [])
                          for cp in c.get("ports", [])]
                if not any(cp.get("name") == target and cp.get("containerPort") == 9090 for cp in cports):
                    problems.append(f"{where}: {ident(sm)}: {ident(svc)} port {port.get('name')} "
                                    f"leads to {target!r}, not the admin port 9090 of {ident(dep)}")
    return problems


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def cmd_redis_wiring(path):
    objects = docs(path)
    problems = []

    def one(kind, name):
        hits = [d for d in objects if d.get("kind") == kind and d["metadata"].get("name") == name]
        if len(hits) != 1:
            problems.append(f"{len(hits)} {kind} {name} rendered, want 1")
            return None
        return hits[0]

    gateway, redis = one("Deployment", "voxproxy"), one("Deployment", "voxproxy-redis")
    svc = one("Service", "voxproxy-redis")
    gw_policy, redis_policy = one("NetworkPolicy", "voxproxy"), one("NetworkPolicy", "voxproxy-redis")
    if problems:
        for p in problems:
            print(p)
        return 1
    gw_labels = gateway["spec"]["template"]["metadata"]["labels"]
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    if labels_match(redis["spec"]["selector"]["matchLabels"], gw_labels):
        problems.append("the Redis Deployment's selector also selects the gateway's pods")

    vox = [c for c in gateway["spec"]["template"]["spec"]["containers"] if c["name"] == "voxproxy"]
    env = {e["name"]: e.get("value") for c in vox for e in c.get("env", [])}
    url = env.get("VOXPROXY_LIMITS_REDIS")
    if url != "redis://voxproxy-redis:6379":
        problems.append(f"gateway VOXPROXY_LIMITS_REDIS is {url!r}, want 'redis://voxproxy-redis:6379'")

    if not labels_match(svc["spec"].get("selector", {}), redis_labels) \
            or labels_match(svc["spec"].get("selector", {}), gw_labels):
        problems.append(f"{ident(svc)} does not select the Redis pods alone")
    ports = [p for p in svc["spec"].get("ports", []) if p.get("port") == 6379]
    cports = {cp.get("name"): cp.get("containerPort")
              for c in redis["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])}
    if not ports or cports.get(ports[0].get("targetPort"), ports[0].get("targetPort")) != 6379:
        problems.append(f"{ident(svc)} port 6379 does not lead to the Redis container's 6379")

    # Redis' own policy: selects the Redis pods; ingress only from gateway
    # pods of this namespace on 6379; no egress at all.
    rp = redis_policy["spec"]
    if not labels_match(rp.get("podSelector", {}).get("matchLabels", {}), redis_labels):
        problems.append(f"{ident(redis_policy)} does not select the Redis pods")
    if set(rp.get("policyTypes", [])) != {"Ingress", "Egress"}:
        problems.append(f"{ident(redis_policy)}: policyTypes {rp.get('policyTypes')}, want Ingress and Egress")
    if rp.get("egress"):
        problems.append(f"{ident(redis_policy)}: Redis needs no egress, got {rp['egress']}")
    if not rp.get("ingress"):
        problems.append(f"{ident(redis_policy)}: no ingress rule: voxproxy could not reach Redis")
    for rule in rp.get("ingress", []):
        peers = rule.get("from", [])
        if not peers:
            problems.append(f"{ident(redis_policy)}: an ingress rule without `from` admits every pod")
        for peer in peers:
            sel = peer.get("podSelector", {}).get("matchLabels", {})
            if set(peer) != {"podSelector"} or not labels_match(sel, gw_labels) \
                    or labels_match(sel, redis_labels):
                problems.append(f"{ident(redis_policy)}: ingress from {peer}, want the gateway pods only")
        rports = rule.get("ports", [])
        if [(p.get("protocol", "TCP"), p.get("port")) for p in rports] != [("TCP", 6379)]:
            problems.append(f"{ident(redis_policy)}: ingress ports {rports}, want TCP 6379 only")

    # The gateway's policy lets it out to the Redis pods on 6379.
    if not labels_match(gw_policy["spec"].get("podSelector", {}).get("matchLabels", {}), gw_labels):
        problems.append(f"{ident(gw_policy)} does not select the gateway pods")
    if not any(
            any(labels_match(peer.get("podSelector", {}).get("matchLabels", {}), redis_labels)
                and "namespaceSelector" not in peer for peer in rule.get("to", []))
            and any(p.get("port") == 6379 for p in rule.get("ports", []))
            for rule in gw_policy["spec"].get("egress", [])):
        problems.append(f"{ident(gw_policy)}: no egress to the Redis pods on 6379")
    for p in problems:
        print(p)
    print(f"gateway -> {url} -> {ident(svc)} -> {ident(redis)}; {ident(redis_policy)} admits the gateway only")
    return 1 if problems else 0


def dockerfile_healthcheck(path):
    text = open(path, encoding="utf-8").read().replace("\\\n", " ")
    m = re.search(r"^HEALTHCHECK\s.*?CMD\s+(\[.*\])\s*$", text, re.M)
    return yaml.safe_load(m.group(1)) if m else None


def cmd_compose(path, dockerfile):
    doc = docs(path)[0]
    problems = []

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    services = doc.get("services", {})
    need(set(services) == {"voxproxy", "redis"}, f"services {sorted(services)}, want voxproxy and redis")
    vox, redis = services.get("voxproxy", {}), services.get("redis", {})
    need(vox.get("deploy", {}).get("replicas") == 2, "voxproxy: deploy.replicas is not 2")
    need("container_name" not in vox, "voxproxy: container_name forbids more than one replica")
    cmd = vox.get("command", [])
    need(isinstance(cmd, list) and cmd[:1] == ["serve"], f"voxproxy: command {cmd!r} is not a list starting with serve")

    def flag(name):
        return cmd[cmd.index(name) + 1] if name in cmd and cmd.index(name) + 1 < len(cmd) else None

    need(flag("--listen") == "0.0.0.0:8080", "voxproxy: not --listen 0.0.0.0:8080")
    need(flag("--admin-listen") == "0.0.0.0:9090", "voxproxy: not --admin-listen 0.0.0.0:9090")
    env = vox.get("environment", {})
    need(isinstance(env, dict), "voxproxy: environment is not a mapping")
    need(env.get("VOXPROXY_LIMITS_REDIS") == "redis://redis:6379",
         f"voxproxy: VOXPROXY_LIMITS_REDIS is {env.get('VOXPROXY_LIMITS_REDIS')!r}, want redis://redis:6379")

    mounts = vox.get("volumes", [])
    binds = {m.get("target"): m for m in mounts if isinstance(m, dict) and m.get("type") == "bind"}
    need(len(binds) == len(mounts), "voxproxy: every volume is a long-syntax bind mount")
    for m in binds.values():
        need(m.get("read_only") is True, f"voxproxy: {m.get('target')} is not mounted read-only")
    for name, want_dir in (("--credentials", "/run/secrets/voximplant"), ("--clients", "/etc/voxproxy/clients")):
        value = flag(name) or ""
        need(os.path.dirname(value) == want_dir and want_dir in binds,
             f"voxproxy: {name} {value!r} is not a file in the read-only directory mount {want_dir}")
    here = os.path.dirname(os.path.abspath(path))
    ignored = open(os.path.join(here, ".gitignore"), encoding="utf-8").read().split() \
        if os.path.exists(os.path.join(here, ".gitignore")) else []
    for m in binds.values():
        src = m.get("source", "")
        need(src.startswith("./") and src[2:].rstrip("/") + "/" in ignored,
             f"voxproxy: {src} (holds the key or the clients) is not in {os.path.basename(here)}/.gitignore")

    hc = vox.get("healthcheck", {})
    want_hc = ["CMD", "/voxproxy", "probe", "http://127.0.0.1:9090/readyz"]
    need(hc.get("test") == want_hc, f"voxproxy: healthcheck test {hc.get('test')!r}, want {want_hc!r}")
    need(dockerfile_healthcheck(dockerfile) == want_hc[1:],
         f"Dockerfile HEALTHCHECK {dockerfile_healthcheck(dockerfile)!r} differs from the Compose one")

    for name, svc in services.items():
        need(str(svc.get("user")) == "65532:65532", f"{name}: user is not 65532:65532")
        need(svc.get("read_only") is True, f"{name}: root filesystem not read-only")
        need(svc.get("cap_drop") == ["ALL"], f"{name}: capabilities not dropped")
        need("no-new-privileges:true" in svc.get("security_opt", []), f"{name}: no-new-privileges not set")
        need("test" in svc.get("healthcheck", {}), f"{name}: no healthcheck")
        need(not svc.get("privileged"), f"{name}: privileged")

    published = vox.get("ports", [])
    need(any(str(p).startswith("127.0.0.1:") and str(p).endswith(":9090") for p in published),
         "voxproxy: admin port 9090 not published on 127.0.0.1")
    need(not any(str(p).endswith(":9090") and not str(p).startswith("127.0.0.1:") for p in published),
         "voxproxy: admin port 9090 published beyond the host's loopback")

    need(redis.get("image") == "redis:7", f"redis: image {redis.get('image')!r}, want redis:7")
    need(not redis.get("ports"), "redis: published on the host (only the Compose network needs it)")
    need(any(str(t).split(":")[0] == "/data" for t in redis.get("tmpfs", [])),
         "redis: /data is not a tmpfs (read-only root filesystem)")
    need(vox.get("depends_on", {}).get("redis", {}).get("condition") == "service_started",
         "voxproxy: depends_on redis should only order the start (voxproxy serves without Redis)")
    for p in problems:
        print(p)
    print(f"services {sorted(services)}; voxproxy x{vox.get('deploy', {}).get('replicas')}, "
          f"limits in {env.get('VOXPROXY_LIMITS_REDIS')}, healthcheck {' '.join(hc.get('test', [])[1:])}")
    return 1 if problems else 0


def is_builtin(doc):
    group = str(doc.get("apiVersion", "")).rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def cmd_builtin_only(path, out):
    objects = docs(path)
    keep = [d for d in objects if is_builtin(d)]
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(keep, f, sort_keys=False)
    left = [ident(d) for d in objects if not is_builtin(d)]
    print(f"{len(keep)} built-in objects; left to the CRD check: {', '.join(left) or 'none'}")
    return 0


def cmd_redis_args(path):
    argv = None
    for d in docs(path):
        if d.get("kind") == "Deployment":
            for c in d["spec"]["template"]["spec"].get("containers", []):
                if c.get("name") == "redis":
                    argv = list(c.get("command", [])) + list(c.get("args", []))
        elif "services" in d and "redis" in d["services"]:
            argv = d["services"]["redis"].get("command")
    if not isinstance(argv, list) or argv[:1] != ["redis-server"]:
        print(f"{path}: no redis-server command line (a list starting with redis-server): {argv!r}",
              file=sys.stderr)
        return 1
    for a in argv:
        print(a)
    return 0


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
    if cmd == "runbooks" and len(args) >= 2:
        return cmd_runbooks(args[0], args[1:])
    if cmd == "readme-links" and len(args) == 1:
        return cmd_readme_links(*args)
    if cmd == "prometheusrule" and len(args) == 3:
        return cmd_prometheusrule(*args)
    if cmd == "builtin-only" and len(args) == 2:
        return cmd_builtin_only(*args)
    if cmd == "crds" and args:
        return cmd_crds(args)
    if cmd == "redis-wiring" and len(args) == 1:
        return cmd_redis_wiring(*args)
    if cmd == "redis-args" and len(args) == 1:
        return cmd_redis_args(*args)
    if cmd == "compose" and len(args) == 2:
        return cmd_compose(*args)
    print(f"deploy_checks.py: bad command line: {' '.join(argv[1:])}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
