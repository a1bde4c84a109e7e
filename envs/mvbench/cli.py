"""``mvbench``: list tasks and views, render a contact sheet, collect demonstrations, evaluate
the reference policies.

    mvbench list
    mvbench views --task CubeInBowl --out outputs/mvbench/views.png
    mvbench collect --task all --episodes 50 --views train --out data/mvbench
    mvbench eval-expert --tasks PickCube CubeInBowl --episodes 2

Bad input (an unknown task or view group, a count below 1, a resumed collection with other
settings) ends with one line naming the argument on stderr and exit status 2; a collection that
kept fewer demos than asked exits with status 1.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.profiles import DEFAULT_PROFILE


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
    render_profile: str = DEFAULT_PROFILE
    out: Path = Path("outputs/mvbench/views.png")


@dataclass
class Collect:
    """Run the scripted experts and write HDF5 demonstrations (resumable)."""

    task: str = "all"
    """a task name or 'all'"""
    episodes: int = 10
    views: str = "train"
    """view group whose cameras are recorded"""
    out: Path = Path("data/mvbench")
    split: str = "default"
    size: int = 128
    wrist: bool = False
    """also record the wrist camera"""
    keep_failed: bool = False
    seed: int = 0
    """collection seed; episode seeds come from the collection stream, disjoint from evaluation's"""
    render_profile: str = DEFAULT_PROFILE
    """render profile (see envs.profiles); recorded in the files"""
    allow_novel_views: bool = False
    """record a novel (held-out) view group anyway"""
    max_attempts_factor: int = 3
    """give up on a task after episodes x this many attempts"""


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
    wrist: bool = False
    """also give the policies the wrist camera (the same in every view group)"""
    render_profile: str = DEFAULT_PROFILE
    out: Path = Path("outputs/mvbench")
    video: bool = False
    """also write a GIF per episode under <out>/videos/<policy>/"""


def _check_tasks(tasks: list[str], arg: str) -> None:
    from envs.tasks import TASKS

    if not tasks:
        raise ValueError(f"{arg}: give at least one task")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"{arg}: unknown task {unknown[0]!r}; known: {', '.join(TASKS)}")


def _check_positive(value: int, arg: str) -> None:
    if value < 1:
        raise ValueError(f"{arg}: expected at least 1, got {value}")


MAX_SIZE = 1024  # pixels: MuJoCo's offscreen buffer and memory stay sane


def _check_size(size: int) -> None:
    if not 8 <= size <= MAX_SIZE:
        raise ValueError(f"--size: expected 8..{MAX_SIZE} pixels, got {size}")


def _check_seed(seed: int, arg: str = "--seed") -> None:
    if seed < 0:
        raise ValueError(f"{arg}: expected a non-negative integer, got {seed}")


def _check_out(path: Path, kind: str) -> None:
    """Refuse an output path that cannot be written before any work is done."""
    if kind == "dir" and path.exists() and not path.is_dir():
        raise ValueError(f"--out: {path} exists and is not a directory")
    if kind == "file" and path.is_dir():
        raise ValueError(f"--out: {path} is a directory; give a .png file path")
    parent = path if kind == "dir" else path.parent
    for p in [parent, *parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"--out: {p} is a file, so {path} cannot be created")
            if not os.access(p, os.W_OK):
                raise ValueError(f"--out: no permission to write in {p}")
            break


def _profile(name: str) -> None:
    from envs.profiles import get_profile

    try:
        get_profile(name)
    except ValueError as exc:
        raise ValueError(f"--render-profile: {str(exc).split(': ', 1)[-1]}") from None


def _split(name: str, size: int):
    from envs.mvbench.views import load_split
    from worldline.config import ConfigError

    try:
        return load_split(name, size, size)
    except (ValueError, FileNotFoundError, ConfigError) as exc:
        raise ValueError(f"--split: {exc}") from None


def _list(args: List) -> None:
    from envs.profiles import PROFILES
    from envs.tasks import TASKS

    for name, t in TASKS.items():
        memory = "  [needs memory]" if t.needs_memory else ""
        print(f"MVBench/{name}-v0  max_steps={t.max_steps}  {t.description}{memory}")
    split = _split(args.split, 128)
    for g in split.groups:
        cams = split.cameras(g)
        print(f"view group {g:>8}: " + ", ".join(f"az {c.azimuth:g} el {c.elevation:g}" for c in cams))
    for p in PROFILES.values():
        print(f"render profile {p.describe()}" + ("  [default]" if p.name == DEFAULT_PROFILE else ""))


def _views(args: Views) -> None:
    import gymnasium as gym
    from PIL import Image, ImageDraw

    _check_tasks([args.task], "--task")
    _check_size(args.size)
    _check_seed(args.seed)
    _check_out(args.out, "file")
    _profile(args.render_profile)
    split = _split(args.split, args.size)
    rows = []
    for g in split.groups:
        cams = split.cameras(g)
        env = gym.make(
            f"MVBench/{args.task}-v0", cameras=cams, width=args.size, height=args.size,
            render_profile=args.render_profile,
        )  # fmt: skip
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


def _collect(args: Collect) -> int:
    from tqdm import tqdm

    from envs.mvbench.collect import CollectConfig, collect_task
    from envs.mvbench.views import TRAIN
    from envs.tasks import TASKS

    tasks = list(TASKS) if args.task == "all" else [args.task]
    _check_tasks(tasks, "--task")
    _check_positive(args.episodes, "--episodes")
    _check_positive(args.max_attempts_factor, "--max-attempts-factor")
    _check_size(args.size)
    _check_seed(args.seed)
    _check_out(args.out, "dir")
    _profile(args.render_profile)
    split = _split(args.split, args.size)
    try:
        split.cameras(args.views)
    except ValueError:
        raise ValueError(f"--views: unknown view group {args.views!r}; groups: {split.groups}") from None
    if args.views != TRAIN:
        if not args.allow_novel_views:
            raise ValueError(
                f"--views: {args.views!r} is a novel (held-out) view group: demonstrations from it leak evaluation "
                "views into training. Pass --allow-novel-views to record it anyway"
            )
        print(f"warning: recording the novel view group {args.views!r}; do not evaluate on it", file=sys.stderr)
    cfg = CollectConfig(
        episodes=args.episodes, views=args.views, split=args.split, width=args.size, height=args.size,
        wrist=args.wrist, keep_failed=args.keep_failed, seed=args.seed, render_profile=args.render_profile,
        allow_novel_views=args.allow_novel_views, max_attempts_factor=args.max_attempts_factor,
    )  # fmt: skip
    short = []
    for task in tasks:
        bar = tqdm(total=args.episodes, desc=task)

        def progress(_task, state, bar=bar):
            bar.n = state["kept"]
            bar.set_postfix(success=f"{state['kept']}/{state['attempts']}")
            bar.refresh()

        res = collect_task(task, args.out, cfg, split=split, progress=progress)
        bar.close()
        print(f"{task}: {res.kept} demos in {res.path}" if res.path else f"{task}: no demos kept, no file written")
        if not res.complete:
            short.append(
                f"{task}: only {res.kept} of {res.requested} demos after {res.attempts} attempts "
                "(raise --max-attempts-factor, or check the expert with tools/bench/expert_success.py)"
            )
    for line in short:
        print(f"mvbench collect: {line}", file=sys.stderr)
    return 1 if short else 0


def _eval_expert(args: EvalExpert) -> None:
    from envs.mvbench.evaluate import EvalConfig, ExpertPolicy, RandomPolicy, evaluate, format_table

    _check_tasks(args.tasks, "--tasks")
    _check_positive(args.episodes, "--episodes")
    _check_size(args.size)
    if not args.seeds or min(args.seeds) < 0:
        raise ValueError(f"--seeds: expected one or more non-negative seeds, got {args.seeds}")
    _check_out(args.out, "dir")
    _profile(args.render_profile)
    split = _split(args.split, args.size)
    unknown = [g for g in args.groups or [] if g not in split.groups]
    if unknown:
        raise ValueError(f"--groups: unknown view group {unknown[0]!r}; groups: {split.groups}")
    for name, policy in (("expert", ExpertPolicy()), ("random", RandomPolicy(seed=0))):
        video_dir = str(args.out / "videos" / name) if args.video else None
        cfg = EvalConfig(
            width=args.size, height=args.size, wrist=args.wrist, render_profile=args.render_profile,
            video_dir=video_dir,
        )  # fmt: skip
        res = evaluate(
            policy, args.tasks, args.groups, episodes_per_task=args.episodes, seeds=args.seeds, split=split,
            config=cfg, out=args.out / f"{name}.json",
        )  # fmt: skip
        print(format_table(res))
        print(f"({res['seconds']:.0f} s; {args.out / f'{name}.json'})\n")


COMMANDS = {"list": List, "views": Views, "collect": Collect, "eval-expert": EvalExpert}


def main(argv: list[str] | None = None) -> None:
    import tyro

    import envs  # noqa: F401  (GL backend, registration)
    from worldline.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = tyro.extras.subcommand_cli_from_dict(COMMANDS, args=argv, prog="mvbench")
    name = next(k for k, v in COMMANDS.items() if isinstance(cmd, v))
    run = {List: _list, Views: _views, Collect: _collect, EvalExpert: _eval_expert}[type(cmd)]
    try:
        rc = run(cmd)
    except (ValueError, OSError, ConfigError) as exc:  # OSError: a disk full, a permission denied
        print(f"mvbench {name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"mvbench {name}: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
