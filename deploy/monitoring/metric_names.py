#!/usr/bin/env python3
"""Check that every metric the dashboards and alert rules query is exported.

usage: metric_names.py [--samples-only] [--list] [--dir DIR] METRICS_FILE

METRICS_FILE is a Prometheus /metrics text exposition (Prometheus text format
0.0.4 or OpenMetrics), for example a scrape of a running voxproxy:

    curl -s http://127.0.0.1:8080/metrics > /tmp/metrics.txt
    python3 deploy/monitoring/metric_names.py /tmp/metrics.txt

The metric names are taken from the `expr` fields of every dashboard
(DIR/*.json, including the queries of templating variables) and of the alert
rules (DIR/alerts.yaml); DIR defaults to this script's directory. Function
names, aggregation operators, keywords, label names, label values, durations
and Grafana variables are not metric names; `up` is Prometheus' own series
and is not looked for.

A name is satisfied by a sample line of that name in the exposition (so
`foo_bucket` is satisfied by a histogram `foo` exposing `foo_bucket` lines).
A metric family that is declared (`# TYPE`) but has no sample yet, such as a
labelled counter nothing has incremented, satisfies the sample names its type
implies (counter foo: foo_total; histogram foo: foo_bucket, foo_sum,
foo_count; ...) unless --samples-only is given.

--list prints the names used, one per line, and checks nothing.

Exit status: 0 every name is present; 1 some are missing (listed on stderr);
2 usage or input error. Python 3 standard library only.
"""

import argparse
import glob
import json
import os
import re
import sys

IGNORED_NAMES = {"up"}

# PromQL words that look like identifiers but are not metric names.
KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "bool", "inf", "nan", "atan2", "start", "end",
}

IDENT = r"[A-Za-z_:][A-Za-z0-9_:]*"
GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.I)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"' r"|'(?:[^'\\]|\\.)*'" r"|`[^`]*`", re.S)
GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$\[\[[^\]]*\]\]|\$" + r"[A-Za-z0-9_]+")
TOKEN = re.compile(r"\d[0-9A-Za-z_.]*|(" + IDENT + r")")
SAMPLE_NAME = re.compile(r"^(" + IDENT + r")")
TEMPLATE_FUNC = re.compile(r"^\s*(label_values|query_result)\s*\((.*)\)\s*$", re.S)


def metric_names_in_expr(expr):
    """Return the set of metric names a PromQL expression selects."""
    text = STRING.sub(" ", expr)            # label values, regexes
    text = GRAFANA_VAR.sub(" ", text)       # $__rate_interval, ${job}, ...
    text = re.sub(r"#[^\n]*", " ", text)    # PromQL comments
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges, subqueries
    text = GROUPING.sub(" ", text)           # by (...), on (...), ...
    names = set()
    for m in TOKEN.finditer(text):
        name = m.group(1)
        if name is None:                     # a number or a duration
            continue
        rest = text[m.end():].lstrip()
        if rest.startswith("("):             # function or aggregation
            continue
        if name.lower() in KEYWORDS or name in IGNORED_NAMES:
            continue
        names.add(name)
    return names


def template_query_expr(query):
    """The PromQL inside a Grafana variable query, or None."""
    m = TEMPLATE_FUNC.match(query)
    if not m:
        return None
    func, args = m.groups()
    if func == "label_values":
        # label_values(expr, label) or label_values(label): the expression is
        # everything before the last top-level comma.
        depth, cut = 0, None
        for i, ch in enumerate(args):
            if ch in "({[":
                depth += 1
            elif ch in ")}]":
                depth -= 1
            elif ch == "," and depth == 0:
                cut = i
        return args[:cut] if cut is not None else None
    return args


def dashboard_exprs(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    exprs.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc.get("panels", []))
    for var in doc.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        for q in (query, var.get("definition")):
            if isinstance(q, str):
                expr = template_query_expr(q)
                if expr:
                    exprs.append(expr)
    return exprs


def rule_exprs(path):
    """`expr:` values of a Prometheus rules file (a YAML subset: plain,
    quoted and block scalars), without a YAML library."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    exprs = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$", lines[i])
        i += 1
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2)
        if value and value[0] in "|>":
            block = []
            while i < len(lines):
                line = lines[i]
                if line.strip() and len(line) - len(line.lstrip()) <= indent:
                    break
                block.append(line)
                i += 1
            exprs.append("\n".join(block))
            continue
        if value[:1] in ("'", '"'):
            quote = value[0]
            body = value[1:-1] if value.endswith(quote) and len(value) > 1 else value[1:]
            if quote == "'":
                body = body.replace("''", "'")
            else:
                body = body.encode("utf-8").decode("unicode_escape")
            exprs.append(body)
            continue
        # A plain scalar, possibly continued on more-indented lines.
        parts = [re.sub(r"\s+#.*$", "", value)]
        while i < len(lines):
            line = lines[i]
            if not line.strip() or len(line) - len(line.lstrip()) <= indent:
                break
            if re.match(r"^\s*[A-Za-z_]+:\s", line) or line.strip().startswith("- "):
                break
            parts.append(line.strip())
            i += 1
        exprs.append(" ".join(parts))
    return exprs


def names_used(directory):
    """{metric name: [where it is used]} for the dashboards and rules."""
    used = {}
    sources = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        sources += [(path, e) for e in dashboard_exprs(path)]
    rules = os.path.join(directory, "alerts.yaml")
    if os.path.exists(rules):
        sources += [(rules, e) for e in rule_exprs(rules)]
    if not sources:
        raise ValueError(f"no dashboard or alert expressions found in {directory}")
    for path, expr in sources:
        for name in metric_names_in_expr(expr):
            used.setdefault(name, []).append(os.path.basename(path))
    return used


def implied_samples(family, mtype):
    mtype = mtype.lower()
    if mtype == "counter":
        base = family[:-len("_total")] if family.endswith("_total") else family
        return {base + "_total", base + "_created"}
    if mtype in ("histogram", "gaugehistogram"):
        return {family + s for s in ("_bucket", "_sum", "_count", "_created", "_gsum", "_gcount")}
    if mtype == "summary":
        return {family, family + "_sum", family + "_count", family + "_created"}
    if mtype == "info":
        return {family if family.endswith("_info") else family + "_info"}
    return {family}


def exposition_names(path):
    """(sample names present, names implied by # TYPE declarations)."""
    samples, declared = set(), set()
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 4 and parts[1] == "TYPE":
                    declared |= implied_samples(parts[2], parts[3])
                continue
            m = SAMPLE_NAME.match(line)
            if m:
                samples.add(m.group(1))
    return samples, declared


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(
        description="Check that the metrics used by the voxproxy dashboards and "
                    "alert rules exist in a /metrics exposition.")
    ap.add_argument("metrics_file", nargs="?", help="a /metrics text exposition")
    ap.add_argument("--dir", default=here,
                    help="folder with *.json dashboards and alerts.yaml (default: %(default)s)")
    ap.add_argument("--samples-only", action="store_true",
                    help="require a sample line; a bare # TYPE declaration is not enough")
    ap.add_argument("--list", action="store_true", help="print the names used and exit")
    args = ap.parse_args(argv)

    try:
        used = names_used(args.dir)
    except (OSError, ValueError) as e:
        print(f"metric_names: {e}", file=sys.stderr)
        return 2
    if args.list:
        for name in sorted(used):
            print(name)
        return 0
    if not args.metrics_file:
        ap.print_usage(sys.stderr)
        print("metric_names: METRICS_FILE is required (or --list)", file=sys.stderr)
        return 2
    try:
        samples, declared = exposition_names(args.metrics_file)
    except OSError as e:
        print(f"metric_names: {e}", file=sys.stderr)
        return 2

    missing, declared_only = [], []
    for name in sorted(used):
        if name in samples:
            continue
        if name in declared and not args.samples_only:
            declared_only.append(name)
            continue
        missing.append(name)

    for name in declared_only:
        print(f"metric_names: {name}: declared, no sample yet", file=sys.stderr)
    if missing:
        print(f"metric_names: {len(missing)} of {len(used)} metric names used by the "
              f"dashboards and alerts are missing from {args.metrics_file}:", file=sys.stderr)
        for name in missing:
            where = ", ".join(sorted(set(used[name])))
            print(f"  {name}  (used in {where})", file=sys.stderr)
        return 1
    print(f"metric_names: all {len(used)} metric names used by the dashboards and alerts "
          f"are present in {args.metrics_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
