#!/usr/bin/env bash
# Fuzz each target for a fixed budget, starting from its committed corpus, then minimise the
# corpus so it stays small enough to commit. Bounded: every run stops by itself.
#
#   fuzz/run.sh                          every target, FUZZ_SECONDS (default 60) each
#   fuzz/run.sh method clients           some targets
#   FUZZ_RUNS=10000000 FUZZ_SECONDS=1800 fuzz/run.sh
#                                        up to 10 M executions or 30 minutes per target
#
# One fuzzer process at a time, under `nice -n 19` (FUZZ_NICE to change it). New crashes stay in
# fuzz/artifacts/<target>/ and make the script fail, as does a corpus over 1 MiB after the merge
# (over 200 files only warns); fix the bug, then copy the input into
# fuzz/regressions/<target>/ under a name that says what it was: the replay test
# (tests/it/fuzz_corpus.rs) keeps it fixed, and the fuzzer starts from it too, but the corpus
# merge never drops it. Each run's libFuzzer output goes to fuzz/logs/<target>.log (not
# committed).
#
# The toolchain is stable: cargo-fuzz passes unstable rustc flags (sanitizer coverage), which
# RUSTC_BOOTSTRAP=1 lets a stable compiler accept; with `-s none` no sanitizer runtime (which
# stable does not ship) is needed. Builds are release with debug assertions and overflow checks.
# The targets are built once, then run directly: voxproxy's build script watches git's HEAD, so
# `cargo fuzz run` would rebuild after every commit made while a campaign runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
runs=${FUZZ_RUNS:-}
max_files=${FUZZ_MAX_FILES:-200}
max_bytes=${FUZZ_MAX_BYTES:-1048576}
nice=(nice -n "${FUZZ_NICE:-19}")
target_dir=${CARGO_TARGET_DIR:-target}
triple=$(rustc -vV | sed -n 's/^host: //p')
bins=$target_dir/$triple/release

if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
# Whichever comes first: the time, or (when set) the number of executions.
budget=(-max_total_time="$seconds")
[[ -n $runs ]] && budget+=(-runs="$runs")

"${nice[@]}" cargo fuzz build -s none --target-dir "$target_dir"
mkdir -p logs
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "artifacts/$t" -type f | wc -l)
    # New inputs go to the first directory; the regressions are read, never written.
    dirs=("corpus/$t")
    [[ -d regressions/$t ]] && dirs+=("regressions/$t")
    echo "==> $t: ${budget[*]}"
    start=$(date +%s)
    # -print_final_stats: executions, exec/s and coverage at the end of the log.
    if ! "${nice[@]}" "$bins/$t" -artifact_prefix="artifacts/$t/" "${budget[@]}" \
        -print_final_stats=1 -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        "${dirs[@]}" >"logs/$t.log" 2>&1; then
        failed+=("$t")
    fi
    secs=$(($(date +%s) - start))
    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
        "logs/$t.log" || true
    grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "logs/$t.log" | tail -1 || true
    echo "    wall time: ${secs}s"
    after=$(find "artifacts/$t" -type f | wc -l)
    if ((after > before)); then
        echo "    NEW CRASHES in fuzz/artifacts/$t/"
        failed+=("$t")
    fi
    # Keep only inputs that reach code no other one does: edges, not hit-count buckets
    # (-use_counters=0), or every corpus would keep hundreds of near-copies. (What
    # `cargo fuzz cmin` does, with that flag.)
    min=$(mktemp -d "logs/$t.cmin.XXXXXX")
    "${nice[@]}" "$bins/$t" -merge=1 -use_counters=0 "$min" "corpus/$t" >"logs/$t.cmin.log" 2>&1
    rm -rf "corpus/$t"
    mv "$min" "corpus/$t"
    chmod 755 "corpus/$t"
    files=$(find "corpus/$t" -type f | wc -l)
    bytes=$(du -sb "corpus/$t" | cut -f1)
    echo "    corpus: $files files, $bytes bytes"
    # Size fails the run; the count only warns: the clients file target alone reaches some 4,600
    # edges of toml's parser, and keeps about 660 small files for them.
    if ((bytes > max_bytes)); then
        echo "    corpus/$t is over $max_bytes bytes"
        failed+=("$t")
    elif ((files > max_files)); then
        echo "    warning: corpus/$t holds more than $max_files files"
    fi
done
if ((${#failed[@]})); then
    echo "failed: ${failed[*]}"
    exit 1
fi
