"""Env throughput vs a plain MuJoCo loop, measured in the same run.

env:      TabletopEnv steps (IK + physics substeps + 4-camera RGB-D observation + state)
baseline: the same number of mj_step substeps plus, per camera, mujoco.Renderer RGB and depth
          renders (update_scene + render twice), on the same compiled model.
overhead ratio = baseline steps/s / env steps/s (below 1 means the env is faster than the loop).

    python tools/bench/env_throughput.py --steps 200 --out outputs/bench/env_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--task", default="PickCube")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--render-profile", default="lowpoly", help="envs.profiles name: lowpoly (default) or hifi")
    ap.add_argument("--full-meshes", action="store_true", help="the profile, but with the visual meshes")
    ap.add_argument("--out", default="outputs/bench/env_throughput.json")
    args = ap.parse_args()

    import envs  # noqa: F401  (first: picks the GL backend before mujoco loads, registers ids)

    # isort: split
    import gymnasium as gym
    import mujoco

    env = gym.make(
        f"MVBench/{args.task}-v0", width=args.size, height=args.size, render_profile=args.render_profile,
        low_poly=False if args.full_meshes else None,
    )  # fmt: skip
    u = env.unwrapped
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for _ in range(5):  # warm-up (GL context, caches)
        env.step(env.action_space.sample())
    t0 = time.perf_counter()
    for _ in range(args.steps):
        _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, 7).astype(np.float32) * 0.01)
        if term or trunc:
            env.reset()
    env_time = time.perf_counter() - t0

    model, data = u.model, mujoco.MjData(u.model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, args.size, args.size)
    opt = u._renderer.option  # same geom groups as the env
    names = u.rig.names
    for _ in range(5):
        renderer.update_scene(data, names[0], opt)
        renderer.render()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        mujoco.mj_step(model, data, nstep=u.n_substeps)
        for n in names:
            renderer.update_scene(data, n, opt)
            renderer.disable_depth_rendering()
            renderer.render()
            renderer.enable_depth_rendering()
            renderer.render()
    raw_time = time.perf_counter() - t0
    renderer.close()
    env.close()

    result = {
        "task": args.task,
        "cameras": len(names),
        "resolution": args.size,
        "render_profile": env.unwrapped.render_profile.to_dict(),
        "steps": args.steps,
        "substeps_per_step": u.n_substeps,
        "env_steps_per_s": args.steps / env_time,
        "raw_mujoco_steps_per_s": args.steps / raw_time,
        "overhead_ratio": (args.steps / raw_time) / (args.steps / env_time),
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
