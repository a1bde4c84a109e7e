#!/usr/bin/env bash
# Install worldline and everything it needs on a fresh Debian/Ubuntu machine (CPU-only is fine).
#   - apt: Python's venv module, Mesa EGL (MuJoCo offscreen rendering without a GPU), the OSMesa
#     fallback, libusb (open3d)
#   - a virtual environment in .venv with torch, the project (editable) and its dev tools
# Run it as root, or as a user who may use sudo. PYTHON=python3.12 picks another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "install.sh: $*" >&2; exit 1; }

APT_PACKAGES=(python3 python3-venv python3-pip libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libosmesa6 libusb-1.0-0)

if ! command -v apt-get >/dev/null 2>&1; then
  die "apt-get not found: this script supports Debian and Ubuntu. Elsewhere install Python >= 3.10 with venv, Mesa EGL (or OSMesa) and libusb-1.0 yourself, then: python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'"
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  die "not root and sudo is not installed: run as root, or install sudo, or have an administrator run: apt-get install -y ${APT_PACKAGES[*]}"
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -qq || die "apt-get update failed (no network or no permission?); see the messages above"
  "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]} (see the messages above)"
fi

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || die "$PY not found; set PYTHON=/path/to/python3 (>= 3.10)"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$PY is Python $("$PY" -c 'import platform; print(platform.python_version())'); worldline needs >= 3.10 (set PYTHON=...)"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv || die "could not create .venv with $PY -m venv (is python3-venv for this Python installed?)"
fi
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: these wheels are on the build machines' disk (others are multi-GB downloads)
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}" \
  || die "could not install torch ${TORCH_VERSION:-2.14.1}; set TORCH_VERSION/TORCHVISION_VERSION to a pair your index has"
.venv/bin/python -m pip install -q -e ".[dev]" || die "pip could not install the project (see the messages above)"
echo "worldline installed in .venv"
