"""Analytic test scenes shared by the render tests."""

import math

import numpy as np
import torch

from worldline import Camera
from worldline.transforms import look_at

UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def texture(x, y):
    """A smooth colour pattern on the plane z = 0."""
    return torch.stack(
        [0.5 + 0.4 * torch.sin(3 * x), 0.5 + 0.4 * torch.cos(2 * y), 0.5 + 0.3 * torch.sin(x + 2 * y)], -1
    )


def render_plane(cam: Camera) -> torch.Tensor:
    """Analytic image [H, W, 3] of the textured plane z = 0 (ray-plane intersection per pixel)."""
    o, d = cam.rays(normalize=False)
    t = -o[..., 2] / d[..., 2]
    p = o + t[..., None] * d
    return texture(p[..., 0], p[..., 1]).float()


def ring_cameras(n: int, size: int, radius: float = 1.6, height: float = 1.4) -> Camera:
    eyes = [
        (radius * math.cos(a), radius * math.sin(a), height) for a in np.linspace(0, 2 * math.pi, n, endpoint=False)
    ]
    z = torch.zeros(3, dtype=torch.float64)
    w2c = torch.stack([look_at(torch.tensor(e, dtype=torch.float64), z, UP) for e in eyes]).float()
    return Camera.from_fov(math.radians(50), size, size, w2c=w2c)
