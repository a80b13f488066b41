#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: voxproxy and nginx (and
# the nginx upstream alone over TLS, as a floor), each proxy on its own under callgrind while the
# nginx upstream and the client run natively. Instruction counts do not depend on what else the
# machine is doing, so this is the figure to optimise against on a shared machine.
#
#   bash bench/instructions.sh                    # every system x workload, 3 times (~12 min)
#   BENCH_QUICK=1 bash bench/instructions.sh      # small request counts, GET only, no README
#   BENCH_VOXPROXY=/work/main/target/release/voxproxy bash bench/instructions.sh
#
# Method: each system is started under callgrind, warmed up (the token minted, its upstream
# connections and TLS sessions set up), its counters zeroed (callgrind_control -z), then it
# serves exactly N requests (bench/load.py: a fixed number over INSTR_CONNECTIONS keep-alive
# connections, every answer checked to be 2xx) and its counters are dumped (callgrind_control -d).
# That is done with N1 and with N2 requests, each in a fresh process, and the figure is the slope
# (I2 - I1) / (N2 - N1), so what every segment has once (the client's connections, the dump)
# cancels out; start-up, the mint and the upstream handshakes are outside the segment. The whole
# pair is repeated INSTR_REPEATS times; the table gives the median and the range. The upstream
# connections opened during each segment are recorded (0 expected). The same slope is taken per
# function (self and inclusive) for the listings in bench/results/callgrind-*.txt.
#
# Valgrind hides RDRAND from the program, so aws-lc seeds its DRBG from its jitter-entropy source
# (jent_*): with aws-lc 0.47 a one-off ~420 M instructions at start-up, before the counters are
# zeroed; per request what remains is the CTR-DRBG behind voxproxy's request ids. Every figure is
# given twice anyway: as counted, and without the subtree of the functions matching
# INSTR_RNG_REGEX (entered from outside it; bench/callgrind.py explains how).
#
# Environment (defaults in brackets):
#   INSTR_SYSTEMS        [nginx voxproxy voxproxy-h1 direct]
#                        voxproxy: against the upstream port that offers h2; voxproxy-h1 and nginx:
#                        against the one that offers only http/1.1; direct: the nginx upstream
#                        itself under callgrind, the client speaking TLS to it
#   INSTR_WORKLOADS      [get post]
#   INSTR_CONNECTIONS    client keep-alive connections [10]
#   INSTR_GET_REQUESTS   N1 N2 for GET ["2000 6000"]; INSTR_POST_REQUESTS ["400 1200"]
#   INSTR_WARMUP_GET     requests before the counters are zeroed [1000]; INSTR_WARMUP_POST [200]
#   INSTR_REPEATS        pairs of runs per system x workload; the table gives the median slope
#                        and the range [3; 1 with BENCH_QUICK]
#   INSTR_ASLR           1: leave address-space randomisation on (setarch -R is used otherwise)
#   INSTR_PIN            CPU of the process under callgrind / CPU of the upstream and client [0/1]
#   INSTR_RNG_REGEX      [jent_|CRYPTO_rdrand|RAND_bytes]
#   BENCH_QUICK          1: GET only, N 300/900, results to a temporary file, no README
#   BENCH_OUT            [bench/results/instructions.json]
#   BENCH_README         1: write the results section of bench/README.md [1 unless BENCH_QUICK]
#   BENCH_VOXPROXY       a prebuilt voxproxy (with symbols, for the function listings); else
#                        built here with CARGO_PROFILE_RELEASE_STRIP=false
#   BENCH_SKIP_INSTALL, BENCH_SKIP_BUILD, BENCH_KEEP_WORK   as in bench/run.sh
set -Eeuo pipefail
trap 'echo "bench/instructions.sh: line $LINENO: \`$BASH_COMMAND\` failed" >&2' ERR
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
    read -r -a WORKLOADS <<<"${INSTR_WORKLOADS:-get}"
    GET_N=${INSTR_GET_REQUESTS:-300 900}
    POST_N=${INSTR_POST_REQUESTS:-60 180}
    WRITE_README=${BENCH_README:-0}
    OUT=${BENCH_OUT:-/tmp/voxproxy-instructions-quick.json}
    RESULTS=${BENCH_RESULTS_DIR:-/tmp/voxproxy-instructions-quick}
else
    read -r -a WORKLOADS <<<"${INSTR_WORKLOADS:-get post}"
    GET_N=${INSTR_GET_REQUESTS:-2000 6000}
    POST_N=${INSTR_POST_REQUESTS:-400 1200}
    WRITE_README=${BENCH_README:-1}
    OUT=${BENCH_OUT:-$ROOT/bench/results/instructions.json}
    RESULTS=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
fi
read -r -a SYSTEMS <<<"${INSTR_SYSTEMS:-nginx voxproxy voxproxy-h1 direct}"
CONNS=${INSTR_CONNECTIONS:-10}
REPEATS=${INSTR_REPEATS:-3}
WARM_GET=${INSTR_WARMUP_GET:-1000}
WARM_POST=${INSTR_WARMUP_POST:-200}
[[ $QUICK == 1 ]] && REPEATS=${INSTR_REPEATS:-1}
PIN_SPEC=${INSTR_PIN:-0/1}
IFS=/ read -r VG_CPUS LOAD_CPUS <<<"$PIN_SPEC"
RNG_REGEX=${INSTR_RNG_REGEX:-jent_|CRYPTO_rdrand|RAND_bytes}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if [[ ${BENCH_SKIP_INSTALL:-0} != 1 ]]; then
    install_tools valgrind callgrind_annotate nginx curl openssl python3 taskset pgrep
fi
export CARGO_PROFILE_RELEASE_STRIP=false
if [[ ${BENCH_SKIP_BUILD:-0} != 1 && -z ${BENCH_VOXPROXY:-} ]]; then
    log "cargo build --release --locked --bin voxproxy (symbols kept)"
    cargo build --release --locked --bin voxproxy
fi
VOXPROXY_SRC=${BENCH_VOXPROXY:-$TARGET_DIR/release/voxproxy}
[[ -x $VOXPROXY_SRC ]] || {
    echo "missing $VOXPROXY_SRC (build it, or set BENCH_VOXPROXY)" >&2
    exit 1
}

bench_workdir instr
make_keys

pin() { # CPUS CMD...
    local cpus=$1
    shift
    if [[ $cpus == all ]]; then "$@"; else taskset -c "$cpus" "$@"; fi
}

# The upstream, natively, next to the client.
UP_H1_PORT=$(free_port) UP_H2_PORT=$(free_port) UP_STATUS_PORT=$(free_port)
nginx_upstream_conf "$WORK/upstream" "$UP_H1_PORT" "$UP_H2_PORT" "$UP_STATUS_PORT"
spawn "$WORK/upstream/stderr.log" "$LOAD_CPUS" nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf"
for p in "$UP_H1_PORT" "$UP_H2_PORT"; do
    wait_http "https://127.0.0.1:$p/platform_api/GetAccountInfo/" --cacert "$WORK/ca.pem" \
        -H "Authorization: Bearer $JWT"
done
log "nginx upstream: http/1.1 only on $UP_H1_PORT, h2 + http/1.1 on $UP_H2_PORT"

# wait_listen PORT: until something listens on 127.0.0.1:PORT, without connecting to it (a probe
# connection would be work for the process being counted, and their number would vary).
wait_listen() {
    local hex i
    hex=$(printf '0100007F:%04X' "$1")
    for ((i = 0; i < 600; i++)); do
        awk -v a="$hex" '$2 == a && $4 == "0A" {found = 1} END {exit !found}' /proc/net/tcp && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1 after 60 s" >&2
    return 1
}

VG=(valgrind --tool=callgrind --dump-instr=no --collect-jumps=no --separate-threads=no)
# Without address-space randomisation, so that hash tables keyed by pointers (OpenSSL's, glibc's)
# lay out the same from run to run.
[[ ${INSTR_ASLR:-0} == 1 ]] || VG=(setarch "$(uname -m)" -R "${VG[@]}")

# one_run SYSTEM WORKLOAD N REPEAT: the system under callgrind from start to exit, serving exactly
# N requests; leaves $WORK/cg-SYSTEM-WORKLOAD-N-rREPEAT.out and a JSON line in $WORK/runs.jsonl.
one_run() {
    local sys=$1 wl=$2 n=$3 rep=$4 port url cg pid sig=TERM client_args=() load_json acc0 acc1 warm
    warm=$WARM_GET
    [[ $wl == post ]] && warm=$WARM_POST
    cg=$WORK/cg-$sys-$wl-$n-r$rep.out
    port=$(free_port)
    case $sys in
    nginx)
        nginx_proxy_conf "$WORK/nginx-vg" "$port" "$UP_H1_PORT" off
        spawn "$WORK/$sys-$wl-$n.log" "$VG_CPUS" "${VG[@]}" --callgrind-out-file="$cg" \
            nginx -p "$WORK/nginx-vg" -c "$WORK/nginx-vg/nginx.conf"
        sig=QUIT # graceful: finish, then exit
        url="http://127.0.0.1:$port"
        ;;
    voxproxy | voxproxy-h1)
        local up=$UP_H2_PORT
        [[ $sys == voxproxy-h1 ]] && up=$UP_H1_PORT
        voxproxy_args "$port" "$up"
        spawn "$WORK/$sys-$wl-$n.log" "$VG_CPUS" "${VG[@]}" --callgrind-out-file="$cg" \
            "$VOXPROXY" "${VOX_ARGS[@]}"
        url="http://127.0.0.1:$port"
        ;;
    direct)
        local p1 p2 ps
        p1=$port p2=$(free_port) ps=$(free_port)
        nginx_upstream_conf "$WORK/direct-vg" "$p1" "$p2" "$ps" off
        spawn "$WORK/$sys-$wl-$n.log" "$VG_CPUS" "${VG[@]}" --callgrind-out-file="$cg" \
            nginx -p "$WORK/direct-vg" -c "$WORK/direct-vg/nginx.conf"
        sig=QUIT
        url="https://127.0.0.1:$port"
        client_args=(--cacert "$WORK/ca.pem" --header "Authorization: Bearer $JWT")
        ;;
    esac
    pid=$SPAWNED
    wait_listen "$port"
    # voxproxy listens before its first token is minted (in the background): give it time, so
    # that the first requests do not race the mint (2 s is ample under valgrind for one RSA sign).
    sleep 2
    case $wl in
    get) url+=/platform_api/GetAccountInfo/ ;;
    post)
        url+=/platform_api/SetAccountInfo/
        client_args+=(--post-bytes 65536)
        ;;
    esac
    # Warm-up: the token, the upstream connections and their TLS sessions, the allocator's pools.
    pin "$LOAD_CPUS" python3 "$ROOT/bench/load.py" --url "$url" --requests "$warm" \
        --connections "$CONNS" --json "${client_args[@]}" >/dev/null || {
        echo "$sys $wl: the warm-up failed; log:" >&2
        tail -20 "$WORK/$sys-$wl-$n.log" >&2
        exit 1
    }
    acc0=$(upstream_accepts "$UP_STATUS_PORT")
    callgrind_control -z "$pid" >/dev/null 2>&1 || {
        echo "$sys $wl: callgrind_control -z $pid failed" >&2
        exit 1
    }
    load_json=$(pin "$LOAD_CPUS" python3 "$ROOT/bench/load.py" --url "$url" --requests "$n" \
        --connections "$CONNS" --json "${client_args[@]}") || {
        echo "$sys $wl: the load failed: $load_json" >&2
        exit 1
    }
    callgrind_control -d "$pid" >/dev/null 2>&1 || {
        echo "$sys $wl: callgrind_control -d $pid failed" >&2
        exit 1
    }
    acc1=$(upstream_accepts "$UP_STATUS_PORT")
    stop "$pid" "$sig" 120
    # The dump of the measured segment; the program's exit writes $cg itself (shutdown only).
    cg=$cg.1
    [[ -s $cg ]] || {
        echo "$sys $wl: callgrind wrote no $cg; log:" >&2
        tail -20 "$WORK/$sys-$wl-$n.log" >&2
        exit 1
    }
    printf '{"system":"%s","workload":"%s","requests":%d,"repeat":%d,"file":"%s","upstream_conns_opened":%d,"load":%s}\n' \
        "$sys" "$wl" "$n" "$rep" "$cg" "$((acc1 - acc0 - 1))" "$load_json" >>"$WORK/runs.jsonl"
    log "[$rep/$REPEATS] $sys $wl: $n requests under callgrind ($(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["rps"])' "$load_json") req/s), upstream connections opened: $((acc1 - acc0 - 1))"
}

: >"$WORK/runs.jsonl"
for wl in "${WORKLOADS[@]}"; do
    case $wl in
    get) read -r N1 N2 <<<"$GET_N" ;;
    post) read -r N1 N2 <<<"$POST_N" ;;
    *)
        echo "unknown workload $wl" >&2
        exit 2
        ;;
    esac
    for ((rep = 1; rep <= REPEATS; rep++)); do
        for sys in "${SYSTEMS[@]}"; do
            one_run "$sys" "$wl" "$N1" "$rep"
            one_run "$sys" "$wl" "$N2" "$rep"
        done
    done
done

mkdir -p "$RESULTS" "$(dirname "$OUT")"
command_line="bash bench/instructions.sh"
[[ $QUICK == 1 ]] && command_line="BENCH_QUICK=1 $command_line"
for v in INSTR_SYSTEMS INSTR_WORKLOADS INSTR_CONNECTIONS INSTR_GET_REQUESTS INSTR_POST_REQUESTS INSTR_REPEATS INSTR_ASLR BENCH_VOXPROXY; do
    [[ -n ${!v:-} ]] && command_line="$v=${!v@Q} $command_line"
done
readme_args=()
[[ $WRITE_README == 1 ]] && readme_args=(--readme "$ROOT/bench/README.md")
python3 "$ROOT/bench/callgrind.py" report --runs "$WORK/runs.jsonl" --rng-regex "$RNG_REGEX" \
    --out "$OUT" --results-dir "$RESULTS" --command "$command_line" --connections "$CONNS" \
    --voxproxy "$VOXPROXY" --voxproxy-src "$VOXPROXY_SRC" --voxproxy-rev "$(voxproxy_rev "$VOXPROXY_SRC")" \
    --all-listings "${readme_args[@]}"
