"""Training samples from MV-Bench demonstration files (HDF5, read with ``envs``' DemoFile).

A sample is (episode, view, step): the policy's camera ``main`` is one of the recorded views (each
recorded view of an episode is its own "scene", as in the paper's cross-scene training); other
camera names in the config (e.g. ``wrist``) are read from the file as they are. The history is
chosen by the config's sampler over the window that inference sees (:func:`window_steps`), on
thumbnail features cached once per (episode, view), so memory-bank sampling costs a few cosine
similarities per sample. Frames are kept resized (uint8 RGB, uint16 mm depth) in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vla.configuration import VLAConfig
from vla.language import InstructionTokenizer
from vla.memory_bank import make_sampler, thumbnail_features, window_steps
from vla.modeling import EE_POSITION, collate_history, compute_stats
from vla.processing import augment_frames, prepare_frames

MAIN = "main"


@dataclass
class _Stream:
    """One (episode, view): resized frames of the cameras the policy reads."""

    rgb: np.ndarray  # uint8 [T, C, S, S, 3]
    depth: np.ndarray  # uint16 mm [T, C, S, S]
    K: np.ndarray  # [T, C, 3, 3] (for the resized image)
    w2c: np.ndarray  # [T, C, 4, 4]
    features: torch.Tensor  # [T, F] thumbnails of the first camera
    episode: int


class DemoDataset(Dataset):
    """Samples for :class:`vla.modeling.FourDVLAPolicy` from demonstration files.

    Args:
        paths: HDF5 files (``mvbench collect`` output; LIBERO/robomimic files with K/w2c too).
        config: the model config (cameras, image size, sampler, window, chunk).
        views: recorded camera names used as ``main`` (default: every camera but ``wrist``).
        max_episodes: per file, the first N episodes.
    """

    def __init__(
        self,
        paths,
        config: VLAConfig,
        views: list[str] | None = None,
        max_episodes: int | None = None,
        augment: dict | None = None,
        seed: int = 0,
    ):
        from envs.mvbench.dataset import DemoFile, depth_to_mm

        self.config = config
        self.augment = augment  # None, or {"crop_scale": ..., "jitter": ...} (see augment_frames)
        self.seed, self.epoch = seed, 0
        self.sampler = make_sampler(config.sampler, config.history_k, config.bank_threshold)
        self.streams: list[_Stream] = []
        self.actions: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.instructions: list[str] = []
        self.render_profiles: set[str] = set()
        self.tasks: list[str] = []  # MV-Bench task names of the files, where recorded
        size = config.vision.image_size
        paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not paths:
            raise ValueError("paths: give at least one demonstration file")
        for path in paths:
            with DemoFile(path) as f:
                if f.render_profile is not None:
                    self.render_profiles.add(f.render_profile["name"])
                if f.attrs.get("task") and f.attrs["task"] not in self.tasks:
                    self.tasks.append(str(f.attrs["task"]))
                for i in range(len(f) if max_episodes is None else min(max_episodes, len(f))):
                    ep = f[i]
                    names = views or [n for n in ep.cameras if n != "wrist"]
                    for view in names:
                        cams = [view if c == MAIN else c for c in config.cameras]
                        missing = [c for c in cams if c not in ep.cameras]
                        if missing:
                            raise ValueError(
                                f"{path}: demo {i} has no camera {missing[0]!r}; it has {sorted(ep.cameras)}"
                            )
                        raw = [ep.cameras[c] for c in cams]
                        if config.uses_depth and any("depth" not in r for r in raw):
                            raise ValueError(
                                f"{path}: demo {i} camera {cams[0]!r} has no depth (spatial={config.spatial!r})"
                            )
                        if any("intrinsics" not in r or "extrinsics" not in r for r in raw):
                            raise ValueError(f"{path}: demo {i} has no intrinsics/extrinsics for {cams}")
                        rgb = np.stack([r["rgb"] for r in raw], 1)  # [T, C, H, W, 3]
                        dep = np.stack([r.get("depth", np.zeros(r["rgb"].shape[:3], np.float32)) for r in raw], 1)
                        fr = prepare_frames(rgb, dep, np.stack([r["intrinsics"] for r in raw], 1),
                                            np.stack([r["extrinsics"] for r in raw], 1), size)  # fmt: skip
                        rgb_small = (fr["images"] * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
                        self.streams.append(_Stream(
                            rgb=rgb_small, depth=depth_to_mm(fr["depth"].numpy()), K=fr["intrinsics"].numpy(),
                            w2c=fr["extrinsics"].numpy(), features=thumbnail_features(rgb_small[:, 0]),
                            episode=len(self.actions),
                        ))  # fmt: skip
                    self.actions.append(ep.actions.astype(np.float32))
                    self.states.append(ep.state.astype(np.float32))
                    self.instructions.append(str(ep.attrs.get("instruction", f.attrs.get("instruction", ""))))
        if not self.streams:
            raise ValueError(f"{paths[0]}: no demonstrations")
        self.index = [(s, t) for s, st in enumerate(self.streams) for t in range(len(st.rgb))]
        self._history: dict[tuple[int, int], list[int]] = {}
        self.vocab = InstructionTokenizer.build(self.instructions).vocab
        self.stats = compute_stats(np.concatenate(self.actions), np.concatenate(self.states))
        if self.states[0].shape[1] != config.state_dim:
            raise ValueError(f"state_dim: the data has {self.states[0].shape[1]}, the config says {config.state_dim}")

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws depend on (seed, epoch, sample), so a resumed run redraws them exactly."""
        self.epoch = epoch

    def history(self, stream: int, t: int) -> list[int]:
        """The steps the policy sees at step ``t`` of a stream (oldest first, ``t`` last).

        The choice depends only on the cached features, so it is made once per sample and kept:
        after the first epoch memory-bank sampling costs what uniform sampling does."""
        key = (stream, t)
        if key not in self._history:
            c = self.config
            steps = window_steps(t, c.history_window, c.history_stride)
            self._history[key] = [steps[i] for i in self.sampler.select(self.streams[stream].features[steps])]
        return self._history[key]

    def __getitem__(self, i: int) -> dict:
        c = self.config
        s, t = self.index[i]
        st = self.streams[s]
        steps = self.history(s, t)
        frames = [
            {
                "observation.images": torch.from_numpy(st.rgb[k]).permute(0, 3, 1, 2).float() / 255.0,
                "observation.depth": torch.from_numpy(st.depth[k].astype(np.float32) / 1000.0),
                "observation.intrinsics": torch.from_numpy(st.K[k]),
                "observation.extrinsics": torch.from_numpy(st.w2c[k]),
                "observation.ee_position": torch.from_numpy(self.states[st.episode][k][EE_POSITION]),
            }
            for k in steps
        ]
        sample = {k: v[0] for k, v in collate_history(frames, [k - t for k in steps], c.frames_per_step).items()}
        if self.augment:
            g = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) % (2**62))
            imgs, dep, K = augment_frames(
                sample["observation.images"], sample["observation.depth"], sample["observation.intrinsics"],
                sample["observation.extrinsics"], g, **self.augment,
            )  # fmt: skip
            sample.update({"observation.images": imgs, "observation.depth": dep, "observation.intrinsics": K})
        actions = self.actions[st.episode]
        h = c.chunk
        target = np.zeros((h, 7), np.float32)
        n = min(h, len(actions) - t)
        target[:n] = actions[t : t + n]
        mask = np.zeros(h, bool)
        mask[:n] = True
        sample["observation.state"] = torch.from_numpy(self.states[st.episode][t])
        sample["task"] = self.instructions[st.episode]
        sample["action"] = torch.from_numpy(target)
        sample["action_mask"] = torch.from_numpy(mask)
        return sample
