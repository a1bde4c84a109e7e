"""Cross-scene calibration: depth lifted to 3D points per visual token, and their encoding.

4D-VLA gives every visual feature a 3D coordinate in the robot's base frame,
P = R D K^-1 [u, v, 1]^T + T, so that the same place on the table has the same coordinate from
every camera (calibration across scenes and viewpoints). The lifting is the core's
:func:`worldline.points.depth_to_points`; nothing here projects on its own.

Pooling to the token grid: the visual feature map is pooled to G x G tokens; the points are
pooled over the same image regions (adaptive average pooling of the full-resolution point map),
counting only pixels with valid depth (depth 0 = invalid is masked out). A token whose region has
no valid depth gets a learned "no depth" embedding instead of a spatial encoding.

Encoding (our choice, after SpatialVLA's Ego3D encoding): xyz is mapped from a workspace box to
[-1, 1], expanded into Fourier features with ``num_freqs`` log-spaced frequencies (2^0 .. 2^(F-1),
times pi) plus the raw coordinates, and passed through Linear - LayerNorm - ReLU - Linear whose
last layer starts small (std 1e-3), so at initialisation the encoding barely perturbs the visual
features it is added to. SpatialVLA computes this in the camera frame; 4D-VLA's point is the base
frame, and ``frame="camera"`` gives the SpatialVLA-style baseline.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from worldline.points import depth_to_points


def lift_depth(depth: Tensor, K: Tensor, w2c: Tensor, frame: str = "base") -> tuple[Tensor, Tensor]:
    """Points at every pixel centre and the valid mask.

    Args:
        depth: ``[..., H, W]`` planar metres, 0 = invalid.
        K: ``[..., 3, 3]``; w2c: ``[..., 4, 4]`` world(base)-to-camera, OpenCV axes.
        frame: ``"base"`` (the world frame of our scenes is the robot base frame) or ``"camera"``.

    Returns:
        points ``[..., H, W, 3]`` metres, valid ``[..., H, W]`` bool.
    """
    if frame not in ("base", "camera"):
        raise ValueError(f"frame: expected 'base' or 'camera', got {frame!r}")
    return depth_to_points(depth, K, w2c, frame="world" if frame == "base" else "camera")


def pool_points(points: Tensor, valid: Tensor, grid: int) -> tuple[Tensor, Tensor]:
    """Average the valid points of each of ``grid x grid`` image regions.

    Args:
        points: ``[N, H, W, 3]``; valid: ``[N, H, W]``.

    Returns:
        cell points ``[N, grid * grid, 3]`` (row-major) and cell valid ``[N, grid * grid]`` (any
        valid pixel in the region).
    """
    m = valid.to(points.dtype)[:, None]  # [N, 1, H, W]
    p = points.permute(0, 3, 1, 2) * m  # invalid pixels contribute nothing
    num = F.adaptive_avg_pool2d(p, grid)  # region mean of p * m
    den = F.adaptive_avg_pool2d(m, grid)  # region fraction of valid pixels
    cell = num / den.clamp_min(1e-12)
    return cell.flatten(2).transpose(1, 2), (den.flatten(1) > 0)


def keypoint_points(points: Tensor, valid: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """The 3D point of each spatial-softmax keypoint: its softmax weights over the feature map
    applied to the feature cells' points (:func:`pool_points` at the feature map's size), over the
    cells with valid depth only.

    Args:
        points: ``[N, H, W, 3]``; valid: ``[N, H, W]``; weights: ``[N, K, h, h]`` (each sums to 1).

    Returns:
        ``[N, K, 3]`` points and ``[N, K]`` valid: at least half of the keypoint's weight fell on
        cells with depth (a keypoint looking mostly at cells without depth has no reliable point).
    """
    h = weights.shape[-1]
    if weights.shape[-2] != h:
        raise ValueError(f"weights: expected a square feature map, got {list(weights.shape)}")
    cell, cell_valid = pool_points(points, valid, h)  # [N, h*h, 3]
    w = weights.flatten(2).to(cell.dtype) * cell_valid[:, None].to(cell.dtype)  # [N, K, h*h]
    mass = w.sum(-1)
    return (w @ cell) / mass.clamp_min(1e-12)[..., None], mass >= 0.5


def fourier_features(x: Tensor, num_freqs: int) -> Tensor:
    """``[..., D]`` in [-1, 1] -> ``[..., D * (1 + 2 * num_freqs)]``: x, sin(2^i pi x), cos(2^i pi x)."""
    freqs = (2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)) * math.pi
    ang = x[..., None] * freqs  # [..., 3, F]
    return torch.cat([x, ang.sin().flatten(-2), ang.cos().flatten(-2)], dim=-1)


def sinusoid(x: Tensor, dim: int) -> Tensor:
    """Transformer position encoding of real-valued positions ``x [...]`` -> ``[..., dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    ang = x.float()[..., None] * freqs
    out = torch.cat([ang.sin(), ang.cos()], dim=-1)
    return F.pad(out, (0, dim - 2 * half))


class SpatialEncoding(nn.Module):
    """Points -> an embedding added to the visual features (``dim`` channels)."""

    def __init__(self, dim: int, num_freqs: int = 8, low=(0.0, -0.6, -0.1), high=(1.0, 0.6, 0.6), hidden: int = 128):
        super().__init__()
        self.num_freqs = num_freqs
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.tensor(high, dtype=torch.float32), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(3 + 6 * num_freqs, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Linear(hidden, dim)
        )
        nn.init.normal_(self.mlp[-1].weight, std=1e-3)
        nn.init.zeros_(self.mlp[-1].bias)
        self.no_depth = nn.Parameter(torch.zeros(dim))

    def forward(self, points: Tensor, valid: Tensor) -> Tensor:
        """points ``[..., 3]`` metres, valid ``[...]`` -> ``[..., dim]``."""
        x = (points - self.low) / (self.high - self.low) * 2 - 1
        enc = self.mlp(fourier_features(x.clamp(-1.5, 1.5), self.num_freqs))
        return torch.where(valid[..., None], enc, self.no_depth.to(enc.dtype))
