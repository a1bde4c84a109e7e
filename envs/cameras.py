"""Camera rigs: named cameras on a view sphere around the workspace, plus a wrist camera.

A fixed camera is given by azimuth, elevation and radius around a look-at target (all in the
robot base frame, metres and degrees; azimuth 0 looks from +x toward the robot, i.e. from the
front; azimuth increases counter-clockwise seen from above). Poses are computed with the core's
:func:`worldline.transforms.look_at` and handed to MuJoCo in its camera convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from worldline.transforms import look_at, matrix_to_quat, opencv_to_opengl, se3_inverse

WORKSPACE_CENTER = (0.5, 0.0, 0.05)


@dataclass(frozen=True)
class CameraSpec:
    """One camera of a rig.

    Attributes:
        name: unique camera name; observation keys use it.
        azimuth: degrees around the target, counter-clockwise from +x (ignored for the wrist camera).
        elevation: degrees above the horizontal plane through the target.
        radius: distance from the target in metres.
        target: look-at point in the base frame (metres).
        fovy: vertical field of view in degrees.
        wrist: mount on the hand instead of the world.
    """

    name: str
    azimuth: float = 0.0
    elevation: float = 35.0
    radius: float = 1.1
    target: tuple[float, float, float] = WORKSPACE_CENTER
    fovy: float = 45.0
    wrist: bool = False

    def __post_init__(self):
        object.__setattr__(self, "target", tuple(float(x) for x in self.target))  # lists from JSON, too
        if len(self.target) != 3:
            raise ValueError(f"target: expected 3 coordinates for camera {self.name!r}, got {self.target}")
        if not self.name or not self.name.replace("_", "").isalnum():
            raise ValueError(f"name: camera names must be alphanumeric/underscore, got {self.name!r}")
        if not (0 < self.fovy < 180):
            raise ValueError(f"fovy: expected degrees in (0, 180) for camera {self.name!r}, got {self.fovy}")
        if not self.wrist and self.radius <= 0:
            raise ValueError(f"radius: expected > 0 for camera {self.name!r}, got {self.radius}")
        if not self.wrist and not (-89.0 <= self.elevation <= 89.0):
            raise ValueError(f"elevation: expected degrees in [-89, 89] for camera {self.name!r}, got {self.elevation}")

    def eye(self) -> np.ndarray:
        """Camera centre in the base frame (metres)."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        offset = self.radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        return np.asarray(self.target) + offset

    def mujoco_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(pos [3], quat wxyz [4]) of the MuJoCo camera frame (looks down -z, y up)."""
        w2c = look_at(torch.tensor(self.eye(), dtype=torch.float64), torch.tensor(self.target, dtype=torch.float64))
        c2w_gl = opencv_to_opengl(se3_inverse(w2c))
        return self.eye(), matrix_to_quat(c2w_gl[:3, :3]).numpy()


#: The wrist camera: on the hand, looking along the fingers.
WRIST = CameraSpec(name="wrist", wrist=True, fovy=70.0)


@dataclass(frozen=True)
class CameraRig:
    """Named cameras sharing one image size (pixels)."""

    cameras: tuple[CameraSpec, ...]
    width: int = 128
    height: int = 128
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        names = tuple(c.name for c in self.cameras)
        if not names:
            raise ValueError("cameras: a rig needs at least one camera")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"cameras: duplicate camera names {sorted(dup)}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width/height: expected positive pixels, got {self.width}x{self.height}")
        object.__setattr__(self, "names", names)


def default_rig(width: int = 128, height: int = 128) -> CameraRig:
    """Front, left and right cameras plus the wrist camera."""
    cams = (
        CameraSpec("front", azimuth=0.0, elevation=40.0),
        CameraSpec("left", azimuth=90.0, elevation=35.0),
        CameraSpec("right", azimuth=-90.0, elevation=35.0),
        WRIST,
    )
    return CameraRig(cams, width, height)
