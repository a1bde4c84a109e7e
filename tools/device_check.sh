#!/usr/bin/env bash
# GPU-machine check (run through the device tool with carry: .whl .gl): NVIDIA EGL rendering of
# the envs, the core's CUDA test, the env tests, and env throughput (lowpoly and hifi-like profiles).
# Wheels for Python 3.12 are carried in .whl (mujoco, gymnasium, gymnasium-robotics, ...) and
# the GL loader debs in .gl, as the device README describes.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import envs, os; print('MUJOCO_GL selected:', os.environ['MUJOCO_GL'])"
python3 - <<'PY'
import gymnasium as gym, envs, numpy as np
e = gym.make("MVBench/CubeInBowl-v0", width=256, height=256)
print("render profile (pinned, not machine-dependent):", e.unwrapped.render_profile.describe())
o, _ = e.reset(seed=0)
d = o["cameras"]["front"]["depth"]; print("depth valid fraction", float((d > 0).mean()), "max", float(d.max()))
PY
python3 -m pytest -q -p no:cacheprovider tests/worldline tests/envs/test_env.py 2>&1 | tail -5 | tee "$OUT/pytest.txt"
python3 tools/bench/env_throughput.py --steps 300 --render-profile hifi --out "$OUT/gpu_hifi.json" | tail -12
python3 tools/bench/env_throughput.py --steps 300 --out "$OUT/gpu_low_poly.json" | tail -12
python3 tools/bench/env_throughput.py --steps 200 --size 256 --render-profile hifi --out "$OUT/gpu_hifi_256.json" | tail -12
