"""Demonstration files: HDF5 in the robomimic/LIBERO layout, writer and reader.

Layout written here (one file per task)::

    data/                      attrs: env_id, task, instruction, view_split, total, env_args (JSON)
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
``agentview``; ``*_depth`` normalised to [0, 1] becomes metres when the file gives near/far).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from worldline.io import atomic_path

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


def write_demo_file(path: str | Path, episodes: list[Episode], attrs: dict) -> None:
    """Write a whole file atomically (temp file, fsync, rename)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        data = f.create_group("data")
        for k, v in attrs.items():
            data.attrs[k] = v if not isinstance(v, dict) else json.dumps(v)
        data.attrs["total"] = int(sum(len(e) for e in episodes))
        for i, ep in enumerate(episodes):
            write_episode(data.create_group(f"demo_{i}"), ep)


class DemoFile:
    """Read demonstrations from one HDF5 file (ours, LIBERO or robomimic).

    Examples:
        >>> f = DemoFile("demos/CubeInBowl.hdf5")  # doctest: +SKIP
        >>> ep = f[0]; ep.actions.shape, ep.cameras["train_0"]["depth"].dtype  # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such demonstration file")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(f"{self.path}: not a readable HDF5 file (corrupt or truncated?): {exc}") from None
        if "data" not in self._f:
            raise ValueError(f"{self.path}: no 'data' group; not a robomimic/LIBERO-layout file")
        self.attrs = {k: _attr(v) for k, v in self._f["data"].attrs.items()}
        self.demos = sorted(self._f["data"].keys(), key=_demo_index)

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

    def _read(self, g: h5py.Group) -> Episode:
        obs = g["obs"]
        actions = np.asarray(g["actions"], np.float32)
        t = len(actions)
        keys = list(obs.keys())
        cams: dict = {}
        for k in keys:
            for suffix in _IMAGE_SUFFIXES:
                if k.endswith(suffix):
                    cams.setdefault(k[: -len(suffix)], {})["rgb"] = np.asarray(obs[k])
        for k in keys:
            if k.endswith("_depth"):
                cams.setdefault(k[: -len("_depth")], {})["depth"] = self._depth(obs[k], k[: -len("_depth")])
            elif k.endswith("_intrinsics"):
                cams.setdefault(k[: -len("_intrinsics")], {})["intrinsics"] = np.asarray(obs[k], np.float32)
            elif k.endswith("_extrinsics"):
                cams.setdefault(k[: -len("_extrinsics")], {})["extrinsics"] = np.asarray(obs[k], np.float32)
        for cam, c in cams.items():
            for key, arr in c.items():
                if len(arr) != t:
                    raise ValueError(f"obs/{cam}_{key} has {len(arr)} steps but actions has {t}")
        if "state" in obs:
            state = np.asarray(obs["state"], np.float32)
        else:  # LIBERO / robomimic proprioception, concatenated in a fixed order
            parts = [np.asarray(obs[k], np.float32).reshape(t, -1) for k in _STATE_KEYS_FOREIGN if k in obs]
            state = np.concatenate(parts, axis=1) if parts else np.zeros((t, 0), np.float32)
        rewards = np.asarray(g["rewards"], np.float32) if "rewards" in g else np.zeros(t, np.float32)
        dones = np.asarray(g["dones"], np.uint8) if "dones" in g else np.eye(1, t, t - 1, dtype=np.uint8)[0]
        attrs = {k: _attr(v) for k, v in g.attrs.items()}
        return Episode(actions, rewards, dones, state, cams, attrs)

    def _depth(self, ds: h5py.Dataset, cam: str) -> np.ndarray:
        arr = np.asarray(ds)
        if arr.dtype == np.uint16:  # ours: millimetres
            return depth_from_mm(arr)
        arr = arr.astype(np.float32)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        near, far = self._near_far(cam)
        if near is not None and float(arr.max(initial=0)) <= 1.0:
            # robosuite stores the OpenGL z-buffer in [0, 1]; invert its perspective mapping
            return (near / (1.0 - arr * (1.0 - near / far))).astype(np.float32)
        return arr  # already metric

    def _near_far(self, cam: str):
        for src in (self.attrs, self.attrs.get("env_args") if isinstance(self.attrs.get("env_args"), dict) else {}):
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
