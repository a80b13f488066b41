#!/usr/bin/env python3
"""Turn bench/run.sh's raw measurements into medians, ratios against nginx and the upstream
alone, the issue's targets, JSON, and the results section of bench/README.md (standard library
only).

    python3 bench/report.py --raw measurements.jsonl --meta meta.json --idle idle.json \
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

# Issue 14's targets for voxproxy against nginx: (workload, metric, comparison, bound).
TARGETS = [
    ("get", "cpu_us_per_req", "<=", 1.0),
    ("get", "rps", ">=", 1.0),
    ("get", "p99_ms", "<=", 1.0),
    ("post", "cpu_us_per_req", "<=", 0.95),
    ("get", "peak_rss_kib", "<=", 1.0),
    ("post", "peak_rss_kib", "<=", 1.0),
]
IDLE_KIB_PER_CONN = 16
AFTER_CLOSE_RATIO = 2.0
ORDER = {"direct": 0, "nginx": 1, "haproxy": 2, "voxproxy": 3, "voxproxy-h1": 4}


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


def per_run(m):
    w = m["wrk"]
    secs = w["duration_us"] / 1e6
    reqs = max(w["requests"], 1)
    tick_us = 1e6 / m["clk_tck"]
    check = m.get("check") or {}
    # The timed pass: wrk's own count of statuses >= 400. The counting pass: every status outside
    # 200-299, from a response() hook (which includes those >= 400).
    check_bad = check.get("non_2xx", -1)
    if check_bad < 0:
        check_bad = check.get("errors_status", 0)
    non_2xx = w["errors_status"] + check_bad
    socket_errors = sum(
        d.get(k, 0)
        for d in (w, check)
        for k in ("errors_connect", "errors_read", "errors_write", "errors_timeout")
    )
    sc = m.get("syscalls", -1)
    return {
        "round": m["round"],
        "rps": w["requests"] / secs,
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "cpu_us_per_req": m["cpu_ticks"] * tick_us / reqs,
        "user_us_per_req": m.get("utime_ticks", 0) * tick_us / reqs,
        "sys_us_per_req": m.get("stime_ticks", 0) * tick_us / reqs,
        "syscalls_per_req": sc / m["syscall_requests"] if sc >= 0 and m.get("syscall_requests") else None,
        "cpu_pct": 100 * m["cpu_ticks"] / m["clk_tck"] / secs,
        "upstream_cpu_us_per_req": m["upstream_cpu_ticks"] * tick_us / reqs,
        "other_cpu_pct": 100 * m.get("other_cpu_ticks", 0) / m["clk_tck"] / secs,
        "wrk_cpu_pct": 100 * m.get("wrk_cpu_ticks", 0) / m["clk_tck"] / secs,
        "other_top": m.get("other_top", []),
        "tries": m.get("tries", 1),
        "peak_rss_kib": m["peak_rss_kib"],
        "peak_rss_tree_kib": m["peak_rss_tree_kib"],
        "upstream_conns_opened": m.get("upstream_conns_opened", -1),
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
    }


def rows_from(raw):
    by_key = {}
    for m in raw:
        by_key.setdefault((m["system"], m["workload"]), []).append(per_run(m))
    rows = []
    for (system, workload), runs in by_key.items():
        def med(k):
            vals = [r[k] for r in runs if r[k] is not None]
            return statistics.median(vals) if vals else None

        non_2xx = sum(r["non_2xx"] for r in runs)
        socket_errors = sum(r["socket_errors"] for r in runs)
        row = {"system": system, "workload": workload, "rounds": len(runs)}
        for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req",
                  "sys_us_per_req", "syscalls_per_req", "cpu_pct", "upstream_cpu_us_per_req",
                  "other_cpu_pct", "wrk_cpu_pct"):
            row[k] = med(k)
        row.update(
            {
                "retries": sum(r["tries"] - 1 for r in runs),
                "peak_rss_kib": max(r["peak_rss_kib"] for r in runs),
                "peak_rss_tree_kib": max(r["peak_rss_tree_kib"] for r in runs),
                "upstream_conns_opened": max(r["upstream_conns_opened"] for r in runs),
                "rps_min": min(r["rps"] for r in runs),
                "rps_max": max(r["rps"] for r in runs),
                "cpu_us_per_req_min": min(r["cpu_us_per_req"] for r in runs),
                "cpu_us_per_req_max": max(r["cpu_us_per_req"] for r in runs),
                "non_2xx": non_2xx,
                "socket_errors": socket_errors,
                "valid": non_2xx == 0 and socket_errors == 0,
                "runs": sorted(runs, key=lambda r: r["round"]),
            }
        )
        rows.append(row)
    rows.sort(key=lambda r: (r["workload"] != "get", ORDER.get(r["system"], 9), r["system"]))
    return rows


RATIO_METRICS = ["rps", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req",
                 "syscalls_per_req", "peak_rss_kib"]


def ratios(rows):
    idx = {(r["system"], r["workload"]): r for r in rows}
    out = []
    for ours in ("voxproxy", "voxproxy-h1", "haproxy"):
        for base in ("nginx", "direct"):
            for wl in ("get", "post"):
                a, b = idx.get((ours, wl)), idx.get((base, wl))
                if not a or not b:
                    continue
                entry = {"system": ours, "against": base, "workload": wl}
                # Against direct only what the client sees: the upstream's own CPU is not a proxy's.
                metrics = ["rps", "p99_ms"] if base == "direct" else RATIO_METRICS
                for k in metrics:
                    entry[k] = a[k] / b[k] if a.get(k) is not None and b.get(k) else None
                entry["valid"] = a["valid"] and b["valid"]
                out.append(entry)
    return out


def verdicts(ratio_list, idle):
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
    v = (idle or {}).get("voxproxy")
    if v and v.get("levels"):
        level = v["levels"][-1]
        out.append(
            {
                "target": f"voxproxy idle keep-alive connection <= {IDLE_KIB_PER_CONN} KiB "
                f"({level['connections']:,} connections)",
                "value": level["kib_per_conn"],
                "met": level["kib_per_conn"] <= IDLE_KIB_PER_CONN,
            }
        )
        out.append(
            {
                "target": f"voxproxy RSS after they close <= {AFTER_CLOSE_RATIO}x idle baseline",
                "value": v["after_close_ratio"],
                "met": v["after_close_ratio"] <= AFTER_CLOSE_RATIO,
            }
        )
    return out


def num(v, fmt):
    return "-" if v is None else format(v, fmt)


def fmt_table(rows):
    head = (
        "| system | workload | req/s | p50 ms | p99 ms | CPU µs/req | user µs/req | sys µs/req "
        "| syscalls/req | CPU % | peak RSS MiB | upstream CPU µs/req | upstream conns opened "
        "| wrk CPU % | other CPU % | non-2xx | socket errors |"
    )
    lines = [head, "|" + "---|" * 17]
    for r in rows:
        name = r["system"] + ("" if r["valid"] else " **(INVALID)**")
        d = "†" if r["system"] == "direct" else ""
        lines.append(
            f"| {name} | {r['workload'].upper()} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['cpu_us_per_req']:.1f}{d} | {r['user_us_per_req']:.1f}{d} "
            f"| {r['sys_us_per_req']:.1f}{d} | {num(r['syscalls_per_req'], '.2f')}{d} "
            f"| {r['cpu_pct']:.0f}{d} | {r['peak_rss_kib'] / MIB:.1f}{d} "
            f"| {'-' if r['system'] == 'direct' else num(r['upstream_cpu_us_per_req'], '.1f')} "
            f"| {'-' if r['upstream_conns_opened'] < 0 else r['upstream_conns_opened']} "
            f"| {r['wrk_cpu_pct']:.0f} | {r['other_cpu_pct']:.0f} | {r['non_2xx']} | {r['socket_errors']} |"
        )
    return "\n".join(lines)


def fmt_ratios(ratio_list):
    cols = [("rps", "req/s"), ("p99_ms", "p99"), ("cpu_us_per_req", "CPU/req"),
            ("user_us_per_req", "user/req"), ("sys_us_per_req", "sys/req"),
            ("syscalls_per_req", "syscalls/req"), ("peak_rss_kib", "peak RSS")]
    lines = ["| ratio | workload | " + " | ".join(c[1] for c in cols) + " |",
             "|" + "---|" * (len(cols) + 2)]
    for r in ratio_list:
        cells = ["-" if r.get(k) is None else f"{r[k]:.2f}×" for k, _ in cols]
        name = f"{r['system']} / {r['against']}" + ("" if r["valid"] else " (INVALID)")
        lines.append(f"| {name} | {r['workload'].upper()} | " + " | ".join(cells) + " |")
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
        "| system | idle connections | baseline VmRSS KiB | with them KiB | KiB per connection "
        "| 5 s after they close KiB | after / baseline | descriptors open: baseline, after "
        "| sample still answering |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(idle, key=lambda n: ORDER.get(n, 9)):
        v = idle[name]
        level = v["levels"][-1]
        lines.append(
            f"| {name} | {level['connections']:,} | {v['base_vm_rss_kib']:,} "
            f"| {level['vm_rss_kib']:,} | {level['kib_per_conn']} "
            f"| {v['after_close_vm_rss_kib']:,} | {v['after_close_ratio']}× "
            f"| {v.get('base_fds', '?')}, {v.get('after_close_fds', '?')} "
            f"| {v['sample_alive']}/{v['sample_size']} |"
        )
    for name in sorted(idle, key=lambda n: ORDER.get(n, 9)):
        b = idle[name].get("bursts", [])
        if len(b) > 1:
            lines.append("")
            lines.append(
                f"{name}, the same burst again: "
                + "; ".join(f"burst {i + 1}: {x['with_kib']:,} KiB open, {x['after_kib']:,} KiB "
                            f"after" for i, x in enumerate(b))
                + " ('after' figures that stay level: memory kept for reuse; that grow by a "
                "similar step every burst: a leak).")
    return "\n".join(lines)


def others_note(rows):
    """The busiest other processes during the measurements, by name."""
    ticks = {}
    for r in rows:
        for run in r["runs"]:
            for o in run.get("other_top", []):
                ticks[o["comm"]] = ticks.get(o["comm"], 0) + o["ticks"]
    top = sorted(ticks.items(), key=lambda kv: -kv[1])[:5]
    return ", ".join(f"{c} ({t / 100:.0f} s)" for c, t in top) or "none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--idle", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--readme")
    args = ap.parse_args()

    with open(args.raw) as f:
        raw = [json.loads(line) for line in f if line.strip()]
    with open(args.meta) as f:
        meta = json.load(f)
    with open(args.idle) as f:
        idle = json.load(f)
    rows = rows_from(raw)
    ratio_list = ratios(rows)
    vs = verdicts(ratio_list, idle)
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
    v = meta["versions"]
    invalid = [f"{r['system']} {r['workload'].upper()}" for r in rows if not r["valid"]]
    section = "\n".join(
        [
            f"Run {now} on {mach['nproc']} × {mach['cpu_model']} (Linux {mach['kernel']}); "
            f"voxproxy built from {v['voxproxy']} (binary sha256 {meta['voxproxy_sha256']}), {v['nginx']}, "
            f"{v['haproxy'].split(' - ')[0]}, {v['wrk'].split(' Copyright')[0]}.",
            "",
            f"Command: `{meta['command']}` — {meta['upstream']} upstream, {meta['rounds']} "
            f"rounds × {meta['duration_s']} s (+{meta['warmup_s']} s warm-up) per row in shuffled "
            f"order, {meta['connections']} connections, wrk -t{meta['wrk_threads']}, pinning "
            f"proxy/upstream/wrk = `{meta['pin_spec']}`. Medians over rounds; peak RSS is the "
            f"largest over rounds. Syscalls/req: `{meta['syscalls_by']}`, in a separate "
            f"{meta['syscall_seconds']} s pass after each measured window. Upstream conns "
            "opened: new connections the nginx upstream accepted during the measured window "
            "(stub_status; the largest over rounds; direct: wrk's own). † direct: the "
            "upstream's own CPU, syscalls and RSS. wrk CPU %: the load generator's own (near "
            "100: the load, not the system, set the pace). Other CPU %: what other processes used "
            f"meanwhile (measurements over {meta['max_other_cpu']} % were taken again, "
            f"{sum(r['retries'] for r in rows)} times in all); the busiest of them: "
            f"{others_note(rows)}.",
            "",
            fmt_table(rows),
            "",
            ("**INVALID rows** (a non-2xx answer or a socket error): " + ", ".join(invalid) + "."
             if invalid else "Every row valid: no non-2xx answer, no socket error."),
            "",
            fmt_ratios(ratio_list),
            "",
            "Issue 14's targets (voxproxy against nginx):",
            "",
            fmt_verdicts(vs),
            "",
            f"Idle keep-alive client connections (`bench/idle_conns.py`, one request each, a fresh "
            f"process each; VmRSS of the process tree):",
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
        print(f"\nwrote {args.out} and the results in {args.readme}")
    else:
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
