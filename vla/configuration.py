"""Configuration of the 4D-VLA policy and its baselines (one model class, selected by fields).

Presets live in ``configs/vla/*.yaml`` and are validated into :class:`VLAConfig` by the core's
config loader (unknown or mistyped keys are errors naming the key and the file). Baselines are
the same model with fields changed (:data:`BASELINES`, :func:`apply_baseline`):

=============  =========  =======  ===========  ===========================================
name           spatial    time     sampler      what it is
=============  =========  =======  ===========  ===========================================
4d             base       yes      memory_bank  4D-VLA: base-frame points, time, memory bank
4d-uniform     base       yes      uniform      4D with uniform history sampling
4d-single      base       no       single       4D, current frame only
rgbd-camera    camera     no       single       SpatialVLA-style: camera-frame points, no calibration
rgb-single     none       no       single       OpenVLA-style: RGB only, one frame
=============  =========  =======  ===========  ===========================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "vla"


@dataclass
class VisionConfig:
    backbone: str = "resnet10t"
    """timm model name; CNNs are cut after feature stage ``stage``, ViTs give their patch grid"""
    stage: int = 2
    """timm feature stage (``features_only`` index) whose map becomes the visual tokens"""
    pretrained_path: str | None = None
    """local weights file (safetensors, or a state dict loaded with weights_only=True); None: random init"""
    image_size: int = 64
    """square input size in pixels; frames of another size are resized (K scaled to match)"""
    grid: int = 4
    """visual tokens per side per camera after pooling the feature map"""
    keypoints: int = 0
    """0: the feature map average-pooled to grid x grid tokens; K > 0: K spatial-softmax keypoint
    tokens instead (a learned softmax over the feature map per keypoint; the token is the
    attention-weighted feature plus an encoding of its expected image position, and its 3D point
    is the attention-weighted point, so it localises to a fraction of a feature cell)"""

    @property
    def tokens(self) -> int:
        """visual tokens per camera and frame"""
        return self.keypoints or self.grid**2


@dataclass
class VLAConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    cameras: list[str] = field(default_factory=lambda: ["main"])
    """observation cameras the policy reads, in order; each gets a learned camera embedding"""
    d_model: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    dropout: float = 0.0
    spatial: Literal["base", "camera", "none"] = "base"
    """points for the spatial encoding: robot base frame (4D-VLA), camera frame (SpatialVLA), or none"""
    fourier_freqs: int = 8
    """log-spaced frequencies of the Fourier features of normalised xyz"""
    workspace_low: list[float] = field(default_factory=lambda: [0.0, -0.6, -0.1])
    workspace_high: list[float] = field(default_factory=lambda: [1.0, 0.6, 0.6])
    """box (metres, base frame) mapped to [-1, 1] before the Fourier features (spatial='base')"""
    camera_low: list[float] = field(default_factory=lambda: [-1.5, -1.5, 0.2])
    camera_high: list[float] = field(default_factory=lambda: [1.5, 1.5, 3.0])
    """the same box in the camera frame (x right, y down, z forward), for spatial='camera'"""
    time: Literal["sinusoidal", "learned", "none"] = "sinusoidal"
    """relative-time token per history frame (concatenated to the frame's tokens)"""
    sampler: Literal["memory_bank", "uniform", "recent", "single"] = "memory_bank"
    history_k: int = 5
    """frames the policy sees per step (current included)"""
    history_window: int = 20
    """candidate frames (bank entries) the sampler picks from"""
    history_stride: int = 6
    """the bank keeps every ``history_stride``-th step"""
    proprio: Literal["full", "gripper", "none"] = "full"
    """proprioception the policy reads: the whole state (end-effector pose, gripper width, joints),
    the gripper width only, or nothing. With the pose in the input, behaviour cloning finds a
    shortcut ("copycat" policies, Wen et al. 2020): after the first demonstrated step, the pose
    already says where the arm is heading, so the policy learns to continue the motion instead of
    looking at the object, and fails in closed loop where nobody starts the motion for it"""
    history_grad: bool = True
    """backpropagate into the vision backbone through the history frames too; False treats past
    frames' visual features as a stop-gradient memory (the current frame still trains the
    backbone), which makes a training step with T frames about as cheap as the forward pass alone"""
    bank_threshold: float = 0.98
    """memory-bank sampling: cosine similarity below which a frame counts as distinct"""
    memory: Literal["none", "fifo", "sat-fifo", "sat-pm"] = "none"
    """spatially-aware history (:mod:`vla.memory`): the past frames' tokens become an episodic
    memory with time and place embeddings (place = the end-effector position cell at that frame)
    that the current frame's tokens read (flat, or place-grouped for sat-pm); the read tokens
    replace the past frames in the fusion transformer. "none": past frames are fused directly"""
    memory_cell: float = 0.1
    """metres: edge of the end-effector place cells (over the workspace box)"""
    memory_top_k: int = 2
    """places read per token (sat-pm)"""
    chunk: int = 1
    """future actions predicted per step (an action chunk of this length)"""
    lambda_dir: float = 0.5
    """weight of the direction loss on the translation"""
    text: Literal["scratch", "pretrained"] = "scratch"
    text_path: str | None = None
    """local transformers / sentence-transformers directory for text='pretrained'"""
    max_text_len: int = 16
    state_dim: int = 15
    max_cameras: int = 4

    def __post_init__(self):
        checks = [
            (self.d_model % self.heads == 0, f"d_model: {self.d_model} must be divisible by heads={self.heads}"),
            (self.history_k >= 1, f"history_k: expected >= 1, got {self.history_k}"),
            (
                self.history_window >= self.history_k,
                f"history_window: expected >= history_k, got {self.history_window}",
            ),
            (self.history_stride >= 1, f"history_stride: expected >= 1, got {self.history_stride}"),
            (self.chunk >= 1, f"chunk: expected >= 1, got {self.chunk}"),
            (
                self.memory in ("none", "fifo", "sat-fifo", "sat-pm"),
                f"memory: expected none, fifo, sat-fifo or sat-pm, got {self.memory!r}",
            ),
            (
                self.memory == "none" or (self.sampler != "single" and self.history_k >= 2),
                f"memory: {self.memory!r} reads past frames; sampler={self.sampler!r} with "
                f"history_k={self.history_k} gives none (use history_k >= 2 and a history sampler)",
            ),
            (self.memory_cell > 0, f"memory_cell: expected > 0 metres, got {self.memory_cell}"),
            (
                self.memory_top_k >= 2,
                f"memory_top_k: expected >= 2 (the place scores learn through the softmax over the places "
                f"read), got {self.memory_top_k}",
            ),
            (
                1 <= len(self.cameras) <= self.max_cameras,
                f"cameras: expected 1..{self.max_cameras}, got {self.cameras}",
            ),
            (len(set(self.cameras)) == len(self.cameras), f"cameras: duplicate names in {self.cameras}"),
            (self.vision.grid >= 1, f"vision.grid: expected >= 1, got {self.vision.grid}"),
            (self.vision.keypoints >= 0, f"vision.keypoints: expected >= 0, got {self.vision.keypoints}"),
            (self.text != "pretrained" or self.text_path, "text_path: required when text='pretrained'"),
            (len(self.workspace_low) == 3 and len(self.workspace_high) == 3, "workspace_low/high: expected 3 values"),
            (len(self.camera_low) == 3 and len(self.camera_high) == 3, "camera_low/high: expected 3 values"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def frames_per_step(self) -> int:
        """History frames per decision step (the current one included)."""
        return 1 if self.sampler == "single" else self.history_k

    @property
    def uses_depth(self) -> bool:
        return self.spatial != "none"

    @property
    def place_grid(self) -> tuple[int, int, int]:
        """End-effector place cells per axis over the workspace box (``memory_cell`` metres each)."""
        import math

        box = zip(self.workspace_low, self.workspace_high)
        return tuple(max(1, math.ceil((h - lo) / self.memory_cell - 1e-9)) for lo, h in box)


BASELINES: dict[str, dict] = {
    "4d": {"spatial": "base", "time": "sinusoidal", "sampler": "memory_bank"},
    "4d-uniform": {"spatial": "base", "time": "sinusoidal", "sampler": "uniform"},
    "4d-single": {"spatial": "base", "time": "none", "sampler": "single"},
    "rgbd-camera": {"spatial": "camera", "time": "none", "sampler": "single"},
    "rgb-single": {"spatial": "none", "time": "none", "sampler": "single"},
}


def apply_baseline(config: VLAConfig, name: str) -> VLAConfig:
    """The same config with the fields of baseline ``name`` (see :data:`BASELINES`)."""
    if name not in BASELINES:
        raise ValueError(f"baseline: unknown {name!r}; known: {sorted(BASELINES)}")
    return dataclasses.replace(config, **BASELINES[name])


def load_preset(name_or_path: str | Path) -> VLAConfig:
    """A preset by name (``configs/vla/<name>.yaml``) or path, validated into :class:`VLAConfig`."""
    from worldline.config import load_preset as load_named

    return load_named(VLAConfig, name_or_path, CONFIG_DIR)
