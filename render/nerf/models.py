"""The two ray renderers trained and evaluated by the same code: vanilla hierarchical NeRF and
ProNeRF (Gonzalez Bello et al., "ProNeRF: Learning Efficient Projection-Aware Ray Sampling for
Fine-Grained Implicit Neural Radiance Fields").

Both map rays (origins ``[R, 3]``, unit directions ``[R, 3]``, world metres) to colours and count
their field evaluations; both train through ``training_step``. ProNeRF additionally needs the
training views (images and :class:`worldline.Camera`), set with :meth:`ProNeRF.set_views`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render.nerf.config import NerfConfig
from render.nerf.fields import NeRFField
from render.nerf.volume import alpha_from_density, composite, intervals, sample_pdf, stratified
from worldline import Camera


class Scene:
    """What a model knows of its scene: ray bounds, a bounding sphere and the background colour."""

    def __init__(self, near: float, far: float, center, radius: float, background):
        self.near, self.far, self.radius = float(near), float(far), float(radius)
        self.center = tuple(float(c) for c in center)
        self.background = tuple(float(b) for b in background)

    def to_dict(self) -> dict:
        return {"near": self.near, "far": self.far, "center": list(self.center), "radius": self.radius,
                "background": list(self.background)}  # fmt: skip


def _field(cfg: NerfConfig, scene: Scene) -> NeRFField:
    return NeRFField(cfg.field_depth, cfg.field_width, cfg.field_skips, cfg.pos_freqs, cfg.dir_freqs,
                     scene.center, scene.radius)  # fmt: skip


class VanillaNeRF(nn.Module):
    """NeRF's hierarchical sampling: a coarse field at ``coarse_samples`` stratified depths, a fine
    field at those plus ``fine_samples`` drawn from the coarse weights (64 + 128 in the paper, so
    64 + 192 field evaluations per ray)."""

    def __init__(self, cfg: NerfConfig, scene: Scene):
        super().__init__()
        self.cfg, self.scene = cfg, scene
        self.coarse = _field(cfg, scene)
        self.fine = _field(cfg, scene)
        self.register_buffer("bg", torch.tensor(scene.background))

    @property
    def samples_per_ray(self) -> int:
        return self.cfg.coarse_samples + self.cfg.coarse_samples + self.cfg.fine_samples

    def _shade(self, field: NeRFField, o: Tensor, d: Tensor, t: Tensor) -> dict[str, Tensor]:
        pts = o[:, None] + d[:, None] * t[..., None]
        sigma, rgb = field(pts, d[:, None])
        alpha = alpha_from_density(sigma, intervals(t, self.scene.far))
        return composite(alpha, rgb, t, self.bg)

    def forward(self, rays_o: Tensor, rays_d: Tensor, perturb: bool = False) -> dict[str, Tensor]:
        c, s = self.cfg, self.scene
        t_c = stratified(s.near, s.far, c.coarse_samples, rays_o.shape[:1], perturb, device=rays_o.device)
        coarse = self._shade(self.coarse, rays_o, rays_d, t_c)
        mids = 0.5 * (t_c[..., 1:] + t_c[..., :-1])
        bins = torch.cat([t_c[..., :1], mids, torch.full_like(t_c[..., :1], s.far)], -1)
        t_f = sample_pdf(bins, coarse["weights"].detach(), c.fine_samples, deterministic=not perturb)
        t_all, _ = torch.sort(torch.cat([t_c, t_f.detach()], -1), -1)
        fine = self._shade(self.fine, rays_o, rays_d, t_all)
        return {"rgb": fine["rgb"], "depth": fine["depth"], "acc": fine["acc"], "rgb_coarse": coarse["rgb"]}

    def training_step(self, rays_o: Tensor, rays_d: Tensor, target: Tensor, step: int, **_) -> tuple[Tensor, dict, str]:
        out = self(rays_o, rays_d, perturb=True)
        mse = F.mse_loss(out["rgb"], target)
        loss = mse + F.mse_loss(out["rgb_coarse"], target)
        return loss, {"loss": float(loss.detach()), "mse": float(mse.detach())}, "all"


def plucker(origins: Tensor, dirs: Tensor) -> Tensor:
    """Plücker coordinates ``[..., 6]`` = (d, o x d) of rays with unit directions ``[..., 3]``.

    They do not change when the origin slides along the ray: (o + s d) x d = o x d."""
    return torch.cat([dirs, torch.linalg.cross(origins, dirs)], dim=-1)


def _mlp(fan_in: int, width: int, depth: int, fan_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(fan_in if i == 0 else width, width), nn.ELU()]
    layers.append(nn.Linear(width, fan_out))
    return nn.Sequential(*layers)


def bilinear_lookup(images: Tensor, index: Tensor, uv: Tensor) -> Tensor:
    """Bilinear colours ``[..., 3]`` of images ``[N, H, W, 3]``: image ``index`` ``[...]`` at continuous
    pixel coordinates ``uv`` ``[..., 2]`` (pixel (i, j) centred at (i + 0.5, j + 0.5); edge pixels
    extend to the border)."""
    n, h, w, _ = images.shape
    x = uv[..., 0] - 0.5
    y = uv[..., 1] - 0.5
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    flat = images.reshape(n * h * w, -1)
    base = index * (h * w)

    def at(xi, yi):
        xi = xi.long().clamp(0, w - 1)
        yi = yi.long().clamp(0, h - 1)
        return flat[base + yi * w + xi]

    top = at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx
    bottom = at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def neighbour_colours(points: Tensor, views: Tensor, images: Tensor, cameras: Camera) -> tuple[Tensor, Tensor]:
    """Colours of points ``[R, K, 3]`` seen in the views ``views`` ``[R, N]`` (indices into
    ``images`` ``[V, H, W, 3]`` and ``cameras`` ``[V]``), through :meth:`worldline.Camera.project`.

    Returns colours ``[R, N, K, 3]`` and visibility ``[R, N, K]`` (in front of the camera and
    inside the image). A colour a view does not see is replaced by the mean over the views that
    see that point (0 when none does)."""
    shape = cameras.batch_shape
    K, w2c = cameras.K.expand(*shape, 3, 3), cameras.w2c.expand(*shape, 4, 4)
    cams = Camera(K[views], w2c[views], cameras.width, cameras.height)  # batch [R, N]
    uv, z = cams.project(points[:, None].expand(-1, views.shape[1], -1, -1))  # [R, N, K, 2], [R, N, K]
    visible = cams.in_image(uv) & (z > 0)
    colours = bilinear_lookup(images, views[..., None].expand_as(z), uv)
    vis = visible[..., None].to(colours.dtype)
    mean = (colours * vis).sum(1, keepdim=True) / vis.sum(1, keepdim=True).clamp_min(1.0)
    return torch.where(visible[..., None], colours, mean.expand_as(colours)), visible


class ProNeRF(nn.Module):
    """ProNeRF: a sampler network places K samples per ray, a refine network moves them using the
    colours they project to in N neighbouring training views, and the field is evaluated only
    at those K points.

    Sampler input: (d, o' x d, o' + t_j d) at ``ray_points`` fixed depths t_j in [near, far], with
    o' the origin in the field's normalised frame. The Plücker part (d, o' x d) is the same at
    every point (it is the ray's), so, as in the reference code's Blender variant, the points'
    positions are appended. Output (ELU MLP): K sorted depths in [near, far] (sigmoids), per-sample
    density offsets and multipliers, and an auxiliary RGB.

    Refine input: the sampler's K points, encoded the same way, and their colours in the N views.
    Output: a depth inside each sample's bin, a 3D offset (at most ``offset_scale`` x the scene
    radius) and an RGB."""

    def __init__(self, cfg: NerfConfig, scene: Scene):
        super().__init__()
        self.cfg, self.scene = cfg, scene
        k, n = cfg.samples, cfg.neighbours
        self.field = _field(cfg, scene)
        self.sampler = _mlp(9 * cfg.ray_points, cfg.sampler_width, cfg.sampler_depth, 3 * k + 3)
        self.refine = _mlp(9 * k + 3 * n * k, cfg.refine_width, cfg.refine_depth, 4 * k + 3)
        self.register_buffer("bg", torch.tensor(scene.background))
        self.register_buffer("ray_t", torch.linspace(scene.near, scene.far, cfg.ray_points))
        with torch.no_grad():  # start from evenly spread samples with unmodified densities
            head = self.sampler[-1]
            head.weight.mul_(0.01)
            head.bias.zero_()
            q = (torch.arange(k) + 0.5) / k
            head.bias[:k] = torch.log(q / (1 - q))
            head.bias[2 * k : 3 * k] = 1.0
            self.refine[-1].weight.mul_(0.01)
            self.refine[-1].bias.zero_()
        self.views: tuple[Tensor, Camera] | None = None

    @property
    def samples_per_ray(self) -> int:
        return self.cfg.samples

    def set_views(self, images: Tensor, cameras: Camera) -> None:
        """The training views ``[V, H, W, 3]`` that samples are projected into (not saved in checkpoints)."""
        if images.shape[0] < self.cfg.neighbours + 1:
            raise ValueError(f"neighbours: {self.cfg.neighbours} neighbour views need at least "
                             f"{self.cfg.neighbours + 1} training views, got {images.shape[0]}")  # fmt: skip
        self.views = (images, cameras)

    def _encode(self, o: Tensor, d: Tensor, t: Tensor) -> Tensor:
        """[R, S] depths -> [R, S * 9] (d, o' x d, o' + t d) in the normalised frame."""
        o_n = (o - self.field.center) / self.field.radius
        pl = plucker(o_n, d)  # [R, 6]
        pts = o_n[:, None] + d[:, None] * (t[..., None] / self.field.radius)
        return torch.cat([pl[:, None].expand(-1, t.shape[-1], -1), pts], -1).flatten(1)

    def nearest_views(self, centres: Tensor) -> Tensor:
        """Indices ``[R, N]`` of the N training cameras nearest to each centre ``[R, 3]`` (test time)."""
        _, cams = self.views
        dist = torch.cdist(centres, cams.center.to(centres))
        return dist.topk(self.cfg.neighbours, dim=-1, largest=False).indices

    def random_views(self, own: Tensor, generator=None) -> Tensor:
        """N random training views ``[R, N]`` other than each ray's own view ``own`` ``[R]`` (training)."""
        v = self.views[0].shape[0]
        scores = torch.rand(own.shape[0], v, device=own.device, generator=generator)
        scores.scatter_(1, own[:, None], 2.0)  # never pick the ray's own image
        return scores.topk(self.cfg.neighbours, dim=-1, largest=False).indices

    def propose(self, o: Tensor, d: Tensor, views: Tensor) -> dict[str, Tensor]:
        """Sampler + projection + refine: the K refined sample depths and points with the outputs
        the losses and the density modulation use."""
        c, s = self.cfg, self.scene
        k = c.samples
        out = self.sampler(self._encode(o, d, self.ray_t.expand(o.shape[0], -1)))
        t = s.near + torch.sigmoid(out[:, :k]) * (s.far - s.near)
        t, order = torch.sort(t, -1)
        d_add = out[:, k : 2 * k].gather(-1, order)
        d_mul = out[:, 2 * k : 3 * k].gather(-1, order)
        aux_rgb = torch.sigmoid(out[:, 3 * k :])
        pts = o[:, None] + d[:, None] * t[..., None]
        with torch.no_grad():  # colours guide the refine net; no gradient flows through the images
            images, cams = self.views
            colours, _ = neighbour_colours(pts.detach(), views, images, cams)  # [R, N, K, 3]
        feats = torch.cat([self._encode(o, d, t), colours.permute(0, 2, 1, 3).flatten(1)], -1)
        r = self.refine(feats)
        u = torch.sigmoid(r[:, :k])
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        lower = torch.cat([0.5 * (s.near + t[:, :1]), mids], -1)
        upper = torch.cat([mids, 0.5 * (s.far + t[:, -1:])], -1)
        t_ref = lower + (upper - lower) * u
        offset = torch.tanh(r[:, k : 4 * k]).view(-1, k, 3) * (c.offset_scale * s.radius)
        refine_rgb = torch.sigmoid(r[:, 4 * k :])
        return {"t": t_ref, "offset": offset, "d_add": d_add, "d_mul": d_mul, "aux_rgb": aux_rgb,
                "refine_rgb": refine_rgb}  # fmt: skip

    def _shade(self, o, d, t, offset=None, d_add=None, d_mul=None) -> dict[str, Tensor]:
        pts = o[:, None] + d[:, None] * t[..., None]
        if offset is not None:
            pts = pts + offset
        sigma, rgb = self.field(pts, d[:, None])
        alpha = alpha_from_density(sigma, intervals(t, self.scene.far), d_add, d_mul)
        return composite(alpha, rgb, t, self.bg)

    def _views_for(self, o: Tensor, own: Tensor | None, generator=None) -> Tensor:
        if self.views is None:
            raise RuntimeError("ProNeRF: call set_views(images, cameras) with the training views first")
        return self.nearest_views(o) if own is None else self.random_views(own, generator)

    def forward(self, rays_o: Tensor, rays_d: Tensor, own: Tensor | None = None, jitter: bool = False) -> dict:
        """Render rays with the K refined samples (test time: ``own`` None, the 4 nearest views)."""
        p = self.propose(rays_o, rays_d, self._views_for(rays_o, own))
        t = self._jitter(p["t"]) if jitter else p["t"]
        out = self._shade(rays_o, rays_d, t, p["offset"], p["d_add"], p["d_mul"])
        return {**out, "aux_rgb": p["aux_rgb"], "refine_rgb": p["refine_rgb"], "t": t}

    def _gaps(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s = self.scene
        nxt = torch.cat([t[:, 1:], torch.full_like(t[:, :1], s.far)], -1) - t
        prv = t - torch.cat([torch.full_like(t[:, :1], s.near), t[:, :-1]], -1)
        return nxt.abs(), prv.abs()

    def _jitter(self, t: Tensor) -> Tensor:
        """Half-normal jitter: each sample moves toward its next or previous neighbour by
        min(|N(0, 1)| / 5, 0.99) of the gap (the direction a coin flip per ray)."""
        nxt, prv = self._gaps(t)
        eps = (torch.randn_like(t).abs() / 5).clamp(max=0.99)
        up = torch.rand_like(t[:, :1]) < 0.5
        return torch.sort(torch.where(up, t + eps * nxt, t - eps * prv), -1)[0]

    def _densify(self, t: Tensor, factor: int) -> Tensor:
        """Exploration: ``factor`` evenly spaced samples from each sample toward its next (or, by a
        coin flip per ray, previous) neighbour: [R, K] -> [R, K * factor]."""
        if factor <= 1:
            return t
        nxt, prv = self._gaps(t)
        m = torch.linspace(0.0, 1.0 - 1.0 / factor, factor, device=t.device)
        up = (torch.rand_like(t[:, :1]) < 0.5)[..., None]
        dense = torch.where(up, t[..., None] + m * nxt[..., None], t[..., None] - m * prv[..., None])
        return torch.sort(dense.flatten(1), -1)[0]

    @staticmethod
    def phase(step: int, finetune: bool) -> str:
        """Stage 1: explore on odd steps, exploit on even steps; stage 2 (``finetune``): finetune."""
        if finetune:
            return "finetune"
        return "explore" if step % 2 == 1 else "exploit"

    def training_step(self, rays_o, rays_d, target, step: int, own: Tensor, finetune: bool = False):
        phase = self.phase(step, finetune)
        if phase == "explore":
            with torch.no_grad():
                p = self.propose(rays_o, rays_d, self._views_for(rays_o, own))
            factor = int(torch.randint(1, max(1, self.cfg.explore_samples // self.cfg.samples) + 1, ()).item())
            t = self._jitter(self._densify(p["t"], factor))
            out = self._shade(rays_o, rays_d, t)
            loss = F.mse_loss(out["rgb"], target)
            return (
                loss,
                {"loss": float(loss.detach()), "mse": float(loss.detach()), "explore_samples": t.shape[1]},
                "field",
            )
        out = self(rays_o, rays_d, own, jitter=phase == "finetune")
        mse = F.mse_loss(out["rgb"], target)
        if phase == "finetune":
            return mse, {"loss": float(mse.detach()), "mse": float(mse.detach())}, "all"
        loss = mse + F.mse_loss(out["refine_rgb"], target) + F.mse_loss(out["aux_rgb"], target)
        return loss, {"loss": float(loss.detach()), "mse": float(mse.detach())}, "all"


def build_model(cfg: NerfConfig, scene: Scene) -> nn.Module:
    return ProNeRF(cfg, scene) if cfg.method == "pronerf" else VanillaNeRF(cfg, scene)


def scene_sphere(cameras: Camera, near: float, far: float) -> tuple[tuple[float, float, float], float]:
    """A bounding sphere for the field's normalisation: centred on the mean of the points at
    mid-range along the cameras' optical axes, radius reaching far-plane points of every axis."""
    c2w = cameras.c2w.reshape(-1, 4, 4).double()
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]
    centre = (centres + axes * 0.5 * (near + far)).mean(0)
    radius = max(
        float((centres + axes * far - centre).norm(dim=-1).max()), float((centres - centre).norm(dim=-1).max())
    )
    return tuple(float(x) for x in centre), max(radius, 1e-3) if math.isfinite(radius) else 1.0
