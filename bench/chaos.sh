#!/usr/bin/env bash
# Chaos and soak: the hostile and broken peers of the contract ("Hostile and broken peers",
# "Signals", `client_idle_timeout`) reproduced against a release voxproxy on 127.0.0.1, each
# scenario ending in a figure line and PASS or FAIL against its bound. Not for CI: it takes
# about 16 minutes with the soak and loads both cores. What each scenario does and the latest
# figures are in bench/README.md ("Chaos and soak").
#
#   bash bench/chaos.sh [all|slowloris|silent|nonreading|flap|reload|burst|soak]...
#   CHAOS_VOXPROXY=/work/chaos-voxproxy CHAOS_SOAK_SECONDS=60 bash bench/chaos.sh soak
#   flock /tmp/voxproxy-bench.lock bash bench/chaos.sh all     # beside a wall-clock benchmark
#
# Environment (defaults in brackets):
#   CHAOS_VOXPROXY        the binary to test (copied first) [$BENCH_VOXPROXY, else
#                         target/release/voxproxy after `cargo build --release --locked`]
#   CHAOS_IDLE_TIMEOUT    client_idle_timeout of slowloris and silent, s [5]
#   CHAOS_MEASURE_SECONDS each window of the normal client (unloaded, during, after) [10]
#   CHAOS_SLOWLORIS_CONNS slow connections [500]; CHAOS_SLOWLORIS_DRIP: one byte every S [2]
#   CHAOS_SILENT_CONNS    silent connections of each of the six kinds [100]
#   CHAOS_NONREADERS      clients that never read a 4 MiB answer [10]
#   CHAOS_NONREADING_IDLE client_idle_timeout of nonreading, s: longer than a measured window,
#                         so the non-readers are still held while the normal client measures [20]
#   CHAOS_NONREADING_UPSTREAM  h2, or h1: the upstream's HTTP/1.1-only port, for comparison [h2]
#   CHAOS_FLAP_CYCLES     upstream stops and starts [6]; CHAOS_FLAP_UP, CHAOS_FLAP_DOWN s [4, 2]
#   CHAOS_HUPS            SIGHUPs, one a second [30]
#   CHAOS_CP_EDITS        `cp` edits of the clients file [40]; CHAOS_CP_INTERVAL s between [1]
#   CHAOS_BURST_CONNS     connections per burst [5000]; CHAOS_BURST_ROUNDS bursts [3];
#                         CHAOS_BURST_SETTLE s after they close before RSS is read [15]
#   CHAOS_SOAK_SECONDS    the soak's length [600]; CHAOS_SOAK_EVERY s between samples [10];
#                         CHAOS_SOAK_CONNS wrk connections [20]
#   CHAOS_README          1: write the figures into bench/README.md [1 with `all`, else 0]
#   CHAOS_OUT             the verdicts, one JSON line per scenario [bench/results/chaos.jsonl
#                         with `all`, else only in the work directory]
#   BENCH_SKIP_INSTALL    1: do not apt-get install missing tools
#   BENCH_KEEP_WORK       1: keep the work directory (logs, per-request records, samples)
#
# Every voxproxy is `voxproxy_args` from bench/lib.sh (one worker, the nginx upstream over h2,
# verified TLS), with an admin listener of its own so /metrics never shares the measured
# listener. Every process it starts is stopped by its PID when it exits, however it exits.
set -Eeuo pipefail
trap 'echo "bench/chaos.sh: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

ALL=(slowloris silent nonreading flap reload burst soak)
SCENARIOS=()
for arg in "${@:-all}"; do
    case $arg in
    all) SCENARIOS+=("${ALL[@]}") ;;
    slowloris | silent | nonreading | flap | reload | burst | soak) SCENARIOS+=("$arg") ;;
    *)
        echo "usage: bash bench/chaos.sh [all|${ALL[*]// /|}]..." >&2
        exit 2
        ;;
    esac
done
FULL=0
[[ " $* " == *" all "* || $# == 0 ]] && FULL=1

IDLE=${CHAOS_IDLE_TIMEOUT:-5}
MEASURE=${CHAOS_MEASURE_SECONDS:-10}
SLOW_CONNS=${CHAOS_SLOWLORIS_CONNS:-500}
SLOW_DRIP=${CHAOS_SLOWLORIS_DRIP:-2}
SILENT_CONNS=${CHAOS_SILENT_CONNS:-100}
NONREADERS=${CHAOS_NONREADERS:-10}
NR_IDLE=${CHAOS_NONREADING_IDLE:-20}
FLAP_CYCLES=${CHAOS_FLAP_CYCLES:-6}
FLAP_UP=${CHAOS_FLAP_UP:-4}
FLAP_DOWN=${CHAOS_FLAP_DOWN:-2}
HUPS=${CHAOS_HUPS:-30}
CP_EDITS=${CHAOS_CP_EDITS:-40}
CP_INTERVAL=${CHAOS_CP_INTERVAL:-1}
BURST_CONNS=${CHAOS_BURST_CONNS:-5000}
BURST_ROUNDS=${CHAOS_BURST_ROUNDS:-3}
BURST_SETTLE=${CHAOS_BURST_SETTLE:-15}
SOAK_SECONDS=${CHAOS_SOAK_SECONDS:-600}
SOAK_EVERY=${CHAOS_SOAK_EVERY:-10}
SOAK_CONNS=${CHAOS_SOAK_CONNS:-20}
WRITE_README=${CHAOS_README:-$FULL}
OUT=${CHAOS_OUT:-}
[[ -z $OUT && $FULL == 1 ]] && OUT=$ROOT/bench/results/chaos.jsonl
# The static key of the gateway clients in `reload` (a fixed test value: the clients file keeps
# only its SHA-256, and the proxy exists only for this run).
KEY=vxp_chaoschaoschaoschaoschaoschaoschaoschaos

if [[ ${BENCH_SKIP_INSTALL:-0} != 1 ]]; then
    install_tools wrk nginx curl openssl python3 jq pgrep prlimit
fi
VOXPROXY_SRC=${CHAOS_VOXPROXY:-${BENCH_VOXPROXY:-}}
if [[ -z $VOXPROXY_SRC ]]; then
    log "cargo build --release --locked --bin voxproxy"
    cargo build --release --locked --bin voxproxy
    VOXPROXY_SRC=$ROOT/target/release/voxproxy
fi

bench_workdir chaos
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
CHAOS=(python3 "$ROOT/bench/chaos.py")
make_keys
"$VOXPROXY" tls init --dir "$WORK/tls" >/dev/null

# --- the upstream (long-lived): the bench's nginx, plus a 4 MiB answer for `nonreading` --------
head -c $((4 << 20)) /dev/urandom >"$WORK/big.bin"
chmod 644 "$WORK/big.bin"
BIG_LOCATION="location = /platform_api/GetBigFile { alias $WORK/big.bin; }"
UP_H1_PORT=$(free_port)
UP_H2_PORT=$(free_port)
UP_STATUS_PORT=$(free_port)
nginx_upstream_conf "$WORK/upstream" "$UP_H1_PORT" "$UP_H2_PORT" "$UP_STATUS_PORT" on "$BIG_LOCATION"
spawn "$WORK/upstream/stderr.log" all nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf"
wait_http "https://127.0.0.1:$UP_H2_PORT/platform_api/GetAccountInfo/" --cacert "$WORK/ca.pem" \
    -H "Authorization: Bearer $JWT"

# --- helpers -----------------------------------------------------------------------------------
# start_vox NAME UPSTREAM_PORT LOG_LEVEL [SERVE FLAGS...]: a fresh voxproxy on a free port with its
# own admin listener; sets VOX_PID, VOX_PORT, ADMIN_PORT, VOX_LOG; returns once /readyz is 200.
start_vox() {
    local name=$1 up=$2 level=$3
    shift 3
    VOX_PORT=$(free_port)
    ADMIN_PORT=$(free_port)
    VOX_LOG=$WORK/$name.log
    voxproxy_args "$VOX_PORT" "$up" "$level"
    spawn "$VOX_LOG" all "$VOXPROXY" "${VOX_ARGS[@]}" --admin-listen "127.0.0.1:$ADMIN_PORT" "$@"
    VOX_PID=$SPAWNED
    wait_http "http://127.0.0.1:$ADMIN_PORT/readyz"
}

# metric NAME: the value of one unlabelled series of the current voxproxy's /metrics.
metric() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk -v n="$1" '$1 == n {print $2}'
}

# errors_by_kind: voxproxy_errors_total as a JSON object {kind: count}.
errors_by_kind() {
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | python3 -c '
import json, re, sys
out = {}
for line in sys.stdin:
    m = re.match(r"voxproxy_errors_total\{.*kind=\"([^\"]+)\".*\} (\S+)", line)
    if m and float(m.group(2)):
        out[m.group(1)] = out.get(m.group(1), 0) + int(float(m.group(2)))
print(json.dumps(out))'
}

now() { date +%s.%N; }

# report SCENARIO ARGS...: figures and verdict; a FAIL is remembered, the run goes on.
FAILED=()
report() {
    local scenario=$1
    shift
    if ! "${CHAOS[@]}" report "$scenario" "$@" --out "$RESULTS"; then
        FAILED+=("$scenario")
    fi
}

wrk_json() { sed -n 's/^WRKJSON //p' "$1"; }

GET_PATH=/platform_api/GetAccountInfo/

# --- 1. slowloris ------------------------------------------------------------------------------
# Connections that send a request head one byte every CHAOS_SLOWLORIS_DRIP s and never finish
# it; a normal client beside them. Only requests count as activity, so the proxy closes each
# at client_idle_timeout after it opened, however many bytes it dripped.
scenario_slowloris() {
    local d=$WORK/slowloris pid
    mkdir -p "$d"
    start_vox slowloris "$UP_H2_PORT" warn --client-idle-timeout "$IDLE"
    local url="http://127.0.0.1:$VOX_PORT$GET_PATH"
    "${CHAOS[@]}" load --url "$url" --duration 1 >/dev/null # the upstream connection, the token
    "${CHAOS[@]}" load --url "$url" --duration "$MEASURE" >"$d/base.json"
    spawn "$d/during.json" all "${CHAOS[@]}" load --url "$url" --duration 600 --stop-file "$d/stop"
    pid=$SPAWNED
    "${CHAOS[@]}" hold --addr "127.0.0.1:$VOX_PORT" --kinds "slowloris:$SLOW_CONNS" \
        --drip "$SLOW_DRIP" --max-wait $((IDLE * 3 + 10)) >"$d/hold.json"
    touch "$d/stop"
    wait "$pid"
    forget "$pid"
    report slowloris base="$d/base.json" during="$d/during.json" hold="$d/hold.json" \
        --timeout "$IDLE" --slack 1
    stop "$VOX_PID"
}

# --- 2. silent ---------------------------------------------------------------------------------
# Connections that send nothing more after opening: plain TCP, an HTTP/1.1 head begun, an HTTP/2
# preface cut in half, an HTTP/2 connection with its SETTINGS and no stream, and the same over
# inbound TLS after the handshake. Each must close at client_idle_timeout, and the descriptors
# come back to what the idle proxy held.
scenario_silent() {
    local d=$WORK/silent plain_pid tls_pid p1 p2 n=$SILENT_CONNS
    mkdir -p "$d"
    start_vox silent "$UP_H2_PORT" warn --client-idle-timeout "$IDLE"
    plain_pid=$VOX_PID
    local plain_port=$VOX_PORT
    start_vox silent-tls "$UP_H2_PORT" warn --client-idle-timeout "$IDLE" \
        --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem"
    tls_pid=$VOX_PID
    "${CHAOS[@]}" snapshot --pid "$plain_pid" >"$d/fds_before.json"
    "${CHAOS[@]}" snapshot --pid "$tls_pid" >"$d/fds_before_tls.json"
    spawn "$d/plain.json" all "${CHAOS[@]}" hold --addr "127.0.0.1:$plain_port" \
        --kinds "plain:$n,h2-partial:$n,h2-idle:$n" --max-wait $((IDLE * 3 + 10))
    p1=$SPAWNED
    spawn "$d/tls.json" all "${CHAOS[@]}" hold --addr "127.0.0.1:$VOX_PORT" \
        --kinds "tls:$n,tls-slowloris:$n,tls-h2-partial:$n,tls-h2-idle:$n" \
        --cafile "$WORK/tls/ca.pem" --max-wait $((IDLE * 3 + 10))
    p2=$SPAWNED
    wait "$p1" "$p2"
    forget "$p1"
    forget "$p2"
    sleep 1
    "${CHAOS[@]}" snapshot --pid "$plain_pid" >"$d/fds_after.json"
    "${CHAOS[@]}" snapshot --pid "$tls_pid" >"$d/fds_after_tls.json"
    report silent plain="$d/plain.json" tls="$d/tls.json" fds_before="$d/fds_before.json" \
        fds_after="$d/fds_after.json" fds_before_tls="$d/fds_before_tls.json" \
        fds_after_tls="$d/fds_after_tls.json" --timeout "$IDLE" --slack 1
    stop "$plain_pid"
    stop "$tls_pid"
}

# --- 3. nonreading -----------------------------------------------------------------------------
# Over the h2 upstream, CHAOS_NONREADERS clients ask for a 4 MiB answer with a small receive
# window and never read it; a normal client measures a small GET unloaded, while they are held,
# and after they are cut. Their streams share the upstream connection with the normal client's.
scenario_nonreading() {
    local d=$WORK/nonreading pid i a b
    mkdir -p "$d"
    local up=$UP_H2_PORT
    [[ ${CHAOS_NONREADING_UPSTREAM:-h2} == h1 ]] && up=$UP_H1_PORT
    start_vox nonreading "$up" "warn,voxproxy::access=info" --client-idle-timeout "$NR_IDLE"
    local url="http://127.0.0.1:$VOX_PORT$GET_PATH"
    local size
    size=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$VOX_PORT/platform_api/GetBigFile")
    [[ $size == $((4 << 20)) ]] || {
        echo "GetBigFile through voxproxy gave $size bytes, not 4 MiB" >&2
        return 1
    }
    "${CHAOS[@]}" load --url "$url" --duration 1 >/dev/null
    "${CHAOS[@]}" load --url "$url" --duration "$MEASURE" >"$d/base.json"
    "${CHAOS[@]}" snapshot --pid "$VOX_PID" >"$d/rss_before.json"
    spawn "$d/nonread.json" all "${CHAOS[@]}" nonread --addr "127.0.0.1:$VOX_PORT" \
        --path /platform_api/GetBigFile --count "$NONREADERS" --ready-file "$d/ready" \
        --max-wait $((NR_IDLE * 2 + 30))
    pid=$SPAWNED
    for ((i = 0; i < 100; i++)); do
        [[ -e $d/ready ]] && break
        sleep 0.1
    done
    sleep 1 # the buffers on the way fill up; from then on nothing moves
    a=$(metric voxproxy_requests_in_flight)
    "${CHAOS[@]}" snapshot --pid "$VOX_PID" >"$d/rss_during.json"
    "${CHAOS[@]}" load --url "$url" --duration "$MEASURE" >"$d/during.json"
    b=$(metric voxproxy_requests_in_flight)
    wait "$pid"
    forget "$pid"
    sleep 1
    "${CHAOS[@]}" load --url "$url" --duration "$MEASURE" >"$d/after.json"
    printf '{"in_flight_during": %s, "in_flight_after": %s, "aborted_lines": %s, "rss_before": %s, "rss_during": %s}\n' \
        "$((a < b ? a : b))" "$(metric voxproxy_requests_in_flight)" \
        "$(grep -c '"aborted":true' "$VOX_LOG" || true)" "$(jq .rss_kib "$d/rss_before.json")" \
        "$(jq .rss_kib "$d/rss_during.json")" >"$d/metrics.json"
    report nonreading base="$d/base.json" during="$d/during.json" after="$d/after.json" \
        nonread="$d/nonread.json" metrics="$d/metrics.json" --timeout "$NR_IDLE" --bound 2
    stop "$VOX_PID"
}

# --- 4. flap -----------------------------------------------------------------------------------
# An upstream of its own (nginx in one process, so SIGKILL ends all of it) stopped and started
# CHAOS_FLAP_CYCLES times under a paced load of 8 connections, alternately with SIGTERM (nginx
# closes its connections) and SIGKILL (the kernel does). While it is down the answer is 502;
# after each start the proxy must serve again within 2 s, and nothing stays in flight.
scenario_flap() {
    local d=$WORK/flap up_pid pid i c t0 code p1 p2 ps sig
    mkdir -p "$d"
    p1=$(free_port) p2=$(free_port) ps=$(free_port)
    nginx_upstream_conf "$d/upstream" "$p1" "$p2" "$ps" off
    start_flap_upstream() {
        spawn "$d/upstream/stderr.log" all nginx -p "$d/upstream" -c "$d/upstream/nginx.conf"
        up_pid=$SPAWNED
    }
    start_flap_upstream
    wait_http "https://127.0.0.1:$p2$GET_PATH" --cacert "$WORK/ca.pem" -H "Authorization: Bearer $JWT"
    start_vox flap "$p2" warn
    local url="http://127.0.0.1:$VOX_PORT$GET_PATH"
    : >"$d/events.jsonl"
    event() { printf '{"event":"%s","t":%s}\n' "$1" "$(now)" >>"$d/events.jsonl"; }
    spawn "$d/load.json" all "${CHAOS[@]}" load --url "$url" --threads 8 --interval 0.005 \
        --duration 600 --stop-file "$d/stop" --log "$d/requests.jsonl"
    pid=$SPAWNED
    for ((c = 1; c <= FLAP_CYCLES; c++)); do
        sleep "$FLAP_UP"
        sig=TERM
        ((c % 2 == 0)) && sig=KILL
        event down
        stop "$up_pid" "$sig"
        sleep "$FLAP_DOWN"
        start_flap_upstream
        event up
        t0=$SECONDS
        for ((i = 0; i < 200; i++)); do
            code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
            [[ $code == 200 ]] && break
            sleep 0.05
        done
        [[ $code == 200 ]] && event recovered
        log "flap cycle $c ($sig): back after $((SECONDS - t0)) s"
    done
    sleep "$FLAP_UP"
    touch "$d/stop"
    wait "$pid"
    forget "$pid"
    sleep 0.5
    printf '{"in_flight_after": %s, "errors_by_kind": %s}\n' \
        "$(metric voxproxy_requests_in_flight)" "$(errors_by_kind)" >"$d/metrics.json"
    report flap log="$d/requests.jsonl" events="$d/events.jsonl" metrics="$d/metrics.json" \
        --recover-by 2
    stop "$VOX_PID"
    stop "$up_pid"
}

# --- 5. reload ---------------------------------------------------------------------------------
# A gateway with two clients (a static key, and an app signing its own JWTs) under wrk load from
# both, through (a) CHAOS_HUPS SIGHUPs a second apart, then (b) CHAOS_CP_EDITS `cp` copies over
# the clients file, alternating two valid files with the same clients (cp truncates, then
# writes: the watcher must never load the empty or half-written file). Bound: no failed request.
scenario_reload() {
    local d=$WORK/reload w1 w2 i secs app_jwt
    mkdir -p "$d/conf"
    printf '# chaos: the static-key client\n[clients.static]\nstatic_key_sha256 = "%s"\n' \
        "$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)" >"$d/conf/clients.toml"
    VOXPROXY_CLIENTS="$d/conf/clients.toml" VOXIMPLANT_CREDENTIALS="$WORK/credentials.json" \
        "$VOXPROXY" client add app --out "$d/app.json" >/dev/null
    # The same clients, another layout: a comment, and the two tables in the other order.
    python3 - "$d/conf/clients.toml" "$d/clients-a.toml" "$d/clients-b.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
open(sys.argv[2], "w").write(text)
parts = re.split(r"(?m)^(?=\[clients\.)", text)
head, tables = parts[0], parts[1:]
open(sys.argv[3], "w").write("# chaos: edited (same clients, other order)\n" + head + "".join(reversed(tables)))
EOF
    app_jwt=$("$VOXPROXY" token --raw --credentials "$d/app.json" --ttl 3600)
    start_vox reload "$UP_H2_PORT" "warn,voxproxy::reload=info" --clients "$d/conf/clients.toml"
    local url="http://127.0.0.1:$VOX_PORT$GET_PATH"
    wrk_status_lua "$d/status.lua"
    wait_http "$url" -H "Proxy-Authorization: Bearer $KEY"
    wait_http "$url" -H "Authorization: Bearer $app_jwt"
    two_wrks() { # SECONDS TAG
        spawn "$d/wrk-$2-static.txt" all wrk -t1 -c5 -d"$1s" --timeout 10s -s "$d/status.lua" \
            -H "Proxy-Authorization: Bearer $KEY" "$url"
        w1=$SPAWNED
        spawn "$d/wrk-$2-jwt.txt" all wrk -t1 -c5 -d"$1s" --timeout 10s -s "$d/status.lua" \
            -H "Authorization: Bearer $app_jwt" "$url"
        w2=$SPAWNED
    }
    two_wrks $((HUPS + 3)) hup
    sleep 1
    for ((i = 0; i < HUPS; i++)); do
        kill -HUP "$VOX_PID"
        sleep 1
    done
    wait "$w1" "$w2"
    forget "$w1"
    forget "$w2"
    secs=$(python3 -c "import math; print(math.ceil($CP_EDITS * $CP_INTERVAL) + 8)")
    two_wrks "$secs" cp
    sleep 1
    for ((i = 1; i <= CP_EDITS; i++)); do
        if ((i % 2)); then cp "$d/clients-b.toml" "$d/conf/clients.toml"; else cp "$d/clients-a.toml" "$d/conf/clients.toml"; fi
        sleep "$CP_INTERVAL"
    done
    wait "$w1" "$w2"
    forget "$w1"
    forget "$w2"
    for i in hup-static hup-jwt cp-static cp-jwt; do
        wrk_json "$d/wrk-$i.txt" >"$d/$i.json"
    done
    printf '{"sighups": %d, "sighup_reloads": %d, "cp_edits": %d, "file_reloads": %d, "clients_reloaded": %d, "reload_failures": %d}\n' \
        "$HUPS" "$(grep -c '"reason":"SIGHUP"' "$VOX_LOG" || true)" "$CP_EDITS" \
        "$(grep -c '"reason":"file change"' "$VOX_LOG" || true)" \
        "$(grep -c 'gateway clients reloaded' "$VOX_LOG" || true)" \
        "$(grep -c 'not reloaded' "$VOX_LOG" || true)" >"$d/metrics.json"
    report reload hup_static="$d/hup-static.json" hup_jwt="$d/hup-jwt.json" \
        cp_static="$d/cp-static.json" cp_jwt="$d/cp-jwt.json" metrics="$d/metrics.json"
    stop "$VOX_PID"
}

# --- 6. burst ----------------------------------------------------------------------------------
# bench/idle_conns.py: CHAOS_BURST_CONNS keep-alive connections, each after one proxied GET,
# then all closed; RSS at the idle baseline, with them open, and CHAOS_BURST_SETTLE s after they
# close, CHAOS_BURST_ROUNDS times. Bound (contract, "Memory"): after <= 2x the baseline.
scenario_burst() {
    local d=$WORK/burst
    mkdir -p "$d"
    start_vox burst "$UP_H2_PORT" warn
    python3 "$ROOT/bench/idle_conns.py" --pid "$VOX_PID" --addr "127.0.0.1:$VOX_PORT" \
        --counts "$BURST_CONNS" --settle "$BURST_SETTLE" --bursts "$BURST_ROUNDS" --json >"$d/idle.json"
    report burst idle="$d/idle.json" --bound 2
    stop "$VOX_PID"
}

# --- 7. soak -----------------------------------------------------------------------------------
# CHAOS_SOAK_SECONDS of wrk at CHAOS_SOAK_CONNS connections, one request in ten a 64 KiB POST
# (it goes over the HTTP/1.1 upstream pool), sampling RSS, descriptors and threads every
# CHAOS_SOAK_EVERY s. Bound: 0 errors, no client connection held after the load, RSS within 2x
# of its first warmed sample.
scenario_soak() {
    local d=$WORK/soak pid
    mkdir -p "$d"
    start_vox soak "$UP_H2_PORT" warn
    local url="http://127.0.0.1:$VOX_PORT$GET_PATH"
    wrk_status_lua "$d/status.lua"
    {
        cat <<'EOF'
local n = 0
local body = "cmd=SetAccountInfo&data=" .. string.rep("0123456789abcdef", 4096)
request = function()
  n = n + 1
  if n % 10 == 0 then
    return wrk.format("POST", "/platform_api/SetAccountInfo/",
      {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
  end
  return wrk.format("GET", "/platform_api/GetAccountInfo/")
end
EOF
        cat "$d/status.lua"
    } >"$d/soak.lua"
    "${CHAOS[@]}" load --url "$url" --duration 1 >/dev/null
    sleep 1
    "${CHAOS[@]}" snapshot --pid "$VOX_PID" >"$d/before.json"
    spawn "$d/sampler.log" all "${CHAOS[@]}" sample --pid "$VOX_PID" --every "$SOAK_EVERY" \
        --duration $((SOAK_SECONDS + SOAK_EVERY)) --out "$d/samples.jsonl" --stop-file "$d/stop"
    pid=$SPAWNED
    log "soak: ${SOAK_SECONDS} s of wrk -c$SOAK_CONNS"
    wrk -t1 -c"$SOAK_CONNS" -d"${SOAK_SECONDS}s" --timeout 10s --latency -s "$d/soak.lua" "$url" \
        >"$d/wrk.txt"
    touch "$d/stop"
    wait "$pid" || true
    forget "$pid"
    sleep 5
    "${CHAOS[@]}" snapshot --pid "$VOX_PID" --port "$VOX_PORT" >"$d/after.json"
    wrk_json "$d/wrk.txt" >"$d/wrk.json"
    report soak samples="$d/samples.jsonl" wrk="$d/wrk.json" before="$d/before.json" \
        after="$d/after.json" --bound 2
    stop "$VOX_PID"
}

# --- run ---------------------------------------------------------------------------------------
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
for s in "${SCENARIOS[@]}"; do
    log "scenario $s"
    "scenario_$s"
done

TABLE=$("${CHAOS[@]}" table "$RESULTS")
echo
echo "$TABLE"
if [[ -n $OUT ]]; then
    cp "$RESULTS" "$OUT"
    log "verdicts in $OUT"
fi
if [[ $WRITE_README == 1 ]]; then
    python3 - "$ROOT/bench/README.md" "$STARTED" "$("$VOXPROXY" --version)" \
        "$(sha256sum "$VOXPROXY" | cut -c1-16)" "$(nproc)" \
        "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)" "$(nginx_version)" \
        "$SOAK_SECONDS" "$TABLE" <<'EOF'
import sys
readme, started, rev, sha, cores, cpu, nginx, soak, table = sys.argv[1:]
text = open(readme).read()
begin, end = "<!-- chaos:begin -->", "<!-- chaos:end -->"
body = (f"Run {started} on {cpu} ({cores} cores), {rev} (binary sha256 {sha}), "
        f"nginx {nginx}, soak {soak} s: `bash bench/chaos.sh all`.\n\n{table}\n")
head, _, rest = text.partition(begin)
_, _, tail = rest.partition(end)
open(readme, "w").write(f"{head}{begin}\n{body}{end}{tail}")
EOF
    log "figures written to bench/README.md"
fi
if ((${#FAILED[@]})); then
    log "FAILED: ${FAILED[*]}"
    exit 1
fi
log "every scenario passed"
