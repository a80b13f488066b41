#!/usr/bin/env bash
# voxproxy side by side with nginx, HAProxy and the upstream alone, everything on 127.0.0.1.
# What it measures and why is in bench/README.md; a full run ends by rewriting that file's
# results section.
#
#   bash bench/run.sh                                  # 5 rounds x 10 s per system and workload
#   BENCH_QUICK=1 bash bench/run.sh                    # smoke test: 1 round of 3 s, no README
#   BENCH_UPSTREAM=hyper bash bench/run.sh             # the hyper upstream instead of nginx
#   BENCH_PIN=split bash bench/run.sh                  # the proxy alone on a core
#   bash bench/run.sh profile                          # perf profile of voxproxy under load
#
# Environment (defaults in brackets):
#   BENCH_DURATION     seconds per measurement [10]
#   BENCH_WARMUP       seconds of load before each measurement, not counted [1]
#   BENCH_ROUNDS       rounds; each runs every system x workload once, in a new random order [5]
#   BENCH_QUICK        1: BENCH_DURATION=3 BENCH_ROUNDS=1 BENCH_IDLE_CONNS=1000, no README
#   BENCH_CONNECTIONS  wrk connections [50]
#   BENCH_WRK_THREADS  wrk threads [1]
#   BENCH_SYSTEMS      rows [direct nginx haproxy voxproxy voxproxy-h1]
#                      direct: wrk to the upstream itself; voxproxy: against the upstream that
#                      offers h2 by ALPN; voxproxy-h1 (and nginx, haproxy): against the one that
#                      offers only http/1.1
#   BENCH_WORKLOADS    [get post]
#   BENCH_UPSTREAM     nginx | hyper (examples/bench_upstream.rs) [nginx]
#   BENCH_PIN          where things run, PROXY/UPSTREAM/LOAD as taskset CPU lists, or a preset:
#                      shared = 0/0/1: proxy and upstream share CPU 0, wrk alone on CPU 1 [shared]
#                      split  = 1/0/0: the proxy alone on CPU 1, upstream and wrk on CPU 0
#                      none   = no pinning
#   BENCH_SYSCALLS     perf | strace | off: how syscalls/request are counted, in a separate pass
#                      after each measured window [perf if its tracepoints are readable]
#   BENCH_SYSCALL_SECONDS  length of that pass [3]
#   BENCH_MAX_OTHER_CPU  a measurement during which other processes used more than this % of a
#                      core is taken again [10], up to BENCH_RETRIES times [3; 0 with BENCH_QUICK]
#   BENCH_IDLE_CONNS   idle keep-alive client connections for the memory test, 0 to skip [5000]
#   BENCH_IDLE_SYSTEMS [voxproxy nginx]
#   BENCH_OUT          JSON results [bench/results/latest.json; /tmp/... with BENCH_QUICK]
#   BENCH_README       1: write the results into bench/README.md [1 unless BENCH_QUICK]
#   BENCH_SKIP_INSTALL 1: do not apt-get install missing tools
#   BENCH_VOXPROXY     a prebuilt voxproxy to measure (not built then); copied to the work
#                      directory first so a concurrent build cannot replace it mid-run
#   BENCH_UPSTREAM_BIN a prebuilt examples/bench_upstream (BENCH_UPSTREAM=hyper)
#   BENCH_SKIP_BUILD   1: build nothing, use target/release/... as it is
#   BENCH_KEEP_WORK    1: keep the work directory (configs, logs, raw wrk output)
#
# Builds use CARGO_PROFILE_RELEASE_STRIP=false: the release code with its symbol table kept (for
# profiles and callgrind; the symbol table is not loaded, so RSS is unchanged).
# Every process it starts is stopped by PID when it exits, however it exits.
set -Eeuo pipefail
trap 'echo "bench/run.sh: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

MODE=${1:-compare}
case $MODE in
compare | profile) ;;
*)
    echo "usage: bash bench/run.sh [compare|profile]" >&2
    exit 2
    ;;
esac
QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${BENCH_DURATION:-3}
    ROUNDS=${BENCH_ROUNDS:-1}
    IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
    WRITE_README=${BENCH_README:-0}
else
    DURATION=${BENCH_DURATION:-10}
    ROUNDS=${BENCH_ROUNDS:-5}
    IDLE_CONNS=${BENCH_IDLE_CONNS:-5000}
    WRITE_README=${BENCH_README:-1}
fi
WARMUP=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNECTIONS:-50}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
read -r -a SYSTEMS <<<"${BENCH_SYSTEMS:-direct nginx haproxy voxproxy voxproxy-h1}"
read -r -a WORKLOADS <<<"${BENCH_WORKLOADS:-get post}"
read -r -a IDLE_SYSTEMS <<<"${BENCH_IDLE_SYSTEMS:-voxproxy nginx}"
UPSTREAM_KIND=${BENCH_UPSTREAM:-nginx}
PIN=${BENCH_PIN:-shared}
SYSCALL_SECONDS=${BENCH_SYSCALL_SECONDS:-3}
OUT=${BENCH_OUT:-$ROOT/bench/results/latest.json}
# A smoke test does not overwrite the committed results.
[[ $QUICK == 1 ]] && OUT=${BENCH_OUT:-/tmp/voxproxy-bench-quick.json}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

case $UPSTREAM_KIND in
nginx | hyper) ;;
*)
    echo "BENCH_UPSTREAM must be nginx or hyper" >&2
    exit 2
    ;;
esac
case $PIN in
shared) PIN_SPEC=0/0/1 ;;
split) PIN_SPEC=1/0/0 ;;
none) PIN_SPEC=all/all/all ;;
*/*/*) PIN_SPEC=$PIN ;;
*)
    echo "BENCH_PIN must be shared, split, none or PROXY/UPSTREAM/LOAD CPU lists" >&2
    exit 2
    ;;
esac
IFS=/ read -r PROXY_CPUS UPSTREAM_CPUS LOAD_CPUS <<<"$PIN_SPEC"
if [[ $PIN_SPEC != all/all/all && $(nproc) -lt 2 ]]; then
    echo "BENCH_PIN=$PIN needs 2 CPUs; use BENCH_PIN=none" >&2
    exit 2
fi
# The hyper upstream runs one runtime thread per CPU it may use.
if [[ $UPSTREAM_CPUS == all ]]; then UPSTREAM_THREADS=$(nproc); else UPSTREAM_THREADS=1; fi

# --- tools and binaries ------------------------------------------------------------------------
if [[ ${BENCH_SKIP_INSTALL:-0} != 1 ]]; then
    tools=(wrk nginx haproxy curl openssl python3 taskset pgrep perf strace)
    install_tools "${tools[@]}"
fi
export CARGO_PROFILE_RELEASE_STRIP=false
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    # Two commands: building the example with the binary would unify the dev-dependencies'
    # features (tokio "full") into the voxproxy binary being measured.
    if [[ -z ${BENCH_VOXPROXY:-} ]]; then
        log "cargo build --release --locked --bin voxproxy"
        cargo build --release --locked --bin voxproxy
    fi
    if [[ $UPSTREAM_KIND == hyper && -z ${BENCH_UPSTREAM_BIN:-} ]]; then
        log "cargo build --release --locked --example bench_upstream"
        cargo build --release --locked --example bench_upstream
    fi
fi
VOXPROXY_SRC=${BENCH_VOXPROXY:-$TARGET_DIR/release/voxproxy}
UPSTREAM_BIN_SRC=${BENCH_UPSTREAM_BIN:-$TARGET_DIR/release/examples/bench_upstream}
[[ -x $VOXPROXY_SRC ]] || {
    echo "missing $VOXPROXY_SRC (build it, or set BENCH_VOXPROXY)" >&2
    exit 1
}
if [[ $UPSTREAM_KIND == hyper && ! -x $UPSTREAM_BIN_SRC ]]; then
    echo "missing $UPSTREAM_BIN_SRC (build it, or set BENCH_UPSTREAM_BIN)" >&2
    exit 1
fi

bench_workdir bench
if [[ $UPSTREAM_KIND == hyper ]]; then
    cp "$UPSTREAM_BIN_SRC" "$WORK/bench_upstream"
    UPSTREAM_BIN=$WORK/bench_upstream
fi

# How syscalls are counted: perf's raw_syscalls tracepoint when this kernel lets us read it (an
# in-kernel counter, cheap), else strace -c (a ptrace stop per call: slow, hence a separate pass).
SYSCALLS=${BENCH_SYSCALLS:-auto}
if [[ $SYSCALLS == auto ]]; then
    if perf stat -x, -e raw_syscalls:sys_enter -- true 2>&1 | grep -q '^[0-9]'; then
        SYSCALLS=perf
    elif command -v strace >/dev/null; then
        SYSCALLS=strace
    else
        SYSCALLS=off
    fi
fi
log "syscalls counted with: $SYSCALLS"

make_keys

# --- the upstream (long-lived) -----------------------------------------------------------------
# Sets UP_H1_PORT (offers only http/1.1), UP_H2_PORT (offers h2 and http/1.1) and UP_PIDS.
UP_PIDS=()
UP_STATUS_PORT=
if [[ $UPSTREAM_KIND == nginx ]]; then
    UP_H1_PORT=$(free_port) UP_H2_PORT=$(free_port) UP_STATUS_PORT=$(free_port)
    nginx_upstream_conf "$WORK/upstream" "$UP_H1_PORT" "$UP_H2_PORT" "$UP_STATUS_PORT"
    spawn "$WORK/upstream/stderr.log" "$UPSTREAM_CPUS" nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf"
    UP_PIDS+=("$SPAWNED")
else
    start_hyper() { # NAME [--http1-only]; sets UP_PORT
        local name=$1 i
        shift
        spawn "$WORK/$name.log" "$UPSTREAM_CPUS" "$UPSTREAM_BIN" --cert "$WORK/server.pem" \
            --key "$WORK/server.key" --threads "$UPSTREAM_THREADS" "$@"
        UP_PIDS+=("$SPAWNED")
        for ((i = 0; i < 100; i++)); do
            UP_PORT=$(awk '/^listening / {split($2, a, ":"); print a[2]}' "$WORK/$name.log")
            [[ -n $UP_PORT ]] && return 0
            sleep 0.1
        done
        echo "$name did not start: $(cat "$WORK/$name.log")" >&2
        return 1
    }
    start_hyper upstream-h2
    UP_H2_PORT=$UP_PORT
    start_hyper upstream-h1 --http1-only
    UP_H1_PORT=$UP_PORT
fi
for p in "$UP_H1_PORT" "$UP_H2_PORT"; do
    wait_http "https://localhost:$p/platform_api/GetAccountInfo/" --cacert "$WORK/ca.pem" \
        --resolve "localhost:$p:127.0.0.1" -H "Authorization: Bearer $JWT"
done
log "$UPSTREAM_KIND upstream: http/1.1 only on $UP_H1_PORT, h2 + http/1.1 on $UP_H2_PORT"
# It must refuse a request without Authorization (a proxy that forgot it would show as non-2xx),
# speak h2 on one port only, and read request bodies (checked with pipelined POSTs).
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/ca.pem" \
    "https://127.0.0.1:$UP_H1_PORT/platform_api/GetAccountInfo/" || true)
[[ $code == 401 ]] || {
    echo "the upstream answered $code without Authorization (want 401)" >&2
    exit 1
}
for p in "$UP_H1_PORT:1.1" "$UP_H2_PORT:2"; do
    v=$(curl -s -o /dev/null -w '%{http_version}' --http2 --cacert "$WORK/ca.pem" \
        -H "Authorization: Bearer $JWT" "https://127.0.0.1:${p%%:*}/platform_api/GetAccountInfo/")
    [[ $v == "${p##*:}" ]] || {
        echo "upstream port ${p%%:*} negotiated HTTP/$v (want ${p##*:})" >&2
        exit 1
    }
done
python3 "$ROOT/bench/load.py" --url "https://127.0.0.1:$UP_H1_PORT/platform_api/SetAccountInfo/" \
    --cacert "$WORK/ca.pem" --header "Authorization: Bearer $JWT" --post-bytes 65536 \
    --check-pipelined 3 >/dev/null

# --- wrk scripts -------------------------------------------------------------------------------
# report.lua: the timed pass. Only done(): a response() hook would make wrk parse every response
# into Lua, which costs the load generator. wrk counts statuses >= 400 as errors.status.
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d,"non_2xx":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max, non2xx_total()))
end
non2xx_total = function() return -1 end
EOF
# check.lua: the syscall-counting pass also counts every status outside 200-299 (1xx/3xx too).
cat >"$WORK/check.lua" <<'EOF'
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) non2xx = 0 end
response = function(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
non2xx_total = function()
  local n = 0
  for _, t in ipairs(threads) do n = n + (t:get("non2xx") or 0) end
  return n
end
EOF
POST_LUA='wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "cmd=SetAccountInfo&data=" .. string.rep("0123456789abcdef", 4096)'
cp "$WORK/report.lua" "$WORK/get.lua"
{ echo "$POST_LUA"; cat "$WORK/report.lua"; } >"$WORK/post.lua"
{ cat "$WORK/report.lua" "$WORK/check.lua"; } >"$WORK/get-check.lua"
{ echo "$POST_LUA"; cat "$WORK/report.lua" "$WORK/check.lua"; } >"$WORK/post-check.lua"
path_of() {
    case $1 in
    get) echo /platform_api/GetAccountInfo/ ;;
    post) echo /platform_api/SetAccountInfo/ ;;
    esac
}

# --- the systems -------------------------------------------------------------------------------
# start_system NAME: sets SYS_PID (the process tree measured), SYS_BASE (URL without path) and
# SYS_ARGS (extra wrk and curl arguments).
start_system() {
    local name=$1 port
    SYS_ARGS=()
    case $name in
    direct)
        SYS_PID=${UP_PIDS[0]}
        ((${#UP_PIDS[@]} > 1)) && SYS_PID=${UP_PIDS[1]} # hyper: the http/1.1-only instance
        SYS_BASE="https://127.0.0.1:$UP_H1_PORT"
        SYS_ARGS=(-H "Authorization: Bearer $JWT")
        ;;
    nginx)
        port=$(free_port)
        nginx_proxy_conf "$WORK/nginx" "$port" "$UP_H1_PORT"
        spawn "$WORK/nginx/stderr.log" "$PROXY_CPUS" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
        SYS_PID=$SPAWNED
        SYS_BASE="http://127.0.0.1:$port"
        ;;
    haproxy)
        port=$(free_port)
        haproxy_conf "$WORK/haproxy.cfg" "$port" "$UP_H1_PORT"
        spawn "$WORK/haproxy.log" "$PROXY_CPUS" haproxy -db -f "$WORK/haproxy.cfg"
        SYS_PID=$SPAWNED
        SYS_BASE="http://127.0.0.1:$port"
        ;;
    voxproxy | voxproxy-h1)
        local up_port=$UP_H2_PORT
        [[ $name == voxproxy-h1 ]] && up_port=$UP_H1_PORT
        port=$(free_port)
        voxproxy_args "$port" "$up_port"
        spawn "$WORK/$name.log" "$PROXY_CPUS" "$VOXPROXY" "${VOX_ARGS[@]}"
        SYS_PID=$SPAWNED
        SYS_BASE="http://127.0.0.1:$port"
        ;;
    *)
        echo "unknown system $name" >&2
        exit 2
        ;;
    esac
    # Ready when a real request goes through.
    wait_http "$SYS_BASE/platform_api/GetAccountInfo/" --cacert "$WORK/ca.pem" "${SYS_ARGS[@]}" || {
        echo "$name does not answer 200; see $WORK (BENCH_KEEP_WORK=1 keeps it)" >&2
        exit 1
    }
}

stop_system() {
    [[ $1 == direct ]] || stop "$SYS_PID"
}

run_wrk() { # SECONDS SCRIPT URL
    local cmd=(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${1}s" --latency -s "$2" "${SYS_ARGS[@]}" "$3")
    if [[ $LOAD_CPUS == all ]]; then
        "${cmd[@]}"
    else
        taskset -c "$LOAD_CPUS" "${cmd[@]}"
    fi
}

# count_syscalls SECONDS SCRIPT URL OUT: syscalls of the SYS_PID tree while wrk runs SECONDS;
# sets SC_CALLS and SC_REQUESTS and leaves wrk's output in OUT.
count_syscalls() {
    local secs=$1 script=$2 url=$3 out=$4 pids tids=() t p counter_pid n=0 file=$WORK/syscalls.txt
    pids=$(tree_pids "$SYS_PID" | paste -sd, -)
    rm -f "$file"
    case $SYSCALLS in
    perf)
        perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$file" &
        ;;
    strace)
        # Every thread of every process of the tree (-f alone follows only new ones).
        for p in ${pids//,/ }; do
            for t in /proc/"$p"/task/*; do tids+=(-p "${t##*/}"); done
        done
        strace -c -f -qq -o "$file" "${tids[@]}" &
        ;;
    esac
    counter_pid=$!
    PIDS+=("$counter_pid")
    sleep 0.5 # attached before the load starts
    run_wrk "$secs" "$script" "$url" >"$out"
    kill -INT "$counter_pid" 2>/dev/null || true
    wait "$counter_pid" 2>/dev/null || true
    forget "$counter_pid"
    case $SYSCALLS in
    perf) n=$(awk -F, '/raw_syscalls:sys_enter/ {print $1; exit}' "$file") ;;
    strace) n=$(awk '$NF == "total" {print $4; exit}' "$file") ;;
    esac
    [[ $n =~ ^[0-9]+$ ]] || {
        echo "could not read the syscall count ($SYSCALLS):" >&2
        cat "$file" >&2
        exit 1
    }
    SC_CALLS=$n
    SC_REQUESTS=$(sed -n 's/^WRKJSON //p' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
}

# --- profile mode ------------------------------------------------------------------------------
if [[ $MODE == profile ]]; then
    PROFILE_DIR=$(dirname "$OUT")
    mkdir -p "$PROFILE_DIR"
    read -r -a PROFILED <<<"${BENCH_PROFILE_SYSTEMS:-voxproxy}"
    for sys in "${PROFILED[@]}"; do
        for wl in "${WORKLOADS[@]}"; do
            start_system "$sys"
            url="$SYS_BASE$(path_of "$wl")"
            ((WARMUP > 0)) && run_wrk "$WARMUP" "$WORK/$wl.lua" "$url" >/dev/null
            data="$WORK/perf-$sys-$wl.data"
            # 499 Hz with 16 KiB stack copies keeps a 10 s recording under ~100 MB.
            perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$SYS_PID" -o "$data" \
                -- sleep "$DURATION" 2>"$WORK/perf-record.log" &
            perf_pid=$!
            PIDS+=("$perf_pid")
            run_wrk "$DURATION" "$WORK/$wl.lua" "$url" >"$WORK/wrk-profile-$sys-$wl.txt"
            wait "$perf_pid" || true
            forget "$perf_pid"
            stop_system "$sys"
            report="$PROFILE_DIR/profile-$sys-$wl.txt"
            # perf pads its columns and repeats its own hints: trim both.
            tidy() { sed -e 's/[[:space:]-]*$//' -e '/^#/d' -e '/^$/d'; }
            {
                echo "# perf record -e cpu-clock -F 499 --call-graph dwarf of $sys under $wl ($UPSTREAM_KIND upstream, pinning $PIN_SPEC)"
                echo "# wrk $(grep -E 'Requests/sec' "$WORK/wrk-profile-$sys-$wl.txt") while perf ran"
                echo
                echo "# self time by component (bench/profile_groups.py)"
                perf report -i "$data" --no-children --sort symbol -g none --stdio \
                    --percent-limit 0 2>/dev/null | python3 "$ROOT/bench/profile_groups.py"
                echo
                echo "# self time by function, entries over 0.5 % (perf report --no-children)"
                perf report -i "$data" --no-children --sort symbol -g none --stdio \
                    --percent-limit 0.5 2>/dev/null | tidy
                echo
                echo "# inclusive time by function, entries over 2 % (perf report --children)"
                perf report -i "$data" --children --sort symbol -g none --stdio \
                    --percent-limit 2 2>/dev/null | tidy
            } >"$report"
            log "profile of $sys under $wl: $report"
        done
    done
    exit 0
fi

# --- the rounds --------------------------------------------------------------------------------
RAW=$WORK/measurements.jsonl
: >"$RAW"
CLK_TCK=$(getconf CLK_TCK)
items=()
for s in "${SYSTEMS[@]}"; do
    for w in "${WORKLOADS[@]}"; do
        items+=("$s:$w")
    done
done
total=$((ROUNDS * ${#items[@]}))
log "$ROUNDS rounds x ${#items[@]} measurements of ${DURATION}s (+${WARMUP}s warm-up, +${SYSCALL_SECONDS}s counting syscalls), $CONNS connections, pinning proxy/upstream/wrk = $PIN_SPEC"
# Busy ticks of the whole machine (user, nice, system, steal: irq and softirq time is left out,
# since loopback traffic of the benchmark itself lands there).
machine_busy() {
    awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat
}
# CPU of this shell's reaped children (wrk), ticks.
children_ticks() {
    local stat f
    stat=$(<"/proc/$$/stat")
    read -r -a f <<<"${stat##*) }"
    echo $((f[13] + f[14]))
}
upstream_ticks() {
    local p u s t=0
    for p in "${UP_PIDS[@]}"; do
        read -r u s <<<"$(cpu_ticks "$p")"
        t=$((t + u + s))
    done
    echo "$t"
}
# The busiest other processes during a window: "pid comm ticks" of the top 3 by CPU ticks.
snapshot_procs() { # FILE
    local f
    for f in /proc/[0-9]*/stat; do
        cat "$f" 2>/dev/null || true
    done | awk '{ i = index($0, ") "); rest = substr($0, i + 2); split(rest, a, " ");
                 c = substr($0, index($0, "(") + 1, i - index($0, "(") - 1); gsub(/ /, "_", c);
                 print $1, c, a[12] + a[13] }' >"$1"
}
top_others() { # BEFORE AFTER EXCLUDE_PIDS...
    local before=$1 after=$2
    shift 2
    python3 - "$before" "$after" "$@" <<'EOF'
import sys, json
def load(p):
    d = {}
    for line in open(p):
        pid, comm, t = line.split()
        d[pid] = (comm, int(t))
    return d
b, a = load(sys.argv[1]), load(sys.argv[2])
skip = set(sys.argv[3:])
deltas = sorted(((t - b.get(pid, (c, 0))[1], c) for pid, (c, t) in a.items() if pid not in skip),
                reverse=True)
print(json.dumps([{"comm": c, "ticks": d} for d, c in deltas[:3] if d > 0]))
EOF
}

# measure SYSTEM WORKLOAD ROUND: one measurement; writes a JSON line to $WORK/last.json and sets
# OTHER_PCT, the CPU (% of one core) that neither the proxy, the upstream nor wrk used meanwhile:
# other tenants of the machine.
measure() {
    local sys=$1 wl=$2 round=$3 url out
    start_system "$sys"
    url="$SYS_BASE$(path_of "$wl")"
    ((WARMUP > 0)) && run_wrk "$WARMUP" "$WORK/$wl.lua" "$url" >/dev/null
    local busy0 kids0 u0 s0 up0 busy1 kids1 u1 s1 up1
    snapshot_procs "$WORK/procs0"
    local acc0=0 acc1=-1
    [[ -n $UP_STATUS_PORT ]] && acc0=$(upstream_accepts "$UP_STATUS_PORT")
    busy0=$(machine_busy) kids0=$(children_ticks) up0=$(upstream_ticks)
    read -r u0 s0 <<<"$(cpu_ticks "$SYS_PID")"
    out="$WORK/wrk-$round-$sys-$wl.txt"
    run_wrk "$DURATION" "$WORK/$wl.lua" "$url" >"$out"
    read -r u1 s1 <<<"$(cpu_ticks "$SYS_PID")"
    busy1=$(machine_busy) kids1=$(children_ticks) up1=$(upstream_ticks)
    [[ -n $UP_STATUS_PORT ]] && acc1=$(upstream_accepts "$UP_STATUS_PORT")
    snapshot_procs "$WORK/procs1"
    read -r rss_max rss_sum <<<"$(peak_rss "$SYS_PID")"
    local check=null
    SC_CALLS=-1 SC_REQUESTS=0
    if [[ $SYSCALLS != off && $SYSCALL_SECONDS -gt 0 ]]; then
        count_syscalls "$SYSCALL_SECONDS" "$WORK/$wl-check.lua" "$url" "$out.check"
        check=$(sed -n 's/^WRKJSON //p' "$out.check")
    fi
    local others
    # shellcheck disable=SC2046
    others=$(top_others "$WORK/procs0" "$WORK/procs1" $(tree_pids "$SYS_PID") \
        $(for p in "${UP_PIDS[@]}"; do tree_pids "$p"; done) $$)
    stop_system "$sys"
    local wrkjson
    wrkjson=$(sed -n 's/^WRKJSON //p' "$out")
    [[ -n $wrkjson ]] || {
        echo "wrk printed no summary for $sys $wl:" >&2
        cat "$out" >&2
        exit 1
    }
    local proxy_ticks=$(((u1 - u0) + (s1 - s0))) up_ticks=$((up1 - up0))
    local wrk_ticks=$((kids1 - kids0)) other_ticks
    if [[ $sys == direct ]]; then
        other_ticks=$((busy1 - busy0 - up_ticks - wrk_ticks))
        up_ticks=0
    else
        other_ticks=$((busy1 - busy0 - proxy_ticks - up_ticks - wrk_ticks))
    fi
    ((other_ticks < 0)) && other_ticks=0
    OTHER_PCT=$((100 * other_ticks / (CLK_TCK * DURATION)))
    printf '{"round":%d,"system":"%s","workload":"%s","utime_ticks":%d,"stime_ticks":%d,"cpu_ticks":%d,"upstream_cpu_ticks":%d,"wrk_cpu_ticks":%d,"other_cpu_ticks":%d,"other_top":%s,"tries":%d,"clk_tck":%d,"peak_rss_kib":%d,"peak_rss_tree_kib":%d,"upstream_conns_opened":%d,"syscalls":%d,"syscall_requests":%d,"wrk":%s,"check":%s}\n' \
        "$round" "$sys" "$wl" "$((u1 - u0))" "$((s1 - s0))" "$proxy_ticks" "$up_ticks" \
        "$wrk_ticks" "$other_ticks" "$others" "$TRY" "$CLK_TCK" "$rss_max" "$rss_sum" \
        "$((acc1 < 0 ? -1 : acc1 - acc0 - 1))" "$SC_CALLS" "$SC_REQUESTS" "$wrkjson" "$check" >"$WORK/last.json"
    MEASURED_RPS=$(python3 -c 'import json,sys; w=json.loads(sys.argv[1]); print(round(w["requests"]*1e6/w["duration_us"]))' "$wrkjson")
}

# Other tenants of a shared machine (a build, a test suite) skew a measurement: one during which
# they used more than BENCH_MAX_OTHER_CPU % of a core is taken again, up to BENCH_RETRIES times;
# the last try is kept either way, with its share in the JSON and the table.
MAX_OTHER=${BENCH_MAX_OTHER_CPU:-10}
RETRIES=${BENCH_RETRIES:-3}
[[ $QUICK == 1 ]] && RETRIES=${BENCH_RETRIES:-0}
n=0
for ((round = 1; round <= ROUNDS; round++)); do
    mapfile -t order < <(printf '%s\n' "${items[@]}" | shuf)
    for item in "${order[@]}"; do
        sys=${item%%:*} wl=${item##*:}
        n=$((n + 1))
        for ((TRY = 1; ; TRY++)); do
            measure "$sys" "$wl" "$round"
            ((OTHER_PCT <= MAX_OTHER || TRY > RETRIES)) && break
            log "[$n/$total] round $round $sys $wl: other processes used ${OTHER_PCT}% of a core; again"
            sleep 2
        done
        cat "$WORK/last.json" >>"$RAW"
        log "[$n/$total] round $round $sys $wl: $MEASURED_RPS req/s (other processes: ${OTHER_PCT}%)"
    done
done

# --- idle connections --------------------------------------------------------------------------
IDLE_JSON=$WORK/idle.json
echo '{}' >"$IDLE_JSON"
if ((IDLE_CONNS > 0)); then
    # Each connection needs a descriptor on both sides.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    for sys in "${IDLE_SYSTEMS[@]}"; do
        start_system "$sys"
        log "idle keep-alive connections: $sys, $IDLE_CONNS"
        pinned=()
        [[ $LOAD_CPUS == all ]] || pinned=(taskset -c "$LOAD_CPUS")
        "${pinned[@]}" python3 "$ROOT/bench/idle_conns.py" --pid "$SYS_PID" \
            --addr "${SYS_BASE#http://}" --counts "$IDLE_CONNS" --json >"$WORK/idle-$sys.json"
        stop_system "$sys"
        python3 - "$IDLE_JSON" "$sys" "$WORK/idle-$sys.json" <<'EOF'
import json, sys
path, name, one = sys.argv[1:]
d = json.load(open(path))
d[name] = json.load(open(one))
json.dump(d, open(path, "w"))
EOF
    done
fi

# --- report ------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
command_line="bash bench/run.sh"
[[ $QUICK == 1 ]] && command_line="BENCH_QUICK=1 $command_line"
for v in BENCH_DURATION BENCH_ROUNDS BENCH_UPSTREAM BENCH_PIN BENCH_SYSTEMS BENCH_WORKLOADS BENCH_CONNECTIONS BENCH_SYSCALLS BENCH_IDLE_CONNS; do
    [[ -n ${!v:-} ]] && command_line="$v=${!v@Q} $command_line"
done
vox_git=$(voxproxy_rev "$VOXPROXY_SRC")
python3 - "$command_line" "$WORK/meta.json" <<EOF
import json, subprocess, sys, hashlib
def out(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception:
        return "?"
json.dump({
    "command": sys.argv[1],
    "duration_s": $DURATION, "warmup_s": $WARMUP, "rounds": $ROUNDS, "connections": $CONNS,
    "wrk_threads": $WRK_THREADS, "pin": "$PIN", "pin_spec": "$PIN_SPEC",
    "upstream": "$UPSTREAM_KIND", "upstream_threads": $UPSTREAM_THREADS,
    "syscalls_by": "$SYSCALLS", "syscall_seconds": $SYSCALL_SECONDS,
    "max_other_cpu": $MAX_OTHER, "retries": $RETRIES, "idle_conns": $IDLE_CONNS,
    "voxproxy_binary": "$VOXPROXY_SRC",
    "voxproxy_sha256": hashlib.sha256(open("$VOXPROXY", "rb").read()).hexdigest()[:16],
    "versions": {
        "voxproxy": "$vox_git",
        "nginx": out("nginx", "-v"), "haproxy": out("haproxy", "-v"), "wrk": out("wrk", "--version"),
        "rustc": out("rustc", "--version"),
    },
}, open(sys.argv[2], "w"))
EOF
readme_args=()
[[ $WRITE_README == 1 ]] && readme_args=(--readme "$ROOT/bench/README.md")
python3 "$ROOT/bench/report.py" --raw "$RAW" --meta "$WORK/meta.json" --idle "$IDLE_JSON" \
    --out "$OUT" "${readme_args[@]}"
