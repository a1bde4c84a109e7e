"""Frames from the env or from demo files -> model inputs, in one place for training and inference.

RGB uint8 ``[..., H, W, 3]`` becomes float ``[..., 3, S, S]`` in [0, 1]; depth is resized with
nearest neighbour (averaging would blend valid depth with 0 = invalid at silhouettes); K follows
the resize through :meth:`worldline.Camera.resize`, so lifted points stay correct.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from worldline.camera import Camera


def prepare_frames(rgb, depth, K, w2c, size: int) -> dict[str, Tensor]:
    """Resize frames to ``size x size`` and convert them to the model's layout.

    Args:
        rgb: uint8 ``[..., H, W, 3]``.
        depth: ``[..., H, W]`` metres (0 = invalid), or None.
        K: ``[..., 3, 3]``; w2c: ``[..., 4, 4]`` (OpenCV axes, base frame).

    Returns:
        ``images [..., 3, S, S]`` float32 in [0, 1], ``depth [..., S, S]`` (if given),
        ``intrinsics [..., 3, 3]``, ``extrinsics [..., 4, 4]`` (float32).
    """
    rgb = torch.as_tensor(np.asarray(rgb))
    if rgb.ndim < 3 or rgb.shape[-1] != 3 or rgb.dtype != torch.uint8:
        raise ValueError(f"rgb: expected uint8 [..., H, W, 3], got {rgb.dtype} {list(rgb.shape)}")
    h, w = rgb.shape[-3:-1]
    lead = rgb.shape[:-3]
    K = torch.as_tensor(np.asarray(K), dtype=torch.float32)
    w2c = torch.as_tensor(np.asarray(w2c), dtype=torch.float32)
    if K.shape != (*lead, 3, 3):
        raise ValueError(f"intrinsics: expected {[*lead, 3, 3]} for images {list(rgb.shape)}, got {list(K.shape)}")
    if w2c.shape != (*lead, 4, 4):
        raise ValueError(f"extrinsics: expected {[*lead, 4, 4]} for images {list(rgb.shape)}, got {list(w2c.shape)}")
    img = rgb.reshape(-1, h, w, 3).permute(0, 3, 1, 2).float() / 255.0
    out = {"intrinsics": K, "extrinsics": w2c}
    if (h, w) != (size, size):
        img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out["intrinsics"] = Camera(K, w2c, w, h).resize(size, size).K.float()
    out["images"] = img.reshape(*lead, 3, size, size)
    if depth is not None:
        d = torch.as_tensor(np.asarray(depth), dtype=torch.float32)
        if d.shape != (*lead, h, w):
            raise ValueError(f"depth: expected {[*lead, h, w]} to match the images, got {list(d.shape)}")
        if (h, w) != (size, size):
            d = F.interpolate(d.reshape(-1, 1, h, w), size=(size, size), mode="nearest-exact").reshape(
                *lead, size, size
            )
        out["depth"] = d
    return out


def augment_frames(
    images: Tensor,
    depth: Tensor | None,
    K: Tensor,
    w2c: Tensor,
    generator: torch.Generator,
    crop_scale: float = 0.9,
    jitter: float = 0.1,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Random crop (resized back) and colour jitter, one draw per camera, the same for all frames.

    Args:
        images: ``[T, C, 3, S, S]`` in [0, 1]; depth: ``[T, C, S, S]`` or None; K ``[T, C, 3, 3]``;
            w2c ``[T, C, 4, 4]`` (unchanged by a crop).
        crop_scale: side of the crop as a fraction of the image (1 = no crop).
        jitter: brightness, contrast and saturation factors drawn from [1 - jitter, 1 + jitter].

    Returns:
        images, depth, K: the crop moves the principal point through :meth:`worldline.Camera.crop`
        and the resize scales K through :meth:`~worldline.Camera.resize`, so depth lifted with the
        new K lands on the same 3D points.
    """
    if not 0 < crop_scale <= 1 or not 0 <= jitter < 1:
        raise ValueError(f"crop_scale/jitter: expected (0, 1] and [0, 1), got {crop_scale}, {jitter}")
    t, ncam, _, s, _ = images.shape
    images, K = images.clone(), K.clone()
    depth = None if depth is None else depth.clone()
    side = max(1, int(round(s * crop_scale)))
    for c in range(ncam):
        u = torch.rand(5, generator=generator)
        if side < s:
            left, top = int(u[0] * (s - side + 1)), int(u[1] * (s - side + 1))
            crop = images[:, c, :, top : top + side, left : left + side]
            images[:, c] = F.interpolate(crop, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            if depth is not None:
                d = depth[:, c, None, top : top + side, left : left + side]
                depth[:, c] = F.interpolate(d, size=(s, s), mode="nearest-exact")[:, 0]
            K[:, c] = Camera(K[:, c], w2c[:, c], s, s).crop(left, top, side, side).resize(s, s).K
        if jitter > 0:
            b, con, sat = (1 - jitter + 2 * jitter * u[2:5]).tolist()
            x = images[:, c] * b
            mean = x.mean(dim=(-3, -2, -1), keepdim=True)
            x = (x - mean) * con + mean
            grey = x.mean(dim=-3, keepdim=True)
            images[:, c] = ((x - grey) * sat + grey).clamp(0, 1)
    return images, depth, K
