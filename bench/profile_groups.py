#!/usr/bin/env python3
"""Group a flat perf profile (self time per symbol) by component: kernel, allocator, memcpy,
TLS and crypto, h2, hyper, tokio, voxproxy's own code, and so on (standard library only).

    perf report --no-children --sort symbol -g none --stdio --percent-limit 0 | \
        python3 bench/profile_groups.py
"""

import re
import sys

LINE = re.compile(r"^\s*([0-9.]+)%\s+\[(.)\]\s+(.*?)\s*$")

# (component, test on the symbol), first match wins.
RULES = [
    ("allocator (glibc malloc/free)", lambda s: re.match(
        r"(_int_malloc|_int_free|_int_realloc|malloc|cfree|free|realloc|calloc|__libc_|"
        r"malloc_consolidate|unlink_chunk|tcache|arena_)", s)),
    ("memcpy/memmove/memset/memcmp", lambda s: re.match(r"__mem(move|cpy|set|cmp)", s)),
    ("TLS and crypto (rustls, aws-lc)", lambda s: "rustls" in s or "aws_lc" in s
     or re.match(r"_?(aesni|gcm|ghash|sha|aes_|chacha|poly1305|x25519|ecp_|bn_|ec_)", s)
     or s.startswith("_aesni")),
    ("h2 (HTTP/2 codec, HPACK)", lambda s: root(s) == "h2"),
    ("hyper + hyper-util (HTTP/1, client pool, server conn)", lambda s: root(s) in (
        "hyper", "hyper_util")),
    ("tokio (runtime, I/O driver, timers)", lambda s: root(s) == "tokio"),
    ("voxproxy's own code", lambda s: root(s) == "voxproxy"),
    ("http crate (HeaderMap, Uri)", lambda s: root(s) == "http"),
    ("tracing / tracing-subscriber", lambda s: root(s) in ("tracing", "tracing_subscriber",
                                                            "tracing_core")),
    ("prometheus-client (metrics)", lambda s: root(s) == "prometheus_client"),
    ("std / core / alloc (Rust)", lambda s: root(s) in ("std", "core", "alloc")),
    ("futures / bytes / other crates", lambda s: "::" in s),
    ("libc and vdso (syscall wrappers, clock_gettime)", lambda s: True),
]


def root(symbol):
    """The crate a Rust symbol belongs to: `<hyper::x::Y as Z>::f` -> `hyper`."""
    s = symbol.lstrip("<&*( ")
    s = re.sub(r"^(dyn |impl |mut |const )", "", s)
    return s.split("::", 1)[0] if "::" in s else ""


def main():
    groups = {}
    total = 0.0
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        pct, kind, sym = float(m.group(1)), m.group(2), m.group(3)
        total += pct
        if kind == "k":
            name = "kernel (syscalls, TCP; loopback delivery to the peer included)"
        else:
            name = next(n for n, test in RULES if test(sym))
        groups[name] = groups.get(name, 0.0) + pct
    for name, pct in sorted(groups.items(), key=lambda kv: -kv[1]):
        print(f"{pct:6.2f}%  {name}")
    print(f"{total:6.2f}%  (sum of the symbols listed)")


if __name__ == "__main__":
    main()
