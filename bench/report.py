#!/usr/bin/env python3
"""Turn bench/run.sh's raw measurements into medians, ratios against the targets, JSON and the
table in bench/README.md (standard library only).

    python3 bench/report.py --raw measurements.jsonl --meta '{...}' --idle '{...}|null' \
        --out bench/results/latest.json [--readme bench/README.md]
"""

import argparse
import datetime
import json
import os
import platform
import statistics

README_BEGIN = "<!-- results:begin -->"
README_END = "<!-- results:end -->"
MIB = 1024

# The targets: (workload, metric, comparison, bound) for voxproxy against nginx.
TARGETS = [
    ("get", "rps", ">=", 1.0),
    ("get", "cpu_us_per_req", "<=", 1.0),
    ("get", "p99_ms", "<=", 1.1),
    ("post", "rps", ">=", 1.0),
    ("post", "cpu_us_per_req", "<=", 1.0),
]
PEAK_RSS_MIB = 24
IDLE_KIB_PER_CONN = 16


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
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
    }


def rows_from(raw):
    by_key = {}
    for m in raw:
        w = m["wrk"]
        secs = w["duration_us"] / 1e6
        cpu_s = m["cpu_ticks"] / m["clk_tck"]
        reqs = max(w["requests"], 1)
        by_key.setdefault((m["system"], m["workload"]), []).append(
            {
                "round": m["round"],
                "rps": w["requests"] / secs,
                "p50_ms": w["p50_us"] / 1000,
                "p99_ms": w["p99_us"] / 1000,
                "cpu_us_per_req": cpu_s * 1e6 / reqs,
                "cpu_pct": 100 * cpu_s / secs,
                "upstream_cpu_us_per_req": m["upstream_cpu_ticks"] / m["clk_tck"] * 1e6 / reqs,
                "other_cpu_pct": 100 * m.get("other_cpu_ticks", 0) / m["clk_tck"] / secs,
                "tries": m.get("tries", 1),
                "peak_rss_kib": m["peak_rss_kib"],
                "peak_rss_tree_kib": m["peak_rss_tree_kib"],
                "non_2xx": w["errors_status"],
                "socket_errors": w["errors_connect"]
                + w["errors_read"]
                + w["errors_write"]
                + w["errors_timeout"],
            }
        )
    rows = []
    for (system, workload), runs in by_key.items():
        med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
        non_2xx = sum(r["non_2xx"] for r in runs)
        rows.append(
            {
                "system": system,
                "workload": workload,
                "rounds": len(runs),
                "rps": med("rps"),
                "p50_ms": med("p50_ms"),
                "p99_ms": med("p99_ms"),
                "cpu_us_per_req": med("cpu_us_per_req"),
                "cpu_pct": med("cpu_pct"),
                "upstream_cpu_us_per_req": med("upstream_cpu_us_per_req"),
                "other_cpu_pct": med("other_cpu_pct"),
                "retries": sum(r["tries"] - 1 for r in runs),
                "peak_rss_kib": max(r["peak_rss_kib"] for r in runs),
                "peak_rss_tree_kib": max(r["peak_rss_tree_kib"] for r in runs),
                "rps_min": min(r["rps"] for r in runs),
                "rps_max": max(r["rps"] for r in runs),
                "non_2xx": non_2xx,
                "socket_errors": sum(r["socket_errors"] for r in runs),
                "valid": non_2xx == 0,
                "runs": sorted(runs, key=lambda r: r["round"]),
            }
        )
    order = {"direct": 0, "nginx": 1, "haproxy": 2, "voxproxy": 3, "voxproxy-h1": 4}
    rows.sort(key=lambda r: (r["workload"] != "get", order.get(r["system"], 9), r["system"]))
    return rows


def ratios(rows):
    idx = {(r["system"], r["workload"]): r for r in rows}
    out = []
    for ours in ("voxproxy", "voxproxy-h1"):
        for base in ("nginx", "haproxy", "direct"):
            for wl in ("get", "post"):
                a, b = idx.get((ours, wl)), idx.get((base, wl))
                if not a or not b:
                    continue
                entry = {"system": ours, "against": base, "workload": wl}
                metrics = ["rps"] if base == "direct" else ["rps", "cpu_us_per_req", "p99_ms"]
                for k in metrics:
                    entry[k] = a[k] / b[k] if b[k] else None
                entry["valid"] = a["valid"] and b["valid"]
                out.append(entry)
    return out


def verdicts(rows, ratio_list, idle):
    idx = {(r["system"], r["workload"]): r for r in rows}
    rat = {(r["system"], r["against"], r["workload"]): r for r in ratio_list}
    out = []
    for wl, metric, cmp, bound in TARGETS:
        r = rat.get(("voxproxy", "nginx", wl))
        if r is None or r.get(metric) is None:
            continue
        v = r[metric]
        ok = v >= bound if cmp == ">=" else v <= bound
        out.append(
            {
                "target": f"{wl.upper()} {metric} voxproxy/nginx {cmp} {bound}",
                "value": round(v, 3),
                "met": ok and r["valid"],
            }
        )
    for wl in ("get", "post"):
        r = idx.get(("voxproxy", wl))
        if r:
            mib = r["peak_rss_kib"] / MIB
            out.append(
                {
                    "target": f"{wl.upper()} voxproxy peak RSS <= {PEAK_RSS_MIB} MiB",
                    "value": round(mib, 1),
                    "met": mib <= PEAK_RSS_MIB,
                }
            )
    if idle:
        for level in idle["levels"]:
            out.append(
                {
                    "target": f"idle keep-alive memory at {level['connections']} connections "
                    f"<= {IDLE_KIB_PER_CONN} KiB/conn",
                    "value": level["kib_per_conn"],
                    "met": level["kib_per_conn"] <= IDLE_KIB_PER_CONN,
                }
            )
    return out


def fmt_table(rows):
    head = (
        "| system | workload | req/s | p50 ms | p99 ms | CPU µs/req | CPU % | peak RSS MiB "
        "| upstream CPU µs/req | other CPU % | non-2xx | socket errors |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        name = r["system"] + ("" if r["valid"] else " (INVALID)")
        note = "†" if r["system"] == "direct" else ""
        lines.append(
            f"| {name} | {r['workload'].upper()} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['cpu_us_per_req']:.1f}{note} | {r['cpu_pct']:.0f}{note} "
            f"| {r['peak_rss_kib'] / MIB:.1f}{note} "
            f"| {'-' if r['system'] == 'direct' else format(r['upstream_cpu_us_per_req'], '.1f')} "
            f"| {r['other_cpu_pct']:.0f} | {r['non_2xx']} | {r['socket_errors']} |"
        )
    return "\n".join(lines)


def fmt_ratios(ratio_list):
    lines = ["| ratio | workload | req/s | CPU µs/req | p99 |", "|---|---|---|---|---|"]
    for r in ratio_list:
        cell = lambda k: "-" if r.get(k) is None else f"{r[k]:.2f}×"  # noqa: E731
        lines.append(
            f"| {r['system']} / {r['against']} | {r['workload'].upper()} | {cell('rps')} "
            f"| {cell('cpu_us_per_req')} | {cell('p99_ms')} |"
        )
    return "\n".join(lines)


def fmt_verdicts(vs):
    lines = ["| target | value | met |", "|---|---|---|"]
    for v in vs:
        lines.append(f"| {v['target']} | {v['value']} | {'yes' if v['met'] else '**no**'} |")
    return "\n".join(lines)


def fmt_idle(idle):
    if not idle:
        return "(not measured)"
    lines = [
        f"Baseline VmRSS {idle['base_vm_rss_kib']} KiB; "
        f"{idle['sample_alive']}/{idle['sample_size']} sampled connections still answered at the end.",
        "",
        "| idle connections | VmRSS KiB | growth KiB | KiB per connection |",
        "|---|---|---|---|",
    ]
    for level in idle["levels"]:
        lines.append(
            f"| {level['connections']:,} | {level['vm_rss_kib']} | {level['delta_kib']} "
            f"| {level['kib_per_conn']} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--idle", default="null")
    ap.add_argument("--out", required=True)
    ap.add_argument("--readme")
    args = ap.parse_args()

    with open(args.raw) as f:
        raw = [json.loads(line) for line in f if line.strip()]
    meta = json.loads(args.meta)
    idle = json.loads(args.idle)
    rows = rows_from(raw)
    ratio_list = ratios(rows)
    vs = verdicts(rows, ratio_list, idle)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    result = {
        "date": now,
        "machine": machine(),
        **meta,
        "rows": rows,
        "ratios": ratio_list,
        "targets": vs,
        "idle": idle,
        "raw": raw,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    mach = result["machine"]
    section = "\n".join(
        [
            f"Run {now} on {mach['nproc']} × {mach['cpu_model']} (Linux {mach['kernel']}); "
            f"voxproxy {meta['versions']['voxproxy']}, {meta['versions']['nginx']}, "
            f"{meta['versions']['haproxy']}, {meta['versions']['wrk']}.",
            "",
            f"Command: `{meta['command']}` — {meta['rounds']} rounds × {meta['duration_s']} s "
            f"(+{meta['warmup_s']} s warm-up) per row, {meta['connections']} connections, "
            f"wrk -t{meta['wrk_threads']}, pinning `{meta['pin']}`, upstream threads "
            f"{meta['upstream_threads']}. Medians over rounds; peak RSS is the largest over "
            "rounds. † direct: the upstream's own CPU and RSS. Other CPU %: what other processes "
            f"on the machine used meanwhile (measurements over {meta.get('max_other_cpu', '?')} % "
            f"were taken again, {sum(r['retries'] for r in rows)} times in all).",
            "",
            fmt_table(rows),
            "",
            fmt_ratios(ratio_list),
            "",
            "Targets (voxproxy against nginx, memory):",
            "",
            fmt_verdicts(vs),
            "",
            "Idle keep-alive connections (`bench/idle_conns.py`, one fresh voxproxy):",
            "",
            fmt_idle(idle),
        ]
    )
    print()
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
        print(f"\nwrote {args.out} and the table in {args.readme}")
    else:
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
