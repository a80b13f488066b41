#!/usr/bin/env bash
# voxproxy side by side with nginx, HAProxy and the upstream alone, everything on 127.0.0.1.
# What it measures and why is in bench/README.md; it ends by rewriting that file's results.
#
#   bash bench/run.sh                                  # 5 rounds x 10 s per system and workload
#   BENCH_DURATION=5 BENCH_ROUNDS=5 bash bench/run.sh  # shorter measurements
#   BENCH_QUICK=1 bash bench/run.sh                    # smoke test: 1 round of 3 s
#   bash bench/run.sh profile                          # perf profile of voxproxy under load
#
# `profile` needs symbols: it builds with CARGO_PROFILE_RELEASE_STRIP=false (same code, symbol
# table kept; a full release rebuild the first time), records voxproxy with `perf record
# --call-graph dwarf` for BENCH_DURATION s under each workload and writes the top functions to
# bench/results/profile-<system>-<workload>.txt (BENCH_PROFILE_SYSTEMS, default voxproxy).
#
# Environment (defaults in brackets):
#   BENCH_DURATION     seconds per measurement [10]
#   BENCH_WARMUP       seconds of load before each measurement, not counted [1]
#   BENCH_ROUNDS       rounds; each runs every system x workload once, in a new random order [5]
#   BENCH_QUICK        1: BENCH_DURATION=3 BENCH_ROUNDS=1 BENCH_IDLE_COUNTS=1000 unless set
#   BENCH_CONNECTIONS  wrk connections [50]
#   BENCH_WRK_THREADS  wrk threads [1]
#   BENCH_SYSTEMS      rows to measure [direct nginx haproxy voxproxy voxproxy-h1]
#   BENCH_WORKLOADS    [get post]
#   BENCH_PIN          split: the proxy alone on CPU 1, wrk and the upstream on CPU 0;
#                      none: no pinning [split]
#   BENCH_UPSTREAM_THREADS  upstream runtime threads [1 with split, 2 with none]
#   BENCH_MAX_OTHER_CPU  a measurement during which other processes used more than this % of a
#                      core is taken again [10], up to BENCH_RETRIES times [3]
#   BENCH_IDLE_COUNTS  idle keep-alive connections for the memory test, "" to skip [1000,10000]
#   BENCH_OUT          JSON results [bench/results/latest.json]
#   BENCH_README       1: write the table into bench/README.md [1 unless BENCH_QUICK]
#   BENCH_SKIP_INSTALL, BENCH_SKIP_BUILD   1: trust what is there
#   BENCH_VOXPROXY, BENCH_UPSTREAM_BIN      binaries to use [target/release/...]; with
#                      BENCH_SKIP_BUILD=1, a copy that a concurrent build cannot replace
#   BENCH_KEEP_WORK    1: keep the work directory (configs, logs, raw wrk output)
#
# Every process it starts is stopped by PID when it exits, however it exits.
set -Eeuo pipefail
trap 'echo "bench/run.sh: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

MODE=${1:-compare}
case $MODE in
compare | profile) ;;
*)
    echo "usage: bash bench/run.sh [compare|profile]" >&2
    exit 2
    ;;
esac
if [[ $MODE == profile ]]; then
    export CARGO_PROFILE_RELEASE_STRIP=false
fi
QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${BENCH_DURATION:-3}
    ROUNDS=${BENCH_ROUNDS:-1}
    IDLE_COUNTS=${BENCH_IDLE_COUNTS-1000}
    WRITE_README=${BENCH_README:-0}
else
    DURATION=${BENCH_DURATION:-10}
    ROUNDS=${BENCH_ROUNDS:-5}
    IDLE_COUNTS=${BENCH_IDLE_COUNTS-1000,10000}
    WRITE_README=${BENCH_README:-1}
fi
WARMUP=${BENCH_WARMUP:-1}
CONNS=${BENCH_CONNECTIONS:-50}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
read -r -a SYSTEMS <<<"${BENCH_SYSTEMS:-direct nginx haproxy voxproxy voxproxy-h1}"
read -r -a WORKLOADS <<<"${BENCH_WORKLOADS:-get post}"
PIN=${BENCH_PIN:-split}
OUT=${BENCH_OUT:-$ROOT/bench/results/latest.json}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VOXPROXY=${BENCH_VOXPROXY:-$TARGET_DIR/release/voxproxy}
UPSTREAM_BIN=${BENCH_UPSTREAM_BIN:-$TARGET_DIR/release/examples/bench_upstream}

case $PIN in
split)
    PROXY_CPUS=1
    LOAD_CPUS=0
    UPSTREAM_THREADS=${BENCH_UPSTREAM_THREADS:-1}
    ;;
none)
    PROXY_CPUS=all
    LOAD_CPUS=all
    UPSTREAM_THREADS=${BENCH_UPSTREAM_THREADS:-2}
    ;;
*)
    echo "BENCH_PIN must be split or none" >&2
    exit 2
    ;;
esac
if [[ $PIN == split && $(nproc) -lt 2 ]]; then
    echo "BENCH_PIN=split needs 2 CPUs; use BENCH_PIN=none" >&2
    exit 2
fi

log() { printf '==> %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------------
if [[ ${BENCH_SKIP_INSTALL:-0} != 1 ]]; then
    need=()
    for tool in wrk nginx haproxy curl openssl python3 taskset; do
        command -v "$tool" >/dev/null || need+=("$tool")
    done
    [[ $MODE == profile ]] && ! command -v perf >/dev/null && need+=(perf)
    if ((${#need[@]})); then
        pkgs=()
        for tool in "${need[@]}"; do
            case $tool in
            taskset) pkgs+=(util-linux) ;;
            perf) pkgs+=(linux-perf) ;;
            *) pkgs+=("$tool") ;;
            esac
        done
        log "installing ${pkgs[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
    fi
fi
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    # Two commands: building the example with the binary would unify the dev-dependencies'
    # features (tokio "full") into the voxproxy binary being measured.
    log "cargo build --release --locked --bin voxproxy"
    cargo build --release --locked --bin voxproxy
    log "cargo build --release --locked --example bench_upstream"
    cargo build --release --locked --example bench_upstream
fi
for bin in "$VOXPROXY" "$UPSTREAM_BIN"; do
    [[ -x $bin ]] || {
        echo "missing $bin (build it or unset BENCH_SKIP_BUILD)" >&2
        exit 1
    }
done

# --- process control ---------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/voxproxy-bench.XXXXXX)
chmod 755 "$WORK" # nginx's workers run as an unprivileged user
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP_WORK:-0} == 1 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spawn LOG CPUS CMD...: start CMD in the background (pinned unless CPUS=all); sets SPAWNED.
spawn() {
    local logfile=$1 cpus=$2
    shift 2
    if [[ $cpus == all ]]; then
        "$@" >"$logfile" 2>&1 &
    else
        taskset -c "$cpus" "$@" >"$logfile" 2>&1 &
    fi
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

# stop PID: TERM, up to 5 s, then KILL; forget it.
stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

# forget PID: it has ended; cleanup no longer signals it.
forget() {
    local kept=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$1" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: until it answers 200 (10 s).
wait_http() {
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null) == 200 ]] && return 0
        sleep 0.1
    done
    echo "$1 did not answer 200 within 10 s" >&2
    return 1
}

# The process and its descendants (nginx: master and worker).
tree_pids() {
    local c
    echo "$1"
    for c in $(pgrep -P "$1" || true); do
        tree_pids "$c"
    done
}

# utime + stime of a process tree, clock ticks.
cpu_ticks() {
    local total=0 p stat
    for p in $(tree_pids "$1"); do
        stat=$(<"/proc/$p/stat") || continue
        read -r -a f <<<"${stat##*) }"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

# "max sum" of VmHWM (peak RSS, KiB) over a process tree.
peak_rss() {
    local max=0 sum=0 p v
    for p in $(tree_pids "$1"); do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        v=${v:-0}
        sum=$((sum + v))
        ((v > max)) && max=$v
    done
    echo "$max $sum"
}

# --- keys, certificates, credentials -----------------------------------------------------------
log "work directory $WORK; keys and certificates"
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca.key" 2>/dev/null
openssl req -x509 -new -key "$WORK/ca.key" -subj "/CN=voxproxy bench CA" -days 2 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$WORK/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/server.ec.key" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$WORK/server.ec.key" -out "$WORK/server.key"
openssl req -new -key "$WORK/server.key" -subj "/CN=localhost" -out "$WORK/server.csr" 2>/dev/null
cat >"$WORK/server.ext" <<'EOF'
subjectAltName = DNS:localhost, IP:127.0.0.1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/server.ext" -out "$WORK/server.pem" 2>/dev/null
chmod 644 "$WORK"/*.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rsa.pem" 2>/dev/null
python3 - "$WORK/rsa.pem" "$WORK/credentials.json" <<'EOF'
import json, os, sys
pem = open(sys.argv[1]).read()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump({"account_id": 1234567, "key_id": "bench-key-1", "private_key": pem}, f)
EOF
JWT=$("$VOXPROXY" token --raw --credentials "$WORK/credentials.json")

# --- the upstreams (long-lived) ----------------------------------------------------------------
start_upstream() { # NAME [--http1-only]; sets UP_PID, UP_PORT
    local name=$1 i
    shift
    spawn "$WORK/$name.log" "$LOAD_CPUS" "$UPSTREAM_BIN" --cert "$WORK/server.pem" \
        --key "$WORK/server.key" --threads "$UPSTREAM_THREADS" "$@"
    UP_PID=$SPAWNED
    for ((i = 0; i < 100; i++)); do
        UP_PORT=$(awk '/^listening / {split($2, a, ":"); print a[2]}' "$WORK/$name.log")
        [[ -n $UP_PORT ]] && return 0
        sleep 0.1
    done
    echo "$name did not start: $(cat "$WORK/$name.log")" >&2
    return 1
}
start_upstream upstream
UP_H2_PID=$UP_PID UP_H2_PORT=$UP_PORT
start_upstream upstream-h1 --http1-only
UP_H1_PID=$UP_PID UP_H1_PORT=$UP_PORT
log "upstream (h2, http/1.1) on $UP_H2_PORT, upstream (http/1.1 only) on $UP_H1_PORT"

# Check the upstream refuses a request without Authorization, as the brief requires.
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/ca.pem" \
    "https://127.0.0.1:$UP_H2_PORT/platform_api/GetAccountInfo/" || true)
[[ $code == 401 ]] || {
    echo "the upstream answered $code without Authorization (want 401)" >&2
    exit 1
}

# --- wrk scripts -------------------------------------------------------------------------------
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
EOF
cp "$WORK/report.lua" "$WORK/get.lua"
{
    cat <<'EOF'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "cmd=SetAccountInfo&data=" .. string.rep("0123456789abcdef", 4096)
EOF
    cat "$WORK/report.lua"
} >"$WORK/post.lua"
path_of() {
    case $1 in
    get) echo /platform_api/GetAccountInfo/ ;;
    post) echo /platform_api/SetAccountInfo/ ;;
    esac
}

# --- the systems -------------------------------------------------------------------------------
# start_system NAME: sets SYS_PID (the process measured), SYS_BASE (URL without path) and
# SYS_ARGS (extra wrk arguments).
start_system() {
    local name=$1 port
    SYS_ARGS=()
    case $name in
    direct)
        SYS_PID=$UP_H2_PID
        SYS_BASE="https://127.0.0.1:$UP_H2_PORT"
        SYS_ARGS=(-H "Authorization: Bearer $JWT")
        ;;
    nginx)
        port=$(free_port)
        mkdir -p "$WORK/nginx"
        cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    client_max_body_size 64m;
    # A 64 KiB body stays in memory (the 16 KiB default would spill it to a temp file).
    client_body_buffer_size 128k;
    upstream api {
        server 127.0.0.1:$UP_H2_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$port;
        location /platform_api/ {
            proxy_pass https://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost:$UP_H2_PORT;
            proxy_set_header Authorization "Bearer $JWT";
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $WORK/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
        spawn "$WORK/nginx/stderr.log" "$PROXY_CPUS" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
        SYS_PID=$SPAWNED
        SYS_BASE="http://127.0.0.1:$port"
        ;;
    haproxy)
        port=$(free_port)
        cat >"$WORK/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend api
    bind 127.0.0.1:$port
    default_backend upstream
backend upstream
    http-request set-header Authorization "Bearer $JWT"
    server api 127.0.0.1:$UP_H2_PORT ssl verify required ca-file $WORK/ca.pem verifyhost localhost sni str(localhost)
EOF
        spawn "$WORK/haproxy.log" "$PROXY_CPUS" haproxy -db -f "$WORK/haproxy.cfg"
        SYS_PID=$SPAWNED
        SYS_BASE="http://127.0.0.1:$port"
        ;;
    voxproxy | voxproxy-h1)
        local up_port=$UP_H2_PORT
        [[ $name == voxproxy-h1 ]] && up_port=$UP_H1_PORT
        port=$(free_port)
        spawn "$WORK/$name.log" "$PROXY_CPUS" "$VOXPROXY" serve --listen "127.0.0.1:$port" \
            --upstream "https://127.0.0.1:$up_port" --upstream-ca "$WORK/ca.pem" \
            --credentials "$WORK/credentials.json" --workers 1 --log-level warn --log-format json
        SYS_PID=$SPAWNED
        SYS_BASE="http://127.0.0.1:$port"
        wait_http "$SYS_BASE/readyz"
        ;;
    *)
        echo "unknown system $name" >&2
        exit 2
        ;;
    esac
    # Ready when a real request goes through.
    local i code=
    for ((i = 0; i < 100; i++)); do
        # SYS_ARGS are `-H "Authorization: ..."` for direct: the same for curl as for wrk.
        code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/ca.pem" "${SYS_ARGS[@]}" \
            "$SYS_BASE/platform_api/GetAccountInfo/" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    echo "$name does not answer 200 (last: $code); see $WORK" >&2
    exit 1
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
                echo "# perf record -e cpu-clock -F 499 --call-graph dwarf of $sys under $wl"
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
log "$ROUNDS rounds x ${#items[@]} measurements of ${DURATION}s (+${WARMUP}s warm-up), $CONNS connections, pinning: $PIN"
# Busy ticks of the whole machine (user, nice, system, steal: irq and softirq time is left out,
# since loopback traffic of the benchmark itself lands there).
machine_busy() {
    awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat
}
# CPU of this shell's reaped children (wrk), ticks.
children_ticks() {
    local stat
    stat=$(<"/proc/$$/stat")
    read -r -a f <<<"${stat##*) }"
    echo $((f[13] + f[14]))
}

# measure SYSTEM WORKLOAD ROUND: one measurement; appends a JSON line to $RAW and sets OTHER_PCT,
# the CPU (% of one core) that neither the proxy, the upstreams nor wrk used meanwhile: other
# tenants of the machine.
measure() {
    local sys=$1 wl=$2 round=$3 url out
    start_system "$sys"
    url="$SYS_BASE$(path_of "$wl")"
    ((WARMUP > 0)) && run_wrk "$WARMUP" "$WORK/$wl.lua" "$url" >/dev/null
    local busy0 kids0 cpu0 up0_h2 up0_h1 busy1 kids1 cpu1 up1_h2 up1_h1
    busy0=$(machine_busy) kids0=$(children_ticks)
    cpu0=$(cpu_ticks "$SYS_PID") up0_h2=$(cpu_ticks "$UP_H2_PID") up0_h1=$(cpu_ticks "$UP_H1_PID")
    out="$WORK/wrk-$round-$sys-$wl.txt"
    run_wrk "$DURATION" "$WORK/$wl.lua" "$url" >"$out"
    cpu1=$(cpu_ticks "$SYS_PID") up1_h2=$(cpu_ticks "$UP_H2_PID") up1_h1=$(cpu_ticks "$UP_H1_PID")
    busy1=$(machine_busy) kids1=$(children_ticks)
    read -r rss_max rss_sum <<<"$(peak_rss "$SYS_PID")"
    stop_system "$sys"
    local wrkjson
    wrkjson=$(sed -n 's/^WRKJSON //p' "$out")
    [[ -n $wrkjson ]] || {
        echo "wrk printed no summary for $sys $wl:" >&2
        cat "$out" >&2
        exit 1
    }
    local proxy_ticks=$((cpu1 - cpu0)) up_ticks=$(((up1_h2 - up0_h2) + (up1_h1 - up0_h1)))
    local wrk_ticks=$((kids1 - kids0)) other_ticks
    if [[ $sys == direct ]]; then
        other_ticks=$((busy1 - busy0 - up_ticks - wrk_ticks))
        up_ticks=0
    else
        other_ticks=$((busy1 - busy0 - proxy_ticks - up_ticks - wrk_ticks))
    fi
    ((other_ticks < 0)) && other_ticks=0
    OTHER_PCT=$((100 * other_ticks / (CLK_TCK * DURATION)))
    printf '{"round":%d,"system":"%s","workload":"%s","cpu_ticks":%d,"upstream_cpu_ticks":%d,"wrk_cpu_ticks":%d,"other_cpu_ticks":%d,"tries":%d,"clk_tck":%d,"peak_rss_kib":%d,"peak_rss_tree_kib":%d,"wrk":%s}\n' \
        "$round" "$sys" "$wl" "$proxy_ticks" "$up_ticks" "$wrk_ticks" "$other_ticks" "$TRY" \
        "$CLK_TCK" "$rss_max" "$rss_sum" "$wrkjson" >"$WORK/last.json"
    MEASURED_RPS=$(python3 -c 'import json,sys; w=json.loads(sys.argv[1]); print(round(w["requests"]*1e6/w["duration_us"]))' "$wrkjson")
}

# Other tenants of a shared machine (a build, a test suite) skew a measurement: one during which
# they used more than BENCH_MAX_OTHER_CPU % of a core is taken again, up to BENCH_RETRIES times;
# the last try is kept either way, with its share in the JSON and the table.
MAX_OTHER=${BENCH_MAX_OTHER_CPU:-10}
RETRIES=${BENCH_RETRIES:-3}
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
IDLE_JSON=null
if [[ -n $IDLE_COUNTS ]]; then
    # 10,000 connections need 10,000 descriptors on each side.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    port=$(free_port)
    spawn "$WORK/voxproxy-idle.log" "$PROXY_CPUS" "$VOXPROXY" serve --listen "127.0.0.1:$port" \
        --upstream "https://127.0.0.1:$UP_H2_PORT" --upstream-ca "$WORK/ca.pem" \
        --credentials "$WORK/credentials.json" --workers 1 --log-level warn --log-format json
    idle_pid=$SPAWNED
    wait_http "http://127.0.0.1:$port/readyz"
    log "idle keep-alive connections: $IDLE_COUNTS"
    IDLE_JSON=$(python3 "$ROOT/bench/idle_conns.py" --pid "$idle_pid" --addr "127.0.0.1:$port" \
        --counts "$IDLE_COUNTS" --json)
    stop "$idle_pid"
fi

# --- report ------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
command_line="BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS BENCH_PIN=$PIN bash bench/run.sh"
META=$(python3 - "$command_line" <<EOF
import json, subprocess, sys
def out(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception:
        return "?"
print(json.dumps({
    "command": sys.argv[1],
    "duration_s": $DURATION, "warmup_s": $WARMUP, "rounds": $ROUNDS, "connections": $CONNS,
    "wrk_threads": $WRK_THREADS, "pin": "$PIN", "upstream_threads": $UPSTREAM_THREADS,
    "max_other_cpu": $MAX_OTHER, "retries": $RETRIES,
    "versions": {
        "voxproxy": out("git", "-C", "$ROOT", "describe", "--always", "--dirty"),
        "nginx": out("nginx", "-v"), "haproxy": out("haproxy", "-v"), "wrk": out("wrk", "--version"),
        "rustc": out("rustc", "--version"),
    },
}))
EOF
)
readme_args=()
[[ $WRITE_README == 1 ]] && readme_args=(--readme "$ROOT/bench/README.md")
python3 "$ROOT/bench/report.py" --raw "$RAW" --meta "$META" --idle "$IDLE_JSON" --out "$OUT" \
    "${readme_args[@]}"
