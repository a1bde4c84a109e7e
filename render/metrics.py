"""Image quality: PSNR, SSIM and LPIPS for renders against ground truth.

Images are float ``[..., H, W, 3]`` in [0, 1]. SSIM is Wang et al. 2004 with an 11-tap Gaussian
window (sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over the valid (unpadded) window positions and
the channels: the same number as ``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.

LPIPS (Zhang et al. 2018, the AlexNet variant) needs its weights at a local path (nothing is
downloaded): a safetensors file with torchvision's AlexNet ``features.{0,3,6,8,10}.{weight,bias}``
and the five linear heads ``lin.{0..4}.weight`` ([1, C, 1, 1]).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.ndim < 3 or a.shape[-1] != 3:
        raise ValueError(
            f"images: expected two [..., H, W, 3] images of one shape, got {list(a.shape)} and {list(b.shape)}"
        )


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB ``[...]`` for images in [0, 1]."""
    _check_pair(pred, target)
    mse = ((pred.float() - target.float()) ** 2).mean(dim=(-3, -2, -1))
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def _gaussian(size: int, sigma: float, dtype, device) -> Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5, dtype=torch.float64) -> Tensor:
    """Structural similarity ``[...]`` (mean over valid window positions and channels), computed in
    ``dtype`` (float64 for evaluation; a training loss may use float32). Differentiable."""
    _check_pair(pred, target)
    lead = pred.shape[:-3]
    h, w = pred.shape[-3:-1]
    if min(h, w) < window:
        raise ValueError(f"images: SSIM needs at least {window}x{window} pixels, got {w}x{h}")
    x = pred.reshape(-1, h, w, 3).permute(0, 3, 1, 2).to(dtype)
    y = target.reshape(-1, h, w, 3).permute(0, 3, 1, 2).to(dtype)
    g = _gaussian(window, sigma, x.dtype, x.device)
    k = (g[:, None] * g[None, :]).expand(3, 1, window, window)

    def blur(z):
        return F.conv2d(z, k, groups=3)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).reshape(lead).to(pred.dtype)


class LPIPS(nn.Module):
    """LPIPS with AlexNet features: unit-normalised channel features of 5 layers, squared
    differences weighted by learned 1x1 heads, spatially averaged and summed."""

    CHANNELS = (64, 192, 384, 256, 256)
    FEATURE_LAYERS = (0, 3, 6, 8, 10)

    def __init__(self):
        super().__init__()
        from torchvision.models import alexnet

        self.features = alexnet(weights=None).features[:12]
        self.lin = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> LPIPS:
        from worldline.io import load_weights

        model = cls()
        weights = load_weights(path)
        missing = sorted(set(model.state_dict()) - set(weights) - {"shift", "scale"})
        if missing:
            raise ValueError(f"{path}: not LPIPS-AlexNet weights; missing tensors {missing[:4]}")
        bad = [k for k, v in weights.items() if k in model.state_dict() and v.shape != model.state_dict()[k].shape]
        if bad:
            raise ValueError(f"{path}: tensor {bad[0]} has shape {list(weights[bad[0]].shape)}, "
                             f"expected {list(model.state_dict()[bad[0]].shape)}")  # fmt: skip
        model.load_state_dict({**model.state_dict(), **{k: weights[k] for k in model.state_dict() if k in weights}})
        return model

    def _feats(self, x: Tensor) -> list[Tensor]:
        h = ((x * 2 - 1) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i - 1 in self.FEATURE_LAYERS:  # after each ReLU that follows a chosen conv
                out.append(h)
        return out

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Distance ``[B]`` between images ``[B, H, W, 3]`` in [0, 1]."""
        _check_pair(pred, target)
        fa = self._feats(pred.permute(0, 3, 1, 2).float())
        fb = self._feats(target.permute(0, 3, 1, 2).float())
        total = 0.0
        for a, b, lin in zip(fa, fb, self.lin):
            a = a / (a.norm(dim=1, keepdim=True) + 1e-10)
            b = b / (b.norm(dim=1, keepdim=True) + 1e-10)
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total
