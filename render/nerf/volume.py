"""Volume rendering along rays: alpha compositing, stratified and importance sampling.

Ray parameters ``t`` are distances along unit direction vectors (metres). A sample's interval
runs from its ``t`` to the next one's; the last interval ends at ``far``, so space beyond ``far``
is empty and shows the background colour.
"""

from __future__ import annotations

import torch
from torch import Tensor


def intervals(t: Tensor, far: float | Tensor) -> Tensor:
    """Interval lengths ``[..., S]`` of sorted samples ``t`` ``[..., S]``; the last ends at ``far``."""
    far_t = torch.as_tensor(far, dtype=t.dtype, device=t.device).expand_as(t[..., -1:])
    return (torch.cat([t[..., 1:], far_t], dim=-1) - t).clamp_min(0.0)


def alpha_from_density(
    sigma_raw: Tensor, deltas: Tensor, density_offset: Tensor | None = None, alpha_scale: Tensor | None = None
) -> Tensor:
    """alpha = (1 - exp(-relu(sigma + offset) delta)) * relu(scale): plain NeRF without the two
    optional terms; ProNeRF's sampler predicts the offset and the multiplier per sample."""
    if density_offset is not None:
        sigma_raw = sigma_raw + density_offset
    alpha = 1.0 - torch.exp(-torch.relu(sigma_raw) * deltas)
    if alpha_scale is not None:
        alpha = (alpha * torch.relu(alpha_scale)).clamp(max=1.0)
    return alpha


def composite(alpha: Tensor, rgb: Tensor, t: Tensor, background: Tensor | None = None) -> dict[str, Tensor]:
    """Front-to-back compositing of samples ``[..., S]`` with colours ``[..., S, 3]``.

    Returns rgb ``[..., 3]`` (plus ``(1 - acc) * background``), depth ``[...]`` (expected ray
    distance, over the accumulated opacity), acc ``[...]`` and weights ``[..., S]``.
    """
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10], -1), -1)
    weights = alpha * trans
    acc = weights.sum(-1)
    color = (weights[..., None] * rgb).sum(-2)
    if background is not None:
        color = color + (1.0 - acc[..., None]) * background
    depth = (weights * t).sum(-1) / acc.clamp_min(1e-10)
    return {"rgb": color, "depth": depth, "acc": acc, "weights": weights}


def stratified(near: float, far: float, n: int, shape: tuple, perturb: bool, device=None, generator=None) -> Tensor:
    """``n`` samples per ray ``[*shape, n]`` in [near, far]: bin starts, jittered within the bin when
    ``perturb``."""
    edges = torch.linspace(near, far, n + 1, device=device)
    lo, width = edges[:-1], edges[1:] - edges[:-1]
    u = (
        torch.rand(*shape, n, device=device, generator=generator)
        if perturb
        else torch.full((*shape, n), 0.5, device=device)
    )
    return lo + width * u


def sample_pdf(bins: Tensor, weights: Tensor, n: int, deterministic: bool, generator=None) -> Tensor:
    """Inverse-transform sampling of ``n`` depths ``[..., n]`` from the piecewise-constant pdf with
    ``weights`` ``[..., B]`` over ``bins`` ``[..., B + 1]`` (NeRF's hierarchical sampling)."""
    w = weights + 1e-5
    pdf = w / w.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1)], -1)  # [..., B+1]
    if deterministic:
        u = torch.linspace(0.0, 1.0, n, device=bins.device).expand(*cdf.shape[:-1], n).contiguous()
    else:
        u = torch.rand(*cdf.shape[:-1], n, device=bins.device, generator=generator)
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    below = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    above = idx.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    denom = torch.where(cdf_hi - cdf_lo < 1e-5, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
    return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)
