"""Count evaluation episodes that start from a demonstration's initial layout (train/test leakage).

For every task, resets the env with the seeds that default settings give to `mvbench collect`
(every attempt it may make: episodes x max_attempts_factor) and to evaluation (the `evaluate()`
defaults: seeds 0, 1, 2 x 5 episodes, which cover `mvbench eval-expert`'s 3 x 1), and compares
the object poses after reset. Runs on older checkouts too (where both sides used
`envs.mvbench.evaluate.episode_seed(seed, task, episode)`), to measure the before.

    python tools/bench/seed_overlap.py --out outputs/bench/seed_overlap.json
"""

from __future__ import annotations

import argparse

import numpy as np


def _seed_fns():
    try:
        from envs.mvbench.seeds import episode_seed

        return (lambda t, s, e: episode_seed("collect", t, s, e)), (lambda t, s, e: episode_seed("eval", t, s, e))
    except ImportError:  # before the seed streams existed: one function for both
        from envs.mvbench.evaluate import episode_seed

        return (lambda t, s, e: episode_seed(s, t, e)), (lambda t, s, e: episode_seed(s, t, e))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/bench/seed_overlap.json")
    args = ap.parse_args()

    import gymnasium as gym

    import envs
    from envs.mvbench.collect import CollectConfig
    from envs.mvbench.evaluate import evaluate
    from worldline.io import save_json

    collect_seed, eval_seed = _seed_fns()
    ccfg = CollectConfig()
    eval_defaults = evaluate.__defaults__  # (view_groups, episodes_per_task, seeds, ...)
    eval_episodes, eval_seeds = eval_defaults[1], list(eval_defaults[2])
    result = {"collect": {"seed": ccfg.seed, "attempts": ccfg.episodes * ccfg.max_attempts_factor},
              "eval": {"seeds": eval_seeds, "episodes_per_task": eval_episodes}, "tasks": {}}  # fmt: skip
    total = shared = 0
    for task in envs.tasks.TASKS:
        env = gym.make(f"MVBench/{task}-v0", obs_mode="state").unwrapped
        bodies = [env.model.body(o.name).id for o in env.task.objects]

        def poses(seed, env=env, bodies=bodies):
            env.reset(seed=seed)
            return np.round(env.data.xpos[bodies], 9).tobytes()

        demo = {poses(collect_seed(task, ccfg.seed, a)) for a in range(result["collect"]["attempts"])}
        hits = sum(poses(eval_seed(task, s, e)) in demo for s in eval_seeds for e in range(eval_episodes))
        n = len(eval_seeds) * eval_episodes
        result["tasks"][task] = {"eval_episodes": n, "shared_with_demos": hits}
        total, shared = total + n, shared + hits
        print(f"{task:>24}: {hits}/{n} evaluation episodes start from a demo layout", flush=True)
        env.close()
    result["total"] = {"eval_episodes": total, "shared_with_demos": shared}
    print(f"{'total':>24}: {shared}/{total}")
    save_json(result, args.out)


if __name__ == "__main__":
    main()
