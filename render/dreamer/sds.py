"""Score distillation sampling (SDS) and its noise-level schedules.

SDS (DreamFusion) pushes a differentiable render ``x`` towards images a frozen diffusion prior finds
likely for the prompt: noise ``x`` to ``x_t = sqrt(abar_t) x + sqrt(1 - abar_t) eps``, let the prior
predict the noise with classifier-free guidance, and follow ``w(t) (eps_hat - eps)``, skipping the
U-Net's Jacobian.

StableDreamer's observation: that gradient is exactly the gradient of an L2 reconstruction loss
against the prior's one-step denoised estimate
``x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)``, because
``x - x0_hat = sqrt((1 - abar_t) / abar_t) (eps_hat - eps)``. Large t asks for a coarse, blurry
reconstruction (geometry), small t for fine detail; so t should fall over training
(:class:`TimeSchedule`), rather than be drawn from a fixed range throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SDSOutput", "TimeSchedule", "WEIGHTINGS", "score_distillation_loss", "sds_weight", "x0_reconstruction_loss"]

WEIGHTINGS = ("sds", "uniform", "fantasia")
"""``sds``: w = 1 - abar_t (DreamFusion, the default); ``uniform``: w = 1; ``fantasia``:
w = sqrt(abar_t) (1 - abar_t) (Fantasia3D)."""


def sds_weight(alphas_cumprod_t: Tensor, weighting: str = "sds") -> Tensor:
    """w(t) for ``abar_t`` (any shape)."""
    a = alphas_cumprod_t
    if weighting == "sds":
        return 1.0 - a
    if weighting == "uniform":
        return torch.ones_like(a)
    if weighting == "fantasia":
        return a.sqrt() * (1.0 - a)
    raise ValueError(f"weighting: expected one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


@dataclass
class SDSOutput:
    loss: Tensor
    """0.5 ||x - (x - grad).detach()||^2 / B: its gradient with respect to x is grad / B"""
    grad: Tensor
    """w(t) (eps_hat - eps), NaNs replaced, optionally clipped; ``[B, C, H, W]``"""
    t: Tensor
    noise: Tensor
    x_t: Tensor
    eps_pred: Tensor
    x0_pred: Tensor
    """the one-step denoised estimate (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar)"""


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x).reshape(-1, *([1] * (x.ndim - 1)))


def score_distillation_loss(
    x: Tensor,
    predict_noise: Callable[[Tensor, Tensor], Tensor],
    alphas_cumprod: Tensor,
    t: Tensor,
    noise: Tensor | None = None,
    weighting: str = "sds",
    grad_clip: float | None = None,
) -> SDSOutput:
    """SDS on ``x`` ``[B, C, H, W]`` (in the prior's space: pixels in [-1, 1] or latents).

    ``predict_noise(x_t, t) -> eps_hat`` is the guided prediction (the prior with the prompt and
    classifier-free guidance already bound); ``alphas_cumprod`` ``[T]`` is the prior's schedule;
    ``t`` ``[B]`` integer timesteps; ``noise`` defaults to a fresh standard normal. The prior runs
    without gradient; only ``x`` receives one."""
    if x.ndim != 4:
        raise ValueError(f"x: expected [B, C, H, W], got shape {tuple(x.shape)}")
    t = torch.as_tensor(t, device=x.device).long().reshape(-1)
    if t.numel() not in (1, x.shape[0]):
        raise ValueError(f"t: expected 1 or {x.shape[0]} timesteps (the batch), got {t.numel()}")
    t = t.expand(x.shape[0])
    if int(t.min()) < 0 or int(t.max()) >= alphas_cumprod.shape[0]:
        raise ValueError(f"t: timesteps must lie in [0, {alphas_cumprod.shape[0] - 1}], got {t.tolist()}")
    if noise is None:
        noise = torch.randn_like(x)
    abar = _bcast(alphas_cumprod.to(x.device)[t], x)
    with torch.no_grad():
        x_t = abar.sqrt() * x.detach() + (1.0 - abar).sqrt() * noise
        eps_pred = predict_noise(x_t, t).to(x)
        x0_pred = (x_t - (1.0 - abar).sqrt() * eps_pred) / abar.sqrt()
        grad = _bcast(sds_weight(alphas_cumprod.to(x.device)[t], weighting), x) * (eps_pred - noise)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if grad_clip is not None:
            grad = grad.clamp(-grad_clip, grad_clip)
    target = (x - grad).detach()
    loss = 0.5 * ((x - target) ** 2).sum() / x.shape[0]
    return SDSOutput(loss, grad, t, noise, x_t, eps_pred, x0_pred)


def x0_reconstruction_loss(x: Tensor, x0_pred: Tensor, alphas_cumprod_t: Tensor, weighting: str = "sds") -> Tensor:
    """The equivalent form: 0.5 w(t) sqrt(abar / (1 - abar)) ||x - x0_hat||^2 / B. Its gradient
    with respect to ``x`` equals :func:`score_distillation_loss`'s (without clipping): since
    x - x0_hat = sqrt((1 - abar) / abar) (eps_hat - eps), the weight turns it back into
    w(t) (eps_hat - eps)."""
    abar = _bcast(alphas_cumprod_t, x)
    scale = _bcast(sds_weight(alphas_cumprod_t, weighting), x) * (abar / (1.0 - abar)).sqrt()
    return 0.5 * (scale * (x - x0_pred.detach()) ** 2).sum() / x.shape[0]


SCHEDULES = ("linear", "sqrt", "step", "fixed")


@dataclass
class TimeSchedule:
    """The noise level over training, as fractions of the prior's T steps.

    t is drawn uniformly from ``[t_min, t_max(progress)]``; ``t_max`` falls from ``start`` to
    ``end`` as ``progress`` goes 0 -> 1:

    - ``linear``: straight down, as DreamGaussian anneals (0.98 -> 0.02);
    - ``sqrt``: t_max = start - (start - end) sqrt(progress): fast early, slow late;
    - ``step``: piecewise constant, from ``start`` down to ``end`` in ``steps`` equal stages;
    - ``fixed``: no annealing, t in [t_min, start] throughout (the DreamFusion baseline).

    ``t_min`` defaults to ``end``; at the end of a linear schedule t = t_min."""

    kind: str = "linear"
    start: float = 0.98
    end: float = 0.02
    t_min: float | None = None
    steps: int = 4

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"time schedule: expected one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if not 0.0 <= self.end <= self.start <= 1.0:
            raise ValueError(f"time schedule: need 0 <= end <= start <= 1, got start={self.start} end={self.end}")
        if self.steps < 1:
            raise ValueError(f"time schedule: steps must be >= 1, got {self.steps}")
        if self.t_min is not None and not 0.0 <= self.t_min <= self.start:
            raise ValueError(f"time schedule: t_min must be in [0, start={self.start}], got {self.t_min}")

    @property
    def low(self) -> float:
        return self.end if self.t_min is None else self.t_min

    def t_max(self, progress: float) -> float:
        p = min(max(float(progress), 0.0), 1.0)
        s, e = self.start, self.end
        if self.kind == "linear":
            hi = s - (s - e) * p
        elif self.kind == "sqrt":
            hi = s - (s - e) * math.sqrt(p)
        elif self.kind == "step":
            stage = min(int(p * self.steps), self.steps - 1)
            hi = s - (s - e) * stage / max(self.steps - 1, 1)
        else:
            hi = s
        return max(hi, self.low)

    def sample(
        self, progress: float, n_timesteps: int, batch: int = 1, generator: torch.Generator | None = None
    ) -> Tensor:
        """``batch`` integer timesteps in [round(t_min T), round(t_max(progress) T)]."""
        lo = int(round(self.low * (n_timesteps - 1)))
        hi = max(int(round(self.t_max(progress) * (n_timesteps - 1))), lo)
        return torch.randint(lo, hi + 1, (batch,), generator=generator)
