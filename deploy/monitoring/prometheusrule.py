#!/usr/bin/env python3
"""Write the Prometheus Operator's PrometheusRule from alerts.yaml.

usage: prometheusrule.py [--check]

deploy/kubernetes/components/prometheus-operator/prometheusrule.yaml carries
the rules of deploy/monitoring/alerts.yaml unchanged (comments included)
under `spec:`. After changing alerts.yaml, run this to rewrite it. With
--check it writes nothing and exits 1 when the file is not what it would
write. Python 3 standard library only.
"""

import difflib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ALERTS = os.path.join(HERE, "alerts.yaml")
TARGET = os.path.join(HERE, "..", "kubernetes", "components", "prometheus-operator",
                      "prometheusrule.yaml")

HEADER = """\
# GENERATED from deploy/monitoring/alerts.yaml by
# deploy/monitoring/prometheusrule.py: edit alerts.yaml, then run
#   python3 deploy/monitoring/prometheusrule.py
# (CI fails when the two differ.)
#
# Prometheus loads PrometheusRules that match its ruleSelector and
# ruleNamespaceSelector: add the label yours selects on (kube-prometheus-stack:
# `release: <its release name>`) in your overlay (`labels:` or a patch), not
# here, since this file is rewritten. The rules select job="voxproxy", the
# job name the ServiceMonitor beside this file gives.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: voxproxy
  namespace: voxproxy
  labels:
    app.kubernetes.io/name: voxproxy
    app.kubernetes.io/component: gateway
spec:
"""


def render():
    with open(ALERTS, encoding="utf-8") as f:
        lines = f.read().splitlines()
    # alerts.yaml's own header comment is about the file; the rules start at
    # `groups:`.
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(("  " + line if line.strip() else "") + "\n" for line in lines[start:])
    return HEADER + body


def main(argv):
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        print(__doc__, file=sys.stderr)
        return 2
    want = render()
    target = os.path.normpath(TARGET)
    try:
        with open(target, encoding="utf-8") as f:
            have = f.read()
    except FileNotFoundError:
        have = ""
    if check:
        if have == want:
            print(f"prometheusrule: {target} matches alerts.yaml")
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            have.splitlines(True), want.splitlines(True), target, "generated from alerts.yaml"))
        print(f"prometheusrule: {target} is out of date: run python3 {os.path.relpath(__file__)}")
        return 1
    if have != want:
        with open(target, "w", encoding="utf-8") as f:
            f.write(want)
        print(f"prometheusrule: wrote {target}")
    else:
        print(f"prometheusrule: {target} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
