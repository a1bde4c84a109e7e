"""Geometry demo: ray-cast a synthetic tabletop (a plane and a sphere) from four cameras on a view
sphere, fuse the RGB-D views into one world-frame cloud, downsample it, and report how far the
fused points lie from the true surfaces. Run: ``worldline-demo`` (or ``python -m worldline.demo``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from worldline.camera import Camera
from worldline.io import save_json
from worldline.points import fuse_rgbd, voxel_downsample
from worldline.transforms import look_at


@dataclass
class DemoArgs:
    views: int = 4
    """number of cameras on the view sphere"""
    resolution: int = 128
    """image width and height in pixels"""
    voxel: float = 0.01
    """voxel edge for downsampling, metres"""
    out: Path = Path("outputs/geometry_demo.json")
    """where to write the summary JSON"""


def _raycast(cam: Camera, centre: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Planar depth [H, W] and RGB [H, W, 3] of the table plane z=0 and a sphere."""
    o, d = cam.rays(normalize=False)  # t along d equals planar depth
    t_plane = -o[..., 2] / d[..., 2]
    t_plane = torch.where(t_plane > 0, t_plane, torch.full_like(t_plane, float("inf")))
    oc = o - centre
    a = (d * d).sum(-1)
    b = 2 * (oc * d).sum(-1)
    c = (oc * oc).sum(-1) - radius**2
    disc = b * b - 4 * a * c
    t_sphere = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
    t_sphere = torch.where((disc > 0) & (t_sphere > 0), t_sphere, torch.full_like(t_sphere, float("inf")))
    depth = torch.minimum(t_plane, t_sphere)
    rgb = torch.where((t_sphere < t_plane)[..., None], torch.tensor([0.9, 0.1, 0.1]), torch.tensor([0.6, 0.5, 0.4]))
    return torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth)), rgb


def run(args: DemoArgs) -> dict:
    centre, radius = torch.tensor([0.1, 0.0, 0.05]), 0.05
    cams, depths, rgbs = [], [], []
    for i in range(args.views):
        az = 2 * math.pi * i / args.views
        eye = torch.tensor([0.8 * math.cos(az), 0.8 * math.sin(az), 0.6])
        cam = Camera.from_fov(math.radians(45), args.resolution, args.resolution, look_at(eye, torch.zeros(3)))
        depth, rgb = _raycast(cam, centre, radius)
        cams.append(cam)
        depths.append(depth)
        rgbs.append(rgb)
    cloud = fuse_rgbd(cams, depths, rgbs)
    down = voxel_downsample(cloud, args.voxel)
    on_sphere = ((cloud.xyz - centre).norm(dim=-1) - radius).abs()
    on_plane = cloud.xyz[:, 2].abs()
    err = torch.minimum(on_sphere, on_plane)
    summary = {
        "views": args.views,
        "points_fused": len(cloud),
        "points_downsampled": len(down),
        "max_surface_error_m": float(err.max()),
        "sphere_points": int((on_sphere < 1e-4).sum()),
    }
    save_json(summary, args.out)
    return summary


def main() -> None:
    import tyro

    summary = run(tyro.cli(DemoArgs))
    for k, v in summary.items():
        print(f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
