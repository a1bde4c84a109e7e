"""3D Gaussians: means, log-scales, quaternions (w, x, y, z), opacity logits and SH colours."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from render.gaussians.sh import num_sh_bases, rgb_to_sh0
from worldline.transforms import quat_to_matrix


class GaussianModel(nn.Module):
    """A set of N anisotropic 3D Gaussians (the 3DGS parameterisation).

    means ``[N, 3]`` metres; log_scales ``[N, 3]``; quats ``[N, 4]`` (w, x, y, z; normalised when
    used); opacity_logits ``[N]``; sh0 ``[N, 1, 3]`` and shN ``[N, K-1, 3]`` with K = (degree+1)^2.
    """

    def __init__(self, means: Tensor, log_scales: Tensor, quats: Tensor, opacity_logits: Tensor, sh0: Tensor,
                 shN: Tensor, sh_degree: int):  # fmt: skip
        super().__init__()
        n = means.shape[0]
        k = num_sh_bases(sh_degree)
        shapes = {"means": (n, 3), "log_scales": (n, 3), "quats": (n, 4), "opacity_logits": (n,),
                  "sh0": (n, 1, 3), "shN": (n, k - 1, 3)}  # fmt: skip
        given = {"means": means, "log_scales": log_scales, "quats": quats, "opacity_logits": opacity_logits,
                 "sh0": sh0, "shN": shN}  # fmt: skip
        for name, t in given.items():
            if tuple(t.shape) != shapes[name]:
                raise ValueError(f"{name}: expected shape {list(shapes[name])}, got {list(t.shape)}")
            t = t.detach().clone()
            setattr(self, name, nn.Parameter(t if t.is_floating_point() else t.float()))
        self.sh_degree = sh_degree

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_points(cls, points: Tensor, colors: Tensor | None = None, sh_degree: int = 3, opacity: float = 0.1,
                    neighbours: int = 3) -> GaussianModel:  # fmt: skip
        """Isotropic Gaussians at ``points`` ``[N, 3]`` (colours ``[N, 3]`` in [0, 1]), sized by the
        mean distance to their ``neighbours`` nearest points (as 3DGS initialises from SfM)."""
        points = torch.as_tensor(points, dtype=torch.float32)
        if points.ndim != 2 or points.shape[-1] != 3 or points.shape[0] < 2:
            raise ValueError(f"points: expected [N >= 2, 3], got {list(points.shape)}")
        n = points.shape[0]
        colors = torch.full((n, 3), 0.5) if colors is None else torch.as_tensor(colors, dtype=torch.float32)
        dist = _knn_mean_distance(points, min(neighbours, n - 1))
        log_scales = torch.log(dist.clamp_min(1e-7))[:, None].expand(n, 3)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        logit = math.log(opacity / (1 - opacity))
        shN = torch.zeros(n, num_sh_bases(sh_degree) - 1, 3)
        return cls(points, log_scales, quats, torch.full((n,), logit), rgb_to_sh0(colors)[:, None], shN, sh_degree)

    @classmethod
    def random_in_sphere(cls, n: int, radius: float = 1.0, center=(0.0, 0.0, 0.0), sh_degree: int = 3,
                         seed: int = 0) -> GaussianModel:  # fmt: skip
        """``n`` Gaussians uniform in a ball, with random colours."""
        g = torch.Generator().manual_seed(seed)
        d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
        r = radius * torch.rand(n, 1, generator=g) ** (1 / 3)
        pts = torch.tensor(center, dtype=torch.float32) + d * r
        return cls.from_points(pts, torch.rand(n, 3, generator=g), sh_degree=sh_degree)

    # -- activated values ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def scales(self) -> Tensor:
        return torch.exp(self.log_scales)

    @property
    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)

    @property
    def sh(self) -> Tensor:
        """All SH coefficients ``[N, K, 3]``."""
        return torch.cat([self.sh0, self.shN], 1)

    def covariances(self) -> Tensor:
        """World-space covariances ``[N, 3, 3]`` = R S S^T R^T."""
        return covariance(self.quats, self.scales)

    def parameter_dict(self) -> dict[str, nn.Parameter]:
        return {"means": self.means, "log_scales": self.log_scales, "quats": self.quats,
                "opacity_logits": self.opacity_logits, "sh0": self.sh0, "shN": self.shN}  # fmt: skip

    def replace(self, **tensors: Tensor) -> None:
        """Swap parameters for new tensors (densification changes N)."""
        for name, t in tensors.items():
            setattr(self, name, nn.Parameter(t.detach().contiguous()))


def covariance(quats: Tensor, scales: Tensor) -> Tensor:
    """``R(q) diag(s)^2 R(q)^T`` ``[..., 3, 3]`` from quaternions (w, x, y, z; normalised here) and scales."""
    rot = quat_to_matrix(torch.nn.functional.normalize(quats, dim=-1))
    m = rot * scales[..., None, :]
    return m @ m.transpose(-1, -2)


def _knn_mean_distance(points: Tensor, k: int, chunk: int = 4096) -> Tensor:
    out = []
    for i in range(0, points.shape[0], chunk):
        d = torch.cdist(points[i : i + chunk], points)
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(-1))
    return torch.cat(out)
