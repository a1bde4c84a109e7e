"""``vla``: train a 4D-VLA policy and evaluate it on MV-Bench.

    vla train --config cpu-tiny --data data/mvbench --out runs/cpu-tiny [--steps 2000 --lr 3e-4 ...]
    vla train --config configs/vla/gpu-base.yaml --baseline rgb-single --data data/mvbench
    vla eval --checkpoint runs/cpu-tiny/checkpoints/step_00002000 --episodes 5 --seeds 0 1 2
    vla quickstart   # collect -> train cpu-tiny -> evaluate against a random policy (the main job)

``--config`` names a preset (``configs/vla/<name>.yaml``) or a YAML file; every training field and
every model field (``--model.<field>``) can be overridden on the command line (``--help`` lists
them). Training resumes from the run folder's last checkpoint when started again with the same
command. Bad input ends with one line naming the argument, file or field (exit status 2).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vla.configuration import BASELINES, VLAConfig, load_preset
from vla.training import TrainConfig


@dataclass
class TrainCommand(TrainConfig):
    """Train a policy on MV-Bench demonstrations (resumable)."""

    config: str = "cpu-tiny"
    """preset name (configs/vla/<name>.yaml) or YAML path; read before the other flags"""
    model: VLAConfig = field(default_factory=VLAConfig)
    """model fields, defaulting to the preset's"""


@dataclass
class EvalCommand:
    """Evaluate a checkpoint on MV-Bench (render profile and cameras taken from the checkpoint)."""

    checkpoint: Path
    """a checkpoint folder (…/checkpoints/step_N) or a run folder (its last checkpoint)"""
    tasks: list[str] | None = None
    """default: the tasks the policy was trained on"""
    groups: list[str] | None = None
    """view groups (default: all)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    episodes: int = 5
    """episodes per seed, per view"""
    size: int = 64
    """rendered image size (frames are resized to the model's input)"""
    render_profile: str | None = None
    """default: the profile of the training data"""
    allow_profile_mismatch: bool = False
    device: str = "cpu"
    out: Path = Path("outputs/vla/eval.json")


@dataclass
class QuickstartCommand:
    """Collect expert demos, train the cpu-tiny 4D-VLA, and evaluate it and a random policy in the
    training views (resumable: run it again to continue where it stopped)."""

    tasks: list[str] = field(default_factory=lambda: ["PickCube"])
    demos: int = 100
    """expert demonstrations per task, each recorded from all 6 training views"""
    steps: int = 4000
    """training steps (batch 32); about 20 minutes at 3.3 steps/s on a slow 2-core machine, so the
    whole job takes about 25 minutes there (README, "Set up and run")"""
    preset: str = "cpu-tiny"
    baseline: str | None = "4d-single"
    """the preset's variant to train (vla.configuration.BASELINES; None: the preset as it is). The
    default is the current-frame variant: the history variant costs 3x as much per step, so at the
    main job's budget it trains a third as many steps (README, "The main job")"""
    lr: float = 1e-3
    eval_episodes: int = 36
    """episodes per task in the training views (spread over the seeds and the 6 views)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """evaluation seeds"""
    size: int = 64
    """image size of the demos and the evaluation"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""
    out: Path = Path("outputs/quickstart")
    """data/, run/, eval/ and summary.json go here"""


def _resolve_checkpoint(path: Path) -> Path:
    if (path / "model.safetensors").is_file():
        return path
    done = sorted(p for p in (path / "checkpoints").glob("step_*") if (p / "model.safetensors").is_file())
    if not done:
        raise FileNotFoundError(f"--checkpoint: no checkpoint in {path} (expected model.safetensors or checkpoints/)")
    return done[-1]


def _train(argv: list[str]) -> None:
    import tyro

    from vla.training import Trainer

    preset = "cpu-tiny"
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            preset = argv[i + 1]
        elif a.startswith("--config="):
            preset = a.split("=", 1)[1]
    model = load_preset(preset)
    args = tyro.cli(TrainCommand, args=argv, default=TrainCommand(config=preset, model=model), prog="vla train")
    train = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    import torch

    result = Trainer(train, args.model).run()
    if torch.distributed.is_initialized():
        if "ranks_identical" in result and int(os.environ.get("RANK", "0")) == 0:
            print(f"ranks hold identical weights: {result['ranks_identical']}")
        torch.distributed.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        if result["resumed_from"]:
            print(f"resumed from {result['resumed_from']} at step {result['start_step']}")
        loss = result.get("loss", float("nan"))
        print(f"trained to step {result['step']} (loss {loss:.4f}); {result['checkpoint']}")


def _eval(argv: list[str]) -> None:
    import tyro

    import envs  # noqa: F401  (GL backend first)
    from envs.mvbench.evaluate import EvalConfig, evaluate, format_table
    from vla.adapter import MVBenchPolicy
    from vla.modeling import FourDVLAPolicy

    args = tyro.cli(EvalCommand, args=argv, prog="vla eval")
    if args.episodes < 1:
        raise ValueError(f"--episodes: expected at least 1, got {args.episodes}")
    ckpt = _resolve_checkpoint(args.checkpoint)
    policy = FourDVLAPolicy.load(ckpt, device=args.device)
    tasks = args.tasks or policy.meta.get("tasks") or []
    if not tasks:
        raise ValueError("--tasks: the checkpoint records no training tasks; name them")
    agent = MVBenchPolicy(policy)
    cfg = EvalConfig(
        width=args.size, height=args.size, wrist=agent.wrist,
        render_profile=args.render_profile or policy.meta.get("render_profile") or "lowpoly",
    )  # fmt: skip
    result = evaluate(
        agent, tasks, args.groups, episodes_per_task=args.episodes, seeds=args.seeds, config=cfg,
        out=args.out, allow_profile_mismatch=args.allow_profile_mismatch,
    )  # fmt: skip
    print(format_table(result))
    print(f"({result['seconds']:.0f} s; {args.out}; checkpoint {ckpt})")


def _quickstart(argv: list[str]) -> None:
    import time

    import tyro

    import envs  # noqa: F401  (GL backend first)
    from envs.mvbench.evaluate import RandomPolicy, format_table
    from envs.tasks import TASKS
    from vla.adapter import MVBenchPolicy
    from vla.modeling import FourDVLAPolicy
    from vla.pipeline import collect_demos, evaluate_policy, group_means, train_policy
    from worldline.io import save_json

    args = tyro.cli(QuickstartCommand, args=argv, prog="vla quickstart")
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown or not args.tasks:
        raise ValueError(f"--tasks: unknown {unknown}; known: {sorted(TASKS)}")
    for name in ("demos", "steps", "eval_episodes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected at least 1, got {getattr(args, name)}")
    if not args.seeds or min(args.seeds) < 0:
        raise ValueError(f"--seeds: expected one or more non-negative seeds, got {args.seeds}")
    load_preset(args.preset)  # an unknown preset fails now, not after the collection
    if args.baseline is not None and args.baseline not in BASELINES:
        raise ValueError(f"--baseline: unknown {args.baseline!r}; known: {sorted(BASELINES)}")
    t0 = time.perf_counter()
    print(f"[1/3] collecting {args.demos} expert demos of {', '.join(args.tasks)} from the 6 training views")
    files = collect_demos(args.tasks, args.out / "data", args.demos, size=args.size)
    variant = f" ({args.baseline})" if args.baseline else ""
    print(f"[2/3] training {args.preset}{variant} for {args.steps} steps -> {args.out / 'run'}")
    ckpt, _ = train_policy(args.out / "run", files, preset=args.preset, baseline=args.baseline, steps=args.steps,
                        lr=args.lr, threads=args.threads, max_episodes=args.demos)  # fmt: skip
    print(f"[3/3] evaluating {ckpt.name} and a random policy in the training views")
    policy = MVBenchPolicy(FourDVLAPolicy.load(ckpt))
    kw = dict(groups=["train"], seeds=args.seeds, min_episodes=args.eval_episodes, size=args.size)
    learned = evaluate_policy(policy, args.tasks, args.out / "eval" / "learned", tag={"checkpoint": str(ckpt)}, **kw)
    rand = evaluate_policy(RandomPolicy(0), args.tasks, args.out / "eval" / "random", tag={"policy": "random"}, **kw)
    print(format_table(learned))
    print(format_table(rand))
    a, b = group_means(learned)["train"], group_means(rand)["train"]
    n = learned["episodes_per_cell"]["train"]
    summary = {"checkpoint": str(ckpt), "tasks": args.tasks, "episodes_per_task": n, "learned": a, "random": b,
               "learned_table": learned["table"], "random_table": rand["table"]}  # fmt: skip
    save_json(summary, args.out / "summary.json")
    print(f"training views, {n} episodes per task: {args.preset}{variant} {100 * a:.1f}% vs random {100 * b:.1f}% "
          f"({time.perf_counter() - t0:.0f} s; {args.out / 'summary.json'})")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from worldline.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": _train, "eval": _eval, "quickstart": _quickstart}
    if not argv or argv[0] not in commands:
        print("usage: vla {train,eval,quickstart} [--help]", file=sys.stderr)
        sys.exit(0 if argv[:1] in (["-h"], ["--help"]) else 2)
    try:
        commands[argv[0]](argv[1:])
    except (ValueError, OSError, ConfigError) as exc:
        print(f"vla {argv[0]}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"vla {argv[0]}: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
