"""``vla``: train a 4D-VLA policy and evaluate it on MV-Bench.

    vla train --config cpu-tiny --data data/mvbench --out runs/cpu-tiny [--steps 2000 --lr 3e-4 ...]
    vla train --config configs/vla/gpu-base.yaml --baseline rgb-single --data data/mvbench
    vla eval --checkpoint runs/cpu-tiny/checkpoints/step_00002000 --episodes 5 --seeds 0 1 2

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

from vla.configuration import VLAConfig, load_preset
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
    cfg = EvalConfig(
        width=args.size, height=args.size, wrist="wrist" in policy.config.cameras,
        render_profile=args.render_profile or policy.meta.get("render_profile") or "lowpoly",
    )  # fmt: skip
    result = evaluate(
        MVBenchPolicy(policy), tasks, args.groups, episodes_per_task=args.episodes, seeds=args.seeds, config=cfg,
        out=args.out, allow_profile_mismatch=args.allow_profile_mismatch,
    )  # fmt: skip
    print(format_table(result))
    print(f"({result['seconds']:.0f} s; {args.out}; checkpoint {ckpt})")


def main(argv: list[str] | None = None) -> None:
    from worldline.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": _train, "eval": _eval}
    if not argv or argv[0] not in commands:
        print("usage: vla {train,eval} [--help]", file=sys.stderr)
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
