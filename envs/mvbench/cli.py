"""``mvbench``: list tasks and views, render a contact sheet, collect demonstrations, evaluate
the reference policies.

    mvbench list
    mvbench views --task CubeInBowl --out outputs/mvbench/views.png
    mvbench collect --task all --episodes 50 --views train --out data/mvbench
    mvbench eval-expert --tasks PickCube CubeInBowl --episodes 2
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class List:
    """Print the tasks, their instructions and the view groups of a split."""

    split: str = "default"


@dataclass
class Views:
    """Render every view of the split for one task into one PNG contact sheet."""

    task: str = "CubeInBowl"
    split: str = "default"
    size: int = 160
    seed: int = 0
    out: Path = Path("outputs/mvbench/views.png")


@dataclass
class Collect:
    """Run the scripted experts and write HDF5 demonstrations (resumable)."""

    task: str = "all"
    """a task name or 'all'"""
    episodes: int = 10
    views: str = "train"
    """view group whose cameras are recorded (plus the wrist camera)"""
    out: Path = Path("data/mvbench")
    split: str = "default"
    size: int = 128
    keep_failed: bool = False
    seed: int = 0


@dataclass
class EvalExpert:
    """Evaluate the scripted expert (upper bound) and a random policy (lower bound)."""

    tasks: list[str] = field(default_factory=lambda: ["PickCube", "CubeInBowl"])
    groups: list[str] | None = None
    """view groups (default: all in the split)"""
    episodes: int = 1
    """episodes per seed, per view"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    split: str = "default"
    size: int = 64
    out: Path = Path("outputs/mvbench")
    video: bool = False
    """also write a GIF per episode under <out>/videos/<policy>/"""


def _list(args: List) -> None:
    from envs.mvbench.views import load_split
    from envs.tasks import TASKS

    for name, t in TASKS.items():
        print(f"MVBench/{name}-v0  max_steps={t.max_steps}  {t.description}")
    split = load_split(args.split)
    for g in split.groups:
        cams = split.cameras(g)
        print(f"view group {g:>8}: " + ", ".join(f"az {c.azimuth:g} el {c.elevation:g}" for c in cams))


def _views(args: Views) -> None:
    import gymnasium as gym
    from PIL import Image, ImageDraw

    from envs.mvbench.views import load_split

    split = load_split(args.split, args.size, args.size)
    rows = []
    for g in split.groups:
        cams = split.cameras(g)
        env = gym.make(f"MVBench/{args.task}-v0", cameras=cams, width=args.size, height=args.size)
        obs, _ = env.reset(seed=args.seed)
        tiles = []
        for c in cams:
            img = Image.fromarray(obs["cameras"][c.name]["rgb"])
            ImageDraw.Draw(img).text((3, 3), f"{g} az{c.azimuth:g} el{c.elevation:g}", fill=(255, 255, 255))
            tiles.append(np.asarray(img))
        env.close()
        rows.append(tiles)
    width = max(len(r) for r in rows)
    blank = np.zeros((args.size, args.size, 3), np.uint8)
    sheet = np.concatenate([np.concatenate(r + [blank] * (width - len(r)), axis=1) for r in rows], axis=0)
    from worldline.io import atomic_write

    with atomic_write(args.out) as f:
        Image.fromarray(sheet).save(f, format="PNG")
    print(f"wrote {args.out} ({len(rows)} groups, {sum(len(r) for r in rows)} views)")


def _collect(args: Collect) -> None:
    from tqdm import tqdm

    from envs.mvbench.collect import CollectConfig, collect_task
    from envs.tasks import TASKS

    tasks = list(TASKS) if args.task == "all" else [args.task]
    cfg = CollectConfig(
        episodes=args.episodes, views=args.views, split=args.split, width=args.size, height=args.size,
        keep_failed=args.keep_failed, seed=args.seed,
    )  # fmt: skip
    for task in tasks:
        bar = tqdm(total=args.episodes, desc=task)

        def progress(_task, state, bar=bar):
            bar.n = state["kept"]
            bar.set_postfix(success=f"{state['kept']}/{state['attempts']}")
            bar.refresh()

        path = collect_task(task, args.out, cfg, progress=progress)
        bar.close()
        print(f"{task}: {path}")


def _eval_expert(args: EvalExpert) -> None:
    from envs.mvbench.evaluate import EvalConfig, ExpertPolicy, RandomPolicy, evaluate, format_table

    for name, policy in (("expert", ExpertPolicy()), ("random", RandomPolicy(seed=0))):
        video_dir = str(args.out / "videos" / name) if args.video else None
        cfg = EvalConfig(width=args.size, height=args.size, video_dir=video_dir)
        res = evaluate(
            policy, args.tasks, args.groups, episodes_per_task=args.episodes, seeds=args.seeds, split=args.split,
            config=cfg, out=args.out / f"{name}.json",
        )  # fmt: skip
        print(format_table(res))
        print(f"({res['seconds']:.0f} s; {args.out / f'{name}.json'})\n")


def main(argv: list[str] | None = None) -> None:
    import tyro

    import envs  # noqa: F401  (GL backend, registration)

    cmd = tyro.extras.subcommand_cli_from_dict(
        {"list": List, "views": Views, "collect": Collect, "eval-expert": EvalExpert},
        args=argv if argv is not None else sys.argv[1:],
    )
    {List: _list, Views: _views, Collect: _collect, EvalExpert: _eval_expert}[type(cmd)](cmd)


if __name__ == "__main__":
    main()
