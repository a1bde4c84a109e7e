"""The built-in prior: a small text-conditioned diffusion model of coloured primitives, trained by
``tools/train_tiny_prior.py`` on renders of :mod:`render.dreamer.scenes` made with our own
rasterizer, and shipped in ``assets/dreamer/`` so that ``render dream`` runs offline on a CPU.

Two variants share one U-Net:

- ``pixel``: 32 x 32 RGB in [-1, 1], the image-space prior (the role of DeepFloyd IF stage I);
- ``latent``: 4 x 16 x 16 latents of :class:`HaarAutoencoder`, a fixed (untrained, linear,
  exactly invertible on its subspace) autoencoder (the role of Stable Diffusion's VAE).

Text conditioning is compositional by construction: the caption is parsed into (colour, shape,
size) slots, each slot has its own embedding table with a "none" entry (the unconditional input
for classifier-free guidance is all "none"), and the sum conditions every residual block (FiLM).
That is what lets the prior render (colour, shape) pairs it never saw together.
``TinyPriorConfig.colour_blocks`` ("up" or "outer": experiments, off in the shipped priors) lets
the colour slot condition only the last two blocks or the last one, so that the blocks which lay
out the object cannot take the shape from the caption's colour.
``TinyPriorConfig.hue_blind`` (those blocks see x_t only as per-pixel channel max and min) and
``TinyPriorConfig.camera_cond`` (the view's elevation and azimuth join the time embedding;
``predict_noise(..., view=)``) are two more experiments, off in the shipped priors; the README's
"Text-to-3D" section reports all of them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from render.dreamer.scenes import (
    COLOURS,
    SHAPES,
    SIZES,
    CameraRanges,
    Prompt,
    camera_angles,
    parse_prompt,
    sample_cameras,
)
from worldline.io import load_weights, save_weights

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "dreamer"
BUILTIN = {"pixel": ASSETS / "tiny_pixel_prior.safetensors", "latent": ASSETS / "tiny_latent_prior.safetensors"}


@dataclass
class TinyPriorConfig:
    space: str = "pixel"
    """"pixel" (3 x 32 x 32) or "latent" (4 x 16 x 16 Haar latents of a 32 x 32 image)"""
    image_size: int = 32
    channels: list[int] = field(default_factory=lambda: [16, 48, 96])
    emb_dim: int = 96
    timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    colour_blocks: str = "all"
    """which residual blocks the colour slot conditions: "all"; "up" (the two blocks after the middle,
    at half and full resolution on the way up); or "outer" (only the last one, at full resolution on
    the way up). The blocks before them, the coarse ones that lay out the object included, see
    time, shape and size only, so the caption's colour cannot select a shape there; the colours
    in x_t still reach them"""
    hue_blind: bool = False
    """the blocks before ``colour_blocks``' (the down path and the middle) see x_t through a
    hue-invariant view only: per pixel, the max and the min over the colour channels (HSV value and
    value x (1 - saturation)), plus the Haar detail channel of a latent; x_t itself enters at the
    last skip connection. With ``colour_blocks`` "up" or "outer" those blocks then get no hue from
    the caption nor, in the pixel prior, from the pixels. Not colour-blind: the named colours differ
    a little in max and min (green's max is 0.75, the others' 0.85-0.92). And not hue-blind in the
    latent prior: its detail channel is a luminance (0.299 R + 0.587 G + 0.114 B) detail, which
    changes with the hue"""
    camera_cond: bool = False
    """condition on the view, (elevation, azimuth) of the camera on its sphere, added to the time
    embedding (the camera embedding of MVDream; DreamFusion's view-dependent prompts in a coarse
    form): a prior that only sees images cannot tell a cube's yaw, so score distillation averages
    over yaws and rounds the cube; with the view given, a cube has one orientation in the world"""

    def __post_init__(self) -> None:
        if self.space not in ("pixel", "latent"):
            raise ValueError(f"space: expected 'pixel' or 'latent', got {self.space!r}")
        if self.colour_blocks not in ("all", "up", "outer"):
            raise ValueError(f"colour_blocks: expected 'all', 'up' or 'outer', got {self.colour_blocks!r}")
        for name in ("hue_blind", "camera_cond"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if self.hue_blind and self.colour_blocks == "all":
            raise ValueError(
                "hue_blind: needs colour_blocks 'up' or 'outer' (the caption's colour would reach the blind blocks)"
            )
        if self.image_size % 8:
            raise ValueError(f"image_size: must be a multiple of 8, got {self.image_size}")

    @property
    def in_channels(self) -> int:
        return 3 if self.space == "pixel" else 4

    @property
    def sample_size(self) -> int:
        return self.image_size if self.space == "pixel" else self.image_size // 2


def ddpm_alphas_cumprod(timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    """The DDPM linear-beta schedule's abar_t, float64 ``[T]``."""
    return torch.cumprod(1.0 - torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64), 0)


class HaarAutoencoder(nn.Module):
    """A fixed 2x2 Haar transform keeping 4 of 12 coefficients per block: the three colour
    channels' block means (LL) and the luminance's diagonal-free detail (LH + HL) / sqrt 2.
    Orthonormal rows, so ``decode(encode(x))`` is the orthogonal projection of x onto that
    subspace and ``encode(decode(z)) == z`` exactly. No parameters."""

    def __init__(self) -> None:
        super().__init__()
        w = torch.zeros(4, 3, 2, 2)
        w[:3, :, :, :] = 0.0
        for c in range(3):
            w[c, c] = 0.5  # LL: sum / 2
        lum = torch.tensor([0.299, 0.587, 0.114])
        lum = lum / lum.norm()
        detail = torch.tensor([[1.0, 0.0], [0.0, -1.0]]) / math.sqrt(2)  # (LH + HL) / sqrt 2 of a 2x2 Haar
        w[3] = lum[:, None, None] * detail
        self.register_buffer("weight", w, persistent=False)

    def encode(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight.to(x), stride=2)

    def decode(self, z: Tensor) -> Tensor:
        return F.conv_transpose2d(z, self.weight.to(z), stride=2)


class CaptionEncoder(nn.Module):
    """(colour, shape, size) slots -> one embedding; index 0 of each table is "none"."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.colour = nn.Embedding(len(COLOURS) + 1, dim)
        self.shape = nn.Embedding(len(SHAPES) + 1, dim)
        self.size = nn.Embedding(len(SIZES) + 1, dim)

    @staticmethod
    def indices(prompts: list[Prompt]) -> Tensor:
        cols, shapes, sizes = list(COLOURS), list(SHAPES), list(SIZES)
        return torch.tensor(
            [
                [
                    0 if p.colour is None else cols.index(p.colour) + 1,
                    0 if p.shape is None else shapes.index(p.shape) + 1,
                    0 if p.size is None else sizes.index(p.size) + 1,
                ]
                for p in prompts
            ]
        )  # fmt: skip

    def forward(self, idx: Tensor, colour: bool = True) -> Tensor:
        """The slots' summed embedding; ``colour=False`` leaves the colour slot out."""
        if colour:  # the shipped priors' order of additions, so their outputs stay bit for bit
            return self.colour(idx[:, 0]) + self.shape(idx[:, 1]) + self.size(idx[:, 2])
        return self.shape(idx[:, 1]) + self.size(idx[:, 2])


def _timestep_embedding(t: Tensor, dim: int) -> Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(a), torch.cos(a)], -1)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, 1)
        h = self.n2(h) * (1 + scale) + shift
        return self.skip(x) + self.c2(F.silu(h))


VIEW_HARMONICS = 4
"""azimuth harmonics of the view embedding (sin / cos of k az, k = 1..4: a cube repeats every 90
degrees), plus sin / cos of the elevation"""


def view_features(view: Tensor) -> Tensor:
    """``[B, 2]`` (elevation, azimuth) in radians -> ``[B, 2 VIEW_HARMONICS + 2]`` Fourier features."""
    k = torch.arange(1, VIEW_HARMONICS + 1, dtype=view.dtype, device=view.device)
    az, el = view[:, 1:2] * k, view[:, :1]
    return torch.cat([az.sin(), az.cos(), el.sin(), el.cos()], -1)


def _check_view(view: Tensor | None, batch: int) -> None:
    if view is None or tuple(view.shape) != (batch, 2):
        got = None if view is None else tuple(view.shape)
        raise ValueError(f"view: a camera-conditioned prior needs [{batch}, 2] (elevation, azimuth), got {got}")


def hue_invariant(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, C - 1, H, W]``: per pixel the max and the min over the first three
    (colour) channels, then the channels after them (a latent's detail channel). Unchanged by any
    permutation of the colour channels, and for a colour by any rotation of its HSV hue: max is the
    value V and min is V (1 - S)."""
    rgb = x[:, :3]
    return torch.cat([rgb.amax(1, keepdim=True), rgb.amin(1, keepdim=True), x[:, 3:]], 1)


class TinyUNet(nn.Module):
    """Three resolutions (s, s/2, s/4), one FiLM residual block per level and side, skip
    connections; predicts the noise eps. ``cfg.colour_blocks`` says which blocks see the colour
    slot (all; u1 and u0; or u0 only)."""

    def __init__(self, cfg: TinyPriorConfig) -> None:
        super().__init__()
        c0, c1, c2 = cfg.channels
        e = cfg.emb_dim
        self.cfg = cfg
        self.time = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.caption = CaptionEncoder(e)
        if cfg.camera_cond:
            self.view = nn.Sequential(nn.Linear(2 * VIEW_HARMONICS + 2, e), nn.SiLU(), nn.Linear(e, e))
        self.inp = nn.Conv2d(cfg.in_channels - 1 if cfg.hue_blind else cfg.in_channels, c0, 3, padding=1)
        if cfg.hue_blind:  # the pixels' colour, added to the last skip connection
            self.colour_in = nn.Conv2d(cfg.in_channels, c0, 3, padding=1)
        self.d0 = _ResBlock(c0, c0, e)
        self.down0 = nn.Conv2d(c0, c1, 3, stride=2, padding=1)
        self.d1 = _ResBlock(c1, c1, e)
        self.down1 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.mid1, self.mid2 = _ResBlock(c2, c2, e), _ResBlock(c2, c2, e)
        self.up1 = nn.Conv2d(c2, c1, 3, padding=1)
        self.u1 = _ResBlock(2 * c1, c1, e)
        self.up0 = nn.Conv2d(c1, c0, 3, padding=1)
        self.u0 = _ResBlock(2 * c0, c0, e)
        self.out = nn.Sequential(nn.GroupNorm(8, c0), nn.SiLU(), nn.Conv2d(c0, cfg.in_channels, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, caption_idx: Tensor, view: Tensor | None = None) -> Tensor:
        temb = self.time(_timestep_embedding(t, self.cfg.emb_dim).to(x.dtype))
        if self.cfg.camera_cond:
            _check_view(view, x.shape[0])
            temb = temb + self.view(view_features(view.to(x.dtype)))
        emb = F.silu(temb + self.caption(caption_idx))
        inner = emb if self.cfg.colour_blocks == "all" else F.silu(temb + self.caption(caption_idx, colour=False))
        h0 = self.d0(self.inp(hue_invariant(x) if self.cfg.hue_blind else x), inner)
        h1 = self.d1(self.down0(h0), inner)
        h = self.mid2(self.mid1(self.down1(h1), inner), inner)
        h = self.u1(torch.cat([self.up1(F.interpolate(h, scale_factor=2.0)), h1], 1),
                    inner if self.cfg.colour_blocks == "outer" else emb)  # fmt: skip
        skip0 = h0 + self.colour_in(x) if self.cfg.hue_blind else h0
        h = self.u0(torch.cat([self.up0(F.interpolate(h, scale_factor=2.0)), skip0], 1), emb)
        return self.out(h)


class TinyPrior(nn.Module):
    """The built-in prior behind the common interface (:class:`render.dreamer.priors.DiffusionPrior`):
    ``encode`` a render, ``predict_noise(x_t, t, text, guidance_scale)``, ``alphas_cumprod``."""

    def __init__(self, cfg: TinyPriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = TinyUNet(cfg)
        self.autoencoder = HaarAutoencoder() if cfg.space == "latent" else None
        self.register_buffer("alphas_cumprod", ddpm_alphas_cumprod(cfg.timesteps, cfg.beta_start, cfg.beta_end),
                             persistent=False)  # fmt: skip

    @property
    def space(self) -> str:
        return self.cfg.space

    @property
    def camera_conditioned(self) -> bool:
        """whether ``predict_noise`` needs ``view`` (``render dream`` then passes its cameras')"""
        return self.cfg.camera_cond

    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    def encode(self, rgb: Tensor) -> Tensor:
        """Renders ``[B, 3, S, S]`` in [0, 1] -> the prior's space (differentiable)."""
        x = rgb * 2.0 - 1.0
        return x if self.autoencoder is None else self.autoencoder.encode(x)

    def decode(self, x: Tensor) -> Tensor:
        """The prior's space -> images in [0, 1]."""
        img = x if self.autoencoder is None else self.autoencoder.decode(x)
        return ((img + 1.0) / 2.0).clamp(0, 1)

    def caption_indices(self, text: str | Prompt | list, batch: int) -> Tensor:
        prompts = text if isinstance(text, list) else [text] * batch
        prompts = [parse_prompt(p) if isinstance(p, str) else p for p in prompts]
        return CaptionEncoder.indices(prompts).to(self.alphas_cumprod.device)

    def predict_noise(
        self,
        x_t: Tensor,
        t: Tensor,
        text: str | Prompt | list,
        guidance_scale: float = 1.0,
        composable: bool = False,
        view: Tensor | None = None,
    ) -> Tensor:
        """eps_hat with classifier-free guidance: eps_u + s (eps_c - eps_u) (s = 1: conditional only).

        ``composable``: guide each caption slot on its own and add the guidance terms,
        eps_u + s sum_i (eps(c_i) - eps_u), with c_i the caption reduced to slot i (its colour, its
        shape, its size): the conjunction of Composable Diffusion (Liu et al., ECCV 2022); at s = 1
        it is the score of p(x) prod_i p(c_i | x). The prior was trained with single slots dropped,
        so it knows "green (any shape)" and "sphere (any colour)" even where it never saw a green
        sphere. With one slot set it is the same as the joint guidance; it costs one U-Net pass
        more per extra slot.

        ``view``: ``[B, 2]`` (elevation, azimuth) of each x_t's camera, radians; required by a
        camera-conditioned prior (``cfg.camera_cond``, see :attr:`camera_conditioned`), ignored by
        others. Every branch of the guidance gets it: only the caption is guided."""
        b = x_t.shape[0]
        if not self.cfg.camera_cond:
            view = None
        else:  # checked here too, so a bad view is reported at the caller's batch size, not guidance's
            _check_view(view, b)
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(b)
        cond = self.caption_indices(text, b)
        slots = [i for i in range(cond.shape[1]) if bool((cond[:, i] != 0).any())] if composable else []
        if len(slots) > 1:  # one condition per slot (a row without that slot gets eps_u: no term)
            conds = [cond * (torch.arange(cond.shape[1], device=cond.device) == i) for i in slots]
        elif guidance_scale == 1.0:
            return self.unet(x_t, t, cond, view)
        else:
            conds = [cond]
        k = len(conds)
        eps = self.unet(
            torch.cat([x_t] * (k + 1)),
            torch.cat([t] * (k + 1)),
            torch.cat([*conds, torch.zeros_like(cond)]),
            None if view is None else torch.cat([view] * (k + 1)),
        )
        *eps_c, eps_u = eps.chunk(k + 1)
        return eps_u + guidance_scale * sum(e - eps_u for e in eps_c)

    @torch.no_grad()
    def sample(self, text: str | Prompt | list, n: int, guidance_scale: float = 3.0, steps: int = 50,
               generator: torch.Generator | None = None, composable: bool = False,
               view: Tensor | None = None) -> Tensor:  # fmt: skip
        """DDIM (eta = 0) samples decoded to images ``[n, 3, S, S]`` in [0, 1]: to look at the prior.
        A camera-conditioned prior without ``view`` samples from random views of the default ranges."""
        dev = self.alphas_cumprod.device
        c, s = self.cfg.in_channels, self.cfg.sample_size
        x = torch.randn(n, c, s, s, generator=generator).to(dev)
        if self.cfg.camera_cond and view is None:
            view = camera_angles(sample_cameras(n, 8, CameraRanges(), generator))
        extra = {} if view is None else {"view": view.to(dev)}
        ts = torch.linspace(self.cfg.timesteps - 1, 0, steps).round().long().tolist()
        abar = self.alphas_cumprod.float()
        for i, t in enumerate(ts):
            eps = self.predict_noise(x, torch.full((n,), t, device=dev), text, guidance_scale, composable, **extra)
            a = abar[t]
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            # clip x0 to the data range, as DDPM samplers do; for latents, clamp the decoded image and
            # re-encode: the Haar code of the clamped image (its projection back onto the code's
            # subspace may again leave [-1, 1] a little, so this bounds x0 rather than clips it)
            x0 = x0.clamp(-1, 1) if self.autoencoder is None else self.autoencoder.encode(
                self.autoencoder.decode(x0).clamp(-1, 1))  # fmt: skip
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            a_prev = abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        return self.decode(x)

    # -- files --------------------------------------------------------------------------------

    def save(self, path: str | Path, extra: dict | None = None) -> None:
        meta = {"config": json.dumps(asdict(self.cfg)), **{k: json.dumps(v) for k, v in (extra or {}).items()}}
        save_weights({k: v.half() for k, v in self.unet.state_dict().items()}, path, metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> TinyPrior:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such prior weights file")
        meta = _metadata(path)
        if "config" not in meta:
            raise ValueError(f"{path}: not a tiny prior (no 'config' in the safetensors metadata)")
        try:
            prior = cls(TinyPriorConfig(**json.loads(meta["config"])))
        except (TypeError, ValueError, RuntimeError) as exc:  # unknown keys, bad JSON, sizes the U-Net can't take
            raise ValueError(f"{path}: bad 'config' metadata: {exc}") from None
        state = {k: v.float() for k, v in load_weights(path).items()}
        try:
            missing, unexpected = prior.unet.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise ValueError(f"{path}: weights do not match the config: {str(exc).splitlines()[-1].strip()}") from None
        if missing or unexpected:
            raise ValueError(
                f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return prior.eval().requires_grad_(False)


def _metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata; a corrupt or foreign file is a one-line ValueError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None


def training_pairs(path: str | Path) -> set[tuple[str, str]] | None:
    """The (colour, shape) pairs of the captions a tiny prior file was trained on, as recorded in its
    metadata by ``tools/train_tiny_prior.py`` (captions that name only a colour or only a shape, the
    decorrelation data, show no pair); None when the file records none."""
    captions = _metadata(path).get("captions")
    if captions is None:
        return None
    try:
        prompts = [parse_prompt(c) for c in json.loads(captions)]
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: bad 'captions' metadata: {exc}") from None
    if not (pairs := {(q.colour, q.shape) for q in prompts if q.colour and q.shape}):
        raise ValueError(f"{path}: bad 'captions' metadata: no caption names a colour and a shape")
    return pairs


def load_builtin(space: str = "pixel") -> TinyPrior:
    if space not in BUILTIN:
        raise ValueError(f"space: expected 'pixel' or 'latent', got {space!r}")
    path = BUILTIN[space]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the built-in {space} prior is missing; train it: python tools/train_tiny_prior.py"
        )
    return TinyPrior.load(path)
