"""Render profiles: how a scene looks, pinned by name so every machine renders the same images.

A policy trained on frames with one look and evaluated on another measures the renderer, not the
policy. The profile therefore never follows the hardware: the default is the same on a laptop
(Mesa's software EGL) and on a GPU box (NVIDIA EGL), so both draw the same scene with the same
meshes, lights and sampling (two rasterisers may still differ in the last bit of a few edge
pixels). It is recorded in demonstration files and evaluation results, and evaluation refuses a
profile other than the data's unless told otherwise.

- ``lowpoly`` (default): the robot's collision meshes, no shadow maps, no multisampling; fast in
  software rendering (``tools/bench/env_throughput.py`` measures it).
- ``hifi``: the robot's visual meshes, shadow-casting lights, 4x multisampling. Meant for GPU
  rendering; software rendering draws the same scene, many times slower.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class RenderProfile:
    """What the renderer draws.

    Attributes:
        name: the profile's name, recorded with the data.
        low_poly: draw the robot's collision meshes instead of its visual meshes.
        shadows: lights cast shadow maps.
        offsamples: multisampling of the offscreen buffer (0 = off).
    """

    name: str
    low_poly: bool
    shadows: bool
    offsamples: int

    def __post_init__(self):
        if self.offsamples not in (0, 2, 4, 8, 16):
            raise ValueError(
                f"offsamples: expected one of 0, 2, 4, 8, 16 for profile {self.name!r}, got {self.offsamples}"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def same_look(self, other: RenderProfile) -> bool:
        """True when both render identical images (the names may differ)."""
        return (self.low_poly, self.shadows, self.offsamples) == (other.low_poly, other.shadows, other.offsamples)

    def describe(self) -> str:
        meshes = "low-poly robot" if self.low_poly else "full robot meshes"
        return f"{self.name} ({meshes}, shadows {'on' if self.shadows else 'off'}, {self.offsamples}x MSAA)"


PROFILES = {
    "lowpoly": RenderProfile("lowpoly", low_poly=True, shadows=False, offsamples=0),
    "hifi": RenderProfile("hifi", low_poly=False, shadows=True, offsamples=4),
}
DEFAULT_PROFILE = "lowpoly"


def get_profile(profile: str | dict | RenderProfile | None = None) -> RenderProfile:
    """A profile from its name, its recorded dict (as stored in files), or itself; None = default."""
    if profile is None:
        return PROFILES[DEFAULT_PROFILE]
    if isinstance(profile, RenderProfile):
        return profile
    if isinstance(profile, dict):
        fields = {f.name for f in dataclasses.fields(RenderProfile)}
        if set(profile) != fields:
            raise ValueError(f"render_profile: expected keys {sorted(fields)}, got {sorted(profile)}")
        return RenderProfile(**profile)
    if profile not in PROFILES:
        raise ValueError(f"render_profile: unknown profile {profile!r}; known: {sorted(PROFILES)}")
    return PROFILES[profile]
