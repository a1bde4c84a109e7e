"""The NeRF field: positional encoding and an MLP from (position, view direction) to (density, RGB).

Positions are encoded after mapping the scene's bounding sphere to the unit ball (``center``,
``radius``), so the encoding's frequencies mean the same thing in every scene.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def positional_encoding(x: Tensor, num_freqs: int, include_input: bool = True) -> Tensor:
    """NeRF's encoding ``[x, sin(2^k x), cos(2^k x)]`` for k < ``num_freqs``: ``[..., D]`` ->
    ``[..., D (1 + 2 num_freqs)]`` (without the input: ``[..., 2 D num_freqs]``)."""
    freqs = 2.0 ** torch.arange(num_freqs, dtype=x.dtype, device=x.device)  # [F]
    xf = x[..., None, :] * freqs[:, None]  # [..., F, D]
    enc = torch.cat([torch.sin(xf), torch.cos(xf)], dim=-1).flatten(-2)  # [..., 2 F D]
    return torch.cat([x, enc], dim=-1) if include_input else enc


def encoded_size(dim: int, num_freqs: int, include_input: bool = True) -> int:
    return dim * (2 * num_freqs + int(include_input))


class NeRFField(nn.Module):
    """The NeRF MLP (Mildenhall et al. 2020): ``depth`` ReLU layers of ``width`` on PE(x), the
    encoding re-entering at each layer in ``skips``; density from the trunk; colour from a
    ``width // 2`` layer on the trunk's feature and PE(d).

    ``forward(points [..., 3], dirs [..., 3]) -> (sigma_raw [...], rgb [..., 3])``: the density is
    returned before its ReLU (the renderer applies it, ProNeRF adds its offset first), colour
    after a sigmoid.
    """

    def __init__(
        self,
        depth: int = 8,
        width: int = 256,
        skips: tuple[int, ...] = (4,),
        pos_freqs: int = 10,
        dir_freqs: int = 4,
        center: tuple[float, float, float] = (0.0, 0.0, 0.0),
        radius: float = 1.0,
    ):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"field: depth and width must be >= 1, got depth={depth}, width={width}")
        bad = [s for s in skips if not 0 < s < depth]
        if bad:
            raise ValueError(f"field.skips: layers {bad} are not inside 1..{depth - 1}")
        if radius <= 0:
            raise ValueError(f"field.radius: expected > 0, got {radius}")
        self.pos_freqs, self.dir_freqs, self.skips = pos_freqs, dir_freqs, tuple(skips)
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32))
        self.register_buffer("radius", torch.tensor(float(radius)))
        pin, din = encoded_size(3, pos_freqs), encoded_size(3, dir_freqs)
        layers = []
        for i in range(depth):
            fan_in = pin if i == 0 else width + (pin if i in self.skips else 0)
            layers.append(nn.Linear(fan_in, width))
        self.trunk = nn.ModuleList(layers)
        self.sigma = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.color = nn.Sequential(nn.Linear(width + din, width // 2), nn.ReLU(), nn.Linear(width // 2, 3))

    def forward(self, points: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
        x = (points - self.center) / self.radius
        pe = positional_encoding(x, self.pos_freqs)
        h = pe
        for i, layer in enumerate(self.trunk):
            if i in self.skips:
                h = torch.cat([h, pe], dim=-1)
            h = torch.relu(layer(h))
        sigma = self.sigma(h)[..., 0]
        de = positional_encoding(dirs, self.dir_freqs).expand(*h.shape[:-1], -1)
        rgb = torch.sigmoid(self.color(torch.cat([self.feature(h), de], dim=-1)))
        return sigma, rgb
