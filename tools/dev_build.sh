#!/usr/bin/env bash
# Developer build without pip: compiles the extension(s) with CMake into build/dev and copies them
# into python/dfnet4/ so that `PYTHONPATH=python pytest` runs against the working tree. Builds the
# emulated-Metal test module too (DFNET4_METAL_EMU=ON; not part of what `pip install .` installs).
# Usage: tools/dev_build.sh [python-executable]   (default: the python on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$(command -v python)}
cmake -S . -B build/dev -G Ninja -DPython_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release -DDFNET4_METAL_EMU=ON >/dev/null
cmake --build build/dev
cp build/dev/_ext*.so python/dfnet4/
cp build/dev/_metal_emu*.so python/dfnet4/ 2>/dev/null || true
cp build/dev/_blas_shim.so python/dfnet4/ 2>/dev/null || true
