#!/usr/bin/env bash
# Ray on the same machine, for `make bench`: installs ray into its own virtual environment
# (bench/.venv, once) and runs bench/ray_bench.py, which prints one JSON line.
# Exits 3 with a notice on stderr when ray cannot be installed (no route to PyPI, say).
set -uo pipefail
cd "$(dirname "$0")"
venv=.venv
if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import ray" 2>/dev/null; then
    echo "ray_bench: installing ray into bench/$venv (once)..." >&2
    if ! python3 -m venv "$venv" >&2 || ! "$venv/bin/pip" install --quiet --disable-pip-version-check "ray==2.*" >&2; then
        echo "ray_bench: cannot install ray with pip; skipping the Ray comparison" >&2
        exit 3
    fi
fi
exec "$venv/bin/python" ray_bench.py "$@"
