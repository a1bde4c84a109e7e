"""Do two machines render the same frames under the same render profile?

``dump`` renders every MV-Bench view (all groups of the split) of a few seeded scenes under a
profile and saves the RGB and depth frames; ``compare`` reports how two dumps differ (e.g. one
from Mesa's software EGL on a CPU machine, one from NVIDIA's EGL on a GPU machine).

    python tools/bench/render_profile_compare.py dump --out outputs/bench/frames_cpu.npz
    python tools/bench/render_profile_compare.py compare outputs/bench/frames_cpu.npz frames_gpu.npz
"""

from __future__ import annotations

import argparse
import json
import os


def dump(args) -> None:
    import gymnasium as gym
    import numpy as np

    import envs  # noqa: F401
    from envs.mvbench.views import load_split

    split = load_split("default", args.size, args.size)
    cams = tuple(c for g in split.groups for c in split.cameras(g))
    frames = {}
    for task in args.tasks:
        env = gym.make(f"MVBench/{task}-v0", cameras=cams, width=args.size, height=args.size,
                       render_profile=args.profile)  # fmt: skip
        for seed in range(args.seeds):
            obs, _ = env.reset(seed=seed)
            for c in cams:
                frames[f"{task}/{seed}/{c.name}/rgb"] = obs["cameras"][c.name]["rgb"]
                frames[f"{task}/{seed}/{c.name}/depth"] = obs["cameras"][c.name]["depth"]
        env.close()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    np.savez_compressed(args.out, **{k.replace("/", "__"): v for k, v in frames.items()})
    print(f"wrote {args.out}: {len(frames) // 2} frames, profile {args.profile}, MUJOCO_GL={os.environ['MUJOCO_GL']}")


def compare(args) -> None:
    import numpy as np

    a, b = np.load(args.a), np.load(args.b)
    if set(a.files) != set(b.files):
        raise SystemExit(f"compare: the dumps hold different frames ({len(a.files)} vs {len(b.files)})")
    rgb = [k for k in a.files if k.endswith("rgb")]
    dep = [k for k in a.files if k.endswith("depth")]
    diff = np.concatenate([np.abs(a[k].astype(int) - b[k].astype(int)).max(-1).ravel() for k in rgb])
    dd = np.concatenate([np.abs(a[k] - b[k]).ravel() for k in dep])
    both = np.concatenate([((a[k] > 0) & (b[k] > 0)).ravel() for k in dep])
    result = {
        "frames": len(rgb),
        "rgb_identical_frames": int(sum(np.array_equal(a[k], b[k]) for k in rgb)),
        "rgb_mean_abs_diff": float(diff.mean()),
        "rgb_pixels_differing_gt_8": float((diff > 8).mean()),
        "rgb_pixels_differing_gt_32": float((diff > 32).mean()),
        "depth_valid_mismatch": float(np.concatenate([((a[k] > 0) != (b[k] > 0)).ravel() for k in dep]).mean()),
        "depth_median_abs_diff_m": float(np.median(dd[both])),
        "depth_p99_abs_diff_m": float(np.quantile(dd[both], 0.99)),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2, sort_keys=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--tasks", nargs="+", default=["CubeInBowl", "MugOnPlate"])
    d.add_argument("--seeds", type=int, default=3)
    d.add_argument("--size", type=int, default=128)
    d.add_argument("--profile", default="lowpoly")
    d.add_argument("--out", default="outputs/bench/frames.npz")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--out", default=None)
    args = ap.parse_args()
    dump(args) if args.cmd == "dump" else compare(args)


if __name__ == "__main__":
    main()
