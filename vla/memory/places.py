"""Places as cells of a grid over 3D positions (the core's :func:`worldline.voxel_indices`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from worldline import voxel_indices


def cell_ids(
    positions: Tensor, origin: Sequence[float], cell: float, grid: Sequence[int], clamp: bool = False
) -> Tensor:
    """Place id ``[...]`` of positions ``[..., 3]`` (metres) on a grid of cubic cells.

    The cell of a point is ``floor((xyz - origin) / cell)`` per axis; ``grid`` gives the number of
    cells along the first ``len(grid)`` axes (2: an xy grid whatever the height; 3: a voxel
    grid), and the id is the row-major index over them, x fastest. Points outside the grid get -1,
    or with ``clamp`` the nearest cell.
    """
    if len(grid) not in (2, 3) or any(int(n) < 1 for n in grid):
        raise ValueError(f"grid: expected 2 or 3 positive cell counts, got {list(grid)}")
    idx = voxel_indices(positions, cell, origin)[..., : len(grid)]
    dims = torch.tensor([int(n) for n in grid], device=idx.device)
    inside = ((idx >= 0) & (idx < dims)).all(-1)
    idx = torch.minimum(idx.clamp_min(0), dims - 1)
    stride = torch.cumprod(torch.cat([torch.ones(1, dtype=dims.dtype, device=dims.device), dims[:-1]]), 0)
    ids = (idx * stride).sum(-1)
    return ids if clamp else torch.where(inside, ids, -1)
