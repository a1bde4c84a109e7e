"""ProNeRF against vanilla NeRF on one simulator scene: the same field size, the same training
wall-clock budget (or the same steps), trained and evaluated by the same code in one run.

    python tools/bench/nerf_vs_pronerf.py                         # 100 px PickCube scene, 600 s each
    python tools/bench/nerf_vs_pronerf.py --budget 0 --steps 300  # equal steps instead of equal time
    python tools/bench/nerf_vs_pronerf.py --preset gpu-base --size 256 --budget 1200 --device cuda

The scene is captured with ``tools/capture_scene.py`` when ``--data`` does not exist (48 views on
a view sphere, every 8th held out). Reported per method: test PSNR/SSIM, field evaluations per
ray, and the end-to-end time to render a test image (ProNeRF's sampler, projection and refine
networks included), median over the test images after one warm-up render. Ratios are against
vanilla NeRF measured in the same run. JSON: ``outputs/bench/nerf_vs_pronerf.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from render.datasets import load_dataset  # noqa: E402
from render.metrics import psnr, ssim  # noqa: E402
from render.nerf.config import load_nerf_preset  # noqa: E402
from render.nerf.evaluate import render_image  # noqa: E402
from render.nerf.train import NerfTrainer, load_model  # noqa: E402
from worldline.io import save_json  # noqa: E402


def timed_renders(model, data, chunk: int) -> tuple[list[float], list[dict]]:
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    render_image(model, data.cameras[0], chunk)  # warm-up
    secs, outs = [], []
    for i in range(len(data)):
        sync()
        t0 = time.perf_counter()
        out = render_image(model, data.cameras[i], chunk)
        sync()
        secs.append(time.perf_counter() - t0)
        outs.append(out)
    return secs, outs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("outputs/bench/nerf_scene"))
    p.add_argument("--task", default="PickCube", help="scene to capture when --data does not exist")
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--samples", type=int, default=8, help="ProNeRF's K")
    p.add_argument("--budget", type=float, default=600.0, help="training seconds per method (0: use --steps)")
    p.add_argument("--steps", type=int, default=100000, help="step cap (the schedule's length without a budget)")
    p.add_argument("--batch-rays", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--chunk", type=int, default=8192)
    p.add_argument("--methods", nargs="+", default=["vanilla", "pronerf"])
    p.add_argument("--runs", type=Path, default=Path("outputs/bench/nerf_runs"))
    p.add_argument("--out", type=Path, default=Path("outputs/bench/nerf_vs_pronerf.json"))
    a = p.parse_args(argv)
    if a.budget <= 0 and a.steps >= 100000:
        p.error("--budget 0 needs an explicit --steps")
    if not (a.data / "transforms.json").is_file():
        sys.path.insert(0, str(ROOT / "tools"))
        from capture_scene import capture

        print(f"capturing {a.task} at {a.size} px -> {a.data}", flush=True)
        capture(a.task, 48, a.size, a.data)
    test = load_dataset(a.data, "test")
    base = load_nerf_preset(a.preset)
    tag = f"{a.preset}_{a.size}px_{'t' + str(int(a.budget)) if a.budget > 0 else 's' + str(a.steps)}_k{a.samples}"
    rows = {}
    for method in a.methods:
        model_cfg = dataclasses.replace(base.model, method=method, samples=a.samples)
        cfg = dataclasses.replace(base, data=a.data, out=a.runs / f"{tag}_{method}", model=model_cfg, steps=a.steps,
                                  time_budget=a.budget, seed=a.seed, device=a.device,
                                  batch_rays=a.batch_rays or base.batch_rays, save_every=10**9)  # fmt: skip
        amount = f"{a.budget:.0f} s" if a.budget > 0 else f"{a.steps} steps"
        print(f"training {method} ({amount})", flush=True)
        shutil.rmtree(cfg.out, ignore_errors=True)  # numbers come from this code, never a resumed old run
        trainer = NerfTrainer(cfg)
        result = trainer.run()
        model, _, ckpt = load_model(cfg.out, a.device)
        secs, outs = timed_renders(model, test, a.chunk)
        ps = [float(psnr(o["rgb"], test.images[i])) for i, o in enumerate(outs)]
        ss = [float(ssim(o["rgb"], test.images[i])) for i, o in enumerate(outs)]
        params = {name: sum(p.numel() for p in mod.parameters()) for name, mod in model.named_children()}
        rows[method] = {"steps": result["step"], "train_seconds": round(trainer.elapsed, 1),
                        "psnr": statistics.mean(ps), "ssim": statistics.mean(ss),
                        "samples_per_ray": model.samples_per_ray, "render_seconds": statistics.median(secs),
                        "fps": 1.0 / statistics.median(secs), "parameters": params,
                        "checkpoint": str(ckpt)}  # fmt: skip
        r = rows[method]
        print(f"  {method:8s} steps {r['steps']:6d}  test PSNR {r['psnr']:.2f} dB  SSIM {r['ssim']:.3f}  "
              f"{r['samples_per_ray']} samples/ray  {r['render_seconds']:.3f} s/image", flush=True)  # fmt: skip
    summary = {}
    if {"vanilla", "pronerf"} <= set(rows):
        v, q = rows["vanilla"], rows["pronerf"]
        summary = {"fewer_field_evals": v["samples_per_ray"] / q["samples_per_ray"],
                   "render_speedup": v["render_seconds"] / q["render_seconds"],
                   "psnr_difference_db": q["psnr"] - v["psnr"]}  # fmt: skip
        summary["meets_issue"] = {"evals >= 8x": summary["fewer_field_evals"] >= 8,
                                  "render >= 5x": summary["render_speedup"] >= 5,
                                  "psnr >= baseline - 0.5 dB": summary["psnr_difference_db"] >= -0.5}  # fmt: skip
        print(
            f"ProNeRF vs NeRF: {summary['fewer_field_evals']:.1f}x fewer field evaluations per ray, "
            f"{summary['render_speedup']:.1f}x faster test render, {summary['psnr_difference_db']:+.2f} dB PSNR"
        )
    settings = {"data": str(a.data), "size": test.width, "test_images": len(test), "preset": a.preset,
                "samples": a.samples, "budget_seconds": a.budget, "step_cap": a.steps, "seed": a.seed,
                "batch_rays": a.batch_rays or base.batch_rays, "device": a.device,
                "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                "processor": platform.processor() or platform.machine(),
                "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}  # fmt: skip
    save_json({"settings": settings, "results": rows, "summary": summary}, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
