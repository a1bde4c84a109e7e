"""Collect scripted-expert demonstrations into HDF5 files, resumably.

Each finished episode is written at once as its own small file under ``<out>/.parts/<task>/``
(atomically), and a progress record counts the attempts. An interrupted run therefore keeps every
episode it finished and, run again with the same arguments, continues with the next seed. When a
task has all its episodes, the parts are merged into ``<out>/<task>.hdf5`` (atomically) and removed.

The settings that shape the data (image size, views, split, seed, render profile, wrist camera,
whether failures are kept) are stored with the progress record; resuming with other settings is
refused, naming the setting, so one file never mixes two kinds of episodes. Seeds come from the
collection stream (:mod:`envs.mvbench.seeds`), disjoint from evaluation's.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from envs.cameras import WRIST
from envs.mvbench.dataset import Episode, env_args, write_demo_file, write_file_attrs
from envs.mvbench.seeds import episode_seed
from envs.mvbench.views import TRAIN, ViewSplit, load_split
from envs.profiles import DEFAULT_PROFILE, get_profile
from envs.tasks import TASKS
from worldline.io import atomic_path, load_json, save_json


@dataclass
class CollectConfig:
    episodes: int = 10
    views: str = TRAIN
    split: str = "default"
    width: int = 128
    height: int = 128
    wrist: bool = False
    """also record the wrist camera"""
    keep_failed: bool = False
    seed: int = 0
    render_profile: str = DEFAULT_PROFILE
    max_attempts_factor: int = 3
    """give up on a task after episodes * this many attempts"""
    allow_novel_views: bool = False
    """allow recording a novel (held-out) view group; otherwise an error"""

    def settings(self) -> dict:
        """What must not change when a collection is resumed."""
        return {
            "width": self.width, "height": self.height, "views": self.views, "split": self.split, "seed": self.seed,
            "render_profile": get_profile(self.render_profile).to_dict(), "wrist": self.wrist,
            "keep_failed": self.keep_failed,
        }  # fmt: skip


@dataclass
class CollectResult:
    path: Path | None  # None when no demo was kept (no file is written)
    kept: int
    requested: int
    attempts: int

    @property
    def complete(self) -> bool:
        return self.kept >= self.requested


def _record_episode(env, seed: int) -> tuple[Episode, bool]:
    obs, info = env.reset(seed=seed)
    states, actions, rewards, dones = [], [], [], []
    cams = {n: {"rgb": [], "depth": [], "intrinsics": [], "extrinsics": []} for n in obs["cameras"]}
    done = False
    while not done:
        states.append(obs["state"])
        for n, c in obs["cameras"].items():
            for k in cams[n]:
                cams[n][k].append(c[k])
        action = obs["expert_action"]
        obs, reward, term, trunc, info = env.step(action)
        done = term or trunc
        actions.append(action)
        rewards.append(reward)
        dones.append(done)
    cameras = {n: {k: np.stack(v) for k, v in c.items()} for n, c in cams.items()}
    ep = Episode(
        actions=np.stack(actions),
        rewards=np.asarray(rewards, np.float32),
        dones=np.asarray(dones, np.uint8),
        state=np.stack(states),
        cameras=cameras,
        attrs={"seed": seed, "instruction": info["instruction"], "success": bool(info["is_success"])},
    )
    return ep, bool(info["is_success"])


def collect_task(
    task: str, out: str | Path, cfg: CollectConfig, split: ViewSplit | None = None, progress=None
) -> CollectResult:
    """Collect ``cfg.episodes`` demonstrations of ``task`` into ``<out>/<task>.hdf5``.

    Fewer demos than asked (the expert failed too often within the attempt budget) is not an
    error here: the file holds what was kept and the result says so (``complete``).
    """
    import gymnasium as gym

    import envs  # noqa: F401

    if task not in TASKS:
        raise ValueError(f"task: unknown {task!r}; known: {sorted(TASKS)}")
    if cfg.episodes < 1:
        raise ValueError(f"episodes: expected at least 1, got {cfg.episodes}")
    if cfg.seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {cfg.seed}")
    profile = get_profile(cfg.render_profile)
    split = split or load_split(cfg.split, cfg.width, cfg.height)
    cams = split.cameras(cfg.views) + ((WRIST,) if cfg.wrist else ())
    if cfg.views != TRAIN and not cfg.allow_novel_views:
        raise ValueError(
            f"views: {cfg.views!r} is a novel (held-out) view group of split {cfg.split!r}; demonstrations from it "
            "would leak evaluation views into training. Pass --allow-novel-views to record it anyway"
        )
    out = Path(out)
    final = out / f"{task}.hdf5"
    parts = out / ".parts" / task
    prog_path = parts / "progress.json"
    settings = cfg.settings()
    if final.exists() and not prog_path.exists():
        from envs.mvbench.dataset import DemoFile

        with DemoFile(final) as f:
            done, have = f.attrs.get("collect_settings", {}), len(f)
        _check_same(settings, done, f"{final} was collected with", "delete it or choose another --out")
        if have < cfg.episodes:
            raise ValueError(
                f"episodes: {final} already holds {have} demos, fewer than the {cfg.episodes} asked for; "
                "delete it or choose another --out"
            )
        return CollectResult(final, have, cfg.episodes, 0)
    if prog_path.exists():
        state = load_json(prog_path)
        _check_same(settings, state.get("settings", {}), f"the interrupted collection in {parts} used",
                    f"resume with the same settings or delete {parts}")  # fmt: skip
    else:
        state = {"attempts": 0, "kept": 0, "settings": settings}
    parts.mkdir(parents=True, exist_ok=True)
    env_id = f"MVBench/{task}-v0"
    env_kwargs = {
        "cameras": [dataclasses.asdict(c) for c in cams], "width": cfg.width, "height": cfg.height,
        "render_profile": profile.to_dict(),
    }  # fmt: skip
    env = gym.make(env_id, **env_kwargs, privileged=True)
    try:
        while state["kept"] < cfg.episodes and state["attempts"] < cfg.episodes * cfg.max_attempts_factor:
            seed = episode_seed("collect", task, cfg.seed, state["attempts"])
            ep, ok = _record_episode(env, seed)
            if ok or cfg.keep_failed:
                write_demo_file(parts / f"demo_{state['kept']:05d}.hdf5", [ep], {})
                state["kept"] += 1
            state["attempts"] += 1
            save_json(state, prog_path)  # after the part: a crash between the two redoes one episode
            if progress is not None:
                progress(task, state)
    finally:
        env.close()
    attrs = {
        "env_id": env_id,
        "task": task,
        "instruction_template": TASKS[task].description,
        "view_split": cfg.split,
        "views": cfg.views,
        "cameras": [c.name for c in cams],
        "collect_seed": cfg.seed,
        "seed_stream": "collect",
        "attempts": state["attempts"],
        "successful_only": not cfg.keep_failed,
        "render_profile": profile.to_dict(),
        "env_args": env_args(env_id, env_kwargs),
        "collect_settings": settings,
    }
    kept = sorted(parts.glob("demo_*.hdf5"))[: cfg.episodes]
    if kept:
        _merge(kept, final, attrs)
    shutil.rmtree(parts)
    if not any(parts.parent.iterdir()):
        parts.parent.rmdir()
    return CollectResult(final if kept else None, len(kept), cfg.episodes, state["attempts"])


def _check_same(settings: dict, recorded: dict, what: str, remedy: str) -> None:
    for key, value in settings.items():
        if recorded.get(key) != value:
            raise ValueError(f"{key}: {what} {key}={recorded.get(key)!r}, not {value!r}; {remedy}")


def _merge(part_files: list[Path], final: Path, attrs: dict) -> None:
    with atomic_path(final) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        total = 0
        for i, p in enumerate(part_files):
            with h5py.File(p, "r") as src:
                src.copy(src["data/demo_0"], data, name=f"demo_{i}")
                total += int(src["data/demo_0"].attrs["num_samples"])
        write_file_attrs(data, attrs)
        data.attrs["total"] = total
        if part_files:
            data.attrs["instruction"] = data["demo_0"].attrs["instruction"]
