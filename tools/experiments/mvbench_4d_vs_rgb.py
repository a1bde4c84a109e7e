"""The 4D-VLA paper's MV-Bench experiment at our scale, as one resumable command.

1. Collect ``--demos`` expert demonstrations of every task (the standard ``--tasks`` and the
   history ``--history-tasks``), each recorded from the 6 training views.
2. Train every policy in ``--policies`` (4D-VLA and its baselines, see
   ``vla.configuration.BASELINES``) on all of that data, with the same preset, steps, batch and
   seed, for each of ``--train-seeds``.
3. Evaluate each run on every view group (training views and the novel groups) with at least
   ``--min-episodes`` episodes per task x group cell.
4. Write ``summary.json`` and ``summary.md``: table 1, success per view group (standard tasks)
   with the drop from training to novel views; table 2, the history tasks: memory bank vs
   uniform vs single frame; plus per-task tables. Mean +- std over the training seeds.

Every unit (a collection, a training run, one view group of an evaluation) is kept on disk and
skipped when done, so running the same command again continues where it stopped; training runs
resume exactly from their last checkpoint. ``--budget-minutes`` stops after that long: a training
run writes a checkpoint and stops, an evaluation stops before its next view group; the tables are
written from whatever is finished, so the experiment can be spread over several sessions. Seeds
are the outer loop: the first finished seed already compares every policy.

    python tools/experiments/mvbench_4d_vs_rgb.py                      # the full CPU experiment
    python tools/experiments/mvbench_4d_vs_rgb.py --budget-minutes 60  # one hour of it, then stop
    python tools/experiments/mvbench_4d_vs_rgb.py --preset gpu-base --device cuda --out outputs/experiments/gpu
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

POLICIES = ["4d", "rgb-single", "rgbd-camera", "4d-uniform", "4d-single"]
STANDARD = ["4d", "rgb-single", "rgbd-camera", "4d-uniform"]
HISTORY = ["4d", "4d-uniform", "4d-single"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["PickCube", "CubeInBowl"], help="standard tasks (table 1)")
    ap.add_argument("--history-tasks", nargs="*", default=["LitBowl", "ReturnCube"], help="history tasks (table 2)")
    ap.add_argument("--policies", nargs="+", default=POLICIES, help="baselines to train (vla.configuration)")
    ap.add_argument("--preset", default="cpu-tiny")
    ap.add_argument("--demos", type=int, default=100, help="demos per task (each from all 6 training views)")
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (warm-up, cosine)")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--min-episodes", type=int, default=50, help="episodes per task x view group cell")
    ap.add_argument("--groups", nargs="+", default=None, help="view groups (default: all)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--budget-minutes", type=float, default=None, help="stop at the next unit after this long")
    ap.add_argument("--out", type=Path, default=Path("outputs/experiments/mvbench_4d_vs_rgb"))
    args = ap.parse_args()

    import envs  # noqa: F401  (GL backend first)
    from envs.tasks import TASKS
    from vla.configuration import BASELINES

    tasks = list(dict.fromkeys(args.tasks + args.history_tasks))
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        ap.error(f"--tasks/--history-tasks: unknown {bad}; known: {sorted(TASKS)}")
    bad = [p for p in args.policies if p not in BASELINES]
    if bad:
        ap.error(f"--policies: unknown {bad}; known: {sorted(BASELINES)}")
    if not args.lr > 0:
        ap.error(f"--lr: expected a positive learning rate, got {args.lr}")
    for name in ("demos", "steps", "batch_size", "min_episodes"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected at least 1, got {getattr(args, name)}")
    for name in ("train_seeds", "eval_seeds"):
        if min(getattr(args, name)) < 0:
            ap.error(f"--{name.replace('_', '-')}: expected non-negative seeds, got {getattr(args, name)}")
    from envs.mvbench.views import load_split
    from vla.configuration import load_preset
    from worldline.config import ConfigError

    groups = load_split("default", args.size, args.size).groups
    bad = [g for g in args.groups or [] if g not in groups]
    if bad:
        ap.error(f"--groups: unknown {bad}; groups: {groups}")
    try:
        load_preset(args.preset)
    except (ConfigError, OSError, ValueError) as exc:
        ap.error(f"--preset: {exc}")

    from vla.adapter import MVBenchPolicy
    from vla.modeling import FourDVLAPolicy
    from vla.pipeline import collect_demos, evaluate_policy, train_policy

    deadline = None if args.budget_minutes is None else time.monotonic() + 60 * args.budget_minutes

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() > deadline

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "budget_minutes"}
    print(json.dumps(settings))
    files = collect_demos(tasks, args.out / "data", args.demos, size=args.size)
    results: dict[str, list[dict]] = {p: [] for p in args.policies}
    stopped = False
    for seed in args.train_seeds:
        for name in args.policies:
            if out_of_time():
                stopped = True
                break
            run = args.out / "runs" / f"{name}_s{seed}"
            ckpt, finished = train_policy(run, files, preset=args.preset, baseline=name, seed=seed, steps=args.steps,
                                batch_size=args.batch_size, lr=args.lr, device=args.device,
                                threads=args.threads, max_episodes=args.demos, deadline=deadline)  # fmt: skip
            if not finished or out_of_time():
                stopped = True
                break
            device = ("cuda" if _cuda() else "cpu") if args.device == "auto" else args.device
            policy = MVBenchPolicy(FourDVLAPolicy.load(ckpt, device=device))
            print(f"evaluating {name} seed {seed} ({ckpt})", file=sys.stderr)
            tag = {
                "checkpoint": ckpt.name,
                "steps": args.steps,
                "demos": args.demos,
                "preset": args.preset,
                "lr": args.lr,
            }
            res = evaluate_policy(policy, tasks, run / "eval", groups=args.groups, seeds=args.eval_seeds,
                                  min_episodes=args.min_episodes, size=args.size, deadline=deadline,
                                  tag=tag)  # fmt: skip
            if res is None:  # out of time between two view groups
                stopped = True
                break
            results[name].append(res)
            _write(args, results, settings)
        if stopped:
            break
    _write(args, results, settings)
    print((args.out / "summary.md").read_text())
    if stopped:
        print(f"stopped after {args.budget_minutes} minutes; run the same command again to continue")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _select(result: dict, tasks: list[str]) -> dict:
    return dict(result, tasks=[t for t in tasks if t in result["tasks"]])


def _write(args, results: dict, settings: dict) -> None:
    from vla.pipeline import format_summary, summarize
    from worldline.io import atomic_write, save_json

    standard = {p: [_select(r, args.tasks) for r in rs] for p, rs in results.items() if p in STANDARD and rs}
    history = {p: [_select(r, args.history_tasks) for r in rs] for p, rs in results.items() if p in HISTORY and rs}
    s1 = summarize(standard)
    s2 = summarize(history) if args.history_tasks else {}
    per_task = {t: summarize({p: [_select(r, [t]) for r in rs] for p, rs in results.items() if rs})
                for t in args.tasks + args.history_tasks}  # fmt: skip
    save_json({"settings": settings, "standard": s1, "history": s2, "per_task": per_task}, args.out / "summary.json")
    md = [f"# MV-Bench: 4D-VLA vs baselines ({args.preset}, {args.steps} steps, {args.demos} demos per task)", "",
          f"Settings: `{json.dumps(settings)}`", "",
          f"## Standard tasks ({', '.join(args.tasks)}): success % per view group, mean ± std over training seeds",
          "", format_summary(s1), ""]  # fmt: skip
    if args.history_tasks:
        md += [f"## History tasks ({', '.join(args.history_tasks)}): memory bank vs uniform vs single frame", "",
               format_summary(s2), ""]  # fmt: skip
    for t, s in per_task.items():
        md += [f"### {t}", "", format_summary(s), ""]
    with atomic_write(args.out / "summary.md", "w") as f:
        f.write("\n".join(md))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as exc:  # bad data, a checkpoint of other settings: one line, no traceback
        print(f"mvbench_4d_vs_rgb: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("mvbench_4d_vs_rgb: interrupted; run the same command again to continue", file=sys.stderr)
        sys.exit(130)
