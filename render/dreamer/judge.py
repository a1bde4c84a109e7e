"""An independent judge of distilled objects: does it look like the prompt's colour and shape?

Independent of every prior: it only renders the Gaussians (our rasterizer) and compares

- **colour**: each foreground pixel (alpha > 0.5, colour un-premultiplied) votes for the nearest
  named colour of :data:`render.dreamer.scenes.COLOURS` in chromaticity (rgb / its sum), or for
  "grey" when its HSV saturation is under 0.3 — a colour histogram; a colour wins only with at
  least half of the votes (else "none"), so a grey or multicoloured object matches no prompt;
- **shape**: the silhouette in each view against the ground-truth primitives' silhouettes from the
  same camera (:func:`render.dreamer.scenes.primitive_gaussians`, both sizes), by IoU after
  centring and scaling both masks to the same area (so a too-small cube is still a cube); the best
  shape must beat the second by ``SHAPE_MARGIN`` in mean IoU, else the shape is "ambiguous"
  (ground-truth primitives are separated by about 0.1). A view with at least ``BORDER_PIXELS``
  foreground pixels on the image border has no shape vote (and so no per-view match): a cut-off
  silhouette is not the object's outline, and an object blown up to fill the frame would otherwise
  read as a square, i.e. a cube; a stray pixel or two there (a floater) does not count;
- **saturation**: mean HSV saturation of the foreground;
- **view consistency**: the fraction of views whose own colour vote and best silhouette both match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from render.dreamer.scenes import COLOURS, SHAPES, SIZES, CameraRanges, Prompt, primitive_gaussians, sample_cameras
from render.gaussians.model import GaussianModel
from render.gaussians.rasterize import rasterize_torch
from worldline import Camera

JUDGE_VERSION = 3
"""bumped when the judge's rules change (cached benchmark runs are then redone)"""
SHAPE_MARGIN = 0.03
GREY_SATURATION = 0.3
MIN_PIXELS = 16
"""a view with fewer foreground pixels has no silhouette (and its shape vote is void)"""
BORDER_PIXELS = 4
"""a view with this many foreground pixels on the image border is cut off (its shape vote is void)"""


def cut_by_frame(fg: Tensor, min_pixels: int = BORDER_PIXELS) -> Tensor:
    """``[V, H, W]`` foreground masks -> ``[V]``: whether a view's silhouette is cut by the frame
    (at least ``min_pixels`` foreground pixels on the border ring)."""
    ring = torch.ones_like(fg[0], dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    return (fg & ring).sum((1, 2)) >= min_pixels


def judge_cameras(n: int = 8, size: int = 64, seed: int = 1234) -> list[Camera]:
    """The judge's views: ``n`` random cameras from the default ranges, fixed by ``seed``."""
    return sample_cameras(n, size, CameraRanges(), torch.Generator().manual_seed(seed))


def _render(g: GaussianModel, cams: list[Camera]) -> tuple[Tensor, Tensor]:
    rgbs, alphas = [], []
    with torch.no_grad():
        for cam in cams:
            out = rasterize_torch(g, cam, background=torch.zeros(3))
            rgbs.append(out["rgb"])
            alphas.append(out["alpha"])
    return torch.stack(rgbs), torch.stack(alphas)


def _normalise_mask(mask: Tensor, size: int = 32) -> Tensor:
    """Centre the mask on its centroid and scale it so its area is a fixed fraction of the frame."""
    m = mask.float()
    area = m.sum()
    if area < MIN_PIXELS:
        return torch.zeros(size, size, dtype=torch.bool)
    h, w = m.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    cy, cx = (m * ys).sum() / area, (m * xs).sum() / area
    scale = (area / (0.25 * size * size)).sqrt()  # the object covers a quarter of the output frame
    g = torch.linspace(-(size - 1) / 2, (size - 1) / 2, size)
    gy, gx = torch.meshgrid(g, g, indexing="ij")
    grid = torch.stack([(cx + gx * scale) / (w - 1) * 2 - 1, (cy + gy * scale) / (h - 1) * 2 - 1], -1)
    return F.grid_sample(m[None, None], grid[None], align_corners=True)[0, 0] > 0.5


def _iou(a: Tensor, b: Tensor) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union > 0 else 0.0


_TEMPLATES: dict[tuple[int, int, int], dict[str, list[Tensor]]] = {}


def _templates(cams: list[Camera], key: tuple[int, int, int]) -> dict[str, list[Tensor]]:
    if key not in _TEMPLATES:
        out = {}
        for shape in SHAPES:
            masks = []
            for size in SIZES:
                _, alpha = _render(primitive_gaussians(Prompt("red", shape, size), n=1500, seed=7), cams)
                masks.append([_normalise_mask(a > 0.5) for a in alpha])
            out[shape] = masks
        _TEMPLATES[key] = out
    return _TEMPLATES[key]


@dataclass
class Verdict:
    colour: str
    shape: str
    colour_share: float
    """fraction of foreground pixels voting for ``colour``"""
    shape_iou: dict[str, float]
    """mean best silhouette IoU per shape"""
    shape_margin: float
    """best minus second-best mean IoU"""
    saturation: float
    coverage: float
    """mean foreground fraction of the views"""
    truncated_views: int
    """views whose silhouette is cut by the image border (no shape vote; see :func:`cut_by_frame`)"""
    per_view_match: float | None
    """view consistency: fraction of views whose own colour and shape both match the prompt"""
    match: bool | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def judge(
    g: GaussianModel, prompt: Prompt | None = None, n_views: int = 8, size: int = 64, seed: int = 1234
) -> Verdict:
    """Classify ``g``'s colour and shape from ``n_views`` fixed random views; with ``prompt``, also
    whether they match it (overall and per view)."""
    cams = judge_cameras(n_views, size, seed)
    rgb, alpha = _render(g, cams)
    fg = alpha > 0.5
    names = list(COLOURS)
    ref = torch.tensor([COLOURS[n] for n in names])
    ref = ref / ref.sum(-1, keepdim=True)
    colour_votes = torch.zeros(len(cams), len(names) + 1)  # the last: grey
    sats = []
    for v in range(len(cams)):
        px = rgb[v][fg[v]] / alpha[v][fg[v]][:, None].clamp_min(1e-6)
        if len(px) == 0:
            continue
        chroma = px / px.sum(-1, keepdim=True).clamp_min(1e-6)
        mx, mn = px.amax(-1), px.amin(-1)
        sat = (mx - mn) / mx.clamp_min(1e-6)
        votes = torch.where(sat < GREY_SATURATION, len(names), torch.cdist(chroma, ref).argmin(-1))
        colour_votes[v] = torch.bincount(votes, minlength=len(names) + 1).float()
        sats.append(sat.mean())
    templates = _templates(cams, (n_views, size, seed))
    ious = torch.zeros(len(cams), len(SHAPES))
    for v in range(len(cams)):
        m = _normalise_mask(fg[v])
        for s, shape in enumerate(SHAPES):
            ious[v, s] = max(_iou(m, t[v]) for t in templates[shape])
    total = colour_votes.sum(0)
    share = float(total.max() / total.sum()) if total.sum() > 0 else 0.0
    colour = (names + ["grey"])[int(total.argmax())] if share >= 0.5 else "none"
    touches = cut_by_frame(fg)
    has_shape = (fg.sum((1, 2)) >= MIN_PIXELS) & ~touches
    mean_iou = ious[has_shape].mean(0) if has_shape.any() else torch.zeros(len(SHAPES))
    top = torch.topk(mean_iou, 2)
    margin = float(top.values[0] - top.values[1])
    shape = "none" if not has_shape.any() else SHAPES[int(top.indices[0])] if margin >= SHAPE_MARGIN else "ambiguous"
    per_view = match = None
    if prompt is not None:
        ok = []
        for v in range(len(cams)):
            votes = colour_votes[v]
            cv = (names + ["grey"])[int(votes.argmax())] if votes.sum() > 0 and votes.max() >= votes.sum() / 2 else None
            top_v = torch.topk(ious[v], 2)
            sv = (
                SHAPES[int(top_v.indices[0])]
                if has_shape[v] and top_v.values[0] - top_v.values[1] >= SHAPE_MARGIN
                else None
            )
            ok.append((prompt.colour is None or cv == prompt.colour) and (prompt.shape is None or sv == prompt.shape))
        per_view = sum(ok) / len(ok)
        match = (prompt.colour is None or colour == prompt.colour) and (prompt.shape is None or shape == prompt.shape)
    return Verdict(
        colour=colour,
        shape=shape,
        colour_share=share,
        shape_iou={s: float(mean_iou[i]) for i, s in enumerate(SHAPES)},
        shape_margin=margin,
        saturation=float(torch.stack(sats).mean()) if sats else 0.0,
        coverage=float(fg.float().mean()),
        truncated_views=int(touches.sum()),
        per_view_match=per_view,
        match=match,
    )
