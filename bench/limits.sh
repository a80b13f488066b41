#!/usr/bin/env bash
# What a rate limit costs per request: a gateway client with a static key, without a `rate`,
# with a `rate` counted in the process (no limits_redis), and with a `rate` counted in Redis on
# 127.0.0.1 (limits_redis): one EVALSHA round trip per request. The rate is far above the load,
# so every request is admitted and every one pays for the decision. What it measures and why is
# in bench/README.md ("Limits").
#
#   bash bench/limits.sh
#   BENCH_VOXPROXY=target/release/voxproxy BENCH_ROUNDS=1 bash bench/limits.sh
#
# Environment (defaults in brackets):
#   BENCH_DURATION     seconds of each pass [5]
#   BENCH_WARMUP       seconds of load before the passes, not counted [1]
#   BENCH_ROUNDS       rounds; each runs every row once, in a new random order [3]
#   BENCH_CONNECTIONS  wrk connections of the load pass [50]
#   BENCH_ROWS         [gateway rate-local rate-redis]
#   BENCH_PIN          PROXY/UPSTREAM/LOAD CPU lists for taskset [0/0/1]: voxproxy, the nginx
#                      upstream and redis-server share CPU 0, wrk alone on CPU 1
#   BENCH_VOXPROXY     a prebuilt voxproxy (else `cargo build --release --locked`); copied first
#   BENCH_SKIP_INSTALL 1: do not apt-get install missing tools
#   BENCH_KEEP_WORK    1: keep the work directory
#
# Two wrk passes per row and round: one connection (a closed loop: each request's latency is
# what one request costs, so the Redis round trip shows as it is, and nothing is batched), then
# BENCH_CONNECTIONS connections (req/s; many decisions share each read and write to Redis). CPU
# per request in both, from utime + stime in /proc/PID/stat of voxproxy (every thread) and of
# redis-server, over the requests wrk counted.
# Every process it starts is stopped by PID when it exits, however it exits.
set -Eeuo pipefail
trap 'echo "bench/limits.sh: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-1}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNECTIONS:-50}
read -r -a ROWS <<<"${BENCH_ROWS:-gateway rate-local rate-redis}"
IFS=/ read -r PROXY_CPUS UPSTREAM_CPUS LOAD_CPUS <<<"${BENCH_PIN:-0/0/1}"
CLK_TCK=$(getconf CLK_TCK)
# The client's static key and its rate (far above what the machine can serve: nothing refused).
KEY=vxp_benchlimitsbenchlimitsbenchlimitsbenchli
RATE="1000000/s"

if [[ ${BENCH_SKIP_INSTALL:-0} != 1 ]]; then
    install_tools wrk nginx redis-server curl openssl python3 taskset pgrep
fi
if [[ -z ${BENCH_VOXPROXY:-} ]]; then
    log "cargo build --release --locked --bin voxproxy"
    CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked --bin voxproxy
fi
VOXPROXY_SRC=${BENCH_VOXPROXY:-$ROOT/target/release/voxproxy}

bench_workdir limits
make_keys

# --- the upstream and Redis (long-lived) -------------------------------------------------------
UP_H1_PORT=$(free_port)
UP_H2_PORT=$(free_port)
UP_STATUS_PORT=$(free_port)
nginx_upstream_conf "$WORK/upstream" "$UP_H1_PORT" "$UP_H2_PORT" "$UP_STATUS_PORT"
spawn "$WORK/upstream/stderr.log" "$UPSTREAM_CPUS" nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf"
REDIS_PORT=$(free_port)
spawn "$WORK/redis.log" "$UPSTREAM_CPUS" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 \
    --save '' --appendonly no --dir "$WORK"
REDIS_PID=$SPAWNED
for ((i = 0; i < 200; i++)); do
    [[ $(redis-cli -p "$REDIS_PORT" PING 2>/dev/null) == PONG ]] && break
    sleep 0.05
done

HASH=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
printf '[clients.bench]\nstatic_key_sha256 = "%s"\n' "$HASH" >"$WORK/clients-free.toml"
printf '[clients.bench]\nstatic_key_sha256 = "%s"\nrate = "%s"\n' "$HASH" "$RATE" >"$WORK/clients-rate.toml"

cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"non_2xx":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout, latency:percentile(50), latency:percentile(99)))
end
EOF

# start_row NAME: voxproxy in gateway mode for that row; sets SYS_PID and SYS_URL.
start_row() {
    local port clients="clients-free.toml" extra=()
    port=$(free_port)
    case $1 in
    gateway) ;;
    rate-local) clients="clients-rate.toml" ;;
    rate-redis)
        clients="clients-rate.toml"
        extra=(--limits-redis "redis://127.0.0.1:$REDIS_PORT")
        ;;
    *)
        echo "unknown row $1" >&2
        exit 2
        ;;
    esac
    spawn "$WORK/$1.log" "$PROXY_CPUS" "$VOXPROXY" serve --workers 1 --log-level warn \
        --log-format json --listen "127.0.0.1:$port" --upstream "https://127.0.0.1:$UP_H2_PORT" \
        --upstream-ca "$WORK/ca.pem" --credentials "$WORK/credentials.json" \
        --clients "$WORK/$clients" "${extra[@]}"
    SYS_PID=$SPAWNED
    SYS_URL="http://127.0.0.1:$port/platform_api/GetAccountInfo/"
    wait_http "$SYS_URL" -H "Proxy-Authorization: Bearer $KEY"
    if [[ $1 == rate-redis ]]; then
        # Shared once the gauge says so (the connection is made in the background).
        for ((i = 0; i < 100; i++)); do
            curl -s "http://127.0.0.1:$port/metrics" | grep -q '^voxproxy_limits_shared 1' && return 0
            sleep 0.05
        done
        echo "rate-redis never reached voxproxy_limits_shared 1" >&2
        exit 1
    fi
}

run_wrk() { # CONNECTIONS SECONDS
    taskset -c "$LOAD_CPUS" wrk -t1 -c"$1" -d"${2}s" --latency -s "$WORK/report.lua" \
        -H "Proxy-Authorization: Bearer $KEY" "$SYS_URL" | sed -n 's/^WRKJSON //p'
}

ticks() { # PID: utime + stime of the process tree
    local t
    read -r -a t <<<"$(cpu_ticks "$1")"
    echo $((t[0] + t[1]))
}

RESULTS=$WORK/results.jsonl
for ((round = 1; round <= ROUNDS; round++)); do
    mapfile -t order < <(printf '%s\n' "${ROWS[@]}" | shuf)
    for row in "${order[@]}"; do
        log "round $round: $row"
        start_row "$row"
        run_wrk "$CONNS" "$WARMUP" >/dev/null
        q0=$(ticks "$SYS_PID")
        s0=$(ticks "$REDIS_PID")
        lat=$(run_wrk 1 "$DURATION")
        q1=$(ticks "$SYS_PID")
        s1=$(ticks "$REDIS_PID")
        p0=$(ticks "$SYS_PID")
        r0=$(ticks "$REDIS_PID")
        load=$(run_wrk "$CONNS" "$DURATION")
        p1=$(ticks "$SYS_PID")
        r1=$(ticks "$REDIS_PID")
        printf '{"round":%d,"row":"%s","latency":%s,"load":%s,"proxy_ticks_1":%d,"redis_ticks_1":%d,"proxy_ticks":%d,"redis_ticks":%d,"clk_tck":%d}\n' \
            "$round" "$row" "$lat" "$load" $((q1 - q0)) $((s1 - s0)) $((p1 - p0)) $((r1 - r0)) "$CLK_TCK" >>"$RESULTS"
        stop "$SYS_PID"
    done
done

python3 - "$RESULTS" "$CONNS" "$DURATION" "${ROWS[@]}" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
conns, secs, order = sys.argv[2], sys.argv[3], sys.argv[4:]
med = lambda xs: statistics.median(xs)
out = {}
for name in order:
    rs = [r for r in rows if r["row"] == name]
    bad = sum(r[p]["non_2xx"] + r[p]["errors"] for r in rs for p in ("latency", "load"))
    per = lambda r, k, p: r[k] / r["clk_tck"] * 1e6 / r[p]["requests"]
    cpu = [per(r, "proxy_ticks", "load") for r in rs]
    rcpu = [per(r, "redis_ticks", "load") for r in rs]
    cpu1 = [per(r, "proxy_ticks_1", "latency") for r in rs]
    rcpu1 = [per(r, "redis_ticks_1", "latency") for r in rs]
    out[name] = dict(
        p50=med([r["latency"]["p50_us"] for r in rs]), p99=med([r["latency"]["p99_us"] for r in rs]),
        rps=med([r["load"]["requests"] / r["load"]["duration_us"] * 1e6 for r in rs]), cpu=med(cpu), rcpu=med(rcpu),
        cpu1=med(cpu1), rcpu1=med(rcpu1), bad=bad, n=len(rs))
base = out.get("gateway")
print(f"| row | p50, 1 conn | p99, 1 conn | voxproxy CPU µs/req, 1 conn | redis CPU µs/req, 1 conn | req/s, {conns} conns | voxproxy CPU µs/req, {conns} conns | redis CPU µs/req, {conns} conns | non-2xx + errors |")
print("|---|---|---|---|---|---|---|---|---|")
for name, o in out.items():
    print(f"| {name} | {o['p50']} µs | {o['p99']} µs | {o['cpu1']:.1f} | {o['rcpu1']:.1f} | {o['rps']:,.0f} | {o['cpu']:.1f} | {o['rcpu']:.1f} | {o['bad']} |")
if base:
    for name, o in out.items():
        if name == "gateway":
            continue
        print(f"\n{name} minus gateway: p50 {o['p50'] - base['p50']:+} µs, p99 {o['p99'] - base['p99']:+} µs; "
              f"voxproxy CPU {o['cpu1'] - base['cpu1']:+.1f} µs/req at 1 conn, {o['cpu'] - base['cpu']:+.1f} at {conns}; "
              f"redis-server {o['rcpu1']:.1f} and {o['rcpu']:.1f} µs/req")
print(f"\nmedians over {next(iter(out.values()))['n']} rounds of {secs} s per pass")
EOF
