#!/usr/bin/env bash
# Installs what the example tasks need to build: Debian's clang-16 and lld-16, the wasm32
# compiler runtime and wasi-libc (about 46 MB). Idempotent, and quiet when all is present.
set -euo pipefail

packages=(clang-16 lld-16 libclang-rt-16-dev-wasm32 wasi-libc)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "tools_setup: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "tools_setup: done"
