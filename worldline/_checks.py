"""Argument validation shared by the core: every check raises ValueError naming the argument."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def as_tensor(name: str, value, *, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """Convert ``value`` to a floating tensor, keeping an existing float dtype and device."""
    if isinstance(value, Tensor):
        t = value
    else:
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name}: cannot convert {type(value).__name__} to a tensor ({exc})") from None
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if device is not None:
        t = t.to(device)
    return t


def check_trailing(name: str, t: Tensor, trailing: Sequence[int | None]) -> None:
    """Require ``t.shape`` to end with ``trailing`` (``None`` matches any size)."""
    n = len(trailing)
    ok = t.ndim >= n and all(want is None or got == want for got, want in zip(t.shape[t.ndim - n :], trailing))
    if not ok:
        want = "[..., " + ", ".join("*" if d is None else str(d) for d in trailing) + "]"
        raise ValueError(f"{name}: expected shape {want}, got {list(t.shape)}")


def check_finite(name: str, t: Tensor) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).sum().item()
        raise ValueError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")


def broadcast_batch(**shapes: Sequence[int]) -> torch.Size:
    """Broadcast named batch shapes; the error names every argument and its shape."""
    try:
        return torch.broadcast_shapes(*[torch.Size(s) for s in shapes.values()])
    except RuntimeError:
        desc = ", ".join(f"{k} batch {list(v)}" for k, v in shapes.items())
        raise ValueError(f"batch shapes do not broadcast: {desc}") from None


def check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value
