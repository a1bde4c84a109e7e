"""Demonstration files: HDF5 in the robomimic/LIBERO layout, writer and reader.

Layout written here (one file per task)::

    data/                      attrs: format, env_id, task, instruction, view_split, render_profile,
                                      total, env_args (JSON, as robomimic's tools read it)
      demo_<i>/                attrs: seed, num_samples, instruction, success
        actions    float32 [T, 7]
        rewards    float32 [T]
        dones      uint8   [T]
        obs/
          state                 float32 [T, 15]
          <cam>_rgb             uint8   [T, H, W, 3]
          <cam>_depth           uint16  [T, H, W]  millimetres, 0 = invalid
          <cam>_intrinsics      float32 [T, 3, 3]
          <cam>_extrinsics      float32 [T, 4, 4]  w2c, OpenCV axes

Images and depth are gzip-compressed. :class:`DemoFile` reads these files and also LIBERO and
robomimic files, mapping their keys (``agentview_rgb``/``agentview_image`` -> camera
``agentview``). Foreign files are converted once, on import:

- Orientation. robosuite renders bottom-up (its ``macros.IMAGE_CONVENTION = "opengl"``). LIBERO
  stores those frames as rendered (``scripts/create_dataset.py`` appends ``obs["agentview_image"]``
  and records ``macros_image_convention``), so its RGB and depth are upside down and are flipped
  vertically here (a flip of the rows only, not the 180-degree rotation some LIBERO policies use).
  robomimic's ``EnvRobosuite.get_observation`` already flips (``di[k][::-1]``), so its
  ``*_image`` frames are upright. The file's ``macros_image_convention`` attribute decides where
  present; ``flip=`` overrides.
- Depth. robosuite's raw depth is the OpenGL z-buffer in [0, 1]; it becomes metric planar depth
  with the camera's near/far planes (``near / (1 - d (1 - near / far))``, robosuite's
  ``get_real_depth_map``), taken from the file's attributes or from ``near=``/``far=``. Without
  them a [0, 1] depth is an error, never silently taken as metres (``metric_depth=True`` says the
  values are metres).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from worldline.io import atomic_path

FORMAT = "worldline-mvbench/1"
GYM_ENV_TYPE = 2  # robomimic.envs.env_base.EnvType.GYM_TYPE: env_args -> gym.make(env_name, **env_kwargs)
MM_PER_M = 1000.0
_IMAGE_SUFFIXES = ("_rgb", "_image")
_STATE_KEYS_FOREIGN = (
    "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "robot0_joint_pos",
    "ee_pos", "ee_ori", "gripper_states", "joint_states",
)  # fmt: skip


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """float metres -> uint16 millimetres (rounded; 0 stays 0; clipped at 65.535 m)."""
    return np.clip(np.rint(np.asarray(depth_m) * MM_PER_M), 0, 65535).astype(np.uint16)


def depth_from_mm(depth_mm: np.ndarray) -> np.ndarray:
    return np.asarray(depth_mm).astype(np.float32) / MM_PER_M


@dataclass
class Episode:
    """One demonstration in memory (arrays over T steps)."""

    actions: np.ndarray  # [T, 7]
    rewards: np.ndarray  # [T]
    dones: np.ndarray  # [T]
    state: np.ndarray  # [T, D]
    cameras: dict = field(default_factory=dict)  # name -> {rgb, depth (m), intrinsics, extrinsics}
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)


def write_episode(group: h5py.Group, ep: Episode) -> None:
    """Write one episode under ``group`` (a ``data/demo_i`` group)."""
    gz = {"compression": "gzip", "compression_opts": 4}
    group.create_dataset("actions", data=np.asarray(ep.actions, np.float32))
    group.create_dataset("rewards", data=np.asarray(ep.rewards, np.float32))
    group.create_dataset("dones", data=np.asarray(ep.dones, np.uint8))
    obs = group.create_group("obs")
    obs.create_dataset("state", data=np.asarray(ep.state, np.float32))
    for cam, c in ep.cameras.items():
        obs.create_dataset(f"{cam}_rgb", data=np.asarray(c["rgb"], np.uint8), chunks=(1,) + c["rgb"].shape[1:], **gz)
        obs.create_dataset(f"{cam}_depth", data=depth_to_mm(c["depth"]), chunks=(1,) + c["depth"].shape[1:], **gz)
        obs.create_dataset(f"{cam}_intrinsics", data=np.asarray(c["intrinsics"], np.float32))
        obs.create_dataset(f"{cam}_extrinsics", data=np.asarray(c["extrinsics"], np.float32))
    group.attrs["num_samples"] = len(ep)
    for k, v in ep.attrs.items():
        group.attrs[k] = v


def write_file_attrs(data: h5py.Group, attrs: dict) -> None:
    """File-level attributes on ``data``: lists and dicts as JSON, plus the format marker."""
    data.attrs["format"] = FORMAT
    for k, v in attrs.items():
        data.attrs[k] = json.dumps(v) if isinstance(v, (list, dict)) else v


def env_args(env_id: str, env_kwargs: dict) -> dict:
    """robomimic's ``env_args``: robomimic's EnvGym runs ``gym.make(env_name, **env_kwargs)``."""
    return {"env_name": env_id, "type": GYM_ENV_TYPE, "env_kwargs": env_kwargs}


def write_demo_file(path: str | Path, episodes: list[Episode], attrs: dict) -> None:
    """Write a whole file atomically (temp file, fsync, rename)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        write_file_attrs(data, attrs)
        data.attrs["total"] = int(sum(len(e) for e in episodes))
        for i, ep in enumerate(episodes):
            write_episode(data.create_group(f"demo_{i}"), ep)


class DemoFile:
    """Read demonstrations from one HDF5 file (ours, LIBERO or robomimic).

    Args:
        path: the HDF5 file.
        near, far: clipping planes (metres) for robosuite's normalised depth when the file does
            not record them.
        metric_depth: a foreign file's float depth is already in metres.
        flip: flip foreign frames vertically (default: from the file; see the module docstring).

    Examples:
        >>> f = DemoFile("demos/CubeInBowl.hdf5")  # doctest: +SKIP
        >>> ep = f[0]; ep.actions.shape, ep.cameras["train_0"]["depth"].dtype  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | Path,
        *,
        near: float | None = None,
        far: float | None = None,
        metric_depth: bool = False,
        flip: bool | None = None,
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such demonstration file")
        if (near is None) != (far is None) or (near is not None and not 0 < near < far):
            raise ValueError(f"near/far: give both, with 0 < near < far; got near={near}, far={far}")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(f"{self.path}: not a readable HDF5 file (corrupt or truncated?): {exc}") from None
        if "data" not in self._f:
            raise ValueError(f"{self.path}: no 'data' group; not a robomimic/LIBERO-layout file")
        self.attrs = {k: _attr(v) for k, v in self._f["data"].attrs.items()}
        self.demos = sorted(self._f["data"].keys(), key=_demo_index)
        self.ours = self.attrs.get("format") == FORMAT
        self._near_far_arg = (near, far)
        self.metric_depth = metric_depth
        self.flip = self._orientation() if flip is None else flip

    @property
    def render_profile(self) -> dict | None:
        """The render profile the demos were collected with (ours only)."""
        return self.attrs.get("render_profile")

    def __len__(self) -> int:
        return len(self.demos)

    def __getitem__(self, i: int) -> Episode:
        name = self.demos[i]
        try:
            return self._read(self._f["data"][name])
        except (KeyError, OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: demo {name!r} is unreadable or incomplete: {exc}") from None

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _orientation(self) -> bool:
        """True when the file's frames are stored bottom-up (robosuite's OpenGL convention)."""
        if self.ours:
            return False
        convention = self.attrs.get("macros_image_convention")
        if convention is not None:
            return convention == "opengl"
        # no record: LIBERO names frames *_rgb and stores them as rendered; robomimic names
        # them *_image and flips them upright when it writes the dataset
        first = self._f["data"][self.demos[0]] if self.demos else None
        keys = list(first["obs"].keys()) if first is not None and "obs" in first else []
        return any(k.endswith("_rgb") for k in keys)

    def _read(self, g: h5py.Group) -> Episode:
        obs = g["obs"]
        actions = np.asarray(g["actions"], np.float32)
        t = len(actions)
        keys = list(obs.keys())
        for k in keys:  # every per-step array must have one entry per action
            if len(obs[k]) != t:
                raise ValueError(f"obs/{k} has {len(obs[k])} steps but actions has {t}")
        for k in ("rewards", "dones", "states"):
            if k in g and len(g[k]) != t:
                raise ValueError(f"{k} has {len(g[k])} steps but actions has {t}")
        cams: dict = {}
        for k in keys:
            for suffix in _IMAGE_SUFFIXES:
                if k.endswith(suffix):
                    cams.setdefault(k[: -len(suffix)], {})["rgb"] = self._upright(np.asarray(obs[k]))
        for k in keys:
            if k.endswith("_depth"):
                cams.setdefault(k[: -len("_depth")], {})["depth"] = self._upright(self._depth(obs[k], k))
            elif k.endswith("_intrinsics"):
                cams.setdefault(k[: -len("_intrinsics")], {})["intrinsics"] = np.asarray(obs[k], np.float32)
            elif k.endswith("_extrinsics"):
                cams.setdefault(k[: -len("_extrinsics")], {})["extrinsics"] = np.asarray(obs[k], np.float32)
        if "state" in obs:
            state = np.asarray(obs["state"], np.float32)
        else:  # LIBERO / robomimic proprioception, concatenated in a fixed order
            parts = [np.asarray(obs[k], np.float32).reshape(t, -1) for k in _STATE_KEYS_FOREIGN if k in obs]
            state = np.concatenate(parts, axis=1) if parts else np.zeros((t, 0), np.float32)
        rewards = np.asarray(g["rewards"], np.float32) if "rewards" in g else np.zeros(t, np.float32)
        dones = np.asarray(g["dones"], np.uint8) if "dones" in g else np.eye(1, t, t - 1, dtype=np.uint8)[0]
        attrs = {k: _attr(v) for k, v in g.attrs.items()}
        return Episode(actions, rewards, dones, state, cams, attrs)

    def _upright(self, frames: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(frames[:, ::-1]) if self.flip else frames  # [T, H, W(, C)]: rows

    def _depth(self, ds: h5py.Dataset, key: str) -> np.ndarray:
        arr = np.asarray(ds)
        if arr.dtype == np.uint16:  # ours: millimetres
            return depth_from_mm(arr)
        arr = arr.astype(np.float32)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if self.metric_depth or float(arr.max(initial=0)) > 1.0:
            return arr  # metric already (e.g. newer robomimic converts with get_real_depth_map)
        near, far = self._near_far(key[: -len("_depth")])
        if near is None:
            raise ValueError(
                f"obs/{key}: depth in [0, 1] looks like robosuite's normalised z-buffer, and the file records no "
                "near/far planes; pass near= and far= (metres) to DemoFile, or metric_depth=True if it is metres"
            )
        # robosuite's get_real_depth_map: invert OpenGL's perspective depth mapping
        return (near / (1.0 - arr * (1.0 - near / far))).astype(np.float32)

    def _near_far(self, cam: str):
        if self._near_far_arg[0] is not None:
            return self._near_far_arg
        env_args = self.attrs.get("env_args")
        for src in (self.attrs, env_args if isinstance(env_args, dict) else {}):
            if f"{cam}_near" in src and f"{cam}_far" in src:
                return float(src[f"{cam}_near"]), float(src[f"{cam}_far"])
            if "near" in src and "far" in src:
                return float(src["near"]), float(src["far"])
        return None, None


def _attr(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "{[":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def _demo_index(name: str) -> int:
    try:
        return int(name.split("_")[-1])
    except ValueError:
        return 1 << 30
