"""Place and time embeddings added to memory tokens (Spatially-Aware Transformer, Cho et al. 2024).

An event in memory is an observation embedding with the time it happened and the place where it
happened. SAT adds a *place* embedding to each memory token next to the usual time embedding; the
place can be a discrete id (a room, a grid cell) or a continuous position. Three forms:

- ``sinusoidal``: the transformer position code of the integer place id (no parameters, any id);
- ``learned``: a table with one vector per place id (``max_places`` rows);
- ``fourier``: Fourier features of a 3D position normalised to a box, then a linear map (places
  that are near in space get similar codes, and unseen positions still have one).

Time is the step index of the event, encoded sinusoidally and mapped by a linear layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from vla.spatial import fourier_features, sinusoid

PlaceKind = Literal["sinusoidal", "learned", "fourier"]


class PlaceEmbedding(nn.Module):
    """Place -> ``[..., dim]``.

    Args:
        dim: embedding width.
        kind: ``sinusoidal`` | ``learned`` (integer ids) or ``fourier`` (positions ``[..., 3]``).
        max_places: rows of the learned table (ids must be < this).
        low, high: the box (metres) that ``fourier`` maps to [-1, 1].
        num_freqs: Fourier frequencies per axis.
    """

    def __init__(
        self,
        dim: int,
        kind: PlaceKind = "sinusoidal",
        max_places: int = 64,
        low: Sequence[float] = (-1.0, -1.0, -1.0),
        high: Sequence[float] = (1.0, 1.0, 1.0),
        num_freqs: int = 6,
    ):
        super().__init__()
        if kind not in ("sinusoidal", "learned", "fourier"):
            raise ValueError(f"place embedding: unknown kind {kind!r}; expected sinusoidal, learned or fourier")
        self.dim, self.kind, self.max_places, self.num_freqs = dim, kind, max_places, num_freqs
        if kind == "learned":
            self.table = nn.Embedding(max_places, dim)
            nn.init.normal_(self.table.weight, std=1.0)  # the scale of layer-normed content tokens
        elif kind == "sinusoidal":
            self.proj = nn.Linear(dim, dim)
        elif kind == "fourier":
            self.register_buffer("low", torch.tensor(low, dtype=torch.float32), persistent=False)
            self.register_buffer("high", torch.tensor(high, dtype=torch.float32), persistent=False)
            self.proj = nn.Linear(3 * (1 + 2 * num_freqs), dim)

    @property
    def uses_positions(self) -> bool:
        """True: the embedding reads 3D positions ``[..., 3]``; False: integer place ids ``[...]``."""
        return self.kind == "fourier"

    def forward(self, place: Tensor) -> Tensor:
        """``place``: ids ``[...]`` (int) or positions ``[..., 3]`` metres (``fourier``) -> ``[..., dim]``."""
        if self.kind == "fourier":
            if place.shape[-1:] != (3,):
                raise ValueError(f"place: the fourier embedding reads positions [..., 3], got {list(place.shape)}")
            x = (place.float() - self.low) / (self.high - self.low) * 2 - 1
            return self.proj(fourier_features(x.clamp(-1.5, 1.5), self.num_freqs))
        if place.is_floating_point():
            raise ValueError(f"place: the {self.kind} embedding reads integer place ids, got {place.dtype}")
        if (place < 0).any():
            raise ValueError(f"place: ids must be >= 0, got {int(place.min())}")
        if self.kind == "learned":
            if (place >= self.max_places).any():
                raise ValueError(f"place: id {int(place.max())} >= max_places={self.max_places}")
            return self.table(place)
        return self.proj(sinusoid(place, self.dim))


class TimeEmbedding(nn.Module):
    """Step index ``[...]`` -> ``[..., dim]`` (sinusoid, then a linear map)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(dim, dim)

    def forward(self, time: Tensor) -> Tensor:
        return self.proj(sinusoid(time, self.dim))
