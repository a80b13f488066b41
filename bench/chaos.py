#!/usr/bin/env python3
"""The clients of bench/chaos.sh (standard library only): a paced normal client that measures
latency, peers that hold connections open without completing anything, clients that never read
their response, a /proc sampler, and the reports that turn their JSON into figures and verdicts.

    python3 bench/chaos.py load --url URL [--threads 1] [--interval 0.01] --duration S [--log F]
    python3 bench/chaos.py hold --addr 127.0.0.1:PORT --kinds plain:100,tls:100 [--cafile ca.pem]
    python3 bench/chaos.py nonread --addr 127.0.0.1:PORT --path /platform_api/GetBigFile/ --count 10
    python3 bench/chaos.py sample --pid PID --every 10 --duration S --out samples.jsonl
    python3 bench/chaos.py report SCENARIO NAME=FILE... [--bound X]

Everything goes to loopback addresses only, with bounded counts and bounded waits.
"""

import argparse
import ipaddress
import json
import os
import selectors
import socket
import ssl
import statistics
import sys
import threading
import time
import urllib.parse

# Import the other bench scripts without leaving a __pycache__ in the tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from idle_conns import fds, proc_entries, raise_nofile, rss  # noqa: E402 - the same /proc readings as the idle bench
from load import Reader, build_request  # noqa: E402 - the same HTTP/1.1 client as load.py

MAX_CONNS = 20_000
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def loopback_addr(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"{text}: only loopback addresses")
    return host, int(port)


def pct(values, p):
    """The p-th percentile (nearest rank) of values, or None."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def r3(x):
    return None if x is None else round(x, 3)


# --- load: the normal client ---------------------------------------------------------------------
def cmd_load(args):
    url = urllib.parse.urlsplit(args.url)
    loopback_addr(f"{url.hostname}:{url.port or 80}")
    if url.scheme != "http":
        sys.exit("--url: http only")
    if not 1 <= args.threads <= 64:
        sys.exit("--threads 1..64")
    request = build_request(url, "GET", None, args.header)
    deadline = time.monotonic() + args.duration
    lock = threading.Lock()
    records = []

    def stopped():
        return time.monotonic() >= deadline or (args.stop_file and os.path.exists(args.stop_file))

    def worker():
        sock = reader = None
        while not stopped():
            wall, t0 = time.time(), time.monotonic()
            rec = {"t": round(wall, 4)}
            try:
                if sock is None:
                    sock = socket.create_connection((url.hostname, url.port), timeout=args.timeout)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    reader = Reader(sock)
                sock.sendall(request)
                status, keep = reader.response()
                rec["status"] = status
                if not keep:
                    sock.close()
                    sock = None
            except socket.timeout:
                rec["error"] = "timeout"
            except (OSError, ConnectionError, ValueError, IndexError) as e:
                rec["error"] = type(e).__name__
            if "error" in rec and sock is not None:
                sock.close()
                sock = None
            rec["ms"] = round((time.monotonic() - t0) * 1000, 3)
            with lock:
                records.append(rec)
            if args.interval:
                time.sleep(args.interval)
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if args.log:
        with open(args.log, "w") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")
    print(json.dumps(summarise_load(records)))


def summarise_load(records):
    ok = [r["ms"] for r in records if 200 <= r.get("status", 0) < 300]
    statuses, errors = {}, {}
    for r in records:
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
        elif not 200 <= r["status"] < 300:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "requests": len(records),
        "ok": len(ok),
        "non_2xx": statuses,
        "errors": errors,
        "failed": sum(statuses.values()) + sum(errors.values()),
        "p50_ms": r3(pct(ok, 50)),
        "p99_ms": r3(pct(ok, 99)),
        "max_ms": r3(max(ok) if ok else None),
    }


# --- hold: connections that never complete anything ----------------------------------------------
KINDS = {
    # kind: (TLS?, ALPN, bytes sent once open)
    "plain": (False, None, b""),
    "slowloris": (False, None, b"GET /platform_api/GetAccountInfo/ HTTP/1.1\r\nHost: x\r\n"),
    "h2-partial": (False, None, H2_PREFACE[:16]),
    "h2-idle": (False, None, H2_PREFACE + H2_EMPTY_SETTINGS),
    "tls": (True, ["http/1.1"], b""),
    "tls-slowloris": (True, ["http/1.1"], b"GET /platform_api/GetAccountInfo/ HTTP/1.1\r\nHost: x\r\n"),
    "tls-h2-partial": (True, ["h2"], H2_PREFACE[:16]),
    "tls-h2-idle": (True, ["h2"], H2_PREFACE + H2_EMPTY_SETTINGS),
}
# What a slow client drips, one byte at a time: header lines that never end the head.
DRIP = b"X-Slow: a\r\n"


class Held:
    __slots__ = ("kind", "sock", "opened", "closed", "how", "dripped", "received")

    def __init__(self, kind, sock, opened):
        self.kind, self.sock, self.opened = kind, sock, opened
        self.closed = self.how = None
        self.dripped = self.received = 0


def cmd_hold(args):
    addr = loopback_addr(args.addr)
    plan = []
    for part in args.kinds.split(","):
        kind, _, n = part.partition(":")
        if kind not in KINDS:
            sys.exit(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
        plan.append((kind, int(n)))
    total = sum(n for _, n in plan)
    if not 1 <= total <= MAX_CONNS:
        sys.exit(f"between 1 and {MAX_CONNS} connections")
    raise_nofile(total + 256)
    ctxs = {}
    for kind, _ in plan:
        tls, alpn, _ = KINDS[kind]
        if tls and kind not in ctxs:
            ctx = ssl.create_default_context(cafile=args.cafile)
            ctx.set_alpn_protocols(alpn)
            ctxs[kind] = ctx

    sel = selectors.DefaultSelector()
    held, failed = [], {}
    # Interleave the kinds, so each sees the same load.
    order = []
    left = dict(plan)
    while any(left.values()):
        for kind, _ in plan:
            if left[kind]:
                order.append(kind)
                left[kind] -= 1
    for kind in order:
        tls, _, first = KINDS[kind]
        try:
            sock = socket.create_connection(addr, timeout=10)
            if tls:
                sock = ctxs[kind].wrap_socket(sock, server_hostname="localhost")
            if first:
                sock.sendall(first)
        except (OSError, ssl.SSLError) as e:
            failed[type(e).__name__] = failed.get(type(e).__name__, 0) + 1
            continue
        sock.setblocking(False)
        h = Held(kind, sock, time.monotonic())
        held.append(h)
        sel.register(sock, selectors.EVENT_READ, h)
    opened_all = time.monotonic()

    def close(h, how):
        if h.closed is None:
            h.closed, h.how = time.monotonic(), how
            sel.unregister(h.sock)
            h.sock.close()

    next_drip = time.monotonic() + args.drip
    while any(h.closed is None for h in held):
        now = time.monotonic()
        if now - opened_all > args.max_wait:
            break
        for key, _ in sel.select(timeout=0.05):
            h = key.data
            try:
                while True:
                    data = h.sock.recv(65536)
                    if not data:
                        close(h, "eof")
                        break
                    h.received += len(data)
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                close(h, "eof")
            except (ConnectionError, ssl.SSLError, OSError):
                close(h, "reset")
        if now >= next_drip:
            next_drip = now + args.drip
            for h in held:
                if h.closed is None and h.kind.endswith("slowloris"):
                    byte = DRIP[h.dripped % len(DRIP):][:1]
                    try:
                        h.sock.send(byte)
                        h.dripped += 1
                    except (ssl.SSLWantWriteError, BlockingIOError):
                        pass
                    except (ConnectionError, ssl.SSLError, OSError):
                        close(h, "reset")
    out = {"open_s": round(opened_all - (held[0].opened if held else opened_all), 2),
           "failed_to_open": failed, "kinds": {}}
    for kind, n in plan:
        mine = [h for h in held if h.kind == kind]
        times = [h.closed - h.opened for h in mine if h.closed is not None]
        out["kinds"][kind] = {
            "asked": n,
            "opened": len(mine),
            "closed": len(times),
            "still_open": len(mine) - len(times),
            "close_s_min": r3(min(times) if times else None),
            "close_s_p50": r3(statistics.median(times) if times else None),
            "close_s_max": r3(max(times) if times else None),
            "eof": sum(h.how == "eof" for h in mine),
            "reset": sum(h.how == "reset" for h in mine),
            "bytes_received": sum(h.received for h in mine),
            "bytes_dripped": sum(h.dripped for h in mine),
        }
    for h in held:
        if h.closed is None:
            h.sock.close()
    print(json.dumps(out))


# --- nonread: clients that ask for a large response and read nothing ------------------------------
def tcp_table():
    """(local_port, remote_port) -> (inode, tx_queue, rx_queue) over /proc/net/tcp and tcp6. The kernel
    makes the text a page per read as it goes, so an entry that moves between two reads can be
    missed: callers take an absence for real only when it lasts."""
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                text = f.read()
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            p = line.split()
            local = int(p[1].rsplit(":", 1)[1], 16)
            remote = int(p[2].rsplit(":", 1)[1], 16)
            tx, rx = (int(x, 16) for x in p[4].split(":"))
            out[(local, remote)] = (int(p[9]), tx, rx)
    return out


def cmd_nonread(args):
    addr = loopback_addr(args.addr)
    if not 1 <= args.count <= 1000:
        sys.exit("--count 1..1000")
    request = (f"GET {args.path} HTTP/1.1\r\nHost: {args.addr}\r\n\r\n").encode()
    socks = []
    for _ in range(args.count):
        sock = socket.socket()
        # Small before connect, so the window the client advertises stays small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        sock.settimeout(10)
        sock.connect(addr)
        sock.sendall(request)
        socks.append((sock, sock.getsockname()[1], time.monotonic()))
    released, missing = {}, {}
    # Bytes moving on a connection (the proxy's send queue, the client's receive queue) are the
    # last moment the proxy could see its client take something: the kernel may accept a little
    # more into a full receive buffer once it has compacted it, though the client reads nothing.
    queues, last_move = {}, {}
    peak_unread = 0
    if args.ready_file:
        open(args.ready_file, "w").close()
    start = time.monotonic()
    while len(released) < len(socks) and time.monotonic() - start < args.max_wait:
        table = tcp_table()
        unread = 0
        for sock, port, sent in socks:
            ours = table.get((port, addr[1]))
            unread += ours[2] if ours else 0
            if port in released:
                continue
            theirs = table.get((addr[1], port))
            if ours and theirs and theirs[0]:
                q = (theirs[1], ours[2])
                if queues.get(port) != q:
                    queues[port], last_move[port] = q, time.monotonic() - sent
            # The proxy's end of this connection: gone, or orphaned (inode 0: no process holds
            # it any more, the kernel is only flushing it).
            if theirs is None or theirs[0] == 0:
                first = missing.setdefault(port, time.monotonic())
                if time.monotonic() - first >= 0.25:
                    released[port] = first - sent
            else:
                missing.pop(port, None)
        peak_unread = max(peak_unread, unread)
        time.sleep(0.1)
    for sock, _, _ in socks:
        # Unread data makes close() send a reset: nothing lingers.
        sock.close()
    times = list(released.values())
    after_move = [t - last_move.get(p, 0) for p, t in released.items()]
    moves = [last_move.get(p, 0) for p in released]
    print(json.dumps({
        "count": len(socks),
        "released": len(times),
        "released_s_min": r3(min(times) if times else None),
        "released_s_max": r3(max(times) if times else None),
        "last_move_s_max": r3(max(moves) if moves else None),
        "released_after_move_s_min": r3(min(after_move) if after_move else None),
        "released_after_move_s_max": r3(max(after_move) if after_move else None),
        "peak_unread_kib_total": peak_unread // 1024,
    }))


# --- sample: RSS, descriptors, threads of a process tree ------------------------------------------
def client_conns(port):
    """Established connections whose server end is `port` and still held by a process."""
    return sum(1 for (local, remote), (inode, _, _) in tcp_table().items()
               if local == port and remote != 0 and inode != 0)


def snapshot(pid, port=None):
    out = {"t": round(time.time(), 3), "rss_kib": rss(pid), "fds": fds(pid),
           "threads": proc_entries(pid, "task")}
    if port:
        out["client_conns"] = client_conns(port)
    return out


def cmd_sample(args):
    end = time.monotonic() + args.duration
    with open(args.out, "a") as f:
        while True:
            f.write(json.dumps(snapshot(args.pid)) + "\n")
            f.flush()
            if time.monotonic() + args.every > end:
                break
            time.sleep(args.every)
            if args.stop_file and os.path.exists(args.stop_file):
                break


def cmd_snapshot(args):
    print(json.dumps(snapshot(args.pid, args.port)))


# --- reports: figures and verdicts ---------------------------------------------------------------
def load_json(path):
    with open(path) as f:
        text = f.read().strip()
    return json.loads(text.splitlines()[-1]) if text else {}


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Verdict:
    def __init__(self, scenario):
        self.scenario = scenario
        self.figures = {}
        self.checks = []

    def fig(self, **kw):
        self.figures.update(kw)

    def check(self, ok, what):
        self.checks.append((bool(ok), what))

    def note(self, ok, what):
        """A finding worth printing that is not the scenario's bound: never fails it."""
        self.checks.append((None if ok else "note", what))

    def emit(self, out):
        passed = all(ok is not False for ok, _ in self.checks)
        figs = " ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}"
                        for k, v in self.figures.items())
        print(f"FIGURE {self.scenario}: {figs}")
        for ok, what in self.checks:
            mark = {True: "ok  ", False: "FAIL", None: "ok  ", "note": "NOTE"}[ok]
            print(f"  {mark} {what}")
        print(f"{'PASS' if passed else 'FAIL'} {self.scenario}")
        if out:
            with open(out, "a") as f:
                f.write(json.dumps({"scenario": self.scenario, "pass": passed,
                                    "figures": self.figures,
                                    "checks": [{"ok": ok is not False, "note": ok == "note", "what": w}
                                               for ok, w in self.checks]}) + "\n")
        return passed


def report_slowloris(v, f, a):
    base, during, hold = load_json(f["base"]), load_json(f["during"]), load_json(f["hold"])
    k = hold["kinds"]["slowloris"]
    t = a.timeout
    v.fig(conns=k["opened"], closed=k["closed"], close_s_min=k["close_s_min"],
          close_s_max=k["close_s_max"], unloaded_p99_ms=base["p99_ms"],
          during_p99_ms=during["p99_ms"], normal_requests=during["requests"],
          normal_failed=during["failed"])
    v.check(k["opened"] == k["asked"], f"{k['opened']}/{k['asked']} slow connections opened")
    v.check(k["closed"] == k["opened"] and k["close_s_max"] is not None
            and k["close_s_max"] <= t + a.slack,
            f"every slow connection closed by the proxy within client_idle_timeout {t} s "
            f"(+{a.slack} s): {k['closed']} closed, the last after {k['close_s_max']} s")
    v.check(k["close_s_min"] is not None and k["close_s_min"] >= t - 0.5,
            f"none closed before the timeout (first after {k['close_s_min']} s)")
    v.check(during["failed"] == 0 and during["requests"] > 0,
            f"normal client: {during['failed']} failed of {during['requests']}")
    ratio = during["p99_ms"] / base["p99_ms"] if base.get("p99_ms") and during.get("p99_ms") else None
    v.fig(p99_ratio=r3(ratio))
    v.check(ratio is not None and ratio <= a.bound,
            f"normal client p99 {during['p99_ms']} ms during, {base['p99_ms']} ms unloaded: "
            f"{r3(ratio)}x (bound {a.bound}x)")


def report_silent(v, f, a):
    t = a.timeout
    kinds = {}
    for name in ("plain", "tls"):
        kinds.update(load_json(f[name])["kinds"])
    before, after = load_json(f["fds_before"]), load_json(f["fds_after"])
    before_tls, after_tls = load_json(f["fds_before_tls"]), load_json(f["fds_after_tls"])
    for kind, k in kinds.items():
        v.fig(**{f"{kind}_closed": f"{k['closed']}/{k['asked']}",
                 f"{kind}_close_s": f"{k['close_s_min']}-{k['close_s_max']}"})
        v.check(k["opened"] == k["asked"] and k["closed"] == k["opened"]
                and k["close_s_min"] >= t - 0.5 and k["close_s_max"] <= t + a.slack,
                f"{kind}: {k['closed']}/{k['asked']} closed between {k['close_s_min']} and "
                f"{k['close_s_max']} s (timeout {t} s, +{a.slack} s)")
    v.fig(fds_plain=f"{before['fds']}->{after['fds']}", fds_tls=f"{before_tls['fds']}->{after_tls['fds']}")
    v.check(after["fds"] <= before["fds"] and after_tls["fds"] <= before_tls["fds"],
            f"descriptors back to the baseline: plain listener {before['fds']} -> {after['fds']}, "
            f"TLS listener {before_tls['fds']} -> {after_tls['fds']}")


def report_nonreading(v, f, a):
    base, during, after = load_json(f["base"]), load_json(f["during"]), load_json(f["after"])
    nr, metrics = load_json(f["nonread"]), load_json(f["metrics"])
    t = a.timeout
    ratio = during["p99_ms"] / base["p99_ms"] if base.get("p99_ms") and during.get("p99_ms") else None
    v.fig(rss_kib=f"{metrics.get('rss_before')}->{metrics.get('rss_during')}",
          unloaded_p99_ms=base["p99_ms"], during_p99_ms=during["p99_ms"], after_p99_ms=after["p99_ms"],
          p99_ratio=r3(ratio), unloaded_p50_ms=base["p50_ms"], during_p50_ms=during["p50_ms"],
          in_flight_during=metrics.get("in_flight_during"), non_readers=nr["count"],
          unread_kib=nr["peak_unread_kib_total"], cut=nr["released"],
          cut_s=f"{nr['released_s_min']}-{nr['released_s_max']}",
          last_move_s=nr["last_move_s_max"],
          cut_after_last_move_s=f"{nr['released_after_move_s_min']}-{nr['released_after_move_s_max']}",
          aborted_lines=metrics.get("aborted_lines"), in_flight_after=metrics.get("in_flight_after"))
    v.check(metrics.get("in_flight_during", 0) >= nr["count"],
            f"the non-readers were stalled mid-response during the measurement "
            f"(in flight: {metrics.get('in_flight_during')})")
    v.check(during["failed"] == 0 and base["failed"] == 0,
            f"normal client: {base['failed']} failed unloaded, {during['failed']} during")
    v.check(ratio is not None and ratio <= a.bound,
            f"normal client p99 during {during['p99_ms']} ms vs unloaded {base['p99_ms']} ms: "
            f"{r3(ratio)}x (bound {a.bound}x)")
    # The idle check runs once per timeout: a connection is cut between one and two timeouts
    # after the last thing it did (here: the last byte that moved towards the client).
    lo, hi = nr["released_after_move_s_min"], nr["released_after_move_s_max"]
    v.check(nr["released"] == nr["count"] and lo is not None and t - 0.5 <= lo,
            f"non-readers cut: {nr['released']}/{nr['count']}, none before client_idle_timeout: "
            f"{lo} to {hi} s after the last byte moved towards them ({nr['released_s_min']} to "
            f"{nr['released_s_max']} s after their request, bytes last moving at "
            f"{nr['last_move_s_max']} s)")
    v.note(hi is not None and hi <= 2 * t + a.slack,
           f"cut within 2x client_idle_timeout of the last byte moved ({hi} s; src/proxy/conn.rs "
           f"promises at most twice the timeout after the connection's last event)")
    v.check(metrics.get("in_flight_after") == 0, f"in flight after: {metrics.get('in_flight_after')}")


def report_flap(v, f, a):
    recs = read_lines(f["log"])
    events = read_lines(f["events"])
    metrics = load_json(f["metrics"])
    total = summarise_load(recs)
    downs = [e for e in events if e["event"] == "down"]
    ups = [e for e in events if e["event"] == "up"]
    recovered = [e for e in events if e["event"] == "recovered"]
    recovery = [r3(r["t"] - u["t"]) for u, r in zip(ups, recovered)]
    # Up windows: from each recovery (and from the start) to the next stop. A request that began
    # inside one and ended before its stop should succeed.
    windows = []
    start = recs[0]["t"] if recs else 0
    for d in downs:
        windows.append((start, d["t"]))
        nxt = [r["t"] for r in recovered if r["t"] > d["t"]]
        start = nxt[0] if nxt else float("inf")
    windows.append((start, float("inf")))
    up_failed = [r for r in recs if any(s <= r["t"] and r["t"] + r["ms"] / 1000 < e for s, e in windows)
                 and ("error" in r or not 200 <= r["status"] < 300)]
    other = {k: n for k, n in total["non_2xx"].items() if k != "502"}
    v.fig(cycles=len(downs), requests=total["requests"], ok=total["ok"], non_2xx=total["non_2xx"],
          client_errors=total["errors"], errors_by_kind=metrics.get("errors_by_kind"),
          recovery_s=recovery, failed_while_up=len(up_failed),
          in_flight_after=metrics.get("in_flight_after"))
    v.check(len(recovered) == len(ups) and all(x <= a.recover_by for x in recovery),
            f"recovered after every start within {a.recover_by} s: {recovery}")
    v.check(not up_failed, f"0 failed requests while the upstream was up ({len(up_failed)})")
    v.check(not other and not total["errors"],
            f"while down only 502 answers, no dropped client connections (other statuses {other}, "
            f"client errors {total['errors']})")
    v.check(metrics.get("in_flight_after") == 0,
            f"no stuck requests: voxproxy_requests_in_flight {metrics.get('in_flight_after')} after")


def report_reload(v, f, a):
    w = [load_json(f[k]) for k in ("hup_static", "hup_jwt", "cp_static", "cp_jwt")]
    m = load_json(f["metrics"])
    failed = sum(x["non_2xx"] + x["errors"] for x in w)
    v.fig(hup_requests=w[0]["requests"] + w[1]["requests"], hup_failed=w[0]["non_2xx"] + w[0]["errors"] + w[1]["non_2xx"] + w[1]["errors"],
          sighups=m["sighups"], sighup_reloads=m["sighup_reloads"],
          cp_requests=w[2]["requests"] + w[3]["requests"],
          cp_failed=w[2]["non_2xx"] + w[2]["errors"] + w[3]["non_2xx"] + w[3]["errors"],
          cp_edits=m["cp_edits"], file_reloads=m["file_reloads"], clients_reloaded=m["clients_reloaded"],
          reload_failures=m["reload_failures"], statuses=[x.get("statuses") for x in w])
    v.check(failed == 0, f"0 failed requests through {m['sighups']} SIGHUPs and {m['cp_edits']} cp edits "
                         f"({failed} failed)")
    v.check(m["sighup_reloads"] >= m["sighups"] * 0.9,
            f"the SIGHUPs reloaded: {m['sighup_reloads']} reloads for {m['sighups']} signals")
    v.check(m["file_reloads"] >= m["cp_edits"] * 0.9,
            f"the cp edits reloaded: {m['file_reloads']} file-change reloads for {m['cp_edits']} edits")
    v.check(m["reload_failures"] == 0, f"no reload refused a file ({m['reload_failures']})")


def report_burst(v, f, a):
    r = load_json(f["idle"])
    after = r["after_close_vm_rss_kib"]
    v.fig(conns=r["levels"][-1]["connections"], baseline_kib=r["base_vm_rss_kib"],
          peak_kib=r["levels"][-1]["vm_rss_kib"], hwm_kib=r["vm_hwm_kib"], after_kib=after,
          after_ratio=r["after_close_ratio"], kib_per_conn=r["levels"][-1]["kib_per_conn"],
          fds=f"{r['base_fds']}->{r['after_close_fds']}",
          later_bursts=[(b["with_kib"], b["after_kib"]) for b in r["bursts"][1:]])
    v.check(r["sample_alive"] == r["sample_size"],
            f"{r['sample_alive']}/{r['sample_size']} sampled connections still answered")
    v.check(r["after_close_ratio"] <= a.bound,
            f"RSS {r['after_close_settle_s']:.0f} s after they close: {after} KiB, "
            f"{r['after_close_ratio']}x the baseline (bound {a.bound}x)")
    worst = max(b["after_kib"] for b in r["bursts"]) / r["base_vm_rss_kib"]
    v.check(worst <= a.bound, f"every burst: worst after-close RSS {worst:.2f}x the baseline")
    v.check(r["after_close_fds"] <= r["base_fds"],
            f"descriptors back to the baseline ({r['base_fds']} -> {r['after_close_fds']})")


def report_soak(v, f, a):
    s = read_lines(f["samples"])
    w = load_json(f["wrk"])
    before, after = load_json(f["before"]), load_json(f["after"])
    # Samples under load: the first is taken as the load starts; the warmed-up reference is the
    # second (10 s in), drift is the last against it.
    under = s[1:] if len(s) > 2 else s
    ref, last = under[0], under[-1]
    for key in ("rss_kib", "fds", "threads"):
        vals = [x[key] for x in under]
        v.fig(**{key: f"min {min(vals)} max {max(vals)} last {last[key]} "
                      f"drift {last[key] - ref[key]:+}"})
    v.fig(seconds=w["duration_us"] // 1_000_000, requests=w["requests"],
          req_per_s=round(w["requests"] / (w["duration_us"] / 1e6)), p50_ms=w["p50_us"] / 1000,
          p99_ms=w["p99_us"] / 1000, non_2xx=w["non_2xx"], socket_errors=w["errors"],
          statuses=w.get("statuses"), samples=len(s), idle_before=before, idle_after=after)
    v.check(w["non_2xx"] == 0 and w["errors"] == 0,
            f"0 errors: {w['non_2xx']} non-2xx, {w['errors']} socket errors of {w['requests']}")
    v.check(after["client_conns"] == 0,
            f"no client connection held after the load ({after['client_conns']}; descriptors "
            f"{before['fds']} before, {after['fds']} after: the difference is pooled upstream "
            f"connections, kept up to 60 s)")
    v.check(max(x["rss_kib"] for x in under) <= a.bound * ref["rss_kib"],
            f"RSS under load stays within {a.bound}x of its first warmed sample "
            f"({ref['rss_kib']} -> max {max(x['rss_kib'] for x in under)} KiB)")


REPORTS = {
    "slowloris": report_slowloris,
    "silent": report_silent,
    "nonreading": report_nonreading,
    "flap": report_flap,
    "reload": report_reload,
    "burst": report_burst,
    "soak": report_soak,
}


def cmd_report(args):
    files = dict(kv.split("=", 1) for kv in args.files)
    v = Verdict(args.scenario)
    try:
        REPORTS[args.scenario](v, files, args)
    except (OSError, KeyError, ValueError, TypeError, ZeroDivisionError, IndexError) as e:
        v.check(False, f"the scenario's results could not be read: {type(e).__name__}: {e}")
    sys.exit(0 if v.emit(args.out) else 1)


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def headline(name, f):
    """One sentence of a scenario's figures, and its bound, for the README's table."""
    if name == "slowloris":
        return (f"{f['closed']}/{f['conns']} slow connections closed {f['close_s_min']}–{f['close_s_max']} s "
                f"after opening; normal client p99 {f['unloaded_p99_ms']} → {f['during_p99_ms']} ms "
                f"({f['p99_ratio']}×), {f['normal_failed']} failed of {f['normal_requests']}",
                "closed within timeout + 1 s; 0 failed; p99 ≤ 2× unloaded")
    if name == "silent":
        kinds = [k[:-7] for k in f if k.endswith("_closed")]
        closed = sum(int(f[f"{k}_closed"].split("/")[0]) for k in kinds)
        asked = sum(int(f[f"{k}_closed"].split("/")[1]) for k in kinds)
        lo = min(float(f[f"{k}_close_s"].split("-")[0]) for k in kinds)
        hi = max(float(f[f"{k}_close_s"].split("-")[1]) for k in kinds)
        return (f"{closed}/{asked} silent connections ({len(kinds)} kinds, plain and TLS) closed "
                f"{lo}–{hi} s after opening; descriptors {f['fds_plain']} (plain), {f['fds_tls']} (TLS)",
                "closed between timeout − 0.5 s and timeout + 1 s; descriptors back")
    if name == "nonreading":
        before, during = (int(x) for x in f["rss_kib"].split("->"))
        return (f"normal client p99 {f['unloaded_p99_ms']} → {f['during_p99_ms']} ms ({f['p99_ratio']}×) "
                f"with {f['non_readers']} non-readers held (in flight {f['in_flight_during']}); "
                f"they were cut {f['cut_s'].replace('-', '–')} s after their request (bytes last moved "
                f"at {f['last_move_s']} s); RSS {mib(before)} → {mib(during)} while held",
                "p99 ≤ 2× unloaded, 0 failed; all cut, none before the timeout; in flight 0 after")
    if name == "flap":
        rec = f["recovery_s"]
        return (f"{f['cycles']} stops and starts: 200 again {min(rec)}–{max(rec)} s after each start; "
                f"{f['non_2xx'].get('502', 0):,} × 502 while down ({', '.join(f'{k} {v:,}' for k, v in f['errors_by_kind'].items())}), "
                f"{f['failed_while_up']} failed while up, of {f['requests']:,}; in flight {f['in_flight_after']} after",
                "back within 2 s; 0 failed while up; only 502 while down; in flight 0")
    if name == "reload":
        return (f"{f['hup_failed'] + f['cp_failed']} failed of {f['hup_requests'] + f['cp_requests']:,} "
                f"requests through {f['sighups']} SIGHUPs ({f['sighup_reloads']} reloads) and "
                f"{f['cp_edits']} `cp` edits ({f['file_reloads']} reloads), {f['reload_failures']} refused",
                "0 failed requests (no 401, no 5xx); the reloads happened")
    if name == "burst":
        later = ", ".join(f"{mib(a)}" for _, a in f["later_bursts"])
        return (f"RSS {mib(f['baseline_kib'])} idle → {mib(f['peak_kib'])} with {f['conns']:,} connections "
                f"({f['kib_per_conn']} KiB each) → {mib(f['after_kib'])} 15 s after they close "
                f"({f['after_ratio']}×); after bursts 2 and 3: {later}; descriptors {f['fds']}",
                "after close ≤ 2× the idle baseline, every burst")
    if name == "soak":
        return (f"{f['seconds']} s, {f['requests']:,} requests ({f['req_per_s']:,}/s), p99 {f['p99_ms']} ms, "
                f"{f['non_2xx']} non-2xx, {f['socket_errors']} socket errors; RSS KiB {f['rss_kib']}; "
                f"descriptors {f['fds']}; threads {f['threads']}",
                "0 errors; no client connection held after; RSS ≤ 2× its first warmed sample")
    return (", ".join(f"{k} {v}" for k, v in f.items()), "")


def cmd_table(args):
    """The README's table of a results file (one JSON line per scenario), then every figure."""
    rows = read_lines(args.results)
    print("| scenario | figures | bound | result |")
    print("|---|---|---|---|")
    for r in rows:
        try:
            text, bound = headline(r["scenario"], r["figures"])
        except (KeyError, ValueError, TypeError, IndexError):
            text, bound = "; ".join(f"{k} {v}" for k, v in r["figures"].items()), ""
        print(f"| {r['scenario']} | {text} | {bound} | {'PASS' if r['pass'] else '**FAIL**'} |")
    for r in rows:
        for c in r["checks"]:
            if not c["ok"] or c.get("note"):
                print(f"\n{r['scenario']} {'note' if c['ok'] else 'failed'}: {c['what']}")
    print("\nEvery figure, as the scenarios printed them:\n")
    for r in rows:
        figs = " ".join(f"{k}={json.dumps(v) if isinstance(v, (dict, list)) else v}"
                        for k, v in r["figures"].items())
        print(f"    {r['scenario']}: {figs}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("load", help="a paced normal client; JSON summary on stdout")
    p.add_argument("--url", required=True)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.01, help="pause after each request, s")
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--stop-file", help="stop early once this file exists")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--log", help="one JSON line per request")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("hold", help="connections that never complete a request")
    p.add_argument("--addr", required=True)
    p.add_argument("--kinds", required=True, help=f"KIND:N,... of {', '.join(KINDS)}")
    p.add_argument("--cafile")
    p.add_argument("--drip", type=float, default=2.0, help="slowloris: one byte every S")
    p.add_argument("--max-wait", type=float, default=60.0)
    p.set_defaults(func=cmd_hold)

    p = sub.add_parser("nonread", help="clients that never read a large response")
    p.add_argument("--addr", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--rcvbuf", type=int, default=4096)
    p.add_argument("--max-wait", type=float, default=120.0)
    p.add_argument("--ready-file", help="created once every request is sent")
    p.set_defaults(func=cmd_nonread)

    p = sub.add_parser("sample", help="RSS, descriptors, threads every --every s")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--every", type=float, default=10.0)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stop-file")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("snapshot", help="one sample, on stdout")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, help="also count client connections held on this port")
    p.set_defaults(func=cmd_snapshot)

    p = sub.add_parser("report", help="figures and a verdict for one scenario")
    p.add_argument("scenario", choices=sorted(REPORTS))
    p.add_argument("files", nargs="*", help="NAME=FILE")
    p.add_argument("--timeout", type=float, default=5.0, help="client_idle_timeout, s")
    p.add_argument("--slack", type=float, default=1.0)
    p.add_argument("--bound", type=float, default=2.0)
    p.add_argument("--recover-by", type=float, default=2.0)
    p.add_argument("--out", help="append the verdict as a JSON line")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("table", help="markdown table of a results file")
    p.add_argument("results")
    p.set_defaults(func=cmd_table)

    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
