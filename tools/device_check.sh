#!/usr/bin/env bash
# GPU-machine check, run through the device tool with carry: .whl .gl (see its README):
#   - NVIDIA EGL rendering of the envs, the env/camera/VLA tests on that machine;
#   - the MV-Bench frames under the pinned `lowpoly` profile (compared with a CPU machine's dump by
#     tools/bench/render_profile_compare.py compare);
#   - 4D-VLA latency for cpu-tiny and gpu-base on CUDA (tools/bench/vla_latency.py);
#   - env throughput under both profiles.
# Wheels for Python 3.12 (mujoco, mujoco-core, gymnasium, gymnasium-robotics, ...) are in .whl,
# the GL loader debs in .gl.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi -L
python3 - <<'PY'
import os, gymnasium as gym, envs
e = gym.make("MVBench/CubeInBowl-v0", width=128, height=128)
print("MUJOCO_GL:", os.environ["MUJOCO_GL"], "| profile:", e.unwrapped.render_profile.describe())
o, _ = e.reset(seed=0)
d = o["cameras"]["front"]["depth"]; print("depth valid fraction", float((d > 0).mean()), "max", float(d.max()))
PY
python3 tools/bench/render_profile_compare.py dump --out "$OUT/frames_gpu.npz"
python3 -m pytest -q -p no:cacheprovider tests/worldline/test_camera.py tests/envs/test_env.py tests/envs/test_tasks.py \
  tests/vla/test_spatial.py tests/vla/test_modeling.py tests/vla/test_memory_bank.py 2>&1 | tail -8 | tee "$OUT/pytest.txt"
python3 tools/bench/vla_latency.py --preset cpu-tiny --device cuda --threads 16 --out "$OUT/vla_latency_cpu_tiny_cuda.json"
python3 tools/bench/vla_latency.py --preset gpu-base --device cuda --threads 16 --out "$OUT/vla_latency_gpu_base_cuda.json"
python3 tools/bench/env_throughput.py --steps 200 --out "$OUT/env_lowpoly.json" | tail -4
python3 tools/bench/env_throughput.py --steps 200 --render-profile hifi --out "$OUT/env_hifi.json" | tail -4
