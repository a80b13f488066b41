#!/usr/bin/env python3
"""Memory per idle keep-alive connection of a running voxproxy (standard library only).

Opens N client connections to voxproxy, sends one `GET /healthz` with keep-alive on each and reads
the whole answer (so each is an established HTTP/1.1 keep-alive connection that has served a
request), leaves them idle, and compares voxproxy's VmRSS before and after. Counts are cumulative:
with `--counts 1000,10000` it measures at 1,000 open connections, then opens 9,000 more. At the
end it checks that a sample of the connections still answers, then closes them all.

    python3 bench/idle_conns.py --pid PID --addr 127.0.0.1:8080 [--counts 1000,10000] [--json]

Run as root to raise the descriptor limits: its own with setrlimit, voxproxy's with prlimit.
Bounded: at most the largest count of connections, all to the given loopback address.
"""

import argparse
import ipaddress
import json
import resource
import socket
import sys
import time

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: voxproxy\r\nConnection: keep-alive\r\n\r\n"
SETTLE_S = 1.0
SAMPLE = 100


def vm(pid, field):
    """A `Vm*` line of /proc/PID/status, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def raise_nofile(pid, need):
    """Make sure this process and voxproxy may hold `need` descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    if soft < need:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (need, max(hard, need)))


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


def open_one(addr):
    sock = socket.create_connection(addr, timeout=10)
    sock.sendall(REQUEST)
    status = read_response(sock)
    if status != 200:
        sock.close()
        raise RuntimeError(f"/healthz answered {status}")
    return sock


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pid", type=int, required=True, help="voxproxy's process id")
    ap.add_argument("--addr", required=True, help="voxproxy's listen address, 127.0.0.1:PORT")
    ap.add_argument("--counts", default="1000,10000", help="cumulative connection counts")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()

    host, _, port = args.addr.rpartition(":")
    if not ipaddress.ip_address(host.strip("[]")).is_loopback:
        sys.exit("--addr must be a loopback address")
    addr = (host.strip("[]"), int(port))
    counts = sorted(int(c) for c in args.counts.split(",") if c.strip())
    if not counts or counts[-1] > 50_000:
        sys.exit("--counts: between 1 and 50000 connections")
    raise_nofile(args.pid, counts[-1] + 1024)

    def say(msg):
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    # The baseline: voxproxy after one request on one connection (buffers and pools warmed).
    open_one(addr).close()
    time.sleep(SETTLE_S)
    base = vm(args.pid, "VmRSS")
    say(f"voxproxy {args.pid}: VmRSS {base} KiB with no client connection")

    socks = []
    levels = []
    try:
        for count in counts:
            start = time.monotonic()
            while len(socks) < count:
                socks.append(open_one(addr))
            opened_s = time.monotonic() - start
            time.sleep(SETTLE_S)
            rss = vm(args.pid, "VmRSS")
            per = (rss - base) / count
            levels.append(
                {
                    "connections": count,
                    "vm_rss_kib": rss,
                    "delta_kib": rss - base,
                    "kib_per_conn": round(per, 2),
                    "open_s": round(opened_s, 2),
                }
            )
            say(
                f"{count:>6} idle connections: VmRSS {rss} KiB, +{rss - base} KiB, "
                f"{per:.2f} KiB per connection"
            )
        # Still established and serving? Ask a spread-out sample again.
        step = max(1, len(socks) // SAMPLE)
        alive = 0
        for sock in socks[::step]:
            try:
                sock.sendall(REQUEST)
                alive += read_response(sock) == 200
            except OSError:
                pass
        sampled = len(socks[::step])
        say(f"{alive}/{sampled} sampled connections still answer")
        peak = vm(args.pid, "VmHWM")
    finally:
        for sock in socks:
            sock.close()

    if args.json:
        print(
            json.dumps(
                {
                    "base_vm_rss_kib": base,
                    "levels": levels,
                    "sample_alive": alive,
                    "sample_size": sampled,
                    "vm_hwm_kib": peak,
                }
            )
        )


if __name__ == "__main__":
    main()
