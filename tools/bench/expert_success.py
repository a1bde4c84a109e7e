"""Scripted-expert success rate per task over seeded episodes (state observations, no rendering).

python tools/bench/expert_success.py --episodes 50 --out outputs/bench/expert_success.json
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--tasks", default="all")
    ap.add_argument("--out", default="outputs/bench/expert_success.json")
    args = ap.parse_args()

    import gymnasium as gym
    from tqdm import tqdm

    import envs
    from envs.expert import ScriptedExpert

    names = list(envs.tasks.TASKS) if args.tasks == "all" else args.tasks.split(",")
    results = {}
    for name in names:
        env = gym.make(f"MVBench/{name}-v0", obs_mode="state")
        expert = ScriptedExpert(env)
        successes, lengths = [], []
        t0 = time.perf_counter()
        for seed in tqdm(range(args.episodes), desc=name, leave=False):
            obs, info = env.reset(seed=seed)
            expert.reset()
            done, steps = False, 0
            while not done:
                obs, _, term, trunc, info = env.step(expert.act(obs, info["instruction"]))
                done, steps = term or trunc, steps + 1
            successes.append(bool(info["is_success"]))
            lengths.append(steps)
        results[name] = {
            "success_rate": sum(successes) / len(successes),
            "episodes": len(successes),
            "failed_seeds": [s for s, ok in enumerate(successes) if not ok],
            "mean_steps": sum(lengths) / len(lengths),
            "seconds": time.perf_counter() - t0,
        }
        print(f"{name:>24}: {results[name]['success_rate']:.0%} of {args.episodes}", flush=True)
        env.close()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
