"""Evaluation and views shared by the renderers: ns-eval metrics over a split, orbit cameras
and mp4 videos."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from render.metrics import LPIPS, psnr, ssim
from worldline import Camera, axes_focus
from worldline.transforms import look_at


def evaluate_renders(render_fn, data, lpips_weights=None, device=None, progress: bool = True, desc: str = "eval"):
    """The ns-eval ``results`` of ``render_fn(camera) -> rgb [H, W, 3]`` over every image of
    ``data`` (shared by NeRF and Gaussian splatting). The first image is rendered once more before
    timing, so fps and rays/s are steady-state."""
    from tqdm import tqdm

    lp = None
    if lpips_weights is not None and Path(lpips_weights).is_file():
        lp = LPIPS.from_file(lpips_weights)
    elif lpips_weights is not None:
        raise FileNotFoundError(f"--lpips-weights: {lpips_weights} not found")
    else:
        print("lpips: no local LPIPS weights given (--lpips-weights); reporting lpips: null")
    ps, ss, ls, secs = [], [], [], []
    cuda = device is not None and torch.device(device).type == "cuda"
    with torch.no_grad():
        render_fn(data.cameras[0])  # warm-up: the timings below are steady-state
        for i in tqdm(range(len(data)), desc=desc, disable=not progress):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            rgb = render_fn(data.cameras[i]).detach().float().cpu().clamp(0, 1)
            if cuda:
                torch.cuda.synchronize()
            secs.append(time.perf_counter() - t0)
            gt = data.images[i]
            ps.append(float(psnr(rgb, gt)))
            ss.append(float(ssim(rgb, gt)))
            if lp is not None:
                ls.append(float(lp(rgb[None], gt[None])[0]))
    rays = data.height * data.width
    fps = [1.0 / s for s in secs]
    rps = [rays / s for s in secs]
    res = {"psnr": float(np.mean(ps)), "psnr_std": float(np.std(ps)), "ssim": float(np.mean(ss)),
           "ssim_std": float(np.std(ss)), "lpips": float(np.mean(ls)) if ls else None,
           "lpips_std": float(np.std(ls)) if ls else None, "num_rays_per_sec": float(np.mean(rps)),
           "num_rays_per_sec_std": float(np.std(rps)), "fps": float(np.mean(fps)), "fps_std": float(np.std(fps)),
           "images": len(data)}  # fmt: skip
    return res


def orbit_cameras(cameras: Camera, frames: int) -> Camera:
    """``frames`` cameras on a circle around the training cameras' look-at centre, at their mean
    distance and height, about their mean up direction, with the first camera's intrinsics."""
    c2w = cameras.c2w.reshape(-1, 4, 4).double()
    centres = c2w[:, :3, 3]
    up = -c2w[:, :3, 1].mean(0)
    up = up / up.norm()
    target = axes_focus(cameras).double()
    rel = centres - target
    height = float((rel @ up).mean())
    radial = rel - (rel @ up)[:, None] * up
    radius = float(radial.norm(dim=-1).mean())
    a = radial[0] / radial[0].norm()
    b = torch.linalg.cross(up, a)
    w2cs = []
    for k in range(frames):
        ang = 2 * math.pi * k / frames
        e = target + radius * (math.cos(ang) * a + math.sin(ang) * b) + height * up
        w2cs.append(look_at(e, target, up))
    K = cameras.K.reshape(-1, 3, 3)[0]
    return Camera(K.expand(frames, 3, 3).float(), torch.stack(w2cs).float(), cameras.width, cameras.height)


def write_video(frames: list[np.ndarray], path: str | Path, fps: int = 24) -> None:
    """uint8 ``[H, W, 3]`` frames to an mp4 (imageio-ffmpeg) or, without ffmpeg, OpenCV's writer; atomically."""
    from worldline.io import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp_mp4 = tmp.with_suffix(".mp4")
        try:
            import imageio.v2 as imageio

            with imageio.get_writer(tmp_mp4, fps=fps, macro_block_size=1) as w:
                for f in frames:
                    w.append_data(f)
        except (ImportError, ValueError, RuntimeError, OSError):
            import cv2

            h, w_ = frames[0].shape[:2]
            vw = cv2.VideoWriter(str(tmp_mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w_, h))
            if not vw.isOpened():
                raise RuntimeError(f"{path}: no mp4 writer (install imageio-ffmpeg)") from None
            for f in frames:
                vw.write(f[..., ::-1].copy())
            vw.release()
        tmp_mp4.replace(tmp)
