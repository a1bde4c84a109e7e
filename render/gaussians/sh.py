"""Real spherical harmonics up to degree 3, in the convention of 3DGS and gsplat: colour =
max(SH(d) . coeffs + 0.5, 0) with d the unit direction from the camera centre to the Gaussian."""

from __future__ import annotations

import torch
from torch import Tensor

C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
      1.445305721320277, -0.5900435899266435)  # fmt: skip


def num_sh_bases(degree: int) -> int:
    if not 0 <= degree <= 3:
        raise ValueError(f"sh_degree: expected 0..3, got {degree}")
    return (degree + 1) ** 2


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """The real SH basis ``[..., (degree+1)^2]`` at unit directions ``[..., 3]``."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, C0)]
    if degree >= 1:
        out += [-C1 * y, C1 * z, -C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [C2[0] * xy, C2[1] * yz, C2[2] * (2 * zz - xx - yy), C2[3] * xz, C2[4] * (xx - yy)]
    if degree >= 3:
        out += [C3[0] * y * (3 * xx - yy), C3[1] * xy * z, C3[2] * y * (4 * zz - xx - yy),
                C3[3] * z * (2 * zz - 3 * xx - 3 * yy), C3[4] * x * (4 * zz - xx - yy), C3[5] * z * (xx - yy),
                C3[6] * x * (xx - 3 * yy)]  # fmt: skip
    return torch.stack(out, -1)


def eval_sh(coeffs: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """RGB ``[..., 3]`` from coefficients ``[..., K, 3]`` (first ``(degree+1)^2`` used) at directions
    ``[..., 3]`` (normalised here)."""
    n = num_sh_bases(degree)
    if coeffs.shape[-2] < n:
        raise ValueError(f"sh: degree {degree} needs {n} coefficients, got {coeffs.shape[-2]}")
    d = torch.nn.functional.normalize(dirs, dim=-1)
    basis = sh_basis(d, degree)  # [..., n]
    return ((basis[..., None] * coeffs[..., :n, :]).sum(-2) + 0.5).clamp_min(0.0)


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """The degree-0 coefficient that renders ``rgb`` from every direction."""
    return (rgb - 0.5) / C0
