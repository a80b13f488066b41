#!/usr/bin/env python3
"""Memory per idle keep-alive client connection of a running proxy, and what is left once those
connections close (standard library only).

Opens N client connections to the proxy (voxproxy, nginx, ...), sends one request with keep-alive
on each (by default a real `GET /platform_api/GetAccountInfo/`, which the proxy forwards) and
reads the whole answer, so each is an established HTTP/1.1 keep-alive connection that has served
a request; leaves them idle, and compares the VmRSS of the proxy's process tree (nginx: master and
worker) before and after. Counts are cumulative: `--counts 1000,5000` measures at 1,000 open
connections, then opens 4,000 more. It then checks that a sample still answers, closes them all,
and reads VmRSS again after --settle seconds: the contract asks that after a burst of connections
closes, RSS comes back within 2x of the idle baseline. A second burst of the same size (--bursts)
tells memory kept for reuse (RSS stays where the first burst left it) from memory that leaks (RSS
grows by another burst's worth); the descriptor count tells whether the proxy still holds the
closed connections.

    python3 bench/idle_conns.py --pid PID --addr 127.0.0.1:8080 [--counts 5000] [--json]

Run as root to raise the descriptor limits: its own with setrlimit, the proxy's with prlimit.
Bounded: at most the largest count of connections, all to the given loopback address.
"""

import argparse
import ipaddress
import json
import os
import resource
import socket
import sys
import time

SETTLE_S = 1.0
SAMPLE = 100


def tree(pid):
    """pid and its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rollup_kib(pid, field):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss(pid):
    """VmRSS summed over the tree, KiB."""
    return sum(status_kib(p, "VmRSS") for p in tree(pid))


def pss(pid):
    return sum(rollup_kib(p, "Pss") for p in tree(pid))


def proc_entries(pid, sub):
    """Entries of /proc/<p>/<sub> summed over the tree ("fd": open descriptors, "task": threads);
    a process that exits meanwhile counts 0."""
    n = 0
    for p in tree(pid):
        try:
            n += len(os.listdir(f"/proc/{p}/{sub}"))
        except OSError:
            pass
    return n


def fds(pid):
    """Open descriptors of the tree (after the connections close, sockets still open would mean
    the proxy has not dropped them: held connections, not allocator retention)."""
    return proc_entries(pid, "fd")


def raise_nofile(need, pid=None):
    """Make sure this process (and the tree of `pid`, when given: the proxy's processes) may hold
    `need` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    for p in tree(pid) if pid is not None else ():
        try:
            soft, hard = resource.prlimit(p, resource.RLIMIT_NOFILE)
            if soft < need:
                resource.prlimit(p, resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except PermissionError:
            # Another user's process (nginx's worker): its own configuration sets its limit.
            pass


def read_response(sock):
    """Read one HTTP/1.1 response with a Content-Length body; return its status code."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        body += chunk
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, required=True, help="the proxy's process id (the tree)")
    ap.add_argument("--addr", required=True, help="the proxy's listen address, 127.0.0.1:PORT")
    ap.add_argument("--path", default="/platform_api/GetAccountInfo/", help="the one request")
    ap.add_argument("--counts", default="5000", help="cumulative connection counts")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds after closing them all before VmRSS is read again")
    ap.add_argument("--bursts", type=int, default=3,
                    help="times the largest count is opened and closed (the later ones tell "
                         "memory that is reused from memory that leaks)")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()

    host, _, port = args.addr.rpartition(":")
    if not ipaddress.ip_address(host.strip("[]")).is_loopback:
        sys.exit("--addr must be a loopback address")
    addr = (host.strip("[]"), int(port))
    counts = sorted(int(c) for c in args.counts.split(",") if c.strip())
    if not counts or counts[-1] > 50_000:
        sys.exit("--counts: between 1 and 50000 connections")
    raise_nofile(counts[-1] + 1024, args.pid)
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.addr}\r\n"
               "Connection: keep-alive\r\n\r\n").encode()

    def say(msg):
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    def open_one():
        sock = socket.create_connection(addr, timeout=10)
        sock.sendall(request)
        status = read_response(sock)
        if status != 200:
            sock.close()
            raise RuntimeError(f"{args.path} answered {status}")
        return sock

    # The baseline: the proxy after a few requests on one connection (buffers, upstream
    # connection and pools warmed), with no client connection open.
    sock = open_one()
    for _ in range(9):
        sock.sendall(request)
        read_response(sock)
    sock.close()
    time.sleep(SETTLE_S)
    base, base_pss, base_fds = rss(args.pid), pss(args.pid), fds(args.pid)
    say(f"pid {args.pid}: VmRSS {base} KiB (PSS {base_pss} KiB) with no client connection")

    socks = []
    levels = []
    try:
        for count in counts:
            start = time.monotonic()
            while len(socks) < count:
                socks.append(open_one())
            opened_s = time.monotonic() - start
            time.sleep(SETTLE_S)
            now = rss(args.pid)
            open_fds = fds(args.pid)
            per = (now - base) / count
            levels.append(
                {
                    "connections": count,
                    "vm_rss_kib": now,
                    "delta_kib": now - base,
                    "kib_per_conn": round(per, 2),
                    "open_s": round(opened_s, 2),
                    "fds": open_fds,
                }
            )
            say(f"{count:>6} idle connections: VmRSS {now} KiB, +{now - base} KiB, "
                f"{per:.2f} KiB per connection")
        # Still established and serving? Ask a spread-out sample again.
        step = max(1, len(socks) // SAMPLE)
        alive = 0
        for sock in socks[::step]:
            try:
                sock.sendall(request)
                alive += read_response(sock) == 200
            except OSError:
                pass
        sampled = len(socks[::step])
        say(f"{alive}/{sampled} sampled connections still answer")
        peak = max(status_kib(p, "VmHWM") for p in tree(args.pid))
    finally:
        for sock in socks:
            sock.close()
    time.sleep(args.settle)
    after, after_fds = rss(args.pid), fds(args.pid)
    say(f"{args.settle:.0f} s after closing them: VmRSS {after} KiB, {after / base:.2f}x the baseline; "
        f"{after_fds} descriptors open ({base_fds} at the baseline)")

    # More bursts of the same size: memory that comes back for reuse keeps RSS where the first
    # burst left it; memory that leaks adds another burst's worth each time.
    bursts = [{"with_kib": levels[-1]["vm_rss_kib"], "after_kib": after, "after_fds": after_fds}]
    for _ in range(args.bursts - 1):
        socks = []
        try:
            while len(socks) < counts[-1]:
                socks.append(open_one())
            time.sleep(SETTLE_S)
            with_kib = rss(args.pid)
        finally:
            for sock in socks:
                sock.close()
        time.sleep(args.settle)
        bursts.append({"with_kib": with_kib, "after_kib": rss(args.pid), "after_fds": fds(args.pid)})
        say(f"burst {len(bursts)}: VmRSS {with_kib} KiB with {counts[-1]} connections, "
            f"{bursts[-1]['after_kib']} KiB {args.settle:.0f} s after they close")

    if args.json:
        print(
            json.dumps(
                {
                    "path": args.path,
                    "base_vm_rss_kib": base,
                    "base_pss_kib": base_pss,
                    "base_fds": base_fds,
                    "after_close_fds": after_fds,
                    "levels": levels,
                    "sample_alive": alive,
                    "sample_size": sampled,
                    "vm_hwm_kib": peak,
                    "after_close_vm_rss_kib": after,
                    "after_close_settle_s": args.settle,
                    "after_close_ratio": round(after / base, 2),
                    "bursts": bursts,
                }
            )
        )


if __name__ == "__main__":
    main()
