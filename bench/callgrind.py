#!/usr/bin/env python3
"""Read callgrind output files, take per-request slopes between two runs, and report them
(standard library only). Used by bench/instructions.sh; also handy on its own:

    # totals and top functions of one file
    python3 bench/callgrind.py show callgrind.out [--top 30]
    # per-request slope between a run of N1 requests and one of N2 (start-up cancels out)
    python3 bench/callgrind.py slope A.out N1 B.out N2 [--top 40] [--rng-regex REGEX]
    # what bench/instructions.sh calls
    python3 bench/callgrind.py report --runs runs.jsonl --out instructions.json ...

The RNG subtree. Valgrind hides RDRAND from the program, so aws-lc seeds its DRBG from its
jitter-entropy source instead (`jent_*`: hundreds of millions of instructions, once, at start-up
with aws-lc 0.47's tree DRBG, before bench/instructions.sh zeroes the counters); what is left per request is the CTR-DRBG
behind RAND_bytes (voxproxy's request ids). Every figure is given with and without the subtree.
Callgrind records costs per function and per caller->callee arc (the arc's cost is inclusive),
not whole stacks, so the subtree is taken as: M = functions whose name matches the regex; D =
every function reachable from M in the call graph; the subtree's cost = the sum of the inclusive
costs of arcs a -> m with m in M and a outside M and D (the calls that enter the subtree from
outside it: nested matches such as RAND_bytes -> helper -> jent_* are counted once, through
their outermost entry). A function that both sits under M and calls into M from elsewhere would
be missed; the listings show the entry arcs so that can be checked.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

README_BEGIN = "<!-- instructions:begin -->"
README_END = "<!-- instructions:end -->"
ORDER = {"direct": 0, "nginx": 1, "haproxy": 2, "voxproxy": 3, "voxproxy-h1": 4}


class Profile:
    """One callgrind output file: total Ir, self Ir per function, inclusive Ir per call arc."""

    def __init__(self, path):
        self.path = path
        self.total = 0
        self.self_cost = {}
        self.arcs = {}  # (caller, callee) -> [calls, inclusive Ir]
        self._parse(path)

    def _parse(self, path):
        names = {}  # compressed id -> name, for fn/cfn (cfn shares the fn id space)

        def name_of(rest):
            m = re.match(r"\((\d+)\)(?:\s(.*))?$", rest)
            if not m:
                return rest.strip()
            if m.group(2) is not None:
                names[m.group(1)] = m.group(2).strip()
            return names.get(m.group(1), f"?{m.group(1)}")

        fn = None
        callee = None
        pending_call = None
        events = None
        summary = None
        with open(path, errors="replace") as f:
            for line in f:
                c = line[:1]
                if c.isdigit() or c in "+-*":
                    # A cost line: position(s) then costs; positions are "line" only here.
                    parts = line.split()
                    ir = int(parts[1]) if len(parts) > 1 else 0
                    if pending_call is not None:
                        arc = self.arcs.setdefault((fn, callee), [0, 0])
                        arc[0] += pending_call
                        arc[1] += ir
                        pending_call = None
                    else:
                        self.self_cost[fn] = self.self_cost.get(fn, 0) + ir
                    continue
                if line.startswith("fn="):
                    fn = name_of(line[3:].rstrip("\n"))
                elif line.startswith("cfn="):
                    callee = name_of(line[4:].rstrip("\n"))
                elif line.startswith("calls="):
                    pending_call = int(line[6:].split()[0])
                elif line.startswith("events:"):
                    events = line.split()[1:]
                elif line.startswith("positions:"):
                    if line.split()[1:] != ["line"]:
                        raise SystemExit(f"{path}: positions {line.split()[1:]}; run without --dump-instr")
                elif line.startswith(("summary:", "totals:")):
                    summary = int(line.split()[1])
        if events and events[0] != "Ir":
            raise SystemExit(f"{path}: first event is {events[0]}, not Ir")
        self.total = summary if summary is not None else sum(self.self_cost.values())

    def inclusive(self):
        inc = dict(self.self_cost)
        for (a, b), (_, cost) in self.arcs.items():
            if a != b:
                inc[a] = inc.get(a, 0) + cost
        return inc

    def subtree(self, regex):
        """(cost, entries): the cost of the subtree under functions matching regex, entered from
        outside it, and {(caller, callee): cost} of those entry arcs."""
        rx = re.compile(regex)
        funcs = set(self.self_cost) | {b for _, b in self.arcs}
        matched = {f for f in funcs if f and rx.search(f)}
        children = {}
        for a, b in self.arcs:
            children.setdefault(a, set()).add(b)
        below, todo = set(), list(matched)
        while todo:
            for c in children.get(todo.pop(), ()):
                if c not in below:
                    below.add(c)
                    todo.append(c)
        inside = matched | below
        entries = {
            (a, b): cost
            for (a, b), (_, cost) in self.arcs.items()
            if b in matched and a not in inside
        }
        return sum(entries.values()), entries


def slope(a, na, b, nb, rng_regex=None):
    """Per-request costs between profile a (na requests) and profile b (nb requests)."""
    d = nb - na
    if d <= 0:
        raise SystemExit("the second run must serve more requests than the first")
    out = {
        "requests": [na, nb],
        "instructions": [a.total, b.total],
        "per_request": (b.total - a.total) / d,
    }
    sa, sb = a.self_cost, b.self_cost
    ia, ib = a.inclusive(), b.inclusive()
    out["self"] = {f: (sb.get(f, 0) - sa.get(f, 0)) / d for f in set(sa) | set(sb)}
    out["inclusive"] = {f: (ib.get(f, 0) - ia.get(f, 0)) / d for f in set(ia) | set(ib)}
    if rng_regex:
        ca, ea = a.subtree(rng_regex)
        cb, eb = b.subtree(rng_regex)
        out["rng"] = {
            "regex": rng_regex,
            "instructions": [ca, cb],
            "per_request": (cb - ca) / d,
            "entries": sorted(
                ({"caller": k[0], "callee": k[1], "per_request": (eb.get(k, 0) - ea.get(k, 0)) / d}
                 for k in set(ea) | set(eb)),
                key=lambda e: -e["per_request"],
            ),
        }
        # The part that does not grow with requests (the jitter-entropy seeding at start-up).
        out["rng"]["fixed"] = ca - out["rng"]["per_request"] * na
        out["per_request_without_rng"] = out["per_request"] - out["rng"]["per_request"]
    return out


def components(self_per_req):
    """Self instructions per request by component, with bench/profile_groups.py's rules."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.dont_write_bytecode = True
    import profile_groups  # noqa: PLC0415

    groups = {}
    for fn, v in self_per_req.items():
        name = next(n for n, test in profile_groups.RULES if test(fn or ""))
        groups[name] = groups.get(name, 0) + v
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def top(d, n, cap=None):
    """The n largest positive entries; with cap, leave out those above it (callgrind's inclusive
    costs double-count through recursion and through names shared by two objects, such as
    `(below main)`)."""
    items = ((f, v) for f, v in d.items() if v > 0 and (cap is None or v <= cap * 1.001))
    return sorted(items, key=lambda kv: -kv[1])[:n]


def fmt_listing(s, n, title, by_component=True):
    per = s["per_request"]
    lines = [title, ""]
    lines.append(f"instructions per request: {per:,.0f} (slope between {s['requests'][0]:,} and "
                 f"{s['requests'][1]:,} requests: {s['instructions'][0]:,} -> {s['instructions'][1]:,})")
    if "rng" in s:
        r = s["rng"]
        lines.append(f"RNG subtree (/{r['regex']}/, entered from outside): {r['per_request']:,.0f} per "
                     f"request ({100 * r['per_request'] / per:.1f} %); without it: "
                     f"{s['per_request_without_rng']:,.0f}; its part that does not grow with "
                     f"requests: {r['fixed']:,.0f}")
        lines.append("  entry arcs per request:")
        for e in r["entries"][:8]:
            lines.append(f"    {e['per_request']:>10,.0f}  {e['caller']}  ->  {e['callee']}")
    if by_component:
        lines += ["", "by component (self instructions per request, bench/profile_groups.py rules):"]
        for name, v in components(s["self"]).items():
            if abs(v) >= 0.5:
                lines.append(f"  {v:>10,.0f}  {100 * v / per:5.1f} %  {name}")
    for key, label in (("self", "exclusive (self)"), ("inclusive", "inclusive")):
        lines += ["", f"top {n} functions by {label} instructions per request:"]
        for fn, v in top(s[key], n, per if key == "inclusive" else None):
            lines.append(f"  {v:>10,.0f}  {100 * v / per:5.1f} %  {fn}")
    return "\n".join(lines)


def annotate(path, inclusive, lines=45):
    try:
        r = subprocess.run(
            ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", path],
            capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return f"(callgrind_annotate failed: {e})"
    out = r.stdout.splitlines()
    # Skip the preamble up to the first function line.
    for i, line in enumerate(out):
        if re.match(r"^-+$", line) and i + 1 < len(out) and "file:function" in out[i + 1]:
            return "\n".join(out[i + 1: i + 3 + lines])
    return "\n".join(out[:lines])


def cmd_show(args):
    p = Profile(args.file)
    inc = p.inclusive()
    print(f"{args.file}: {p.total:,} instructions")
    if args.rng_regex:
        cost, entries = p.subtree(args.rng_regex)
        print(f"subtree /{args.rng_regex}/: {cost:,} ({100 * cost / p.total:.1f} %)")
    for key, d in (("self", p.self_cost), ("inclusive", inc)):
        print(f"\ntop {args.top} by {key}:")
        for fn, v in top(d, args.top):
            print(f"  {v:>14,}  {100 * v / p.total:5.1f} %  {fn}")


def cmd_slope(args):
    s = slope(Profile(args.a), args.na, Profile(args.b), args.nb, args.rng_regex)
    print(fmt_listing(s, args.top, f"{args.a} ({args.na}) -> {args.b} ({args.nb})"))


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release()}


def tool_version(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def cmd_report(args):
    with open(args.runs) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    pairs = {}
    for r in runs:
        pairs.setdefault((r["system"], r["workload"], r.get("repeat", 1)), []).append(r)
    slopes = {}
    for (system, workload, rep), rs in pairs.items():
        rs.sort(key=lambda r: r["requests"])
        a, b = rs[0], rs[-1]
        s = slope(Profile(a["file"]), a["requests"], Profile(b["file"]), b["requests"],
                  args.rng_regex)
        slopes.setdefault((system, workload), []).append((s, a, b))
    rows = []
    for (system, workload), reps in slopes.items():
        # The repeat with the median slope gives the details; the row gives every repeat's figure.
        reps.sort(key=lambda t: t[0]["per_request"])
        s, a, b = reps[(len(reps) - 1) // 2]
        row = {
            "system": system,
            "workload": workload,
            "repeats": len(reps),
            "requests": s["requests"],
            "instructions": s["instructions"],
            "per_request": s["per_request"],
            "per_request_repeats": [t[0]["per_request"] for t in reps],
            "rng_per_request": s["rng"]["per_request"],
            "per_request_without_rng": s["per_request_without_rng"],
            "per_request_without_rng_repeats": sorted(t[0]["per_request_without_rng"] for t in reps),
            "rng_entries": s["rng"]["entries"][:10],
            "upstream_conns_opened": [a["upstream_conns_opened"], b["upstream_conns_opened"]],
            "upstream_conns_differ": any(t[1]["upstream_conns_opened"] or t[2]["upstream_conns_opened"]
                                         for t in reps),
            "client_rps_under_callgrind": [a["load"]["rps"], b["load"]["rps"]],
            "components": components(s["self"]),
            "top_self": top(s["self"], 40),
            "top_inclusive": top(s["inclusive"], 40, s["per_request"]),
            "rng_fixed": s["rng"]["fixed"],
        }
        rows.append(row)
        if system.startswith("voxproxy") or args.all_listings:
            path = os.path.join(args.results_dir, f"callgrind-{system}-{workload}.txt")
            with open(path, "w") as f:
                f.write(fmt_listing(
                    s, 40,
                    f"# {system}, {workload.upper()}: user-space instructions per request "
                    f"(callgrind; bench/instructions.sh); the median of {len(reps)} repeats "
                    f"({', '.join(format(t[0]['per_request'], ',.0f') for t in reps)})",
                    # The component rules are Rust crates'; nginx's and OpenSSL's stripped
                    # functions would all land in "libc".
                    by_component=system.startswith("voxproxy")))
                for inclusive in (False, True):
                    f.write(f"\n\n# callgrind_annotate --inclusive={'yes' if inclusive else 'no'} "
                            f"of the {b['requests']:,}-request segment (totals, the RNG subtree "
                            "included)\n")
                    f.write(annotate(b["file"], inclusive))
                f.write("\n")
            print(f"wrote {path}", file=sys.stderr)
    rows.sort(key=lambda r: (r["workload"] != "get", ORDER.get(r["system"], 9)))
    idx = {(r["system"], r["workload"]): r for r in rows}
    ratios = []
    for ours in ("voxproxy", "voxproxy-h1"):
        for wl in ("get", "post"):
            a, b = idx.get((ours, wl)), idx.get(("nginx", wl))
            if a and b:
                ratios.append({
                    "system": ours, "against": "nginx", "workload": wl,
                    "per_request": a["per_request"] / b["per_request"],
                    "per_request_without_rng": a["per_request_without_rng"]
                    / b["per_request_without_rng"],
                })
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    git = args.voxproxy_rev
    import hashlib  # noqa: PLC0415

    with open(args.voxproxy, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:16]
    result = {
        "date": now,
        "machine": machine(),
        "command": args.command,
        "connections": args.connections,
        "rng_regex": args.rng_regex,
        "voxproxy_binary": args.voxproxy_src,
        "voxproxy_git": git,
        "voxproxy_sha256": sha,
        "versions": {"valgrind": tool_version("valgrind", "--version"),
                     "nginx": tool_version("nginx", "-v")},
        "rows": rows,
        "ratios": ratios,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    lines = [
        f"Run {now} on {result['machine']['cpu_model']}; voxproxy built from {git} "
        f"(binary sha256 {sha}), "
        f"{result['versions']['nginx']}, {result['versions']['valgrind']}.",
        "",
        f"Command: `{args.command}` — each system under `valgrind --tool=callgrind`, warmed up, "
        "its counters zeroed, then serving exactly N requests over "
        f"{args.connections} keep-alive connections before they are dumped; that with N1 and "
        "with N2 requests in fresh processes, and instructions per request = (I2 − I1) / "
        f"(N2 − N1), the median over {max(r['repeats'] for r in rows)} such pairs, with the "
        "range. User space only. "
        "\"Without RNG\": minus the subtree under functions matching "
        f"`{args.rng_regex}`, entered from outside it (valgrind hides RDRAND, so aws-lc seeds "
        "from its jitter-entropy source: a one-off cost at start-up, before the counters are "
        "zeroed; what remains per request is the DRBG behind voxproxy's request ids). "
        "Upstream conns opened: during the measured segments (0: the handshakes are outside).",
        "",
        "| system | workload | instructions/req | range | without RNG subtree | RNG subtree/req "
        "| N1 → N2 | upstream conns opened (run 1, run 2) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['system']} | {r['workload'].upper()} | {r['per_request']:,.0f} "
            f"| {min(r['per_request_repeats']):,.0f}–{max(r['per_request_repeats']):,.0f} "
            f"| {r['per_request_without_rng']:,.0f} | {r['rng_per_request']:,.0f} "
            f"| {r['requests'][0]:,} → {r['requests'][1]:,} "
            f"| {r['upstream_conns_opened'][0]}, {r['upstream_conns_opened'][1]}"
            f"{' ⚠ new upstream connections in a repeat: handshakes counted' if r['upstream_conns_differ'] else ''} |"
        )
    if ratios:
        lines += ["", "| ratio | workload | instructions/req | without RNG subtree |",
                  "|---|---|---|---|"]
        for q in ratios:
            lines.append(f"| {q['system']} / {q['against']} | {q['workload'].upper()} "
                         f"| {q['per_request']:.2f}× | {q['per_request_without_rng']:.2f}× |")
    v = idx.get(("voxproxy", "get")) or idx.get(("voxproxy-h1", "get"))
    if v:
        per = v["per_request"]
        lines += ["", f"{v['system']} GET by component (self instructions per request; "
                  f"full listings in `bench/results/callgrind-*.txt`):", "",
                  "| component | instructions/req | share |", "|---|---|---|"]
        for name, c in v["components"].items():
            if c >= 0.5 * per / 100:
                lines.append(f"| {name} | {c:,.0f} | {100 * c / per:.1f} % |")
        lines += ["", f"{v['system']} GET, top functions by self instructions per request:", "",
                  "| function | instructions/req | share |", "|---|---|---|"]
        for fn, c in v["top_self"][:15]:
            fn_md = fn.replace("|", "\\|")
            lines.append(f"| `{fn_md}` | {c:,.0f} | {100 * c / per:.1f} % |")
    section = "\n".join(lines)
    print(section)
    if args.readme:
        with open(args.readme) as f:
            text = f.read()
        start, end = text.find(README_BEGIN), text.find(README_END)
        if start < 0 or end < start:
            raise SystemExit(f"{args.readme} has no {README_BEGIN} ... {README_END} section")
        text = text[: start + len(README_BEGIN)] + "\n" + section + "\n" + text[end:]
        with open(args.readme, "w") as f:
            f.write(text)
        print(f"\nwrote {args.out} and the instructions section of {args.readme}", file=sys.stderr)
    else:
        print(f"\nwrote {args.out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("show")
    p.add_argument("file")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--rng-regex", default="jent_|CRYPTO_rdrand|RAND_bytes")
    p.set_defaults(run=cmd_show)
    p = sub.add_parser("slope")
    p.add_argument("a")
    p.add_argument("na", type=int)
    p.add_argument("b")
    p.add_argument("nb", type=int)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--rng-regex", default="jent_|CRYPTO_rdrand|RAND_bytes")
    p.set_defaults(run=cmd_slope)
    p = sub.add_parser("report")
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--rng-regex", default="jent_|CRYPTO_rdrand|RAND_bytes")
    p.add_argument("--command", default="bash bench/instructions.sh")
    p.add_argument("--connections", type=int, default=0)
    p.add_argument("--voxproxy", required=True, help="the binary measured (for its hash)")
    p.add_argument("--voxproxy-src", required=True, help="where it came from")
    p.add_argument("--voxproxy-rev", default="?", help="the commit it was built from")
    p.add_argument("--all-listings", action="store_true", help="listings for every system")
    p.add_argument("--readme")
    p.set_defaults(run=cmd_report)
    args = ap.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
