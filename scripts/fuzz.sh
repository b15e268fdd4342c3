#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS seconds each (default 60):
# `make fuzz`, and the short smoke run CI does (`make fuzz FUZZ_SECONDS=10 FUZZ_PROFILE=dev`:
# an unoptimized build compiles in half the time and is plenty for ten seconds).
# Needs the nightly toolchain; installs cargo-fuzz once. The module validator starts from
# the example tasks (valid components and command modules) and mutates them.
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
profile=()
if [ "${FUZZ_PROFILE:-release}" = dev ]; then
    profile=(--dev)
fi

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz: cargo fuzz needs the nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz (once)"
    cargo install cargo-fuzz --locked --quiet
fi

mkdir -p fuzz/corpus/validate_module fuzz/artifacts
cp examples/tasks/build/*.wasm fuzz/corpus/validate_module/
cd fuzz
# Without a sanitizer: our code has no unsafe, and one instrumented build is what CI can afford.
cargo +nightly fuzz build --sanitizer none "${profile[@]}"
for target in $(cargo +nightly fuzz list); do
    log="artifacts/$target.log"
    echo "fuzz: $target for ${seconds}s (log: fuzz/$log)"
    if ! cargo +nightly fuzz run --sanitizer none "${profile[@]}" "$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "^stat::number_of_executed_units|^Done" "$log" | sed "s/^/fuzz: $target: /" || true
done
echo "fuzz: every target ran ${seconds}s without a failure"
