"""Depth maps <-> point clouds: lifting, transforming, fusing views, downsampling, cropping, open3d.

Units are metres; colours are float in [0, 1] unless stated. A point cloud is a pair of tensors
``xyz`` ``[N, 3]`` and optional ``rgb`` ``[N, 3]`` (the :class:`PointCloud` container holds both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from worldline._checks import as_tensor, broadcast_batch, check_finite, check_trailing
from worldline.camera import Camera, unproject_depth

__all__ = [
    "PointCloud",
    "crop_to_box",
    "depth_to_points",
    "from_open3d",
    "fuse_rgbd",
    "resample_points",
    "to_open3d",
    "transform_points",
    "voxel_downsample",
    "voxel_indices",
]


@dataclass(frozen=True)
class PointCloud:
    """Points ``xyz`` ``[N, 3]`` (metres) with optional colours ``rgb`` ``[N, 3]`` in [0, 1]."""

    xyz: Tensor
    rgb: Tensor | None = None

    def __post_init__(self):
        check_trailing("xyz", self.xyz, [None, 3])
        if self.xyz.ndim != 2:
            raise ValueError(f"xyz: expected shape [N, 3], got {list(self.xyz.shape)}")
        if self.rgb is not None and tuple(self.rgb.shape) != tuple(self.xyz.shape):
            raise ValueError(f"rgb: expected shape {list(self.xyz.shape)} to match xyz, got {list(self.rgb.shape)}")

    def __len__(self) -> int:
        return self.xyz.shape[0]


def depth_to_points(
    depth: Tensor, K: Tensor, w2c: Tensor | None = None, *, frame: str = "camera"
) -> tuple[Tensor, Tensor]:
    """Lift planar depth to 3D points at every pixel centre.

    Args:
        depth: ``[..., H, W]`` planar z in metres; 0 (or negative) marks invalid pixels.
        K: intrinsics ``[..., 3, 3]``.
        w2c: world-to-camera ``[..., 4, 4]``, needed for ``frame="world"``.
        frame: ``"camera"`` (OpenCV camera axes) or ``"world"``.

    Returns:
        points ``[..., H, W, 3]`` metres and valid mask ``[..., H, W]`` (depth > 0).
    """
    if frame not in ("camera", "world"):
        raise ValueError(f"frame: expected 'camera' or 'world', got {frame!r}")
    if frame == "world" and w2c is None:
        raise ValueError("w2c: required for frame='world'")
    pts = unproject_depth(K, w2c if frame == "world" else None, depth)
    return pts, as_tensor("depth", depth, dtype=pts.dtype, device=pts.device) > 0


def transform_points(transform: Tensor, points: Tensor) -> Tensor:
    """Apply a rigid (or any affine) transform ``[..., 4, 4]`` to points ``[..., N, 3]``."""
    t = as_tensor("transform", transform)
    p = as_tensor("points", points, dtype=t.dtype, device=t.device)
    check_trailing("transform", t, [4, 4])
    check_trailing("points", p, [None, 3])
    broadcast_batch(transform=t.shape[:-2], points=p.shape[:-2])
    return p @ t[..., :3, :3].transpose(-1, -2) + t[..., None, :3, 3]


def _to_float_rgb(rgb: Tensor) -> Tensor:
    rgb = torch.as_tensor(rgb)
    if rgb.dtype == torch.uint8:
        return rgb.float() / 255.0
    return rgb.float()


def fuse_rgbd(
    cameras: Camera | Sequence[Camera],
    depths: Tensor | Sequence[Tensor],
    rgbs: Tensor | Sequence[Tensor] | None = None,
    *,
    max_depth: float | None = None,
) -> PointCloud:
    """Fuse several RGB-D views into one world-frame point cloud.

    Args:
        cameras: a batched :class:`Camera` with batch shape ``[V]`` or a sequence of V cameras
            (each may have its own resolution).
        depths: ``[V, H, W]`` or V tensors ``[H, W]``, planar metres, 0 = invalid.
        rgbs: optional ``[V, H, W, 3]`` or V tensors ``[H, W, 3]``, uint8 or float in [0, 1].
        max_depth: drop points farther than this (metres), e.g. the far plane / background.

    Returns:
        :class:`PointCloud` of all valid pixels, xyz in world metres, rgb float in [0, 1].
    """
    if isinstance(cameras, Camera):
        if len(cameras.batch_shape) != 1:
            raise ValueError(f"cameras: expected batch shape [V], got {list(cameras.batch_shape)}")
        cameras = [cameras[i] for i in range(cameras.batch_shape[0])]
    n_views = len(cameras)
    if len(depths) != n_views:
        raise ValueError(f"depths: expected {n_views} views to match cameras, got {len(depths)}")
    if rgbs is not None and len(rgbs) != n_views:
        raise ValueError(f"rgbs: expected {n_views} views to match cameras, got {len(rgbs)}")
    xyz_all, rgb_all = [], []
    for i, cam in enumerate(cameras):
        depth = as_tensor(f"depths[{i}]", depths[i], dtype=cam.K.dtype, device=cam.K.device)
        cam._check_image_shape(f"depths[{i}]", depth)
        pts = cam.unproject(depth)
        valid = depth > 0
        if max_depth is not None:
            valid &= depth <= max_depth
        xyz_all.append(pts[valid])
        if rgbs is not None:
            rgb = _to_float_rgb(rgbs[i]).to(pts.device)
            if tuple(rgb.shape) != (cam.height, cam.width, 3):
                raise ValueError(f"rgbs[{i}]: expected [{cam.height}, {cam.width}, 3], got {list(rgb.shape)}")
            rgb_all.append(rgb[valid].to(pts.dtype))
    xyz = torch.cat(xyz_all, dim=0)
    return PointCloud(xyz, torch.cat(rgb_all, dim=0) if rgbs is not None else None)


def voxel_indices(points: Tensor, voxel_size: float, origin: Tensor | Sequence[float] | None = None) -> Tensor:
    """Integer voxel (cell) index of each point: ``floor((xyz - origin) / voxel_size)``.

    Args:
        points: ``[..., 3]`` metres, any leading shape.
        voxel_size: edge of the cubic cells, metres (> 0).
        origin: ``[3]`` corner of cell (0, 0, 0); default the world origin, so the grid is the same
            for every frame of a sequence.

    Returns:
        ``[..., 3]`` int64 cell indices (negative below the origin).
    """
    if not voxel_size > 0:
        raise ValueError(f"voxel_size: expected > 0 metres, got {voxel_size!r}")
    points = as_tensor("points", points)
    check_trailing("points", points, (3,))
    check_finite("points", points)
    if origin is not None:
        origin = as_tensor("origin", origin, dtype=points.dtype, device=points.device)
        if origin.shape != (3,):
            raise ValueError(f"origin: expected shape [3], got {list(origin.shape)}")
        points = points - origin
    return torch.floor(points / voxel_size).long()


def voxel_downsample(
    cloud: PointCloud, voxel_size: float, origin: Tensor | Sequence[float] | None = None
) -> PointCloud:
    """Average the points (and colours) that fall in each cubic voxel of edge ``voxel_size`` m.

    Voxel index = floor((xyz - origin) / voxel_size). The default origin is the world origin, so
    the grid does not move between frames of a sequence. (open3d's ``voxel_down_sample`` uses
    ``origin = xyz.min(0) - voxel_size / 2`` instead; pass that to reproduce it.) Output order
    follows sorted voxel index, so the result is deterministic.
    """
    if not voxel_size > 0:
        raise ValueError(f"voxel_size: expected > 0 metres, got {voxel_size!r}")
    xyz = cloud.xyz
    if len(cloud) == 0:
        return cloud
    check_finite("cloud.xyz", xyz)
    keys = voxel_indices(xyz, voxel_size, origin)
    _, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    n = counts.shape[0]
    denom = counts.to(xyz.dtype)[:, None]
    out_xyz = torch.zeros(n, 3, dtype=xyz.dtype, device=xyz.device).index_add_(0, inverse, xyz) / denom
    out_rgb = None
    if cloud.rgb is not None:
        rgb = cloud.rgb
        out_rgb = torch.zeros(n, 3, dtype=rgb.dtype, device=rgb.device).index_add_(0, inverse, rgb) / denom.to(rgb)
    return PointCloud(out_xyz, out_rgb)


def crop_to_box(cloud: PointCloud, lower: Sequence[float] | Tensor, upper: Sequence[float] | Tensor) -> PointCloud:
    """Keep points with ``lower <= xyz <= upper`` (axis-aligned box, metres, inclusive)."""
    lo = as_tensor("lower", lower, dtype=cloud.xyz.dtype, device=cloud.xyz.device)
    hi = as_tensor("upper", upper, dtype=cloud.xyz.dtype, device=cloud.xyz.device)
    if lo.shape != (3,) or hi.shape != (3,):
        raise ValueError(f"lower/upper: expected shape [3], got {list(lo.shape)} and {list(hi.shape)}")
    if bool((lo > hi).any()):
        raise ValueError(f"lower: {lo.tolist()} exceeds upper {hi.tolist()} on some axis")
    keep = ((cloud.xyz >= lo) & (cloud.xyz <= hi)).all(dim=-1)
    return PointCloud(cloud.xyz[keep], None if cloud.rgb is None else cloud.rgb[keep])


def resample_points(cloud: PointCloud, n: int, generator: torch.Generator | None = None) -> PointCloud:
    """Exactly ``n`` points: a random subset without replacement, or with repeats if fewer exist.

    Policies want fixed-size inputs; pass a seeded ``generator`` for reproducibility.
    """
    if n <= 0:
        raise ValueError(f"n: expected a positive number of points, got {n}")
    m = len(cloud)
    if m == 0:
        raise ValueError("cloud: cannot resample an empty point cloud")
    dev = cloud.xyz.device
    if m >= n:
        idx = torch.randperm(m, generator=generator)[:n].to(dev)
    else:
        extra = torch.randint(m, (n - m,), generator=generator).to(dev)
        idx = torch.cat([torch.arange(m, device=dev), extra])
    return PointCloud(cloud.xyz[idx], None if cloud.rgb is None else cloud.rgb[idx])


def _open3d():
    try:
        import open3d
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("open3d is required for this function: pip install open3d") from exc
    return open3d


def to_open3d(cloud: PointCloud):
    """Convert to an ``open3d.geometry.PointCloud`` (float64 points, colours in [0, 1])."""
    o3d = _open3d()
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(cloud.xyz.detach().cpu().double().numpy())
    if cloud.rgb is not None:
        pcd.colors = o3d.utility.Vector3dVector(cloud.rgb.detach().cpu().double().clamp(0, 1).numpy())
    return pcd


def from_open3d(pcd, dtype: torch.dtype = torch.float32) -> PointCloud:
    """Convert an ``open3d.geometry.PointCloud`` to a :class:`PointCloud`."""
    xyz = torch.from_numpy(np.asarray(pcd.points)).to(dtype)
    rgb = torch.from_numpy(np.asarray(pcd.colors)).to(dtype) if pcd.has_colors() else None
    return PointCloud(xyz, rgb)
