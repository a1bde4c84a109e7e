"""``render dream``: distil a text prompt into 3D Gaussians.

    render dream "a red cube"                               # the built-in offline priors, CPU, about a minute
    render dream "a blue cube" --steps 1000 --schedule fixed --out runs/dream_fixed
    render dream "a red cube" --stage2-fraction 0           # stage 1 (image-space prior) only
    render dream "a dog" --prior /models/IF-I-XL --latent-prior /models/sd-1-5   # local diffusers folders

Writes ``gaussians.ply``, ``orbit.mp4``, ``grid.png`` and ``dream.json`` (settings, losses, the
independent judge's verdict: colour, shape, saturation, view consistency) into ``--out``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path

import tyro

from render.dreamer.dream import DreamConfig


@dataclass
class DreamCommand(DreamConfig):
    """Every ``DreamConfig`` field is a flag (``--steps``, ``--schedule``, ``--densify.grow-grad2d``,
    ``--cameras.elevation``, ...); the prompt is positional."""

    out: Path | None = None
    """output folder (default: outputs/dream/<prompt>)"""
    video_frames: int = 48


def main(argv: list[str]) -> None:
    from render.dreamer.dream import Dreamer

    a = tyro.cli(DreamCommand, args=argv, prog="render dream")
    cfg = DreamConfig(**{f.name: getattr(a, f.name) for f in fields(DreamConfig)})
    out = a.out or Path("outputs/dream") / (re.sub(r"[^a-z0-9]+", "_", a.prompt.lower()).strip("_") or "prompt")
    dreamer = Dreamer(cfg)
    result = dreamer.run()
    report = dreamer.save_outputs(out, result, video_frames=a.video_frames)
    j = report["judge"]
    verdict = "" if j["match"] is None else f" -> {'matches' if j['match'] else 'does not match'} the prompt"
    print(f"{result['steps']} steps in {result['seconds']:.0f} s, {result['gaussians']} Gaussians; judge: "
          f"{j['colour']} {j['shape']} (saturation {j['saturation']:.2f}, view consistency "
          f"{j['per_view_match'] if j['per_view_match'] is not None else 'n/a'}){verdict}; {out}")  # fmt: skip
