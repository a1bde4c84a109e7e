"""Train the built-in text-to-3D priors of ``render dream`` (``render.dreamer.tiny_prior``).

Data: every training caption of ``render.dreamer.scenes`` ("a small red cube", ...; colour x shape
x size, minus the held-out (colour, shape) pairs), 128 views each, rendered with our own Gaussian rasterizer from
random views on the camera sphere ``render dream`` uses, with jittered size and colour and a random
solid background. Model: DDPM noise prediction (linear betas, T = 1000), caption slots dropped at
random (each with p = 0.15, all at once with p = 0.1) so classifier-free guidance and partial
prompts ("a red cube") work; EMA weights are saved as fp16 safetensors in ``assets/dreamer/``.

    python tools/train_tiny_prior.py                       # both priors, the shipped settings (~37 min)
    python tools/train_tiny_prior.py --space pixel --steps 200 --out-dir /tmp/priors   # a quick look
    python tools/train_tiny_prior.py --validation-split --out-dir outputs/prior_valsplit

``--validation-split`` also leaves out ``scenes.VALIDATION_UNSEEN`` (cyan cube, red sphere,
magenta cylinder): priors for choosing ``render dream``'s settings on unseen pairs
(``tools/bench/dream_eval.py --prompts unseen-val``) without touching the held-out ones. They are
never written to ``assets/``.

Writes ``<space>`` weights and a ``tiny_prior_training.json`` with the settings and the loss.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from render.dreamer.scenes import (  # noqa: E402
    COLOURS,
    SHAPE_COLOURS,
    SHAPES,
    SIZES,
    VALIDATION_UNSEEN,
    CameraRanges,
    Prompt,
    all_prompts,
    camera_angles,
    decorrelation_gaussians,
    primitive_gaussians,
    sample_cameras,
)
from render.dreamer.tiny_prior import CaptionEncoder, TinyPrior, TinyPriorConfig  # noqa: E402
from render.gaussians.rasterize import rasterize_torch  # noqa: E402
from worldline.io import save_json  # noqa: E402
from worldline.runtime import retain_freed_memory  # noqa: E402


def render_dataset(views: int, size: int, seed: int, progress: bool = True,
                   exclude: tuple[tuple[str, str], ...] = (), decorrelation_views: int = 0,
                   shape_colour: str = "grey") -> tuple[torch.Tensor, list[Prompt], torch.Tensor]:  # fmt: skip
    """``[M, 3, size, size]`` images in [0, 1], their prompts and their cameras' ``[M, 2]``
    (elevation, azimuth) in radians (``scenes.camera_angles``): ``views`` per training caption
    (``scenes.all_prompts``, less the (colour, shape) pairs in ``exclude``), then
    ``decorrelation_views`` per colour-only and per shape-only caption
    (``scenes.decorrelation_gaussians``: a named colour on a cluster of four balls, a named shape in
    ``shape_colour``: grey, or a colour on the border between two names)."""
    g = torch.Generator().manual_seed(seed)
    images, prompts, angles = [], [], []
    todo = [p for p in all_prompts(exclude=exclude) for _ in range(views)]
    partial = [Prompt(c, None, z) for c in COLOURS for z in SIZES] + [Prompt(None, s, z) for s in SHAPES for z in SIZES]
    todo += [p for p in partial for _ in range(decorrelation_views)]
    for i, p in enumerate(tqdm(todo, desc="render data", disable=not progress)):
        if p.colour and p.shape:
            gs = primitive_gaussians(p, n=1200, seed=seed * 100003 + i, jitter=0.15)
        else:
            gs = decorrelation_gaussians(p, n=1200, seed=seed * 100003 + i, jitter=0.15, shape_colour=shape_colour)
        cam = sample_cameras(1, size, CameraRanges(), g)[0]
        angles.append(camera_angles([cam])[0])
        bg = torch.rand(3, generator=g)
        with torch.no_grad():
            out = rasterize_torch(gs, cam, background=bg)
        images.append(out["rgb"].permute(2, 0, 1))
        prompts.append(p)
    return torch.stack(images), prompts, torch.stack(angles)


def train(space: str, images: torch.Tensor, prompts: list[Prompt], steps: int, batch: int, lr: float, seed: int,
          progress: bool = True, colour_blocks: str = "all", hue_blind: bool = False,
          views: torch.Tensor | None = None) -> tuple[TinyPrior, list[float]]:  # fmt: skip
    """``views`` (the images' (elevation, azimuth), from :func:`render_dataset`) makes a
    camera-conditioned prior (``TinyPriorConfig.camera_cond``)."""
    torch.manual_seed(seed)
    prior = TinyPrior(TinyPriorConfig(space=space, image_size=images.shape[-1], colour_blocks=colour_blocks,
                                      hue_blind=hue_blind, camera_cond=views is not None))  # fmt: skip
    ema = copy.deepcopy(prior.unet).requires_grad_(False)
    opt = torch.optim.AdamW(prior.unet.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    idx_all = CaptionEncoder.indices(prompts)
    with torch.no_grad():
        data = prior.encode(images)
    abar = prior.alphas_cumprod.float()
    losses = []
    bar = tqdm(range(steps), desc=f"train {space} prior", disable=not progress)
    for step in bar:
        b = torch.randint(0, len(data), (batch,))
        x0, cond = data[b], idx_all[b].clone()
        cond[torch.rand(cond.shape) < 0.15] = 0  # drop slots: partial prompts
        cond[torch.rand(batch) < 0.1] = 0  # drop all: the unconditional branch of guidance
        t = torch.randint(0, prior.cfg.timesteps, (batch,))
        noise = torch.randn_like(x0)
        a = abar[t].reshape(-1, 1, 1, 1)
        view = None if views is None else views[b]
        loss = torch.nn.functional.mse_loss(prior.unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, cond, view), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.unet.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for pe, p in zip(ema.parameters(), prior.unet.parameters()):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    prior.unet.load_state_dict(ema.state_dict())
    return prior.eval(), losses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", choices=["pixel", "latent", "both"], default="both")
    p.add_argument("--views", type=int, default=128, help="renders per training caption")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=6000, help="optimiser steps of the pixel prior")
    p.add_argument(
        "--latent-steps",
        type=int,
        default=8000,
        help="optimiser steps of the latent prior (3x cheaper per step: 16 x 16 inputs)",
    )
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=ROOT / "assets" / "dreamer")
    p.add_argument("--decorrelation-views", type=int, default=0,
                   help="renders per colour-only and per shape-only caption (a colour on a cluster of four "
                        "balls, a shape in --shape-colours) so one slot implies nothing of the other")  # fmt: skip
    p.add_argument("--shape-colours", choices=list(SHAPE_COLOURS), default="grey",
                   help="colour of the shape-only decorrelation renders: grey, or boundary (a colour equally "
                        "far from two hue-adjacent names, e.g. azure between cyan and blue)")  # fmt: skip
    p.add_argument("--colour-blocks", choices=["all", "up", "outer"], default="all",
                   help="U-Net blocks the colour slot conditions (up: u1, u0; outer: u0)")  # fmt: skip
    p.add_argument("--hue-blind", action="store_true",
                   help="the blocks before --colour-blocks' see x_t only through per-pixel channel max and min "
                        "(needs --colour-blocks up or outer)")  # fmt: skip
    p.add_argument("--camera-cond", action="store_true",
                   help="condition the priors on the view's (elevation, azimuth), so a cube has one yaw")  # fmt: skip
    p.add_argument("--validation-split", action="store_true",
                   help="also leave out scenes.VALIDATION_UNSEEN (for choosing settings; needs --out-dir)")  # fmt: skip
    a = p.parse_args(argv)
    if a.decorrelation_views < 0:
        p.error(f"--decorrelation-views {a.decorrelation_views}: must be >= 0")
    try:  # the priors' own config rules, checked before the data is rendered
        TinyPriorConfig(colour_blocks=a.colour_blocks, hue_blind=a.hue_blind, camera_cond=a.camera_cond)
    except ValueError as exc:
        p.error(str(exc))
    if a.validation_split and a.out_dir.resolve() == (ROOT / "assets" / "dreamer").resolve():
        p.error("--validation-split: give --out-dir; validation-split priors never replace the shipped ones")
    retain_freed_memory()
    t0 = time.time()
    exclude = VALIDATION_UNSEEN if a.validation_split else ()
    images, prompts, angles = render_dataset(
        a.views,
        a.size,
        a.seed,
        exclude=exclude,
        decorrelation_views=a.decorrelation_views,
        shape_colour=a.shape_colours,
    )
    report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(a).items()},
              "captions": sorted({q.text for q in prompts}), "images": len(images), "priors": {}}  # fmt: skip
    for space in ["pixel", "latent"] if a.space == "both" else [a.space]:
        steps = a.steps if space == "pixel" else a.latent_steps
        prior, losses = train(
            space,
            images,
            prompts,
            steps,
            a.batch,
            a.lr,
            a.seed,
            colour_blocks=a.colour_blocks,
            hue_blind=a.hue_blind,
            views=angles if a.camera_cond else None,
        )
        path = a.out_dir / f"tiny_{space}_prior.safetensors"
        prior.save(path, {"captions": report["captions"], "steps": steps})
        tail = losses[-200:]
        report["priors"][space] = {"path": str(path), "steps": steps, "final_loss": sum(tail) / len(tail),
                                   "loss_every_500": [sum(losses[i:i + 500]) / len(losses[i:i + 500])
                                                      for i in range(0, len(losses), 500)],
                                   "bytes": path.stat().st_size}  # fmt: skip
        print(f"{space}: final loss {report['priors'][space]['final_loss']:.4f} -> {path} "
              f"({path.stat().st_size / 1e6:.2f} MB)")  # fmt: skip
    report["seconds"] = time.time() - t0
    save_json(report, a.out_dir / "tiny_prior_training.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
