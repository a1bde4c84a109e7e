"""Collect -> train -> evaluate as resumable stages.

``vla quickstart`` (the README's main job) and ``tools/experiments/mvbench_4d_vs_rgb.py`` (the
paper's experiment) are both built from these. Every stage leaves its result on disk and is
skipped, or resumed, when run again with the same arguments:

- :func:`collect_demos`: scripted-expert demonstrations from the training views (resumable per
  episode, see :mod:`envs.mvbench.collect`);
- :func:`train_policy`: a :class:`vla.training.Trainer` run (exact resume from its last checkpoint);
- :func:`evaluate_policy`: MV-Bench success per task x view group, one JSON per view group, with
  enough episodes that every cell holds at least ``min_episodes`` (the groups have 1 to 6 views);
- :func:`summarize`: mean +- std over training seeds per policy x group (and task).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from envs.profiles import DEFAULT_PROFILE


def collect_demos(
    tasks: Sequence[str],
    data_dir: str | Path,
    episodes: int,
    size: int = 64,
    seed: int = 0,
    render_profile: str = DEFAULT_PROFILE,
    progress: bool = True,
) -> list[Path]:
    """``episodes`` expert demonstrations per task, recorded from every training view, into
    ``<data_dir>/<task>.hdf5``; returns the files. Raises ValueError when the expert could not
    produce them all (naming the task), since a smaller dataset would silently change the run."""
    from tqdm import tqdm

    from envs.mvbench.collect import CollectConfig, collect_task

    files = []
    for task in tasks:
        bar = tqdm(total=episodes, desc=f"collect {task}", disable=not progress)

        def show(_task, state, bar=bar):
            bar.n = state["kept"]
            bar.set_postfix(attempts=state["attempts"])
            bar.refresh()

        cfg = CollectConfig(episodes=episodes, width=size, height=size, seed=seed, render_profile=render_profile)
        result = collect_task(task, data_dir, cfg, progress=show)
        bar.n = result.kept
        bar.close()
        if not result.complete:
            raise ValueError(
                f"collect: the expert kept {result.kept} of {episodes} {task} demos in {result.attempts} attempts"
            )
        files.append(result.path)
    return files


def train_policy(
    run_dir: str | Path,
    files: Sequence[str | Path],
    preset: str = "cpu-tiny",
    baseline: str | None = None,
    seed: int = 0,
    steps: int = 2000,
    progress: bool = True,
    deadline: float | None = None,
    **train_fields,
) -> tuple[Path, bool]:
    """Train (or resume, or find finished) one policy; returns its last checkpoint folder and
    whether it reached ``steps`` (False when it stopped at ``deadline``, a ``time.monotonic()``)."""
    from vla.configuration import load_preset
    from vla.training import TrainConfig, Trainer

    cfg = TrainConfig(data=[Path(f) for f in files], out=Path(run_dir), steps=steps, seed=seed, baseline=baseline,
                      **train_fields)  # fmt: skip
    result = Trainer(cfg, load_preset(preset)).run(progress=progress, deadline=deadline)
    return Path(result["checkpoint"]), bool(result["finished"])


def episodes_per_seed(views: int, seeds: int, min_episodes: int) -> int:
    """Episodes per seed and view so that a group of ``views`` views holds >= ``min_episodes``."""
    return max(1, math.ceil(min_episodes / (views * seeds)))


def evaluate_policy(
    policy,
    tasks: Sequence[str],
    out_dir: str | Path,
    groups: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    min_episodes: int = 1,
    size: int = 64,
    render_profile: str | None = None,
    tag: dict | None = None,
    progress: bool = True,
    deadline: float | None = None,
) -> dict | None:
    """MV-Bench success of ``policy`` (an MV-Bench policy, e.g. :class:`vla.adapter.MVBenchPolicy`)
    per task x view group, every cell with at least ``min_episodes`` episodes.

    Each view group's result is written to ``<out_dir>/<group>.json`` and reused when run again
    with the same ``tag`` (say, the checkpoint it came from), tasks, seeds and episode counts; a
    file from other settings is recomputed. Returns the groups merged into one result, or None
    when ``deadline`` (a ``time.monotonic()``) passed before a group still to evaluate.
    """
    import time

    from envs.mvbench.evaluate import EvalConfig, evaluate
    from envs.mvbench.views import load_split
    from worldline.io import load_json, save_json

    split = load_split("default", size, size)
    groups = list(groups) if groups is not None else split.groups
    profile = render_profile or getattr(policy, "render_profile", None) or DEFAULT_PROFILE
    wrist = bool(getattr(policy, "wrist", False))  # MVBenchPolicy: whether its model reads the wrist camera
    cfg = EvalConfig(width=size, height=size, render_profile=profile, wrist=wrist)
    merged: dict = {"table": {t: {} for t in tasks}, "episodes": [], "groups": groups, "tasks": list(tasks),
                    "seeds": list(seeds), "episodes_per_cell": {}}  # fmt: skip
    for group in groups:
        n = episodes_per_seed(len(split.cameras(group)), len(seeds), min_episodes)
        path = Path(out_dir) / f"{group}.json"
        want = {"tag": tag or {}, "tasks": list(tasks), "seeds": list(seeds), "episodes_per_task": n,
                "config": {"width": size, "height": size, "wrist": wrist}, "render_profile_name": profile}  # fmt: skip
        result = load_json(path) if path.is_file() else None
        if result is None or {k: result.get(k) for k in want} != want:
            if deadline is not None and time.monotonic() > deadline:
                return None
            result = evaluate(policy, tasks, [group], episodes_per_task=n, seeds=seeds, config=cfg, progress=progress)
            result.pop("seconds", None)
            result["tag"] = tag or {}
            result["render_profile_name"] = profile
            save_json(result, path)
        for t in tasks:
            merged["table"][t][group] = result["table"][t][group]
        merged["episodes"] += result["episodes"]
        merged["episodes_per_cell"][group] = n * len(seeds) * len(split.cameras(group))
        for key in ("policy", "cameras", "privileged", "render_profile"):
            merged[key] = result[key]
    return merged


def group_means(result: dict) -> dict[str, float]:
    """Success per view group, averaged over the tasks (and over the seeds within each task)."""
    return {g: float(np.mean([result["table"][t][g]["mean"] for t in result["tasks"]])) for g in result["groups"]}


def summarize(results: dict[str, list[dict]]) -> dict:
    """``{policy: [result per training seed]}`` -> per policy and view group (tasks averaged)
    and per policy, task and group: mean and std over the training seeds, plus ``novel`` (the
    mean over the novel groups) and ``drop`` (train - novel), both per seed first."""
    out: dict = {}
    for name, runs in results.items():
        if not runs:
            continue
        groups = runs[0]["groups"]
        per_seed = [group_means(r) for r in runs]
        novel = [g for g in groups if g != "train"]
        row = {g: _stat([p[g] for p in per_seed]) for g in groups}
        if "train" in groups and novel:
            row["novel"] = _stat([np.mean([p[g] for g in novel]) for p in per_seed])
            row["drop"] = _stat([p["train"] - np.mean([p[g] for g in novel]) for p in per_seed])
        tasks = {t: {g: _stat([r["table"][t][g]["mean"] for r in runs]) for g in groups} for t in runs[0]["tasks"]}
        cells = runs[0].get("episodes_per_cell", {})
        out[name] = {"groups": row, "tasks": tasks, "seeds": len(runs), "episodes_per_cell": cells}
    return out


def _stat(values) -> dict:
    """Mean and sample standard deviation (ddof = 1; 0 for a single seed) over training seeds."""
    v = np.asarray(values, dtype=float)
    std = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(v.mean()), "std": std, "per_seed": [float(x) for x in v]}


def format_summary(summary: dict, columns: Sequence[str] | None = None) -> str:
    """A markdown table: one row per policy, success % (mean +- sample std over training seeds,
    n = the number of seeds; the mean alone for n = 1)."""
    if not summary:
        return "(no results yet)"
    first = next(iter(summary.values()))
    cols = list(columns or first["groups"])
    lines = ["| policy | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, s in summary.items():
        cells = []
        for c in cols:
            st = s["groups"].get(c)
            if st is None:
                cells.append("—")
            elif s["seeds"] < 2:  # one training seed: no spread to report
                cells.append(f"{100 * st['mean']:.1f}")
            else:
                cells.append(f"{100 * st['mean']:.1f} ± {100 * st['std']:.1f}")
        lines.append(f"| {name} (n={s['seeds']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
