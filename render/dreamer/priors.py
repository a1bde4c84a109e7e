"""Diffusion priors behind one interface.

A prior has ``image_size`` (the render size it wants), ``alphas_cumprod`` ``[T]`` (its scheduler's
abar_t), ``encode(rgb)`` (renders ``[B, 3, S, S]`` in [0, 1] -> its space, differentiable) and
``predict_noise(x_t, t, text, guidance_scale) -> eps_hat`` with classifier-free guidance.
A prior whose ``camera_conditioned`` attribute is true (a built-in prior trained with
``--camera-cond``) also takes ``view=``, each x_t's camera (elevation, azimuth); ``render dream``
passes it.

- :class:`render.dreamer.tiny_prior.TinyPrior`: the built-in offline priors (pixel and latent);
- :class:`IFPixelPrior`: a DeepFloyd IF stage-I pipeline folder (64 x 64 RGB in [-1, 1]; its
  U-Net predicts 6 channels, the first 3 are eps);
- :class:`SDLatentPrior`: a Stable Diffusion pipeline folder (the VAE encodes the render to latents).

The diffusers adapters load only from a local folder (``local_files_only=True``): nothing downloads.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from render.dreamer.tiny_prior import TinyPrior, load_builtin


def load_prior(spec: str | Path, space: str):
    """``"builtin"`` -> the shipped tiny prior of ``space`` ("pixel" or "latent"); a ``.safetensors``
    file -> a tiny prior; a folder -> a diffusers pipeline (IF for "pixel", Stable Diffusion for
    "latent"). Anything else is a one-line error naming the path."""
    if space not in ("pixel", "latent"):
        raise ValueError(f"space: expected 'pixel' or 'latent', got {space!r}")
    if str(spec) == "builtin":
        prior = load_builtin(space)
    else:
        path = Path(spec)
        if path.is_file() and path.suffix == ".safetensors":
            prior = TinyPrior.load(path)
            if prior.space != space:
                raise ValueError(f"{path}: a {prior.space}-space prior, but a {space}-space one is needed here")
        elif path.is_dir():
            if not (path / "model_index.json").is_file():
                raise ValueError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
            import json

            try:
                kind = json.loads((path / "model_index.json").read_text()).get("_class_name", "")
            except (json.JSONDecodeError, AttributeError):
                raise ValueError(f"{path}/model_index.json: not valid JSON") from None
            want = "IFPipeline" if space == "pixel" else "StableDiffusionPipeline"
            if kind != want:
                raise ValueError(f"{path}: a {kind or 'unknown'} folder, but the {space} prior needs a {want}")
            prior = IFPixelPrior(path) if space == "pixel" else SDLatentPrior(path)
        elif path.is_file():
            raise ValueError(f"{path}: expected a tiny-prior .safetensors file or a diffusers pipeline folder")
        else:
            raise FileNotFoundError(
                f"{path}: no such prior (give 'builtin', a tiny-prior .safetensors or a diffusers folder)"
            )
    prior.builtin = isinstance(prior, TinyPrior)
    return prior


def _diffusers():
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ImportError("diffusers priors need diffusers and transformers: pip install -e '.[diffusion]'") from None
    import diffusers

    return diffusers


class _DiffusersPrior:
    """Shared text handling: prompt embeddings cached per text, CFG by batching cond + uncond."""

    pipe = None

    def _setup(self, pipe) -> None:
        self.pipe = pipe
        for m in (pipe.unet, pipe.text_encoder, getattr(pipe, "vae", None)):
            if m is not None:
                m.eval().requires_grad_(False)
        kind = pipe.scheduler.config.get("prediction_type", "epsilon")
        if kind != "epsilon":
            raise ValueError(f"{type(pipe).__name__}: prediction_type {kind!r} is not supported (only epsilon)")
        self.alphas_cumprod = pipe.scheduler.alphas_cumprod.double()
        self._cache: dict[str, tuple[Tensor, Tensor]] = {}

    def _embed(self, text: str) -> tuple[Tensor, Tensor]:
        """(conditional, unconditional) embeddings from the pipeline's own ``encode_prompt`` (its
        tokenizer length, attention mask and negative prompt ""), cached per text."""
        if text not in self._cache:
            with torch.no_grad():
                self._cache[text] = self._encode_prompt(text)
        return self._cache[text]

    def _eps(self, x_t: Tensor, t: Tensor, text: str, guidance_scale: float) -> Tensor:
        b = x_t.shape[0]
        cond, uncond = self._embed(str(text))
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(b)
        with torch.no_grad():
            out = self.pipe.unet(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                 encoder_hidden_states=torch.cat([cond.expand(b, -1, -1), uncond.expand(b, -1, -1)])
                                 ).sample  # fmt: skip
        out = out[:, : x_t.shape[1]]  # IF: 6 channels (eps, variance); eps first
        eps_c, eps_u = out.chunk(2)
        return eps_u + guidance_scale * (eps_c - eps_u)

    def predict_noise(self, x_t: Tensor, t: Tensor, text: str, guidance_scale: float = 7.5) -> Tensor:
        return self._eps(x_t, t, text, guidance_scale)

    def to(self, device):
        self.pipe.to(device)
        self.alphas_cumprod = self.alphas_cumprod.to(device)
        self._cache.clear()
        return self


class IFPixelPrior(_DiffusersPrior):
    """DeepFloyd IF stage I (``IFPipeline``) from a local folder: pixel space, [-1, 1]."""

    space = "pixel"

    def __init__(self, path: str | Path):
        d = _diffusers()
        try:
            pipe = d.IFPipeline.from_pretrained(str(path), local_files_only=True, safety_checker=None,
                                                feature_extractor=None, watermarker=None)  # fmt: skip
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot load a DeepFloyd IF pipeline: {str(exc).splitlines()[0]}") from None
        self._setup(pipe)
        self.image_size = int(pipe.unet.config.sample_size)

    def _encode_prompt(self, text: str) -> tuple[Tensor, Tensor]:
        return self.pipe.encode_prompt(text, do_classifier_free_guidance=True, num_images_per_prompt=1,
                                       device=self.pipe.device, negative_prompt="", clean_caption=False)  # fmt: skip

    def encode(self, rgb: Tensor) -> Tensor:
        x = F.interpolate(rgb, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x * 2.0 - 1.0


class SDLatentPrior(_DiffusersPrior):
    """Stable Diffusion (``StableDiffusionPipeline``) from a local folder: the VAE's scaled latents."""

    space = "latent"

    def __init__(self, path: str | Path):
        d = _diffusers()
        try:
            pipe = d.StableDiffusionPipeline.from_pretrained(
                str(path), local_files_only=True, safety_checker=None, feature_extractor=None,
                requires_safety_checker=False)  # fmt: skip
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot load a Stable Diffusion pipeline: {str(exc).splitlines()[0]}") from None
        self._setup(pipe)
        self.vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.image_size = int(pipe.unet.config.sample_size) * self.vae_scale

    def _encode_prompt(self, text: str) -> tuple[Tensor, Tensor]:
        return self.pipe.encode_prompt(text, self.pipe.device, 1, True, negative_prompt="")

    def encode(self, rgb: Tensor) -> Tensor:
        x = F.interpolate(rgb, (self.image_size, self.image_size), mode="bilinear", align_corners=False) * 2.0 - 1.0
        return self.pipe.vae.encode(x).latent_dist.mean * self.pipe.vae.config.scaling_factor
