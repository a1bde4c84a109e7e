"""MV-Bench view splits: training views and novel views, as data.

The shipped splits are package data (``envs/mvbench/splits/<name>.yaml``, read with
:mod:`importlib.resources`), so they are found after a plain ``pip install .`` too; a path to any
YAML file works as well. A split is validated before use: every camera must see the whole
workspace box and stay above the table, each novel group's declared azimuth delta must equal the
real angular distance of its views to the nearest training view, and no novel camera may coincide
with a training camera (an elevation group that repeats the training elevation would be no
novel view at all).
"""

from __future__ import annotations

import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from envs.cameras import CameraSpec
from envs.scene import TABLE_CENTER_XY, TABLE_HALF, TABLE_TOP_Z
from envs.tasks import WORKSPACE_X, WORKSPACE_Y
from worldline.camera import Camera
from worldline.config import load_config
from worldline.transforms import look_at

TRAIN = "train"
SAME_VIEW_DEG = 0.5  # cameras closer than this in azimuth and elevation (same radius) are the same view


@dataclass
class TrainViews:
    elevation: float
    azimuths: list[float]


@dataclass
class NovelViews:
    name: str
    azimuths: list[float]
    elevation: float
    delta: float = 0.0
    """azimuth delta to the nearest training view (degrees); 0 for elevation-only changes"""


@dataclass
class ViewSplit:
    train: TrainViews
    novel: list[NovelViews] = field(default_factory=list)
    target: tuple[float, float, float] = (0.5, 0.0, 0.05)
    radius: float = 1.1
    fovy: float = 45.0

    @property
    def groups(self) -> list[str]:
        """Group names: ``train`` first, then the novel groups in file order."""
        return [TRAIN] + [g.name for g in self.novel]

    def cameras(self, group: str) -> tuple[CameraSpec, ...]:
        """The fixed cameras of a group, named ``<group>_<i>`` (characters other than
        letters and digits become underscores)."""
        if group == TRAIN:
            az, el = self.train.azimuths, self.train.elevation
        else:
            match = [g for g in self.novel if g.name == group]
            if not match:
                raise ValueError(f"view group {group!r} not in split; groups: {self.groups}")
            az, el = match[0].azimuths, match[0].elevation
        slug = "".join(c if c.isalnum() else "_" for c in group)
        return tuple(
            CameraSpec(f"{slug}_{i}", azimuth=a, elevation=el, radius=self.radius, target=self.target, fovy=self.fovy)
            for i, a in enumerate(az)
        )


def azimuth_delta(a: float, b: float) -> float:
    """Smallest absolute angle between two azimuths, degrees."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


def workspace_corners() -> np.ndarray:
    """[8, 3] corners of the box objects live in (table top up to 10 cm), metres."""
    xs, ys, zs = WORKSPACE_X, WORKSPACE_Y, (TABLE_TOP_Z, TABLE_TOP_Z + 0.1)
    return np.array([[x, y, z] for x in xs for y in ys for z in zs])


def validate(split: ViewSplit, width: int = 128, height: int = 128, source: str = "split") -> None:
    """Raise ValueError naming the group and view when a view is unusable."""
    if len(split.train.azimuths) < 1:
        raise ValueError(f"{source}: train.azimuths is empty")
    names = [g.name for g in split.novel]
    if TRAIN in names or len(set(names)) != len(names):
        raise ValueError(f"{source}: novel group names must be unique and not {TRAIN!r}, got {names}")
    corners = torch.tensor(workspace_corners(), dtype=torch.float64)
    for group in split.groups:
        for spec in split.cameras(group):
            eye = spec.eye()
            where = f"{source}: view {spec.name} (group {group}, azimuth {spec.azimuth}, elevation {spec.elevation})"
            over_table = (
                abs(eye[0] - TABLE_CENTER_XY[0]) <= TABLE_HALF[0] and abs(eye[1] - TABLE_CENTER_XY[1]) <= TABLE_HALF[1]
            )
            if eye[2] <= TABLE_TOP_Z + 0.05 or (over_table and eye[2] <= TABLE_TOP_Z + 0.15):
                raise ValueError(f"{where}: camera at z={eye[2]:.3f} m is inside or under the table")
            w2c = look_at(torch.tensor(eye), torch.tensor(spec.target, dtype=torch.float64))
            cam = Camera.from_fov(math.radians(spec.fovy), width, height, w2c=w2c)
            uv, z = cam.project(corners)
            if not bool((z > 0).all() and cam.in_image(uv).all()):
                raise ValueError(f"{where}: does not see the whole workspace")
    train = [(a, split.train.elevation) for a in split.train.azimuths]
    for g in split.novel:
        for i, a in enumerate(g.azimuths):
            if any(azimuth_delta(a, ta) < SAME_VIEW_DEG and abs(g.elevation - te) < SAME_VIEW_DEG for ta, te in train):
                raise ValueError(
                    f"{source}: novel group {g.name!r} camera {i} (azimuth {a}, elevation {g.elevation}) is a training "
                    "camera; a novel group must differ from every training view"
                )
        if g.delta == 0.0 and abs(g.elevation - split.train.elevation) < SAME_VIEW_DEG:
            raise ValueError(
                f"{source}: novel group {g.name!r} declares no azimuth delta and keeps the training elevation "
                f"{split.train.elevation}; it must change the azimuth or the elevation"
            )
        for a in g.azimuths:
            d = min(azimuth_delta(a, t) for t in split.train.azimuths)
            if abs(d - g.delta) > 1.0:
                raise ValueError(
                    f"{source}: novel group {g.name!r} declares delta {g.delta} but azimuth {a} is {d:.1f} degrees "
                    "from the nearest training view"
                )


def shipped_splits() -> list[str]:
    """Names of the splits shipped with the package."""
    root = importlib.resources.files("envs.mvbench") / "splits"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_split(name_or_path: str | Path = "default", width: int = 128, height: int = 128) -> ViewSplit:
    """Load and validate a split by shipped name (see :func:`shipped_splits`) or YAML path."""
    path = Path(name_or_path)
    if path.suffix:
        if not path.is_file():
            raise FileNotFoundError(f"split: no such file {path}")
        split = load_config(ViewSplit, path)
    else:
        resource = importlib.resources.files("envs.mvbench") / "splits" / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise ValueError(
                f"split: unknown split {str(name_or_path)!r}; shipped: {shipped_splits()} (or a .yaml path)"
            )
        with importlib.resources.as_file(resource) as p:
            split = load_config(ViewSplit, p)
        path = Path(f"envs/mvbench/splits/{name_or_path}.yaml")
    validate(split, width, height, source=str(path))
    return split
