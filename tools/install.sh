#!/usr/bin/env bash
# Install worldline and everything it needs on a fresh Debian/Ubuntu machine (CPU-only is fine).
#   - apt: Mesa EGL (MuJoCo offscreen rendering without a GPU), OSMesa fallback, libusb (open3d)
#   - a virtual environment in .venv with torch, the project (editable) and its dev tools
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libosmesa6 libusb-1.0-0 >/dev/null
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: these wheels are on the build machines' disk (others are multi-GB downloads)
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION:-2.14.1}" "torchvision==${TORCHVISION_VERSION:-0.29.1}"
.venv/bin/python -m pip install -q -e ".[dev]"
echo "worldline installed in .venv"
