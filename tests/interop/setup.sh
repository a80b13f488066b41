#!/usr/bin/env bash
# Installs the official Voximplant API clients used by the interop drivers, locally:
#   tests/interop/.venv          Python venv with python/requirements.txt (pinned)
#   tests/interop/node/node_modules   from node/package-lock.json (npm ci)
# Idempotent: each step is skipped when its stamp matches the pinned file's hash.
# Needs python3 (3.11+, with venv) and node 20 / npm; installs nothing globally.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

hash_of() { sha256sum "$1" | cut -d' ' -f1; }

# Python
venv="$here/.venv"
req="$here/python/requirements.txt"
stamp="$venv/.voxproxy-requirements.sha256"
want="$(hash_of "$req")"
if [[ -x "$venv/bin/python" ]] && [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$want" ]] \
    && "$venv/bin/python" -c 'import voximplant.apiclient' 2>/dev/null; then
    echo "interop: python venv up to date ($venv)"
else
    if [[ ! -x "$venv/bin/python" ]]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
    "$venv/bin/python" -c 'import voximplant.apiclient'
    echo "$want" > "$stamp"
    echo "interop: python venv ready ($venv)"
fi

# Node
node_dir="$here/node"
lock="$node_dir/package-lock.json"
nstamp="$node_dir/node_modules/.voxproxy-lock.sha256"
nwant="$(hash_of "$lock")"
if [[ -f "$nstamp" ]] && [[ "$(cat "$nstamp")" == "$nwant" ]] \
    && [[ -f "$node_dir/node_modules/@voximplant/apiclient-nodejs/package.json" ]]; then
    echo "interop: node_modules up to date ($node_dir/node_modules)"
else
    (cd "$node_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    echo "$nwant" > "$nstamp"
    echo "interop: node_modules ready ($node_dir/node_modules)"
fi
