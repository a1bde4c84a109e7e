"""How often the sampled history still shows LitBowl's cue after it has gone (issue: 4D-VLA memory bank).

For scripted-expert LitBowl episodes seen from the MV-Bench training views, at every decision step
after the cue (the lit bowl) has gone dark, each sampler picks its frames from the same window
(by default k = 5 of the last 20 bank frames kept every 6 steps, on cached thumbnail features); we count the
steps where at least one picked frame was taken while the cue was shown.

    python tools/bench/memory_bank_cue.py --seeds 10 --out outputs/bench/memory_bank_cue.json
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10, help="episodes per view")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--stride", type=int, default=6)
    ap.add_argument("--out", default="outputs/bench/memory_bank_cue.json")
    args = ap.parse_args()

    import gymnasium as gym
    import numpy as np
    from tqdm import tqdm

    import envs  # noqa: F401
    from envs.expert import ScriptedExpert
    from envs.mvbench.views import load_split
    from envs.tasks import CUE_STEPS
    from vla.memory_bank import make_sampler, thumbnail_features, window_steps
    from worldline.io import save_json

    samplers = {n: make_sampler(n, args.k) for n in ("memory_bank", "uniform", "recent", "single")}
    hits = {n: [] for n in samplers}
    steps_after_cue = []
    for cam in tqdm(load_split("default", args.size, args.size).cameras("train"), desc="views"):
        env = gym.make("MVBench/LitBowl-v0", cameras=(cam,), width=args.size, height=args.size).unwrapped
        expert = ScriptedExpert(env)
        for seed in range(args.seeds):
            obs, _ = env.reset(seed=seed)
            frames = [obs["cameras"][cam.name]["rgb"]]
            for _ in range(env.task.max_steps):
                obs, _, term, trunc, _ = env.step(expert.act(obs))
                frames.append(obs["cameras"][cam.name]["rgb"])
                if term or trunc:
                    break
            feats = thumbnail_features(np.stack(frames))
            steps_after_cue.append(len(frames) - CUE_STEPS)
            for t in range(CUE_STEPS, len(frames)):
                cand = window_steps(t, args.window, args.stride)
                for n, s in samplers.items():
                    hits[n].append(any(cand[i] < CUE_STEPS for i in s.select(feats[cand])))
        env.close()
    result = {
        "task": "LitBowl", "views": "train", "episodes": len(steps_after_cue), "decision_steps": len(hits["uniform"]),
        "k": args.k, "window": args.window, "stride": args.stride, "cue_steps": CUE_STEPS,
        "mean_steps_after_cue": float(np.mean(steps_after_cue)),
        "cue_kept_rate": {n: float(np.mean(h)) for n, h in hits.items()},
    }  # fmt: skip
    for n, r in result["cue_kept_rate"].items():
        print(f"{n:>12}: keeps a cue frame at {100 * r:.1f}% of {result['decision_steps']} post-cue steps")
    save_json(result, args.out)


if __name__ == "__main__":
    main()
