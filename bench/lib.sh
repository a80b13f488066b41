# shellcheck shell=bash
# Shared by bench/run.sh and bench/instructions.sh (sourced, not run): process control by PID,
# throwaway keys and certificates, and the configurations of the upstreams and of the proxies
# voxproxy is compared with. Everything listens on 127.0.0.1.
#
# The caller sets ROOT, WORK (a private temporary directory) and VOXPROXY before using it, and
# calls `bench_cleanup` on exit (trap), which stops every process started with `spawn`.

log() { printf '==> %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------------
# install_tools TOOL...: apt-get install the Debian packages of the missing ones.
install_tools() {
    local need=() pkgs=() tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || need+=("$tool")
    done
    ((${#need[@]})) || return 0
    for tool in "${need[@]}"; do
        case $tool in
        taskset | prlimit) pkgs+=(util-linux) ;;
        perf) pkgs+=(linux-perf) ;;
        callgrind_annotate) pkgs+=(valgrind) ;;
        pgrep) pkgs+=(procps) ;;
        *) pkgs+=("$tool") ;;
        esac
    done
    log "installing ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Debian's nginx and haproxy packages try to start their service; in a container without an
    # init system policy-rc.d refuses, which is what we want: the bench starts its own.
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# --- process control ---------------------------------------------------------------------------
PIDS=()

# spawn LOG CPUS CMD...: start CMD in the background (pinned with taskset unless CPUS=all);
# sets SPAWNED to its PID and remembers it for bench_cleanup.
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

# forget PID: it has ended; bench_cleanup no longer signals it.
forget() {
    local kept=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$1" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

# stop PID [SIGNAL] [SECONDS]: SIGNAL (TERM), up to SECONDS (5) for it to end, then KILL.
stop() {
    local pid=$1 sig=${2:-TERM} secs=${3:-5} i
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}

bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
    if [[ ${BENCH_KEEP_WORK:-0} == 1 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}

# The run's work directory $WORK (removed on exit unless BENCH_KEEP_WORK=1) and in it a copy of
# $VOXPROXY_SRC as $VOXPROXY: what is measured cannot change under the run (a rebuild, a commit).
bench_workdir() { # NAME
    WORK=$(mktemp -d "/tmp/voxproxy-$1.XXXXXX")
    chmod 755 "$WORK" # nginx's workers run as an unprivileged user
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    cp "$VOXPROXY_SRC" "$WORK/voxproxy"
    VOXPROXY=$WORK/voxproxy
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL [CURL ARGS...]: until it answers 200 (20 s).
wait_http() {
    local url=$1 i code=
    shift
    for ((i = 0; i < 200; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url" 2>/dev/null || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    echo "$url did not answer 200 within 20 s (last: $code)" >&2
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

# "utime stime" of a process tree in clock ticks (/proc/PID/stat fields 14 and 15: every thread
# of each process, ended threads included).
cpu_ticks() {
    local ut=0 st=0 p stat f
    for p in $(tree_pids "$1"); do
        stat=$(<"/proc/$p/stat") || continue
        read -r -a f <<<"${stat##*) }"
        ut=$((ut + f[11]))
        st=$((st + f[12]))
    done
    echo "$ut $st"
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
# make_keys: a throwaway CA, a server certificate for localhost/127.0.0.1 signed by it, and an
# RSA-2048 credentials file, all in $WORK and made afresh on every run; sets JWT to a token
# minted from them for the rows that send a static Authorization (direct, nginx, HAProxy).
make_keys() {
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
    # nginx's workers run as an unprivileged user; its master reads the key as root.
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
}

# --- the nginx upstream --------------------------------------------------------------------------
# The body every upstream answers with: GetAccountInfo's shape, about the size of the real one.
UPSTREAM_JSON='{"result":{"account_id":1,"account_name":"bench","account_email":"bench@example.com","active":true,"frozen":false,"balance":100.5,"currency":"USD","language_code":"en","location":"Etc/GMT","created":"2024-01-01 00:00:00"},"api_address":"api.voximplant.com"}'

# nginx_head DIR MASTER: what every nginx here starts with: one worker in the foreground, its
# files in DIR, no access log; the caller continues inside `http {`.
nginx_head() {
    local dir=$1 master=$2
    cat <<EOF
worker_processes 1;
master_process $master;
daemon off;
worker_rlimit_nofile 65536;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
EOF
}

# nginx_upstream_conf DIR PORT_H1 PORT_H2 STATUS_PORT [MASTER] [EXTRA]: an nginx playing the Voximplant API. One
# worker, TLS on 127.0.0.1: PORT_H1 offers only http/1.1, PORT_H2 offers h2 and http/1.1 by
# ALPN. `/platform_api/...` without Authorization gets 401, with it a small JSON body from
# `return 200`, which reads the request body to its end and drops it (nginx's
# ngx_http_discard_request_body: the connection stays in keep-alive, the next request is parsed
# after the body). Keep-alive for as long as the bench runs. MASTER=off: a single process in the
# foreground (for valgrind). STATUS_PORT serves stub_status in plain HTTP: its `accepts` counts
# the connections the proxies open to the upstream. EXTRA: more nginx directives for both TLS
# servers, placed before the API's locations (bench/chaos.sh: a large file to serve).
nginx_upstream_conf() {
    local dir=$1 p1=$2 p2=$3 status=$4 master=${5:-on} extra=${6:-} loc
    mkdir -p "$dir"
    # nginx 1.25.1 moved `http2` from `listen` to its own directive; the bench supports both.
    local h2_listen="listen 127.0.0.1:$p2 ssl http2;" h2_directive=""
    if nginx_at_least 1.25.1; then
        h2_listen="listen 127.0.0.1:$p2 ssl;"
        h2_directive="http2 on;"
    fi
    loc="location /platform_api/ {
            if (\$http_authorization = \"\") {
                return 401 '{\"error\":{\"code\":100,\"msg\":\"Authorization required\"}}';
            }
            return 200 '$UPSTREAM_JSON';
        }
        location / {
            return 404 '{\"error\":{\"code\":404,\"msg\":\"not found\"}}';
        }"
    [[ -z $extra ]] || loc="$extra
        $loc"
    {
        nginx_head "$dir" "$master"
        cat <<EOF
    default_type application/json;
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
    keepalive_time 24h;
    client_max_body_size 16m;
    client_body_buffer_size 128k;
    ssl_certificate $WORK/server.pem;
    ssl_certificate_key $WORK/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:1m;
    server {
        listen 127.0.0.1:$p1 ssl;
        $loc
    }
    server {
        $h2_listen
        $h2_directive
        $loc
    }
    server {
        listen 127.0.0.1:$status;
        location = /status { stub_status; }
    }
}
EOF
    } >"$dir/nginx.conf"
}

# upstream_accepts STATUS_PORT: connections the nginx upstream has accepted so far, this query's
# own included: between two readings, new connections = the difference - 1.
upstream_accepts() {
    curl -s "http://127.0.0.1:$1/status" | awk 'NR == 3 {print $1}'
}

nginx_version() { nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p'; }
nginx_at_least() { # VERSION
    [[ $(printf '%s\n%s\n' "$1" "$(nginx_version)" | sort -V | head -n1) == "$1" ]]
}

# --- the proxies ---------------------------------------------------------------------------------
# nginx_proxy_conf DIR LISTEN_PORT UPSTREAM_PORT [MASTER]: nginx as an operator who knows it tunes
# it for this job: one worker; keep-alive without a request limit on both sides (the defaults,
# keepalive_requests 1000 and keepalive_time 1h, would reconnect every 1,000 requests); a pool of
# 64 idle upstream connections over HTTP/1.1; verified TLS with session reuse; no access log; the
# 64 KiB body kept in memory.
nginx_proxy_conf() {
    local dir=$1 port=$2 up=$3 master=${4:-on}
    mkdir -p "$dir"
    {
        nginx_head "$dir" "$master"
        cat <<EOF
    client_max_body_size 16m;
    # A 64 KiB body stays in memory (the 16 KiB default would spill it to a temp file).
    client_body_buffer_size 128k;
    upstream api {
        server 127.0.0.1:$up;
        keepalive 64;
        keepalive_requests 1000000000;
        keepalive_timeout 600s;
        keepalive_time 24h;
    }
    server {
        listen 127.0.0.1:$port;
        keepalive_requests 1000000000;
        keepalive_timeout 600s;
        keepalive_time 24h;
        location /platform_api/ {
            proxy_pass https://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host localhost;
            proxy_set_header Authorization "Bearer $JWT";
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_trusted_certificate $WORK/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

# haproxy_conf FILE LISTEN_PORT UPSTREAM_PORT: HAProxy tuned the same way: one thread, idle
# server connections shared between clients and kept (http-reuse always, no purge for 10 min),
# keep-alive timeouts of 10 min, verified TLS with the CA and the name, no log.
haproxy_conf() {
    local file=$1 port=$2 up=$3
    cat >"$file" <<EOF
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 600s
    timeout http-request 60s
    http-reuse always
frontend api
    bind 127.0.0.1:$port
    default_backend upstream
backend upstream
    http-request set-header Host localhost
    http-request set-header Authorization "Bearer $JWT"
    server api 127.0.0.1:$up ssl verify required ca-file $WORK/ca.pem verifyhost localhost sni str(localhost) ssl-min-ver TLSv1.2 pool-purge-delay 600s
EOF
}

# voxproxy_args LISTEN_PORT UPSTREAM_PORT [LOG_LEVEL]: the arguments of `voxproxy serve` in every
# instrument (LOG_LEVEL, an EnvFilter, defaults to warn).
voxproxy_args() {
    # shellcheck disable=SC2034 # read by the caller
    VOX_ARGS=(serve --listen "127.0.0.1:$1" --upstream "https://127.0.0.1:$2"
        --upstream-ca "$WORK/ca.pem" --credentials "$WORK/credentials.json"
        --workers 1 --log-level "${3:-warn}" --log-format json)
}

# voxproxy_rev BINARY: what a voxproxy binary was built from, when it sits in a git worktree's
# target directory: the last commit that touched the code (src/, Cargo.toml, Cargo.lock), with
# "+local changes" when those paths differ from it now; elsewhere, the commit its --version names.
# Its sha256 identifies it exactly.
voxproxy_rev() {
    local dir rev
    dir=$(dirname "$1")
    rev=$(git -C "$dir" log -1 --format=%h -- :/src :/Cargo.toml :/Cargo.lock 2>/dev/null) || rev=
    [[ -n $rev ]] || {
        # Not in a worktree (a copy): the commit the binary names in --version, else "?".
        rev=$("$1" --version 2>/dev/null | sed -n 's/^voxproxy [^ ]* (\([0-9a-f+]*\) .*/\1/p')
        echo "${rev:-?}"
        return 0
    }
    if [[ -n $(git -C "$dir" status --porcelain -- :/src :/Cargo.toml :/Cargo.lock 2>/dev/null) ]]; then
        rev+="+local changes"
    fi
    echo "$rev"
}

# wrk_status_lua FILE: a wrk script whose done() prints one line `WRKJSON {...}`: requests,
# duration, p50/p99, socket errors, and every status outside 200-299 counted by code (a response()
# hook: wrk parses each response into Lua, which costs the load generator; for checks, not for
# timed comparisons). Prepend request settings (method, body, headers) to the file as needed.
wrk_status_lua() {
    cat >"$1" <<'EOF'
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args) statuses = {} end
response = function(status, headers, body)
  if status < 200 or status > 299 then statuses[status] = (statuses[status] or 0) + 1 end
end
done = function(summary, latency, requests)
  local e, tally, n, parts = summary.errors, {}, 0, {}
  for _, t in ipairs(threads) do
    for code, count in pairs(t:get("statuses") or {}) do tally[code] = (tally[code] or 0) + count end
  end
  for code, count in pairs(tally) do
    n = n + count
    table.insert(parts, string.format('"%d":%d', code, count))
  end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"non_2xx":%d,"statuses":{%s},' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, n,
    table.concat(parts, ","), latency:percentile(50), latency:percentile(99), latency.max))
end
EOF
}
