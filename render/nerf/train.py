"""Training NeRF models on a posed-image dataset: random rays from all training images, Adam with
exponential decay, progress bar, TensorBoard + metrics.jsonl, atomic checkpoints and exact resume.

ProNeRF alternates exploration (odd steps: only the field learns, its own Adam) and exploitation
(even steps: field, sampler and refine net learn together, a second Adam), then fine-tunes jointly
for the last ``finetune_fraction`` of the steps. Vanilla NeRF has one Adam over both fields.

ProNeRF has two Adams, as in the reference code (its ``optimizer`` over the NeRF for exploration
steps, its ``s_optimizer`` over all networks for exploitation steps): each phase keeps its own
moment estimates of the field's gradients.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from render import checkpoints
from render.datasets import SceneData, load_dataset
from render.nerf.config import NerfConfig, NerfTrainConfig
from render.nerf.models import ProNeRF, Scene, build_model, scene_sphere
from worldline.io import load_json, load_weights, save_json, save_weights


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def all_rays(data: SceneData) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Flattened rays of every pixel: origins, unit directions ``[N*H*W, 3]``, colours ``[N*H*W, 3]``
    and the index of each ray's image ``[N*H*W]``."""
    o, d = data.cameras.rays(normalize=True)  # [N, H, W, 3]
    own = torch.arange(len(data))[:, None, None].expand(o.shape[:-1])
    return o.reshape(-1, 3), d.reshape(-1, 3), data.images.reshape(-1, 3), own.reshape(-1)


def make_scene(data: SceneData) -> Scene:
    center, radius = scene_sphere(data.cameras, data.near, data.far)
    return Scene(data.near, data.far, center, radius, data.background)


class NerfTrainer:
    """``NerfTrainer(config).run()`` trains (resuming from ``out/checkpoints``) and returns a summary."""

    def __init__(self, config: NerfTrainConfig, data: SceneData | None = None):
        self.config = c = config
        if c.threads > 0:
            torch.set_num_threads(c.threads)
        self.device = pick_device(c.device)
        torch.manual_seed(c.seed)
        self.data = data if data is not None else load_dataset(
            c.data, "train", downscale=c.downscale, background=c.background, holdout_every=c.holdout_every,
            near=c.near, far=c.far,
        )  # fmt: skip
        self.scene = make_scene(self.data)
        self.model = build_model(c.model, self.scene).to(self.device)
        if isinstance(self.model, ProNeRF):
            self.model.set_views(self.data.images.to(self.device), self.data.cameras.to(self.device))
        rays = all_rays(self.data)
        self.rays_o, self.rays_d, self.colours, self.own = (x.to(self.device) for x in rays)
        self.opts = {"all": torch.optim.Adam(self.model.parameters(), lr=c.lr)}
        if isinstance(self.model, ProNeRF):
            self.opts["field"] = torch.optim.Adam(self.model.field.parameters(), lr=c.lr)
        self.gen = torch.Generator(device="cpu").manual_seed(c.seed)
        self.step = 0
        self.elapsed = 0.0  # training seconds before this process (resumed runs)
        self.ckpt_dir = Path(c.out) / "checkpoints"

    def progress(self, elapsed: float) -> float:
        """Fraction of the run done: of the steps, or of the time budget when that is further along
        (a time-budgeted run finishes its schedule, lr decay and stage 2, within the budget)."""
        c = self.config
        frac = self.step / c.steps
        if c.time_budget > 0:
            frac = max(frac, elapsed / c.time_budget)
        return min(frac, 1.0)

    def lr_at(self, progress: float) -> float:
        c = self.config
        return c.lr * (c.lr_final / c.lr) ** progress

    # -- checkpoints ----------------------------------------------------------------------

    def meta(self) -> dict:
        from worldline.config import to_dict

        c = self.config
        return {"model": to_dict(c.model), "scene": self.scene.to_dict(), "data": str(c.data),
                "downscale": c.downscale, "background": c.background, "holdout_every": c.holdout_every,
                "near": c.near, "far": c.far}  # fmt: skip

    def save(self) -> Path:
        tmp = checkpoints.begin(self.ckpt_dir, self.step)
        save_weights(self.model.state_dict(), tmp / "model.safetensors")
        opt_tensors, groups = {}, {}
        for name, opt in self.opts.items():
            sd = opt.state_dict()
            for i, st in sd["state"].items():
                for k, v in st.items():
                    opt_tensors[f"{name}.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
            groups[name] = sd["param_groups"]
        opt_tensors["rng.torch"] = torch.get_rng_state()
        opt_tensors["rng.sampler"] = self.gen.get_state()
        if self.device.type == "cuda":
            opt_tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        save_weights(opt_tensors, tmp / "optimizer.safetensors")
        save_json(self.meta(), tmp / "model.json")
        save_json({"step": self.step, "elapsed": self.elapsed, "param_groups": groups, "steps": self.config.steps,
                   "batch_rays": self.config.batch_rays, "seed": self.config.seed}, tmp / "trainer.json")  # fmt: skip
        return checkpoints.commit(tmp, self.ckpt_dir, self.step, self.config.keep_checkpoints)

    def latest(self) -> Path | None:
        return checkpoints.latest(self.ckpt_dir)

    def resume(self, path: Path) -> None:
        saved, now = load_json(path / "model.json"), self.meta()
        if saved["model"] != now["model"]:
            diff = sorted(k for k in saved["model"] if saved["model"][k] != now["model"].get(k))
            raise ValueError(f"{path}: checkpoint of a different model; fields differ: {', '.join(diff)}")
        for key in ("data", "downscale", "background", "holdout_every", "near", "far"):
            if saved.get(key) != now[key]:
                raise ValueError(f"{key}: {path} was trained with {key}={saved.get(key)!r}, this run has "
                                 f"{now[key]!r}; resume on the same data or use another --out")  # fmt: skip
        trainer = load_json(path / "trainer.json")
        for key in ("batch_rays", "seed", "steps"):
            if trainer[key] != getattr(self.config, key):
                now = getattr(self.config, key)
                raise ValueError(f"{key}: {path} was trained with {key}={trainer[key]}, this run has {now}; "
                                 "resume with the same settings or use another --out")  # fmt: skip
        self.model.load_state_dict(load_weights(path / "model.safetensors", device=self.device))
        tensors = load_weights(path / "optimizer.safetensors")
        for name, opt in self.opts.items():
            state: dict = {}
            for key, value in tensors.items():
                if key.startswith(name + "."):
                    _, i, k = key.split(".", 2)
                    state.setdefault(int(i), {})[k] = value if k == "step" else value.to(self.device)
            opt.load_state_dict({"state": state, "param_groups": trainer["param_groups"][name]})
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.gen.set_state(tensors["rng.sampler"])
        self.step = trainer["step"]
        self.elapsed = float(trainer.get("elapsed", 0.0))

    # -- the loop ---------------------------------------------------------------------------

    def run(self, progress: bool = True, until: int | None = None) -> dict:
        """Train to ``config.steps`` (or stop with a checkpoint at step ``until``), resuming from the
        last checkpoint in ``out``."""
        from tqdm import tqdm

        c = self.config
        checkpoints.clear_stale(self.ckpt_dir)
        last = self.latest()
        if last is not None:
            self.resume(last)
        out = Path(c.out)
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "metrics.jsonl"
        checkpoints.trim_log(log_path, self.step)
        writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"), purge_step=self.step + 1)
        except ImportError:
            pass
        n_rays = self.rays_o.shape[0]
        bar = tqdm(total=c.steps, initial=self.step, desc=f"nerf train ({c.model.method})", disable=not progress)
        t0 = time.perf_counter()
        before = self.elapsed
        metrics: dict = {}
        self.model.train()
        try:
            with open(log_path, "a") as log:
                while self.step < c.steps:
                    idx = torch.randint(0, n_rays, (c.batch_rays,), generator=self.gen).to(self.device)
                    self.elapsed = before + time.perf_counter() - t0
                    progress = self.progress(self.elapsed)
                    lr = self.lr_at(progress)
                    finetune = progress >= 1.0 - c.finetune_fraction if c.finetune_fraction > 0 else False
                    loss, m, group = self.model.training_step(
                        self.rays_o[idx], self.rays_d[idx], self.colours[idx], self.step + 1, own=self.own[idx],
                        finetune=finetune,
                    )  # fmt: skip
                    opt = self.opts[group]
                    for g in opt.param_groups:
                        g["lr"] = lr
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    self.step += 1
                    metrics = {**m, "step": self.step, "lr": lr, "psnr": -10 * math.log10(max(m["mse"], 1e-12))}
                    if self.step % c.log_every == 0 or self.step == c.steps:
                        log.write(json.dumps(metrics, sort_keys=True) + "\n")
                        log.flush()
                        if writer is not None:
                            for k, v in metrics.items():
                                if k != "step":
                                    writer.add_scalar(f"train/{k}", v, self.step)
                    bar.update(1)
                    bar.set_postfix(psnr=f"{metrics['psnr']:.2f}")
                    self.elapsed = before + time.perf_counter() - t0
                    late = (c.time_budget > 0 and self.elapsed > c.time_budget) or self.step == until
                    if self.step % c.save_every == 0 or self.step == c.steps or late:
                        self.save()
                    if late:
                        break
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return {"step": self.step, "seconds": time.perf_counter() - t0, "checkpoint": str(self.latest()),
                "resumed_from": None if last is None else str(last), "finished": self.step >= c.steps,
                **metrics}  # fmt: skip


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder (its last checkpoint)."""
    path = Path(path)
    if (path / "model.safetensors").is_file():
        return path
    done = sorted(p for p in (path / "checkpoints").glob("step_*") if (p / "model.safetensors").is_file())
    if not done:
        raise FileNotFoundError(f"--checkpoint: no checkpoint in {path} (expected model.safetensors or checkpoints/)")
    return done[-1]


def load_model(checkpoint: str | Path, device: str = "cpu", data: str | Path | None = None):
    """A trained model (eval mode) and its meta; ProNeRF gets its training views from ``data``
    (default: the dataset it was trained on)."""
    from worldline.config import from_dict

    ckpt = resolve_checkpoint(checkpoint)
    meta = load_json(ckpt / "model.json")
    cfg = from_dict(NerfConfig, meta["model"], source=str(ckpt / "model.json"))
    s = meta["scene"]
    scene = Scene(s["near"], s["far"], s["center"], s["radius"], s["background"])
    dev = pick_device(device)
    model = build_model(cfg, scene).to(dev)
    model.load_state_dict(load_weights(ckpt / "model.safetensors", device=dev))
    model.eval()
    if isinstance(model, ProNeRF):
        train = load_dataset(data or meta["data"], "train", downscale=meta["downscale"], background=meta["background"],
                             holdout_every=meta["holdout_every"], near=s["near"], far=s["far"])  # fmt: skip
        model.set_views(train.images.to(dev), train.cameras.to(dev))
    return model, meta, ckpt
