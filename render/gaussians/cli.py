"""``render splat``: reconstruct a scene with 3D Gaussians, evaluate it, render an orbit video.

    render splat train --data data/scenes/pickcube --out runs/splat [--steps 3000 --backend torch]
    render splat eval --checkpoint runs/splat [--split test --lpips-weights lpips_alex.safetensors]
    render splat video --checkpoint runs/splat --out renders/splat.mp4 [--frames 60]

``train`` resumes from ``--out``'s last checkpoint and ends by evaluating the test split (the
ns-eval JSON of ``render nerf eval``, in ``<out>/eval_test.json``). Checkpoints hold the Gaussians
as a standard 3DGS PLY (``checkpoints/step_N/gaussians.ply``), readable by splat viewers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from render.gaussians.train import SplatTrainConfig


@dataclass
class EvalCommand:
    checkpoint: Path
    """a checkpoint folder, a run folder (its last checkpoint) or a .ply file"""
    data: Path | None = None
    """default: the checkpoint's dataset"""
    split: str = "test"
    lpips_weights: Path | None = None
    out: Path | None = None
    device: str = "auto"
    backend: str = "auto"


@dataclass
class VideoCommand:
    checkpoint: Path
    out: Path = Path("outputs/splat/orbit.mp4")
    data: Path | None = None
    """cameras to orbit around (default: the checkpoint's dataset)"""
    frames: int = 60
    fps: int = 24
    size: int | None = None
    """image width and height (default: the dataset's)"""
    device: str = "auto"
    backend: str = "auto"


def _resolve(path: Path) -> tuple[Path, dict]:
    from worldline.io import load_json

    if path.suffix == ".ply":
        return path, {}
    if (path / "gaussians.ply").is_file():
        return path / "gaussians.ply", load_json(path / "trainer.json")
    done = sorted(p for p in (path / "checkpoints").glob("step_*") if (p / "gaussians.ply").is_file())
    if not done:
        raise FileNotFoundError(
            f"--checkpoint: no Gaussians in {path} (expected a .ply, gaussians.ply or checkpoints/)"
        )
    return done[-1] / "gaussians.ply", load_json(done[-1] / "trainer.json")


def _load(args):
    import torch

    from render.datasets import load_dataset
    from render.gaussians.ply import load_ply

    ply, meta = _resolve(args.checkpoint)
    data_path = args.data or meta.get("data")
    if data_path is None:
        raise ValueError("--data: a bare .ply needs --data for its cameras")
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    split = getattr(args, "split", "all")
    data = load_dataset(data_path, split, downscale=meta.get("downscale", 1.0),
                        background=meta.get("background", "white"),
                        holdout_every=meta.get("holdout_every", 8))  # fmt: skip
    return load_ply(ply, dev), data, ply, dev


def evaluate_splats(model, data, backend="auto", lpips_weights=None, device=None, progress=True) -> dict:
    import torch

    from render.evaluation import evaluate_renders
    from render.gaussians.rasterize import rasterize

    bg = torch.tensor(data.background, device=model.means.device)

    def render_fn(cam):
        return rasterize(model, cam.to(model.means.device), background=bg, backend=backend)["rgb"]

    res = evaluate_renders(render_fn, data, lpips_weights, device, progress, "splat eval")
    res["gaussians"] = len(model)
    return res


def train(argv: list[str]) -> None:
    import tyro

    from render.datasets import load_dataset
    from render.gaussians.train import SplatTrainer
    from worldline.io import save_json

    cfg = tyro.cli(SplatTrainConfig, args=argv, prog="render splat train")
    trainer = SplatTrainer(cfg)
    result = trainer.run()
    if result["resumed_from"]:
        print(f"resumed from {result['resumed_from']}")
    test = load_dataset(cfg.data, "test", downscale=cfg.downscale, background=cfg.background,
                        holdout_every=cfg.holdout_every)  # fmt: skip
    res = evaluate_splats(trainer.model, test, cfg.backend, device=trainer.device)
    out = Path(cfg.out) / "eval_test.json"
    save_json({"experiment_name": Path(cfg.out).name, "method_name": "3dgs", "checkpoint": result["checkpoint"],
               "split": "test", "results": res}, out)  # fmt: skip
    print(f"trained to step {result['step']} ({len(trainer.model)} Gaussians); test PSNR {res['psnr']:.2f} dB, "
          f"SSIM {res['ssim']:.3f}; {out}")  # fmt: skip


def evaluate_cmd(argv: list[str]) -> None:
    import tyro

    from worldline.io import save_json

    args = tyro.cli(EvalCommand, args=argv, prog="render splat eval")
    model, data, ply, dev = _load(args)
    res = evaluate_splats(model, data, args.backend, args.lpips_weights, dev)
    out = args.out or ply.parent / f"eval_{args.split}.json"
    save_json({"experiment_name": ply.parent.name, "method_name": "3dgs", "checkpoint": str(ply),
               "split": args.split, "results": res}, out)  # fmt: skip
    print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))
    print(f"wrote {out}")


def video(argv: list[str]) -> None:
    import numpy as np
    import torch
    import tyro
    from tqdm import tqdm

    from render.evaluation import orbit_cameras, write_video
    from render.gaussians.rasterize import rasterize

    args = tyro.cli(VideoCommand, args=argv, prog="render splat video")
    if args.frames < 1:
        raise ValueError(f"--frames: expected >= 1, got {args.frames}")
    model, data, _, dev = _load(args)
    cams = orbit_cameras(data.cameras, args.frames)
    if args.size:
        cams = cams.resize(args.size, args.size)
    bg = torch.tensor(data.background, device=dev)
    frames = []
    with torch.no_grad():
        for i in tqdm(range(args.frames), desc="splat video"):
            rgb = rasterize(model, cams[i].to(dev), background=bg, backend=args.backend)["rgb"]
            frames.append((rgb.clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8))
    write_video(frames, args.out, fps=args.fps)
    print(f"wrote {args.frames} frames to {args.out}")


COMMANDS = {"train": train, "eval": evaluate_cmd, "video": video}
