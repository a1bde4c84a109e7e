"""Look at a built-in text-to-3D prior: DDIM samples (``TinyPrior.sample``), one row per prompt.

    python tools/prior_samples.py "a blue cube" "a red cube"                  # the pixel prior
    python tools/prior_samples.py "a green sphere" --space latent --n 8 --out outputs/prior_latent.png
    python tools/prior_samples.py "a green sphere" --space latent --composable   # slot by slot
    python tools/prior_samples.py "a red cube" --weights /tmp/priors/tiny_pixel_prior.safetensors

Writes a PNG grid (``--out``, default ``outputs/prior_samples.png``), 3x enlarged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from render.dreamer.scenes import parse_prompt  # noqa: E402
from render.dreamer.tiny_prior import TinyPrior, load_builtin  # noqa: E402
from worldline.io import atomic_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompts", nargs="+")
    p.add_argument("--space", choices=["pixel", "latent"], default="pixel")
    p.add_argument("--weights", type=Path, default=None, help="a tiny-prior .safetensors (default: the built-in)")
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--composable", action="store_true", help="guide each caption slot on its own (Composable Diffusion)"
    )
    p.add_argument("--out", type=Path, default=Path("outputs/prior_samples.png"))
    a = p.parse_args(argv)
    try:
        for text in a.prompts:
            parse_prompt(text)
        prior = TinyPrior.load(a.weights) if a.weights else load_builtin(a.space)
    except (ValueError, FileNotFoundError) as exc:
        p.error(str(exc))
    if a.n < 1 or a.steps < 1:
        p.error(f"--n ({a.n}) and --steps ({a.steps}) must be >= 1")
    from PIL import Image

    g = torch.Generator().manual_seed(a.seed)
    rows = [torch.cat(list(prior.sample(text, a.n, a.guidance, a.steps, g, a.composable)), 2) for text in a.prompts]
    img = (torch.cat(rows, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    with atomic_path(a.out) as tmp:
        Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3), Image.NEAREST).save(tmp, format="PNG")
    mode = "composable" if a.composable else "joint"
    print(f"{prior.space} prior, {mode} guidance {a.guidance}: {len(a.prompts)} prompts x {a.n} samples -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
