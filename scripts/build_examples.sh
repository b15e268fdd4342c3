#!/usr/bin/env bash
# Builds every example task into examples/tasks/build/:
# - task components in C: clang-16 + wasi-libc against the committed wit-bindgen C bindings,
#   then `componentize` (wit-component + the preview1 adapter pinned to our wasmtime);
# - WASI command programs in C: plain wasm32-wasi modules with main();
# - task components in Rust, when the wasm32-wasip2 target is installed (skipped otherwise:
#   the committed builds stay).
set -euo pipefail
cd "$(dirname "$0")/.."

cc="${CC_WASM:-clang-16}"
out=examples/tasks/build
bindings=examples/tasks/bindings
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

if ! command -v "$cc" >/dev/null; then
    echo "build_examples: $cc not found; run 'make tools_setup' first" >&2
    exit 1
fi

# The same build as the tests' (every binary of the workspace, dev profile): nothing compiles twice.
cargo build --quiet --bins
componentize=target/debug/componentize

cflags=(--target=wasm32-wasi -O2 -Wall -Wextra -Werror -Wl,--strip-all)
for task in echo wordcount fib sha256 spin hog trap; do
    "$cc" "${cflags[@]}" -mexec-model=reactor -I"$bindings" \
        "examples/tasks/$task/$task.c" "$bindings/task.c" "$bindings/task_component_type.o" \
        -o "$tmp/$task.core.wasm"
    "$componentize" "$tmp/$task.core.wasm" "$out/$task.wasm"
    echo "built $out/$task.wasm (task component, C)"
done

for program in upper readfile; do
    "$cc" "${cflags[@]}" "examples/tasks/$program/$program.c" -o "$out/$program.wasm"
    echo "built $out/$program.wasm (WASI command, C)"
done
"$componentize" --command "$out/upper.wasm" "$out/upper-component.wasm"
echo "built $out/upper-component.wasm (wasi:cli/run component, C)"

if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    (cd examples/tasks/rust && cargo build --release --quiet --target wasm32-wasip2)
    for task in echo wordcount fib; do
        cp "examples/tasks/rust/target/wasm32-wasip2/release/${task}_rust.wasm" "$out/$task-rust.wasm"
        echo "built $out/$task-rust.wasm (task component, Rust)"
    done
else
    echo "build_examples: the wasm32-wasip2 target is not installed; keeping the committed Rust examples"
fi
