"""Configuration of the NeRF models (one dataclass; YAML presets in ``configs/nerf/``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

METHODS = ("pronerf", "vanilla")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "nerf"


@dataclass
class NerfConfig:
    """A NeRF model. The field is shared by both methods; ``vanilla`` is NeRF's hierarchical
    sampler with two fields (coarse + fine), ``pronerf`` the projection-aware sampler."""

    method: str = "pronerf"
    """pronerf | vanilla"""
    field_depth: int = 8
    field_width: int = 256
    field_skips: tuple[int, ...] = (4,)
    pos_freqs: int = 10
    dir_freqs: int = 4
    # vanilla NeRF
    coarse_samples: int = 64
    fine_samples: int = 128
    # ProNeRF
    samples: int = 8
    """K: field evaluations per ray (8, 16 or 32)"""
    ray_points: int = 48
    """fixed points along the ray whose Plücker coordinates (+ position) feed the sampler"""
    sampler_depth: int = 6
    sampler_width: int = 256
    refine_depth: int = 6
    refine_width: int = 256
    neighbours: int = 4
    """training views the K points are projected into"""
    explore_samples: int = 64
    """exploration densifies the K samples by a random factor up to explore_samples / K"""
    offset_scale: float = 0.01
    """the refine net's 3D offset is at most this fraction of the scene radius"""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {self.method!r}")
        for name in ("field_depth", "field_width", "coarse_samples", "fine_samples", "samples", "ray_points",
                     "sampler_depth", "sampler_width", "refine_depth", "refine_width", "neighbours"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.samples < 2:
            raise ValueError(f"samples: ProNeRF needs K >= 2 samples per ray, got {self.samples}")
        if self.explore_samples < self.samples:
            raise ValueError(f"explore_samples: expected >= samples ({self.samples}), got {self.explore_samples}")
        self.field_skips = tuple(self.field_skips)


@dataclass
class NerfTrainConfig:
    """Training of a NeRF model (``render nerf train``)."""

    data: Path = Path("data/scene")
    """Blender folder or nerfstudio transforms.json (or its folder)"""
    out: Path = Path("outputs/nerf/run")
    """checkpoints/, tb/, metrics.jsonl"""
    model: NerfConfig = field(default_factory=NerfConfig)
    steps: int = 20000
    batch_rays: int = 1024
    lr: float = 5e-4
    lr_final: float = 5e-5
    """exponential decay from lr to lr_final over the steps"""
    finetune_fraction: float = 0.2
    """ProNeRF: the last fraction of the steps is stage 2 (joint fine-tuning, jitter only)"""
    downscale: float = 1.0
    background: str = "white"
    holdout_every: int = 8
    near: float | None = None
    far: float | None = None
    seed: int = 0
    save_every: int = 1000
    keep_checkpoints: int = 3
    """the newest checkpoints kept in out/checkpoints"""
    log_every: int = 50
    time_budget: float = 0.0
    """seconds of training after which the run checkpoints and stops (0: no budget)"""
    device: str = "auto"
    threads: int = 0
    """torch CPU threads (0: torch's default)"""

    def __post_init__(self):
        for name in ("steps", "batch_rays", "save_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not (self.lr > 0 and self.lr_final > 0):
            raise ValueError(f"lr/lr_final: expected > 0, got {self.lr}/{self.lr_final}")
        if not 0.0 <= self.finetune_fraction < 1.0:
            raise ValueError(f"finetune_fraction: expected [0, 1), got {self.finetune_fraction}")


def load_nerf_preset(name_or_path: str | Path) -> NerfTrainConfig:
    """A preset by name (``configs/nerf/<name>.yaml``) or path, validated into :class:`NerfTrainConfig`."""
    from worldline.config import load_preset

    return load_preset(NerfTrainConfig, name_or_path, CONFIG_DIR)
