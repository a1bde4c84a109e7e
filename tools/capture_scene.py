"""Capture an MV-Bench scene as a nerfstudio dataset: N RGB-D views on a view sphere.

    python tools/capture_scene.py --task PickCube --views 48 --size 100 --out data/scenes/pickcube

Cameras are spread over a band of the upper view sphere around the workspace (a Fibonacci
lattice in azimuth x elevation), all looking at the same target. Depth is MuJoCo's metric planar
depth, stored as uint16 millimetres. Every ``--holdout``-th view (0, 8, 16, ...) is the test split
and is listed in ``test_filenames``/``val_filenames``; the rest are ``train_filenames``.

This is glue between ``envs`` and ``render`` (DESIGN.md): it lives in tools/, not in either package.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def sphere_views(n: int, radius: float, elevation: tuple[float, float], target, fovy: float):
    """``n`` CameraSpecs on a Fibonacci lattice of the band ``elevation`` (degrees) of a sphere."""
    from envs.cameras import CameraSpec

    golden = math.pi * (3 - math.sqrt(5))
    lo, hi = (math.sin(math.radians(e)) for e in elevation)
    specs = []
    for i in range(n):
        z = lo + (hi - lo) * (i + 0.5) / n  # uniform in sin(elevation): uniform area on the band
        specs.append(CameraSpec(f"view{i:03d}", azimuth=math.degrees(i * golden) % 360.0,
                                elevation=math.degrees(math.asin(z)), radius=radius, target=tuple(target),
                                fovy=fovy))  # fmt: skip
    return tuple(specs)


def capture(task: str, views: int, size: int, out: Path, seed: int = 0, radius: float = 1.2,
            elevation: tuple[float, float] = (15.0, 70.0), fovy: float = 45.0, holdout: int = 8,
            profile: str | None = None, batch: int = 16) -> Path:  # fmt: skip
    import envs  # noqa: F401  (GL backend first)
    from envs.cameras import WORKSPACE_CENTER
    from envs.env import TabletopEnv
    from render.datasets import write_nerfstudio
    from worldline import Camera

    specs = sphere_views(views, radius, elevation, WORKSPACE_CENTER, fovy)
    rgbs, depths, Ks, w2cs = [], [], [], []
    for start in range(0, views, batch):  # a few cameras per env keeps the GL context small
        env = TabletopEnv(task, cameras=specs[start : start + batch], width=size, height=size,
                          obs_mode="rgbd", render_profile=profile)  # fmt: skip
        try:
            obs, _ = env.reset(seed=seed)
            for spec in specs[start : start + batch]:
                cam = obs["cameras"][spec.name]
                rgbs.append(cam["rgb"])
                depths.append(cam["depth"])
                Ks.append(cam["intrinsics"])
                w2cs.append(cam["extrinsics"])
        finally:
            env.close()
    cams = Camera(torch.from_numpy(np.stack(Ks)), torch.from_numpy(np.stack(w2cs)), size, size)
    test = [i for i in range(views) if i % holdout == 0]
    train = [i for i in range(views) if i % holdout != 0]
    extra = {"worldline_capture": {"task": task, "seed": seed, "radius": radius, "elevation": list(elevation),
                                   "fovy": fovy, "render_profile": env.render_profile.name}}  # fmt: skip
    return write_nerfstudio(out, np.stack(rgbs), cams, np.stack(depths),
                            split={"train": train, "val": test, "test": test}, extra=extra)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="PickCube")
    p.add_argument("--views", type=int, default=48)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--radius", type=float, default=1.2, help="metres from the workspace centre")
    p.add_argument("--elevation", type=float, nargs=2, default=(15.0, 70.0), help="degrees, band of the sphere")
    p.add_argument("--fovy", type=float, default=45.0)
    p.add_argument("--holdout", type=int, default=8, help="every n-th view is a test view")
    p.add_argument("--profile", default=None, help="render profile (default: the machine's)")
    p.add_argument("--out", type=Path, default=Path("data/scenes/pickcube"))
    a = p.parse_args(argv)
    if a.views < a.holdout or a.holdout < 2:
        p.error(f"--views {a.views} / --holdout {a.holdout}: need holdout >= 2 and views >= holdout")
    if a.size < 8:
        p.error(f"--size: expected >= 8 pixels, got {a.size}")
    path = capture(a.task, a.views, a.size, a.out, a.seed, a.radius, tuple(a.elevation), a.fovy, a.holdout, a.profile)
    print(f"wrote {a.views} views of {a.task} (seed {a.seed}) at {a.size}x{a.size}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
