"""``render nerf``: train, render and evaluate NeRF models (ProNeRF or vanilla NeRF).

    render nerf train --data data/scenes/pickcube --out runs/pronerf [--config cpu-small --model.method vanilla]
    render nerf eval --checkpoint runs/pronerf [--split test --lpips-weights lpips_alex.safetensors]
    render nerf render --checkpoint runs/pronerf --out renders/pronerf [--orbit 60]

``--config`` names a preset (``configs/nerf/<name>.yaml``) or a YAML file; every field can be
overridden (``--help``). Training resumes from ``--out``'s last checkpoint when started again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from render.nerf.config import NerfTrainConfig, load_nerf_preset


@dataclass
class TrainCommand(NerfTrainConfig):
    """Train a NeRF model on a Blender folder or a nerfstudio transforms.json (resumable)."""

    config: str = "cpu-small"
    """preset name (configs/nerf/<name>.yaml) or YAML path; read before the other flags"""


@dataclass
class EvalCommand:
    """Evaluate a checkpoint on a split: ns-eval's JSON keys plus samples_per_ray."""

    checkpoint: Path
    """a checkpoint folder (…/checkpoints/step_N) or a run folder (its last checkpoint)"""
    data: Path | None = None
    """default: the dataset the model was trained on"""
    split: str = "test"
    lpips_weights: Path | None = None
    """local LPIPS-AlexNet safetensors (render.metrics.LPIPS); without it lpips is null"""
    out: Path | None = None
    """JSON path (default: <run>/eval_<split>.json)"""
    chunk: int = 4096
    device: str = "auto"


@dataclass
class RenderCommand:
    """Render a split's views (RGB and uint16-millimetre depth PNGs) and an orbit video."""

    checkpoint: Path
    out: Path
    data: Path | None = None
    split: str = "test"
    orbit: int = 60
    """frames of the orbit video (0: no video)"""
    fps: int = 24
    chunk: int = 4096
    device: str = "auto"


def _preset_arg(argv: list[str], default: str) -> str:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return default


def train(argv: list[str]) -> None:
    import tyro

    from render.nerf.train import NerfTrainer

    preset = _preset_arg(argv, "cpu-small")
    base = load_nerf_preset(preset)
    default = TrainCommand(config=preset, **{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    args = tyro.cli(TrainCommand, args=argv, default=default, prog="render nerf train")
    cfg = NerfTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(NerfTrainConfig)})
    result = NerfTrainer(cfg).run()
    if result["resumed_from"]:
        print(f"resumed from {result['resumed_from']}")
    print(f"trained to step {result['step']} (train PSNR {result.get('psnr', float('nan')):.2f} dB); "
          f"{result['checkpoint']}")  # fmt: skip


def _test_data(args, meta: dict):
    from render.datasets import load_dataset

    s = meta["scene"]
    return load_dataset(args.data or meta["data"], args.split, downscale=meta["downscale"],
                        background=meta["background"], holdout_every=meta["holdout_every"], near=s["near"],
                        far=s["far"])  # fmt: skip


def evaluate_cmd(argv: list[str]) -> None:
    import tyro

    from render.nerf.evaluate import evaluate
    from render.nerf.train import load_model
    from worldline.io import save_json

    args = tyro.cli(EvalCommand, args=argv, prog="render nerf eval")
    model, meta, ckpt = load_model(args.checkpoint, args.device, args.data)
    data = _test_data(args, meta)
    results = evaluate(model, data, args.lpips_weights, args.chunk)
    out = args.out or ckpt.parent.parent / f"eval_{args.split}.json"
    save_json({"experiment_name": ckpt.parent.parent.name, "method_name": model.cfg.method,
               "checkpoint": str(ckpt), "split": args.split, "results": results}, out)  # fmt: skip
    print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in results.items()))
    print(f"wrote {out}")


def render_cmd(argv: list[str]) -> None:
    import numpy as np
    import tyro
    from PIL import Image
    from tqdm import tqdm

    from render.nerf.evaluate import orbit_cameras, render_image, write_video
    from render.nerf.train import load_model

    args = tyro.cli(RenderCommand, args=argv, prog="render nerf render")
    model, meta, ckpt = load_model(args.checkpoint, args.device, args.data)
    data = _test_data(args, meta)
    (args.out / "rgb").mkdir(parents=True, exist_ok=True)
    (args.out / "depth").mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(len(data)), desc=f"render {args.split}"):
        out = render_image(model, data.cameras[i], args.chunk)
        Image.fromarray((out["rgb"].numpy() * 255).round().astype(np.uint8)).save(args.out / "rgb" / f"{i:05d}.png")
        mm = np.clip(np.round(out["depth"].numpy() * 1000), 0, 65535).astype(np.uint16)
        Image.fromarray(mm).save(args.out / "depth" / f"{i:05d}.png")
    if args.orbit > 0:
        frames = []
        around = _test_data(dataclasses.replace(args, split="all"), meta).cameras  # orbit the whole capture
        for cam in tqdm(orbit_cameras(around, args.orbit), desc="orbit", total=args.orbit):
            rgb = render_image(model, cam, args.chunk)["rgb"]
            frames.append((rgb.numpy() * 255).round().astype(np.uint8))
        write_video(frames, args.out / "orbit.mp4", fps=args.fps)
    print(f"wrote {len(data)} views (rgb/, depth/ uint16 mm){' and orbit.mp4' if args.orbit else ''} to {args.out}")


COMMANDS = {"train": train, "eval": evaluate_cmd, "render": render_cmd}
