"""Adaptive density control (3DGS): clone small and split large Gaussians whose accumulated
screen-space gradient is high, prune transparent and oversized ones, and reset opacities
periodically. Written from the paper with gsplat's ``DefaultStrategy`` defaults as the reference
values (gsplat 1.5.3's own opacity reset never fires: ``step % reset_every == 0 & step > 0``
parses as a chained comparison ending in ``0 > 0``; here the reset is ``step % reset_every == 0
and step > 0``).

The optimizer is one Adam with a parameter group per named parameter; when Gaussians are added
or removed its moment estimates follow them (zero for clones and new split halves, as gsplat does;
dropped for pruned ones), as in gsplat's ``ops``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from render.gaussians.model import GaussianModel
from worldline.transforms import quat_to_matrix


@dataclass
class DensifyConfig:
    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    """clone below this size, split above it (fraction of the scene scale)"""
    prune_scale3d: float = 0.1
    """prune Gaussians larger than this (fraction of the scene scale), after the first reset"""
    refine_start_iter: int = 500
    refine_stop_iter: int = 15000
    refine_every: int = 100
    reset_every: int = 3000
    pause_refine_after_reset: int = 0
    split_samples: int = 2
    split_shrink: float = 1.6


class DensifyState:
    """Accumulated screen-space gradient norms and visibility counts per Gaussian."""

    def __init__(self, n: int, device=None):
        self.grad2d = torch.zeros(n, device=device)
        self.count = torch.zeros(n, device=device)

    def update(self, means2d: Tensor, radii: Tensor, width: int, height: int) -> None:
        """After backward: ``means2d`` ``[C, N, 2]`` (with .grad) and ``radii`` ``[C, N]`` of the step."""
        grad = means2d.grad
        if grad is None:
            return
        grad = grad.detach().clone()
        c = grad.shape[0]
        grad[..., 0] *= width / 2.0 * c  # pixels -> normalised device units, per camera batch (gsplat)
        grad[..., 1] *= height / 2.0 * c
        visible = radii > 0
        norms = torch.where(visible, grad.norm(dim=-1).nan_to_num(0.0, 0.0, 0.0), 0.0)
        self.grad2d += norms.sum(0)
        self.count += visible.sum(0).to(self.count.dtype)

    def select(self, index: Tensor) -> None:
        self.grad2d, self.count = self.grad2d[index], self.count[index]

    def reset(self, n: int) -> None:
        self.grad2d = torch.zeros(n, device=self.grad2d.device)
        self.count = torch.zeros(n, device=self.count.device)


def make_optimizer(model: GaussianModel, lrs: dict[str, float]) -> torch.optim.Adam:
    groups = [{"params": [p], "lr": lrs[name], "name": name} for name, p in model.parameter_dict().items()]
    return torch.optim.Adam(groups, eps=1e-15)


def _edit(model: GaussianModel, opt: torch.optim.Adam, fn_param, fn_state) -> None:
    """Replace every parameter by ``fn_param(name, tensor)`` and its Adam moments by ``fn_state``."""
    new = {}
    per_gaussian = set(model.parameter_dict())
    for group in opt.param_groups:
        name = group["name"]
        if name not in per_gaussian:  # e.g. a learned background: not one row per Gaussian
            continue
        old = group["params"][0]
        p = torch.nn.Parameter(fn_param(name, old.detach()))
        state = opt.state.pop(old, None)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = fn_state(state[key])
            opt.state[p] = state
        group["params"] = [p]
        new[name] = p
    for name, p in new.items():
        setattr(model, name, p)


def duplicate(model: GaussianModel, opt, mask: Tensor) -> None:
    """Clone: append exact copies of the masked Gaussians (zero moments for the copies)."""
    idx = torch.nonzero(mask)[:, 0]
    _edit(model, opt, lambda _, t: torch.cat([t, t[idx]]), lambda s: torch.cat([s, torch.zeros_like(s[idx])]))


def split(model: GaussianModel, opt, mask: Tensor, samples: int = 2, shrink: float = 1.6, generator=None) -> None:
    """Split: replace each masked Gaussian by ``samples`` drawn from it, scales divided by ``shrink``."""
    idx = torch.nonzero(mask)[:, 0]
    rest = torch.nonzero(~mask)[:, 0]
    scales = model.scales.detach()[idx]
    rot = quat_to_matrix(torch.nn.functional.normalize(model.quats.detach()[idx], dim=-1))
    noise = torch.randn(samples, len(idx), 3, generator=generator).to(scales.device)  # CPU generator
    offsets = torch.einsum("nij,snj->sni", rot, scales * noise)  # [S, M, 3]

    def param(name: str, t: Tensor) -> Tensor:
        if name == "means":
            born = (t[idx][None] + offsets).reshape(-1, 3)
        elif name == "log_scales":
            born = (t[idx] - math.log(shrink)).repeat(samples, 1)
        else:
            born = t[idx].repeat(samples, *([1] * (t.ndim - 1)))
        return torch.cat([t[rest], born])

    _edit(
        model,
        opt,
        param,
        lambda s: torch.cat([s[rest], torch.zeros_like(s[idx]).repeat(samples, *([1] * (s.ndim - 1)))]),
    )


def prune(model: GaussianModel, opt, mask: Tensor) -> None:
    keep = torch.nonzero(~mask)[:, 0]
    _edit(model, opt, lambda _, t: t[keep], lambda s: s[keep])


def reset_opacity(model: GaussianModel, opt, value: float) -> None:
    """Clamp opacities to at most ``value`` and zero their Adam moments."""
    logit = math.log(value / (1 - value))
    for group in opt.param_groups:
        if group["name"] == "opacity_logits":
            p = group["params"][0]
            with torch.no_grad():
                p.clamp_(max=logit)
            state = opt.state.get(p)
            if state:
                state["exp_avg"].zero_()
                state["exp_avg_sq"].zero_()


def refine_step(model: GaussianModel, opt, state: DensifyState, step: int, cfg: DensifyConfig,
                scene_scale: float, generator=None) -> dict[str, int]:  # fmt: skip
    """Call after ``opt.step()`` at every training step (1-based); returns what changed."""
    info = {"cloned": 0, "split": 0, "pruned": 0, "reset": 0}
    if (step < cfg.refine_stop_iter and step > cfg.refine_start_iter and step % cfg.refine_every == 0
            and step % cfg.reset_every >= cfg.pause_refine_after_reset):  # fmt: skip
        avg = state.grad2d / state.count.clamp_min(1)
        high = avg > cfg.grow_grad2d
        small = model.scales.detach().amax(-1) <= cfg.grow_scale3d * scene_scale
        clone_mask, split_mask = high & small, high & ~small
        n0 = len(model)
        duplicate(model, opt, clone_mask)
        split_mask = torch.cat([split_mask, torch.zeros(len(model) - n0, dtype=torch.bool, device=split_mask.device)])
        split(model, opt, split_mask, cfg.split_samples, cfg.split_shrink, generator)
        info["cloned"], info["split"] = int(clone_mask.sum()), int(split_mask.sum())
        bad = model.opacities.detach() < cfg.prune_opa
        bad |= ~torch.stack([torch.isfinite(p.detach()).reshape(len(model), -1).all(-1)
                             for p in model.parameter_dict().values()]).all(0)  # fmt: skip
        if step > cfg.reset_every:
            bad |= model.scales.detach().amax(-1) > cfg.prune_scale3d * scene_scale
        prune(model, opt, bad)
        info["pruned"] = int(bad.sum())
        state.reset(len(model))
    if step < cfg.refine_stop_iter and step % cfg.reset_every == 0 and step > 0:
        reset_opacity(model, opt, 2 * cfg.prune_opa)
        info["reset"] = 1
    return info
