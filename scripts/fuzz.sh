#!/usr/bin/env bash
# Runs herald's cargo-fuzz targets (fuzz/fuzz_targets) one after another, each for a
# fixed time, and prints per target the executions, the corpus size and the findings.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s, every target
#
# Corpora grow in fuzz/corpus/<target> (seeded from fuzz/seeds/<target>), crashes land in
# fuzz/artifacts/<target>/, libFuzzer's log in fuzz/target/fuzz-logs/<target>.log.
# Reproduce a finding with `cargo +nightly fuzz run <target> <file>`, shrink it with
# `cargo +nightly fuzz tmin <target> <file>`. Exits non-zero when a target found a crash.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
toolchain=${FUZZ_TOOLCHAIN:-nightly}
# Its own target dir: the fuzz build must not wait on (or invalidate) the main crate's.
export CARGO_TARGET_DIR="$root/fuzz/target"

seconds=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
elif [[ $# -gt 0 && $1 =~ ^- ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi

if ! cargo "+$toolchain" fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
mapfile -t known < <(cargo "+$toolchain" fuzz list)
if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    targets=("${known[@]}")
fi
for target in "${targets[@]}"; do
    if ! printf '%s\n' "${known[@]}" | grep -qx -- "$target"; then
        echo "unknown fuzz target '$target'; known: ${known[*]}" >&2
        exit 2
    fi
done

# Build every target first, then run the binaries: one snapshot of the code for the
# whole run, even when src/ changes while it fuzzes.
echo "==> building ${targets[*]}"
for target in "${targets[@]}"; do
    cargo "+$toolchain" fuzz build "$target"
done
triple=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')
bin_dir="$CARGO_TARGET_DIR/$triple/release"
log_dir="$CARGO_TARGET_DIR/fuzz-logs"
mkdir -p "$log_dir"

count_files() {
    find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l
}

# libFuzzer's final stats line, or failing that (a crash skips it) the last status line.
executions() {
    local log=$1 n
    n=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    if [[ -z $n ]]; then
        n=$(grep -o '^#[0-9]*' "$log" | tail -n 1 | tr -d '#' || true)
    fi
    echo "${n:-0}"
}

summary=()
failed=()
started=$SECONDS
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    artifacts="artifacts/$target"
    log="$log_dir/$target.log"
    mkdir -p "$corpus" "$artifacts"
    before=$(find "$artifacts" -maxdepth 1 -type f | sort)

    args=(
        -max_total_time="$seconds"
        -rss_limit_mb=2048
        -timeout=5
        -print_final_stats=1
        -artifact_prefix="$artifacts/"
    )
    if [[ -f dicts/$target.dict ]]; then
        args+=(-dict="dicts/$target.dict")
    fi
    dirs=("$corpus")
    if [[ -d seeds/$target ]]; then
        dirs+=("seeds/$target")
    fi

    echo
    echo "==> fuzzing $target for ${seconds}s (log: fuzz/target/fuzz-logs/$target.log)"
    status=0
    "$bin_dir/$target" "${args[@]}" "${dirs[@]}" >"$log" 2>&1 || status=$?

    execs=$(executions "$log")
    corpus_size=$(count_files "$corpus")
    corpus_kib=$(($(find "$corpus" -type f -exec cat {} + | wc -c) / 1024))
    findings=$(count_files "$artifacts")
    echo "$target: executions $execs, corpus $corpus_size files (${corpus_kib} KiB), findings $findings"
    new=0
    while IFS= read -r file; do
        [[ -n $file ]] || continue
        if grep -qxF -- "$file" <<<"$before"; then
            echo "  finding (earlier run): fuzz/$file"
        else
            echo "  finding (this run):    fuzz/$file"
            new=$((new + 1))
        fi
    done < <(find "$artifacts" -maxdepth 1 -type f | sort)
    if [[ $status -ne 0 || $new -gt 0 ]]; then
        echo "  libFuzzer exited $status; its report:"
        grep -E -A 12 '^(==[0-9]+== ?ERROR|thread .* panicked|.*deadly signal|SUMMARY)' "$log" |
            head -n 40 | sed 's/^/    /' || true
        failed+=("$target")
    fi
    summary+=("$(printf '%-12s %14s %8s %9s' "$target" "$execs" "$corpus_size" "$findings")")
done

echo
echo "==> summary (${seconds}s per target, $((SECONDS - started))s in all)"
printf '%-12s %14s %8s %9s\n' target executions corpus findings
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
