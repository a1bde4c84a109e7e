"""Rendering images, depth maps and orbit videos from a trained NeRF model, and ns-eval-style
evaluation on a test split."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from render.evaluation import evaluate_renders, orbit_cameras, write_video
from worldline import Camera

__all__ = ["evaluate", "evaluate_renders", "orbit_cameras", "render_image", "write_video"]


@torch.no_grad()
def render_image(model, camera: Camera, chunk: int = 4096) -> dict[str, Tensor]:
    """rgb ``[H, W, 3]``, depth ``[H, W]`` (planar metres, 0 where the ray hit nothing) and acc
    ``[H, W]`` of one camera (batch shape []), rendered ``chunk`` rays at a time."""
    dev = next(model.parameters()).device
    cam = camera.to(dev)
    o, d = cam.rays(normalize=True)
    h, w = cam.height, cam.width
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    parts: dict[str, list] = {"rgb": [], "depth": [], "acc": []}
    for i in range(0, o.shape[0], chunk):
        out = model(o[i : i + chunk], d[i : i + chunk])
        for k in parts:
            parts[k].append(out[k])
    rgb = torch.cat(parts["rgb"]).reshape(h, w, 3).clamp(0, 1)
    acc = torch.cat(parts["acc"]).reshape(h, w)
    dist = torch.cat(parts["depth"]).reshape(h, w)
    z_axis = cam.c2w[:3, 2]
    planar = dist * (d.reshape(h, w, 3) @ z_axis)  # distance along the ray -> planar z
    return {"rgb": rgb.cpu(), "depth": torch.where(acc > 0.5, planar, 0.0).cpu(), "acc": acc.cpu()}


def evaluate(model, data, lpips_weights: str | Path | None = None, chunk: int = 4096, progress: bool = True) -> dict:
    """ns-eval's ``results`` keys (psnr, ssim, lpips with their _std, num_rays_per_sec, fps) plus
    samples_per_ray (field evaluations per ray), over every image of ``data``."""
    res = evaluate_renders(lambda cam: render_image(model, cam, chunk)["rgb"], data, lpips_weights,
                           next(model.parameters()).device, progress, "nerf eval")  # fmt: skip
    res["samples_per_ray"] = int(model.samples_per_ray)
    return res
