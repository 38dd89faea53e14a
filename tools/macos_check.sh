#!/usr/bin/env bash
# macOS host build check, run from Linux (CI runs it on every submission; docs/macos.md):
#   1. downloads MLX's macOS wheels (mlx-metal holds the macOS headers, metal-cpp, the cmake config
#      and libmlx.dylib), cached;
#   2. configures this repository with CMake against that config, as a Mac would (MLX_BUILD_METAL,
#      -D_METAL_, the Metal eval_gpu, the generated embedded-kernel-source TU), with clang-19
#      targeting aarch64 and stub Apple system headers (tools/macos_stubs/);
#   3. compiles every translation unit of the extension and checks that libmlx.dylib exports every
#      mlx::core symbol they use, then proves both steps catch seeded defects (tools/macos_check.py).
#
# Usage: tools/macos_check.sh [--no-self-check]
# Env:   DFNET4_MACOS_CACHE  wheel/venv cache (default ~/.cache/dfnet4/macos-check)
#        DFNET4_MACOS_BUILD  build directory (default build/macos-check)
#        JOBS                parallel compiles (default 2)
# Needs Debian's clang-19, libc++-19-dev, libc++abi-19-dev, libc6-dev-arm64-cross, llvm-19, cmake,
# ninja-build; installed with apt-get when run as root, otherwise named in the error.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${DFNET4_MACOS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dfnet4/macos-check}
BUILD=${DFNET4_MACOS_BUILD:-$ROOT/build/macos-check}
JOBS=${JOBS:-2}
SELF_CHECK=--self-check
for arg in "$@"; do
  case "$arg" in
    --no-self-check) SELF_CHECK= ;;
    *) echo "macos_check.sh: error: unknown argument '$arg' (usage: tools/macos_check.sh [--no-self-check])" >&2; exit 2 ;;
  esac
done
say() { echo "macos_check: $*"; }
fail() { echo "macos_check: error: $*" >&2; exit 1; }

# --- tools ------------------------------------------------------------------------------------------
PACKAGES=(clang-19 libc++-19-dev libc++abi-19-dev libc6-dev-arm64-cross llvm-19 cmake ninja-build)
missing=()
for p in "${PACKAGES[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    fail "needs the Debian packages ${missing[*]} (sudo apt-get install ${missing[*]})"
  fi
fi

# --- versions: the ones the build pins (pyproject.toml [build-system]) --------------------------------
pinned() { sed -n "s/^ *\"$1==\([^\"]*\)\".*/\1/p" "$ROOT/pyproject.toml" | head -n1; }
MLX_VERSION=$(pinned mlx)
NANOBIND_VERSION=$(pinned nanobind)
[[ -n "$MLX_VERSION" && -n "$NANOBIND_VERSION" ]] || fail "cannot read the mlx / nanobind pins from pyproject.toml"

# --- a Python with nanobind (headers and cmake config; the bindings compile against them) -------------
VENV=$CACHE/venv-nanobind-$NANOBIND_VERSION
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -m nanobind --cmake_dir >/dev/null 2>&1; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "nanobind==$NANOBIND_VERSION"
fi

# --- the macOS MLX SDK, from the mlx-metal wheel ------------------------------------------------------
SDK=$CACHE/mlx-metal-$MLX_VERSION
if [[ ! -f "$SDK/mlx/lib/libmlx.dylib" ]]; then
  say "downloading MLX $MLX_VERSION's macOS wheels"
  mkdir -p "$CACHE/wheels"
  "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --platform macosx_14_0_arm64 \
    --python-version 3.12 -d "$CACHE/wheels" "mlx==$MLX_VERSION" "mlx-metal==$MLX_VERSION"
  rm -rf "$SDK.tmp" && mkdir -p "$SDK.tmp"
  "$VENV/bin/python" -m zipfile -e "$CACHE/wheels/mlx_metal-$MLX_VERSION-"*macosx_14_0_arm64.whl "$SDK.tmp"
  rm -rf "$SDK" && mv "$SDK.tmp" "$SDK"
fi

# --- cross-compile flags: aarch64, libc++, Apple system header stubs ---------------------------------
# Debian's Python headers pick pyconfig.h by target triple; aarch64 has none here, and the x86-64 one
# describes the same LP64 little-endian ABI, so point the aarch64 name at it.
PYINC=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
PYSHIM=$BUILD/pyconfig
rm -rf "$PYSHIM"
if grep -q "aarch64-linux-gnu/" "$PYINC/pyconfig.h"; then
  PYVER=$(basename "$PYINC")
  HOST_PYCONFIG=$(dirname "$PYINC")/x86_64-linux-gnu/$PYVER/pyconfig.h
  [[ -f "$HOST_PYCONFIG" ]] || fail "no $HOST_PYCONFIG to stand in for the aarch64 pyconfig.h"
  mkdir -p "$PYSHIM/aarch64-linux-gnu/$PYVER"
  echo "#include \"$HOST_PYCONFIG\"" > "$PYSHIM/aarch64-linux-gnu/$PYVER/pyconfig.h"
fi
RESOURCE=$(clang++-19 -print-resource-dir)
CROSS="--target=aarch64-linux-gnu -mcpu=apple-m1 -D__arm64__=1 -fblocks -nostdinc \
-isystem /usr/lib/llvm-19/include/c++/v1 -isystem $RESOURCE/include -isystem /usr/aarch64-linux-gnu/include \
-isystem $ROOT/tools/macos_stubs -isystem $PYSHIM"

# --- configure as a Mac would, compile, check symbols -------------------------------------------------
say "configuring against MLX $MLX_VERSION's macOS SDK ($SDK)"
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER=clang++-19 -DCMAKE_CXX_FLAGS="$CROSS" \
  -DCMAKE_TRY_COMPILE_TARGET_TYPE=STATIC_LIBRARY -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
  -DPython_EXECUTABLE="$VENV/bin/python" \
  -DMLX_DIR="$SDK/mlx/share/cmake/MLX" -DMLX_LIBRARY="$SDK/mlx/lib/libmlx.dylib" \
  -DDFNET4_BLAS_SHIM=OFF > "$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log" >&2; fail "configure failed"; }
grep -q "dfnet4: Metal kernels: embedded source" "$BUILD/configure.log" \
  || { cat "$BUILD/configure.log" >&2; fail "the configure did not take the Metal path (MLX_BUILD_METAL)"; }
cmake --build "$BUILD/cmake" --target dfnet4_metal_sources > /dev/null
python3 "$ROOT/tools/macos_check.py" --root "$ROOT" --build-dir "$BUILD/cmake" \
  --dylib "$SDK/mlx/lib/libmlx.dylib" --jobs "$JOBS" $SELF_CHECK
