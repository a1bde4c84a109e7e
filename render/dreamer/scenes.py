"""The built-in prior's world: coloured primitives as 3D Gaussians, their captions, and cameras
on a sphere around the object (shared by the prior's training data and by `render dream`)."""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from render.gaussians.model import GaussianModel
from render.gaussians.sh import rgb_to_sh0
from worldline import Camera
from worldline.transforms import look_at, quat_to_matrix

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.75, 0.20),
    "blue": (0.12, 0.25, 0.90),
    "yellow": (0.92, 0.85, 0.12),
    "magenta": (0.85, 0.15, 0.80),
    "cyan": (0.10, 0.80, 0.85),
}
SHAPES = ("cube", "sphere", "cylinder")
DISTRACTOR_SHAPES = ("cluster",)
"""objects outside the vocabulary, for the optional colour-only training captions of
:func:`decorrelation_gaussians`: four separate small balls on a tetrahedron's vertices. (Tried
first, and rejected: a torus and a cone, and then crossed bars and a tighter cluster. At the
priors' 32 px the torus's hole closes, a cone along its axis is a disc, and small bars or a tight
cluster are blobs, so that many renders were as close to a sphere or a cube as real primitives are
to each other.)"""


def boundary_colours() -> dict[tuple[str, str], tuple[float, float, float]]:
    """Colours on the border between two names, for the shape-only training captions of
    :func:`decorrelation_gaussians` (``shape_colour="boundary"``): for each pair of named colours
    next to each other in hue, the RGB whose chromaticity (rgb / its sum, the judge's colour space)
    is the midpoint of theirs, at their mean brightness (sum). It is equally far from both and
    further from every other name (a test checks this): an azure between cyan and blue, a violet
    between blue and magenta. On the border, not outside every name: the judge, which names every
    chromatic colour by the nearest one, gives each of them one of its two neighbours (an azure
    cube rendered and judged came out a "cyan cube", a violet one a "blue cube"), so such data
    shows the prior objects the judge would call a named (colour, shape) pair."""
    hue = {n: colorsys.rgb_to_hsv(*c)[0] for n, c in COLOURS.items()}
    ring = sorted(COLOURS, key=hue.__getitem__)
    out = {}
    for a, b in zip(ring, ring[1:] + ring[:1]):
        ca, cb = torch.tensor(COLOURS[a]), torch.tensor(COLOURS[b])
        chroma = (ca / ca.sum() + cb / cb.sum()) / 2
        out[(a, b)] = tuple((chroma * (ca.sum() + cb.sum()) / 2).tolist())
    return out


SIZES: dict[str, float] = {"small": 0.32, "large": 0.5}
"""half-extent in metres (the cylinder is twice as tall as it is wide)"""

HELD_OUT: tuple[tuple[str, str], ...] = (
    ("red", "cylinder"),
    ("green", "sphere"),
    ("blue", "cube"),
    ("yellow", "cylinder"),
    ("magenta", "sphere"),
)
"""(colour, shape) pairs the built-in prior never sees in training: every colour and every shape
is seen, but not these combinations; `render dream` is judged on them"""

VALIDATION_UNSEEN: tuple[tuple[str, str], ...] = (
    ("cyan", "cube"),
    ("red", "sphere"),
    ("magenta", "cylinder"),
)
"""(colour, shape) pairs that a *validation-split* prior (``tools/train_tiny_prior.py
--validation-split``) also never sees: unseen pairs on which inference settings can be chosen
without looking at ``HELD_OUT``. Cyan cube mirrors blue cube (a colour seen only as a sphere and a
cylinder, asked for as a cube); every colour and every shape is still seen by such a prior."""


@dataclass(frozen=True)
class Prompt:
    colour: str | None
    shape: str | None
    size: str | None = None

    @property
    def text(self) -> str:
        words = [w for w in (self.size, self.colour, self.shape) if w]
        return "a " + " ".join(words) if words else ""


def parse_prompt(text: str) -> Prompt:
    """ "a small red cube" -> Prompt("red", "cube", "small"); articles are ignored; an unknown
    word is a ValueError naming it and the vocabulary."""
    colour = shape = size = None
    for word in text.lower().replace(",", " ").split():
        if word in ("a", "an", "the", "one"):
            continue
        if word in COLOURS and colour is None:
            colour = word
        elif word in SHAPES and shape is None:
            shape = word
        elif word in SIZES and size is None:
            size = word
        else:
            vocab = ", ".join([*COLOURS, *SHAPES, *SIZES])
            raise ValueError(f"prompt {text!r}: the built-in prior does not know {word!r} (it knows: {vocab})")
    return Prompt(colour, shape, size)


def all_prompts(include_held_out: bool = False, exclude: tuple[tuple[str, str], ...] = ()) -> list[Prompt]:
    """Every caption (colour x shape x size) except the held-out pairs (unless ``include_held_out``)
    and the (colour, shape) pairs in ``exclude``."""
    out = []
    for c in COLOURS:
        for s in SHAPES:
            if ((c, s) in HELD_OUT and not include_held_out) or (c, s) in exclude:
                continue
            for z in SIZES:
                out.append(Prompt(c, s, z))
    return out


def _surface_points(shape: str, n: int, g: torch.Generator) -> Tensor:
    """``n`` points on the unit primitive's surface: cube [-1, 1]^3, unit sphere, cylinder of radius
    1 from z = -2 to 2 (scaled by half the size later), all area-uniform."""
    if shape == "cube":
        p = torch.rand(n, 3, generator=g) * 2 - 1
        axis = torch.randint(0, 3, (n,), generator=g)
        side = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
        p[torch.arange(n), axis] = side
        return p
    if shape == "sphere":
        return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    if shape == "cylinder":
        # side area 2 pi r h = 8 pi, caps 2 pi r^2 = 2 pi: 80 % on the side
        on_side = torch.rand(n, generator=g) < 0.8
        a = torch.rand(n, generator=g) * 2 * math.pi
        r = torch.where(on_side, torch.ones(n), torch.rand(n, generator=g).sqrt())
        z = torch.where(on_side, torch.rand(n, generator=g) * 4 - 2, torch.sign(torch.rand(n, generator=g) - 0.5) * 2)
        return torch.stack([r * torch.cos(a), r * torch.sin(a), z], -1)
    raise ValueError(f"shape: expected one of {', '.join(SHAPES)}, got {shape!r}")


def primitive_gaussians(prompt: Prompt, n: int = 1500, seed: int = 0, jitter: float = 0.0) -> GaussianModel:
    """The ground-truth Gaussians of a caption: ``n`` opaque isotropic Gaussians on the primitive's
    surface (cylinders stand on z; a cube's edges are 2 x half-extent), coloured by name, SH degree
    0. ``jitter``: random +- fraction on size and colour, for training-data variety."""
    if prompt.colour is None or prompt.shape is None:
        raise ValueError(f"prompt {prompt.text!r}: a primitive needs a colour and a shape")
    g = torch.Generator().manual_seed(seed)
    half = SIZES[prompt.size or "large"] * (1 + jitter * (2 * torch.rand(1, generator=g).item() - 1))
    scale = half * (0.5 if prompt.shape == "cylinder" else 1.0)
    pts = _surface_points(prompt.shape, n, g) * scale
    rgb = torch.tensor(COLOURS[prompt.colour]) * (1 + jitter * (2 * torch.rand(3, generator=g) - 1))
    return _opaque_gaussians(pts, rgb, half)


SHAPE_COLOURS = ("grey", "boundary")
"""the colours of shape-only decorrelation data: an achromatic grey, or one of :func:`boundary_colours`"""


def decorrelation_gaussians(prompt: Prompt, n: int = 1500, seed: int = 0, jitter: float = 0.0,
                            shape_colour: str = "grey") -> GaussianModel:  # fmt: skip
    """Training data for a caption with one of colour and shape left out, drawn so that the named
    slot says nothing about the other one: a colour-only caption ("a small cyan") gets a distractor
    (``DISTRACTOR_SHAPES``, randomly oriented; a test checks that its 32 px silhouettes are further
    from every vocabulary shape's than real primitives are from the wrong shape's), a shape-only one
    ("a large cube") a colour that is not a named one: ``shape_colour="grey"`` an achromatic grey
    (no name owns it), ``"boundary"`` one of :func:`boundary_colours` at random (on the border
    between two names; see there), its brightness (never its chromaticity) jittered by ``jitter``."""
    if (prompt.colour is None) == (prompt.shape is None):
        raise ValueError(f"prompt {prompt.text!r}: decorrelation data needs exactly one of colour and shape")
    if shape_colour not in SHAPE_COLOURS:
        raise ValueError(f"shape_colour: expected one of {', '.join(SHAPE_COLOURS)}, got {shape_colour!r}")
    g = torch.Generator().manual_seed(seed)
    half = SIZES[prompt.size or "large"] * (1 + jitter * (2 * torch.rand(1, generator=g).item() - 1))
    if prompt.shape is not None:
        pts = _surface_points(prompt.shape, n, g) * half * (0.5 if prompt.shape == "cylinder" else 1.0)
        if shape_colour == "grey":
            return _opaque_gaussians(pts, torch.full((3,), 0.2 + 0.6 * torch.rand(1, generator=g).item()), half)
        border = list(boundary_colours().values())
        rgb = torch.tensor(border[int(torch.randint(len(border), (1,), generator=g))])
        rgb = rgb * (1 + jitter * (2 * torch.rand(1, generator=g).item() - 1))
        return _opaque_gaussians(pts, rgb / max(1.0, rgb.max().item()), half)  # one scale: the chromaticity stays
    # the cluster: four balls of radius 0.3 on a tetrahedron's vertices 1.1 from the centre (gaps of 1.2)
    vertices = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3) * 1.1
    ball = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    pts = vertices[torch.arange(n) % 4] + ball * torch.rand(n, 1, generator=g) ** (1 / 3) * 0.3
    rot = quat_to_matrix(torch.nn.functional.normalize(torch.randn(4, generator=g), dim=0))
    rgb = torch.tensor(COLOURS[prompt.colour]) * (1 + jitter * (2 * torch.rand(3, generator=g) - 1))
    return _opaque_gaussians(pts * half @ rot.T, rgb, half, spacing=0.04 * half)


def _opaque_gaussians(pts: Tensor, rgb: Tensor, half: float, spacing: float | None = None) -> GaussianModel:
    """Opaque isotropic Gaussians at ``pts`` ([n, 3]) of one colour, of size ``spacing`` (default:
    the points' spacing on a primitive's surface of half-extent ``half``)."""
    n = len(pts)
    rgb = rgb.clamp(0, 1).expand(n, 3)
    if spacing is None:
        spacing = math.sqrt(4 * math.pi / n) * half * 1.3  # about the mean distance between surface points
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return GaussianModel(pts, torch.full((n, 3), math.log(spacing)), quats, torch.full((n,), 4.0),
                         rgb_to_sh0(rgb)[:, None], torch.zeros(n, 0, 3), 0)  # fmt: skip


@dataclass
class CameraRanges:
    """Cameras on a sphere around the origin, looking at it (world z up)."""

    elevation: tuple[float, float] = (-10.0, 45.0)
    """degrees above the horizon"""
    azimuth: tuple[float, float] = (0.0, 360.0)
    radius: tuple[float, float] = (2.6, 3.2)
    fov: tuple[float, float] = (40.0, 50.0)
    """vertical = horizontal field of view, degrees"""

    def __post_init__(self) -> None:
        for name in ("elevation", "azimuth", "radius", "fov"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"camera {name} range: low {lo} > high {hi}")
        if self.elevation[0] < -89.0 or self.elevation[1] > 89.0:
            raise ValueError(f"camera elevation range {self.elevation}: must stay within (-90, 90) degrees")
        if self.radius[0] <= 0 or self.fov[0] <= 0 or self.fov[1] >= 180:
            raise ValueError(f"camera radius {self.radius} / fov {self.fov}: must be positive, fov < 180")


def orbit_camera(elevation: float, azimuth: float, radius: float, fov: float, size: int) -> Camera:
    """One camera (batch []) at spherical coordinates (degrees, metres) looking at the origin."""
    el, az = math.radians(elevation), math.radians(azimuth)
    eye = torch.tensor(
        [radius * math.cos(el) * math.cos(az), radius * math.cos(el) * math.sin(az), radius * math.sin(el)]
    )
    return Camera.from_fov(math.radians(fov), size, size, w2c=look_at(eye, torch.zeros(3)))


def camera_angles(cams: list[Camera]) -> Tensor:
    """``[n, 2]`` (elevation, azimuth) in radians of cameras on the sphere around the origin, read
    from their centres (the inverse of :func:`orbit_camera`'s placement; azimuth in (-pi, pi])."""
    c = torch.stack([cam.center.reshape(3) for cam in cams]).float()
    return torch.stack([torch.asin((c[:, 2] / c.norm(dim=-1)).clamp(-1, 1)), torch.atan2(c[:, 1], c[:, 0])], -1)


def sample_cameras(n: int, size: int, ranges: CameraRanges | None = None, generator: torch.Generator | None = None
                   ) -> list[Camera]:  # fmt: skip
    """``n`` cameras drawn uniformly from ``ranges`` (elevation uniform in angle)."""
    r = ranges or CameraRanges()
    u = torch.rand(n, 4, generator=generator).tolist()
    return [
        orbit_camera(
            r.elevation[0] + a * (r.elevation[1] - r.elevation[0]),
            r.azimuth[0] + b * (r.azimuth[1] - r.azimuth[0]),
            r.radius[0] + c * (r.radius[1] - r.radius[0]),
            r.fov[0] + d * (r.fov[1] - r.fov[0]),
            size,
        )
        for a, b, c, d in u
    ]
