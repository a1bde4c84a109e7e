"""The MV-Bench evaluation runner.

Policy protocol: any object with

    reset() -> None                                    # called at the start of every episode
    act(observation: dict, instruction: str) -> action  # float [7], see DESIGN.md actions

The observation is one env's observation (no batch dimension): the camera ``main`` (the episode's
view from the view group) and ``state`` (proprioception). The wrist camera is identical in every
view group, so a policy that leans on it looks view-robust for free: it is added only when asked
for (``EvalConfig(wrist=True)``, ``--wrist``), and the result records it. Privileged observations
(``expert_action``) exist only for policies that declare ``needs_privileged = True`` (the
scripted expert); the result records that too, and the table marks such rows.

Episodes of a (task, view group) run in parallel on a gymnasium AsyncVectorEnv with one worker
per view of the group; every view runs the same
seeded episodes, so groups differ only in the camera. Each parallel slot gets its own deep copy of
the policy (give a policy a ``__deepcopy__`` that shares weights if copying is expensive). A
policy that also has ``act_batch(slots, observations, instructions) -> [n, 7]`` is asked once per
step for all running slots (``slots`` are its copies, which hold each episode's state), so a
network policy runs one batched forward pass per step instead of one per view.

Results: success rate per task x view group, mean and std over the seeds (population std, as
the spread of the per-seed rates), plus every episode's outcome, as JSON.
"""

from __future__ import annotations

import copy
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from envs.cameras import WRIST, CameraSpec
from envs.mvbench.seeds import episode_seed
from envs.mvbench.views import TRAIN, ViewSplit, load_split
from envs.profiles import DEFAULT_PROFILE, RenderProfile, get_profile
from envs.tasks import TASKS
from worldline.io import save_json


class Policy(Protocol):
    def reset(self) -> None: ...

    def act(self, observation: dict, instruction: str) -> np.ndarray: ...


class RandomPolicy:
    """Uniform random actions within the action limits (the lower bound)."""

    def __init__(self, seed: int = 0, max_translation: float = 0.03, max_rotation: float = 0.2):
        self.rng = np.random.default_rng(seed)
        self.high = np.array([max_translation] * 3 + [max_rotation] * 3 + [1.0])

    def reset(self) -> None:
        pass

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        return self.rng.uniform(-self.high, self.high).astype(np.float32)


class ExpertPolicy:
    """The scripted expert (the upper bound). It needs privileged state, so it reads the
    ``expert_action`` that envs built with ``privileged=True`` put in the observation."""

    needs_privileged = True

    def reset(self) -> None:
        pass

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        if "expert_action" not in observation:
            raise ValueError("observation: no 'expert_action'; ExpertPolicy needs envs made with privileged=True")
        return np.asarray(observation["expert_action"], dtype=np.float32)


@dataclass(frozen=True)
class EvalConfig:
    width: int = 128
    height: int = 128
    wrist: bool = False
    """also give the policy the wrist camera (the same in every view group)"""
    control_hz: float = 20.0
    render_profile: str = DEFAULT_PROFILE
    """render profile of the envs (see envs.profiles); must match the policy's training data"""
    video_dir: str | None = None
    """if set, write each episode's main-camera frames as <video_dir>/<task>/<group>/<view>_s<seed>_e<ep>.gif"""


def _make_env_fn(task: str, view: CameraSpec, cfg: EvalConfig, privileged: bool):
    def make():
        import gymnasium as gym

        import envs  # noqa: F401  (registers ids in the worker process)

        main = CameraSpec("main", view.azimuth, view.elevation, view.radius, view.target, view.fovy)
        cams = (main, WRIST) if cfg.wrist else (main,)
        return gym.make(
            f"MVBench/{task}-v0",
            cameras=cams,
            width=cfg.width,
            height=cfg.height,
            control_hz=cfg.control_hz,
            render_profile=cfg.render_profile,
            privileged=privileged,
        )

    return make


def _index(tree, i):
    if isinstance(tree, dict):
        return {k: _index(v, i) for k, v in tree.items()}
    return tree[i]


def _write_video(path: Path, frames: list) -> None:
    import imageio.v2 as imageio

    from worldline.io import atomic_write

    with atomic_write(path) as f:
        imageio.mimwrite(f, frames, format="GIF", duration=50, loop=0)


def _run_group(
    policy, task: str, group: str, views: Sequence[CameraSpec], seeds, episodes: int, cfg: EvalConfig, privileged: bool
):
    """Run ``episodes`` episodes per seed in every view, one vector-env worker per view."""
    import gymnasium as gym

    n = len(views)
    # forkserver: workers fork from a clean server process that never held a GL context (a
    # plain fork of a process that rendered would inherit one); preloading our modules there
    # makes each worker start in milliseconds instead of re-importing torch and mujoco.
    multiprocessing.set_forkserver_preload(["envs", "envs.env", "gymnasium"])
    venv = gym.vector.AsyncVectorEnv(
        [_make_env_fn(task, v, cfg, privileged) for v in views],
        context="forkserver",
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    policies = [copy.deepcopy(policy) for _ in range(n)]
    batched = callable(getattr(policy, "act_batch", None))
    queue = [(s, e) for s in seeds for e in range(episodes)]  # same queue for every view
    pos = [0] * n
    results = []  # (view index, seed, episode, success, steps)
    try:
        obs = None
        current = [None] * n
        steps = [0] * n

        def start(mask):
            nonlocal obs
            seeds_ = [
                episode_seed("eval", task, queue[pos[i]][0], queue[pos[i]][1]) if mask[i] else None for i in range(n)
            ]
            new_obs, info = venv.reset(seed=seeds_, options={"reset_mask": np.array(mask)})
            if obs is None:
                obs = new_obs
            else:
                obs = _merge(obs, new_obs, mask)
            for i in range(n):
                if mask[i]:
                    current[i] = queue[pos[i]]
                    steps[i] = 0
                    policies[i].reset()
            return info

        info = start([True] * n)
        instructions = list(info["instruction"])
        frames: list[list] = [[] for _ in range(n)]
        record = cfg.video_dir is not None
        while True:
            active = [current[i] is not None for i in range(n)]
            if not any(active):
                break
            actions = np.zeros((n, 7), np.float32)
            live = [i for i in range(n) if active[i]]
            if batched:
                got = policy.act_batch([policies[i] for i in live], [_index(obs, i) for i in live],
                                       [instructions[i] for i in live])  # fmt: skip
                if np.shape(got) != (len(live), 7):
                    raise ValueError(
                        f"act_batch: expected actions of shape [{len(live)}, 7], got {list(np.shape(got))}"
                    )
                actions[live] = got
            for i in live:
                if not batched:
                    actions[i] = policies[i].act(_index(obs, i), instructions[i])
                if record:
                    frames[i].append(obs["cameras"]["main"]["rgb"][i].copy())
            obs, _, term, trunc, info = venv.step(actions)
            restart = [False] * n
            for i in range(n):
                if not active[i]:
                    continue
                steps[i] += 1
                if term[i] or trunc[i]:
                    s, e = current[i]
                    results.append((i, s, e, bool(info["is_success"][i]), steps[i]))
                    if record:
                        frames[i].append(obs["cameras"]["main"]["rgb"][i].copy())
                        _write_video(Path(cfg.video_dir) / task / group / f"{views[i].name}_s{s}_e{e}.gif", frames[i])
                        frames[i] = []
                    pos[i] += 1
                    current[i] = None
                    restart[i] = pos[i] < len(queue)
            if any(restart):
                info = start(restart)
                for i in range(n):
                    if restart[i]:
                        instructions[i] = info["instruction"][i]
    finally:
        venv.close()
    return results


def _merge(old, new, mask):
    if isinstance(old, dict):
        return {k: _merge(old[k], new[k], mask) for k in old}
    out = old.copy()
    m = np.asarray(mask)
    out[m] = new[m]
    return out


def evaluate(
    policy: Policy,
    tasks: Sequence[str],
    view_groups: Sequence[str] | None = None,
    episodes_per_task: int = 5,
    seeds: Sequence[int] = (0, 1, 2),
    split: ViewSplit | str = "default",
    config: EvalConfig = EvalConfig(),
    out: str | Path | None = None,
    progress: bool = True,
    data_profile: str | dict | RenderProfile | None = None,
    allow_profile_mismatch: bool = False,
) -> dict:
    """Evaluate ``policy`` on MV-Bench.

    Args:
        policy: see the module docstring; a policy with ``needs_privileged = True`` gets envs
            built with ``privileged=True``.
        tasks: task names (see ``envs.tasks.TASKS``).
        view_groups: group names of the split (default: all, ``train`` first).
        episodes_per_task: episodes per seed, per view of a group.
        seeds: evaluation seeds; each fixes the initial states of its episodes.
        split: a :class:`ViewSplit` or a preset name / YAML path.
        out: write the JSON result here (atomically).
        data_profile: the render profile of the policy's training data (a name, the dict stored
            in demo files, or a profile); default: the policy's ``render_profile`` attribute, if
            any. Evaluating under a different look is an error unless ``allow_profile_mismatch``.

    Returns:
        ``{"table": {task: {group: {"mean", "std", "per_seed"}}}, "episodes": [...], "config": ...}``.
    """
    from tqdm import tqdm

    if not tasks:
        raise ValueError("tasks: give at least one task")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"tasks: unknown {unknown}; known: {sorted(TASKS)}")
    if episodes_per_task < 1:
        raise ValueError(f"episodes: expected at least 1 episode per seed, got {episodes_per_task}")
    if not seeds or min(seeds) < 0:
        raise ValueError(f"seeds: expected one or more non-negative seeds, got {list(seeds)}")
    profile = get_profile(config.render_profile)
    if data_profile is None:
        data_profile = getattr(policy, "render_profile", None)
    check_profile(profile, data_profile, allow_profile_mismatch)
    split = load_split(split, config.width, config.height) if not isinstance(split, ViewSplit) else split
    groups = list(view_groups) if view_groups is not None else split.groups
    for g in groups:
        split.cameras(g)  # raises for unknown groups
    privileged = bool(getattr(policy, "needs_privileged", False))
    table: dict = {}
    episodes = []
    bar = tqdm(total=len(tasks) * len(groups), desc="MV-Bench", disable=not progress)
    t0 = time.perf_counter()
    for task in tasks:
        table[task] = {}
        for group in groups:
            views = split.cameras(group)
            res = _run_group(policy, task, group, views, list(seeds), episodes_per_task, config, privileged)
            per_seed = []
            for s in seeds:
                ok = [r[3] for r in res if r[1] == s]
                per_seed.append(float(np.mean(ok)) if ok else float("nan"))
            table[task][group] = {
                "mean": float(np.mean(per_seed)),
                "std": float(np.std(per_seed)),
                "per_seed": per_seed,
            }
            for vi, s, e, ok, n_steps in sorted(res):
                episodes.append(
                    {"task": task, "group": group, "view": views[vi].name, "seed": s, "episode": e,
                     "success": ok, "steps": n_steps}
                )  # fmt: skip
            bar.update(1)
            bar.set_postfix(task=task, group=group, success=f"{table[task][group]['mean']:.2f}")
    bar.close()
    result = {
        "table": table,
        "groups": groups,
        "tasks": list(tasks),
        "seeds": list(seeds),
        "episodes_per_task": episodes_per_task,
        "policy": type(policy).__name__,
        "config": {"width": config.width, "height": config.height, "wrist": config.wrist},
        "cameras": ["main", "wrist"] if config.wrist else ["main"],
        "privileged": privileged,
        "render_profile": profile.to_dict(),
        "data_profile": None if data_profile is None else get_profile(data_profile).to_dict(),
        "profile_mismatch_allowed": bool(allow_profile_mismatch),
        "episodes": episodes,
    }
    if out is not None:
        save_json(result, out)
    result["seconds"] = time.perf_counter() - t0  # not in the file: keeps reruns byte-identical
    return result


def check_profile(profile: RenderProfile, data_profile, allow_mismatch: bool = False) -> None:
    """Refuse to evaluate under a different look than the policy's data was rendered with."""
    if data_profile is None:
        return
    data = get_profile(data_profile)
    if not profile.same_look(data) and not allow_mismatch:
        raise ValueError(
            f"render_profile: evaluating with {profile.describe()} but the policy's data was rendered with "
            f"{data.describe()}; evaluate with render_profile={data.name!r}, or pass allow_profile_mismatch=True"
        )


def format_table(result: dict) -> str:
    """Success rate (%) per task x view group as mean +- std over seeds, plus the average row."""
    groups = result["groups"]
    header = ["task"] + [g if g != TRAIN else "train views" for g in groups]
    mark = " *" if result.get("privileged") else ""
    rows = []
    for task in result["tasks"]:
        cells = [task + mark]
        for g in groups:
            c = result["table"][task][g]
            cells.append(f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f}")
        rows.append(cells)
    avg = ["average"]
    for g in groups:
        per_seed = np.mean([result["table"][t][g]["per_seed"] for t in result["tasks"]], axis=0)
        avg.append(f"{100 * per_seed.mean():.1f} ± {100 * per_seed.std():.1f}")
    rows.append(avg)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    cams = " + ".join(result.get("cameras", ["main"]))
    title = f"policy: {result['policy']}  cameras: {cams}"
    if "render_profile" in result:
        title += f"  render profile: {result['render_profile']['name']}"
    lines = [title, line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if mark:
        lines.append("* privileged: the policy read the simulator state (expert_action), not only the cameras")
    return "\n".join(lines)
