"""Reconstruction of a simulated MV-Bench scene with 3D Gaussians: capture it with
``tools/capture_scene.py``, train ``render.gaussians`` on the training views, and report PSNR/SSIM
on the held-out views (every 8th) and on the training views.

    python tools/bench/splat_reconstruction.py                                  # 24 views, 48 px, 600 steps
    python tools/bench/splat_reconstruction.py --views 48 --size 64 --steps 1500

JSON: ``outputs/bench/splat_reconstruction_<views>v_<size>px_<steps>.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "tools"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from capture_scene import capture  # noqa: E402

from render.datasets import load_dataset  # noqa: E402
from render.gaussians.cli import evaluate_splats  # noqa: E402
from render.gaussians.strategy import DensifyConfig  # noqa: E402
from render.gaussians.train import SplatTrainConfig, SplatTrainer  # noqa: E402
from worldline.io import save_json  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="PickCube")
    p.add_argument("--views", type=int, default=24)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--init-points", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=Path("outputs/bench/splat_recon"))
    a = p.parse_args(argv)
    tag = f"{a.views}v_{a.size}px_{a.steps}"
    data = capture(a.task, a.views, a.size, a.work / f"scene_{a.views}v_{a.size}px", seed=a.seed, holdout=8)
    out = a.work / f"run_{tag}"
    shutil.rmtree(out, ignore_errors=True)  # numbers come from this code, never a resumed old run
    dens = DensifyConfig(refine_start_iter=100, refine_every=100, reset_every=3000)
    cfg = SplatTrainConfig(data=data, out=out, steps=a.steps, init_points=a.init_points, save_every=10**6,
                           densify=dens, seed=a.seed)  # fmt: skip
    t0 = time.perf_counter()
    trainer = SplatTrainer(cfg)
    trainer.run()
    seconds = time.perf_counter() - t0
    test = evaluate_splats(trainer.model, load_dataset(data, "test"), progress=False)
    train = evaluate_splats(trainer.model, load_dataset(data, "train"), progress=False)
    print(
        f"{a.views} views at {a.size} px, {a.steps} steps ({seconds:.0f} s, {len(trainer.model)} Gaussians): "
        f"held-out PSNR {test['psnr']:.2f} dB, SSIM {test['ssim']:.3f}; training views {train['psnr']:.2f} dB"
    )
    path = ROOT / "outputs" / "bench" / f"splat_reconstruction_{tag}.json"
    save_json({"settings": vars(a) | {"work": str(a.work)}, "train_seconds": seconds, "gaussians": len(trainer.model),
               "test": test, "train": train}, path)  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
