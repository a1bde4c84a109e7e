"""Reconstruction with 3D Gaussians (``render splat train``): one training image per step,
L1 + D-SSIM loss, per-parameter Adam learning rates (3DGS's, means scaled by the scene size and
decayed exponentially), SH degree raised every ``sh_degree_every`` steps, adaptive density
control (:mod:`render.gaussians.strategy`), progress bar, TensorBoard, atomic checkpoints and
exact resume, and the ns-eval evaluation of ``render nerf eval`` at the end.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from render import checkpoints
from render.datasets import SceneData, load_dataset
from render.gaussians.model import GaussianModel
from render.gaussians.rasterize import rasterize
from render.gaussians.strategy import DensifyConfig, DensifyState, make_optimizer, refine_step
from render.metrics import ssim
from worldline import axes_focus, fuse_rgbd
from worldline.io import load_json, load_weights, save_json, save_weights


@dataclass
class SplatTrainConfig:
    """Train 3D Gaussians on a Blender folder or a nerfstudio transforms.json (resumable)."""

    data: Path = Path("data/scene")
    out: Path = Path("outputs/splat/run")
    steps: int = 3000
    sh_degree: int = 3
    sh_degree_every: int = 1000
    """raise the active SH degree by one every this many steps (as 3DGS)"""
    init: str = "auto"
    """auto (depth points when the data has depth, else random) | depth | random"""
    init_points: int = 20000
    init_radius: float = 0.0
    """random init: ball radius (0: half the distance from the cameras to the look-at point)"""
    lr_means: float = 1.6e-4
    """times the scene scale; decays to 1/100 over the steps"""
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    ssim_lambda: float = 0.2
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    downscale: float = 1.0
    background: str = "white"
    holdout_every: int = 8
    seed: int = 0
    save_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    device: str = "auto"
    threads: int = 0
    backend: str = "auto"
    """rasterizer: auto | torch | gsplat"""

    def __post_init__(self):
        for name in ("steps", "save_every", "log_every", "sh_degree_every", "init_points", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.init not in ("auto", "depth", "random"):
            raise ValueError(f"init: expected auto, depth or random, got {self.init!r}")
        if not 0 <= self.ssim_lambda <= 1:
            raise ValueError(f"ssim_lambda: expected [0, 1], got {self.ssim_lambda}")


def scene_scale(data: SceneData) -> float:
    """1.1 x the largest distance from a camera to the cameras' mean centre (3DGS's ``spatial_lr_scale``)."""
    c = data.cameras.center.reshape(-1, 3).double()
    return 1.1 * float((c - c.mean(0)).norm(dim=-1).max())


def initial_gaussians(data: SceneData, cfg: SplatTrainConfig) -> GaussianModel:
    g = torch.Generator().manual_seed(cfg.seed)
    use_depth = cfg.init == "depth" or (cfg.init == "auto" and data.depths is not None)
    if use_depth:
        if data.depths is None:
            raise ValueError(f"init: 'depth' needs a dataset with depth maps; {cfg.data} has none")
        cloud = fuse_rgbd(data.cameras, data.depths, data.images)
        pts, rgb = cloud.xyz, cloud.rgb
        if len(pts) > cfg.init_points:
            keep = torch.randperm(len(pts), generator=g)[: cfg.init_points]
            pts, rgb = pts[keep], rgb[keep]
        return GaussianModel.from_points(pts, rgb, sh_degree=cfg.sh_degree)
    centre = axes_focus(data.cameras)
    radius = cfg.init_radius or 0.5 * float((data.cameras.center - centre).norm(dim=-1).mean())
    return GaussianModel.random_in_sphere(cfg.init_points, radius, tuple(centre.tolist()), cfg.sh_degree, cfg.seed)


class SplatTrainer:
    def __init__(self, config: SplatTrainConfig, data: SceneData | None = None):
        self.config = c = config
        if c.threads > 0:
            torch.set_num_threads(c.threads)
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if c.device == "auto" else c.device)
        torch.manual_seed(c.seed)
        self.data = data if data is not None else load_dataset(
            c.data, "train", downscale=c.downscale, background=c.background, holdout_every=c.holdout_every)  # fmt: skip
        self.bg = torch.tensor(self.data.background, device=self.device)
        self.scale = scene_scale(self.data)
        self.model = initial_gaussians(self.data, c).to(self.device)
        self.opt = make_optimizer(self.model, self.lrs(0))
        self.state = DensifyState(len(self.model), self.device)
        self.gen = torch.Generator().manual_seed(c.seed)
        self.step = 0
        self.ckpt_dir = Path(c.out) / "checkpoints"

    def lrs(self, step: int) -> dict[str, float]:
        c = self.config
        decay = 0.01 ** min(step / c.steps, 1.0)
        return {"means": c.lr_means * self.scale * decay, "log_scales": c.lr_scales, "quats": c.lr_quats,
                "opacity_logits": c.lr_opacities, "sh0": c.lr_sh0, "shN": c.lr_shN}  # fmt: skip

    def active_degree(self, step: int) -> int:
        return min(self.config.sh_degree, step // self.config.sh_degree_every)

    def render(self, camera, sh_degree: int | None = None) -> dict:
        return rasterize(self.model, camera.to(self.device), background=self.bg, backend=self.config.backend,
                         sh_degree=self.config.sh_degree if sh_degree is None else sh_degree)  # fmt: skip

    # -- checkpoints ------------------------------------------------------------------------

    def meta(self) -> dict:
        c = self.config
        return {"data": str(c.data), "downscale": c.downscale, "background": c.background,
                "holdout_every": c.holdout_every, "sh_degree": c.sh_degree, "steps": c.steps,
                "seed": c.seed}  # fmt: skip

    def save(self) -> Path:
        from render.gaussians.ply import save_ply

        tmp = checkpoints.begin(self.ckpt_dir, self.step)

        save_ply(self.model, tmp / "gaussians.ply")
        tensors = {}
        for group in self.opt.param_groups:
            st = self.opt.state.get(group["params"][0], {})
            for k, v in st.items():
                tensors[f"{group['name']}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        tensors.update({"densify.grad2d": self.state.grad2d, "densify.count": self.state.count,
                        "rng.torch": torch.get_rng_state(), "rng.trainer": self.gen.get_state()})  # fmt: skip
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        save_weights(tensors, tmp / "optimizer.safetensors")
        save_json({**self.meta(), "step": self.step}, tmp / "trainer.json")
        return checkpoints.commit(tmp, self.ckpt_dir, self.step, self.config.keep_checkpoints)

    def latest(self) -> Path | None:
        return checkpoints.latest(self.ckpt_dir)

    def resume(self, path: Path) -> None:
        from render.gaussians.ply import load_ply

        saved = load_json(path / "trainer.json")
        for key, now in self.meta().items():
            if saved.get(key) != now:
                raise ValueError(f"{key}: {path} was trained with {key}={saved.get(key)!r}, this run has {now!r}; "
                                 "resume with the same settings or use another --out")  # fmt: skip
        model = load_ply(path / "gaussians.ply", self.device)
        self.model = model
        self.opt = make_optimizer(self.model, self.lrs(saved["step"]))
        tensors = load_weights(path / "optimizer.safetensors", device=self.device)
        for group in self.opt.param_groups:
            st = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.split(".", 1)[0] == group["name"]}
            if st:
                st["step"] = st["step"].cpu()
                self.opt.state[group["params"][0]] = st
        self.state.grad2d, self.state.count = tensors["densify.grad2d"], tensors["densify.count"]
        torch.set_rng_state(tensors["rng.torch"].cpu())
        self.gen.set_state(tensors["rng.trainer"].cpu())
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"].cpu(), self.device)
        self.step = saved["step"]

    # -- the loop ---------------------------------------------------------------------------

    def run(self, progress: bool = True, until: int | None = None) -> dict:
        from tqdm import tqdm

        c = self.config
        checkpoints.clear_stale(self.ckpt_dir)
        last = self.latest()
        if last is not None:
            self.resume(last)
        out = Path(c.out)
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "metrics.jsonl"
        checkpoints.trim_log(log_path, self.step)  # lines after the checkpoint we resume from
        writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"), purge_step=self.step + 1)
        except ImportError:
            pass
        images = self.data.images.to(self.device)
        t0 = time.perf_counter()
        metrics: dict = {}
        bar = tqdm(total=c.steps, initial=self.step, desc="splat train", disable=not progress)
        try:
            with open(log_path, "a") as log:
                while self.step < c.steps:
                    i = int(torch.randint(0, len(self.data), (1,), generator=self.gen))
                    for group in self.opt.param_groups:
                        group["lr"] = self.lrs(self.step)[group["name"]]
                    out_r = self.render(self.data.cameras[i][None], self.active_degree(self.step))
                    out_r["means2d"].retain_grad()
                    pred, gt = out_r["rgb"][0], images[i]
                    l1 = (pred - gt).abs().mean()
                    loss = (1 - c.ssim_lambda) * l1 + c.ssim_lambda * (1 - ssim(pred, gt, dtype=pred.dtype))
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for p in self.model.parameters():  # one bad Gaussian must not poison Adam's moments
                        if p.grad is not None:
                            p.grad.nan_to_num_(0.0, 0.0, 0.0)
                    self.state.update(out_r["means2d"], out_r["radii"], self.data.width, self.data.height)
                    self.opt.step()
                    self.step += 1
                    info = refine_step(self.model, self.opt, self.state, self.step, c.densify, self.scale, self.gen)
                    mse = float(((pred.detach() - gt) ** 2).mean())
                    metrics = {"step": self.step, "loss": float(loss.detach()), "l1": float(l1.detach()),
                               "psnr": -10 * math.log10(max(mse, 1e-12)), "gaussians": len(self.model),
                               **info}  # fmt: skip
                    if self.step % c.log_every == 0 or self.step == c.steps:
                        log.write(json.dumps(metrics, sort_keys=True) + "\n")
                        log.flush()
                        if writer is not None:
                            for k, v in metrics.items():
                                if k != "step":
                                    writer.add_scalar(f"train/{k}", v, self.step)
                    bar.update(1)
                    bar.set_postfix(psnr=f"{metrics['psnr']:.2f}", n=len(self.model))
                    if self.step % c.save_every == 0 or self.step == c.steps or self.step == until:
                        self.save()
                    if self.step == until:
                        break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return {"step": self.step, "seconds": time.perf_counter() - t0, "checkpoint": str(self.latest()),
                "resumed_from": None if last is None else str(last), **metrics}  # fmt: skip
