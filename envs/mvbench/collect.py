"""Collect scripted-expert demonstrations into HDF5 files, resumably.

Each finished episode is written at once as its own small file under ``<out>/.parts/<task>/``
(atomically), and a progress record counts the attempts. An interrupted run therefore keeps every
episode it finished and, run again with the same arguments, continues with the next seed. When a
task has all its episodes, the parts are merged into ``<out>/<task>.hdf5`` (atomically) and removed.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from envs.cameras import WRIST
from envs.mvbench.dataset import Episode, write_demo_file
from envs.mvbench.evaluate import episode_seed
from envs.mvbench.views import ViewSplit, load_split
from envs.tasks import TASKS
from worldline.io import atomic_path, load_json, save_json


@dataclass
class CollectConfig:
    episodes: int = 10
    views: str = "train"
    split: str = "default"
    width: int = 128
    height: int = 128
    wrist: bool = True
    keep_failed: bool = False
    seed: int = 0
    max_attempts_factor: int = 3
    """give up on a task after episodes * this many attempts"""


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


def collect_task(task: str, out: str | Path, cfg: CollectConfig, split: ViewSplit | None = None, progress=None) -> Path:
    """Collect ``cfg.episodes`` demonstrations of ``task``; returns the merged file's path."""
    import gymnasium as gym

    import envs  # noqa: F401

    if task not in TASKS:
        raise ValueError(f"task: unknown {task!r}; known: {sorted(TASKS)}")
    split = split or load_split(cfg.split, cfg.width, cfg.height)
    cams = split.cameras(cfg.views) + ((WRIST,) if cfg.wrist else ())
    out = Path(out)
    final = out / f"{task}.hdf5"
    parts = out / ".parts" / task
    parts.mkdir(parents=True, exist_ok=True)
    prog_path = parts / "progress.json"
    state = load_json(prog_path) if prog_path.exists() else {"attempts": 0, "kept": 0}
    env_id = f"MVBench/{task}-v0"
    env = gym.make(env_id, cameras=cams, width=cfg.width, height=cfg.height, privileged=True)
    try:
        while state["kept"] < cfg.episodes and state["attempts"] < cfg.episodes * cfg.max_attempts_factor:
            seed = episode_seed(cfg.seed, task, state["attempts"])
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
        "attempts": state["attempts"],
        "successful_only": not cfg.keep_failed,
    }
    _merge(sorted(parts.glob("demo_*.hdf5"))[: cfg.episodes], final, attrs)
    shutil.rmtree(parts)
    if not any(parts.parent.iterdir()):
        parts.parent.rmdir()
    return final


def _merge(part_files: list[Path], final: Path, attrs: dict) -> None:
    import json

    with atomic_path(final) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        total = 0
        for i, p in enumerate(part_files):
            with h5py.File(p, "r") as src:
                src.copy(src["data/demo_0"], data, name=f"demo_{i}")
                total += int(src["data/demo_0"].attrs["num_samples"])
        for k, v in attrs.items():
            data.attrs[k] = json.dumps(v) if isinstance(v, (list, dict)) else v
        data.attrs["total"] = total
        if part_files:
            data.attrs["instruction"] = data["demo_0"].attrs["instruction"]
