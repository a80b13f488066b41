#!/usr/bin/env python3
"""An exact number of HTTP/1.1 requests over keep-alive connections (standard library only).

For bench/instructions.sh, which divides instruction counts by request counts: wrk runs for a
duration, so how many requests the server saw is only known to within the ones in flight at the
end; this sends exactly --requests, spread over --connections persistent connections (one
thread each, one request at a time per connection), and fails unless every answer is 2xx.

    python3 bench/load.py --url http://127.0.0.1:8080/platform_api/GetAccountInfo/ \
        --requests 5000 --connections 10 [--post-bytes 65536] [--header 'Name: value'] \
        [--cacert ca.pem] [--json]

    # Does the server read request bodies? K pipelined POSTs and a GET on one connection must
    # get K + 1 answers (a server that left a body unread would parse it as the next request).
    python3 bench/load.py --url https://... --post-bytes 65536 --check-pipelined 3

Bounded: at most --requests requests and --connections connections, to a loopback address.
"""

import argparse
import ipaddress
import json
import socket
import ssl
import sys
import threading
import time
import urllib.parse


def post_body(n):
    """The bench's urlencoded POST: `cmd=SetAccountInfo&data=` and n bytes of hex-ish text."""
    return b"cmd=SetAccountInfo&data=" + (b"0123456789abcdef" * (n // 16 + 1))[:n]


def build_request(url, method, body, headers):
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.netloc}"]
    lines += headers
    if body is not None:
        lines.append("Content-Type: application/x-www-form-urlencoded")
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Reader:
    """Reads HTTP/1.1 responses (Content-Length or chunked) off one socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self):
        """One response: (status, keep_alive)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                close = True
        if chunked:
            while True:
                size = int(self._line().split(b";")[0], 16)
                self._take(size + 2)
                if size == 0:
                    break
        else:
            self._take(length)
        return status, not close


def connect(url, ctx):
    port = url.port or (443 if url.scheme == "https" else 80)
    sock = socket.create_connection((url.hostname, port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ctx is not None:
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    return sock


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--post-bytes", type=int, help="POST a urlencoded body of this many data bytes")
    ap.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    ap.add_argument("--cacert", help="CA to verify an https server with (name: localhost)")
    ap.add_argument("--check-pipelined", type=int, metavar="K")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("http", "https"):
        sys.exit("--url: http or https")
    if not ipaddress.ip_address(url.hostname).is_loopback:
        sys.exit("--url must point at a loopback address")
    if not (1 <= args.connections <= 1000 and 1 <= args.requests <= 10_000_000):
        sys.exit("--connections 1..1000, --requests 1..10000000")
    ctx = None
    if url.scheme == "https":
        ctx = ssl.create_default_context(cafile=args.cacert)
        ctx.set_alpn_protocols(["http/1.1"])
    body = post_body(args.post_bytes) if args.post_bytes is not None else None
    method = "POST" if body is not None else "GET"
    request = build_request(url, method, body, args.header)

    if args.check_pipelined:
        get = build_request(url, "GET", None, args.header)
        sock = connect(url, ctx)
        sock.sendall(request * args.check_pipelined + get)
        reader = Reader(sock)
        statuses = [reader.response()[0] for _ in range(args.check_pipelined + 1)]
        sock.close()
        if any(not 200 <= s < 300 for s in statuses):
            sys.exit(f"pipelined requests answered {statuses}")
        print(f"{len(statuses)} pipelined requests answered {statuses}")
        return

    lock = threading.Lock()
    state = {"left": args.requests, "ok": 0, "bad": {}, "errors": []}

    def take():
        with lock:
            if state["left"] <= 0 or state["errors"]:
                return False
            state["left"] -= 1
            return True

    def worker():
        sock = None
        try:
            while take():
                if sock is None:
                    sock = connect(url, ctx)
                    reader = Reader(sock)
                sock.sendall(request)
                status, keep = reader.response()
                with lock:
                    if 200 <= status < 300:
                        state["ok"] += 1
                    else:
                        state["bad"][status] = state["bad"].get(status, 0) + 1
                if not keep:
                    sock.close()
                    sock = None
        except Exception as e:  # noqa: BLE001 - reported, and the run fails
            with lock:
                state["errors"].append(repr(e))
        finally:
            if sock is not None:
                sock.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    result = {
        "requests": args.requests,
        "ok": state["ok"],
        "non_2xx": state["bad"],
        "errors": state["errors"][:5],
        "seconds": round(elapsed, 3),
        "rps": round(state["ok"] / elapsed, 1) if elapsed else None,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['ok']}/{args.requests} requests 2xx in {elapsed:.2f} s "
              f"({result['rps']} req/s)")
    if state["ok"] != args.requests:
        print(f"not every request succeeded: {result}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
