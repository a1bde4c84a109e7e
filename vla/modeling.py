"""The 4D-VLA policy ("4D-VLA: Spatiotemporal Vision-Language-Action Pretraining with Cross-Scene
Calibration", arXiv 2506.22242) at a size set by its config, and its baselines (same class).

What the paper states and we follow: RGB-D frames; every visual feature gets a 3D coordinate in
the robot base frame from depth, P = R D K^-1 [u, v, 1]^T + T (:mod:`vla.spatial`), whose
encoding is added to the vision tokens; a relative-time token per history frame; memory-bank
sampling of k history frames out of n (:mod:`vla.memory_bank`); loss
L = L_trans + L_rot + L_grip + lambda_d L_dir.

Where the paper is silent, our choices:

- Vision: a timm backbone (random init by default; weights only from a local file), cut at one
  feature stage (CNNs) or taking the patch grid (ViTs), adaptively pooled to G x G tokens per
  camera. Images are normalised with the ImageNet statistics timm backbones expect. The encoder
  is shared by all cameras; each camera index has a learned embedding, each grid cell a learned
  position embedding.
- Spatial encoding: Fourier features of workspace-normalised xyz + an MLP with a small-init last
  layer, added to the backbone features *before* the projector to the model width; cells without
  valid depth get a learned "no depth" vector.
- Time: one token per history frame, a sinusoidal (or learned) encoding of its step offset from
  the current frame, *concatenated* before that frame's visual tokens.
- Fusion: a pre-norm transformer encoder over [instruction tokens | proprioception token |
  per frame (time token, visual tokens) | H action queries]; padded frames and instruction
  tokens are masked out of attention.
- Action head: an MLP on each action query -> [dxyz(3), drot axis-angle(3), gripper logit(1)];
  a chunk of H future actions when ``chunk > 1``.
- Loss: L2 on normalised translation and rotation, BCE on the gripper (target (g + 1) / 2),
  and lambda_d * || normalize(dx_hat) - normalize(dx) ||^2 on the translation in metres, skipped
  where || dx || < 1 mm. Steps past the episode end are masked.
- Normalisation: mean/std of the continuous action dims and of the proprioception, computed from
  the training data, stored as buffers (so they travel in the safetensors weights).

Batch layout (``forward``/``predict_action_chunk``), B samples, T frames, C cameras::

    observation.images      float [B, T, C, 3, S, S] in [0, 1]
    observation.depth       float [B, T, C, S, S] metres, 0 = invalid (not needed for spatial='none')
    observation.intrinsics  float [B, T, C, 3, 3]
    observation.extrinsics  float [B, T, C, 4, 4]  world(base)-to-camera, OpenCV axes
    observation.time        float [B, T] step offset to the current frame (<= 0; the last frame is 0)
    observation.frame_mask  bool  [B, T] real frames (False = padding)
    observation.state       float [B, state_dim]
    task                    list[str] of B instructions
    action                  float [B, H, 7]   (training)
    action_mask             bool  [B, H]      (training; False past the episode end)
"""

from __future__ import annotations

import copy
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vla.configuration import VLAConfig
from vla.language import PretrainedTextEncoder, ScratchTextEncoder
from vla.memory_bank import FrameBank, make_sampler, thumbnail_features
from vla.spatial import SpatialEncoding, fourier_features, keypoint_points, lift_depth, pool_points, sinusoid

ACTION_DIM = 7
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DIR_EPS = 1e-3  # metres: translations shorter than this have no direction to learn


GRIPPER_WIDTH = 7  # index of the gripper width in the env's state vector (see envs.env)
EE_POSITION = slice(0, 3)  # the end-effector position (metres, base frame) in the state vector


def compute_stats(actions: np.ndarray, states: np.ndarray) -> dict[str, Tensor]:
    """Normalisation statistics from data: actions ``[N, 7]`` (first 6 dims), states ``[N, S]``."""
    a = torch.as_tensor(np.asarray(actions), dtype=torch.float64)[:, :6]
    s = torch.as_tensor(np.asarray(states), dtype=torch.float64)
    if not (torch.isfinite(a).all() and torch.isfinite(s).all()):
        raise ValueError("compute_stats: actions or states contain NaN or inf")
    return {
        "action_mean": a.mean(0).float(),
        "action_std": a.std(0).clamp_min(1e-4).float(),
        "state_mean": s.mean(0).float(),
        "state_std": s.std(0).clamp_min(1e-4).float(),
    }


class VisionEncoder(nn.Module):
    """timm backbone -> tokens ``[N, G*G or K, channels]`` and, for keypoints, their softmax
    weights over the feature map ``[N, K, h, w]`` (None for grid tokens)."""

    def __init__(
        self, backbone: str, stage: int, grid: int, image_size: int, pretrained_path: str | None = None,
        keypoints: int = 0,
    ):  # fmt: skip
        super().__init__()
        import timm

        kw = {"img_size": image_size} if backbone.startswith(("vit", "deit")) else {}
        if pretrained_path is not None:
            # timm's own loader: it maps a plain checkpoint of the model onto the feature wrapper,
            # resamples a ViT's position embedding to this image size, and reads .pth files with
            # weights_only=True (safetensors as they are); nothing is downloaded
            if not Path(pretrained_path).is_file():
                raise FileNotFoundError(f"vision.pretrained_path: no such file {pretrained_path}")
            # "file" is the only weight source left: url and hub id are blanked, so this never downloads
            local = {"file": str(pretrained_path), "url": "", "hf_hub_id": ""}
            kw.update(pretrained=True, pretrained_cfg_overlay=local)
        try:
            self.net = timm.create_model(backbone, features_only=True, out_indices=(stage,), **kw)
        except (RuntimeError, ValueError, IndexError, KeyError) as exc:
            what = f"load {pretrained_path} into" if pretrained_path else "build"
            raise ValueError(
                f"vision: cannot {what} {backbone!r} at stage {stage}: {str(exc).splitlines()[0]}"
            ) from None
        self.channels = self.net.feature_info.channels()[-1]
        self.grid = grid
        self.keypoints = keypoints
        if keypoints:
            self.keypoint_logits = nn.Conv2d(self.channels, keypoints, 1)
            self.log_temperature = nn.Parameter(torch.zeros(()))
            self.uv_embed = nn.Linear(2 * (1 + 2 * 4), self.channels)  # expected (u, v), 4 Fourier frequencies
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:  # [N, 3, S, S] in [0, 1]
        fmap = self.net((images - self.mean) / self.std)[-1]
        if not self.keypoints:
            return F.adaptive_avg_pool2d(fmap, self.grid).flatten(2).transpose(1, 2), None  # [N, G*G, C]
        n, ch, h, w = fmap.shape
        logits = self.keypoint_logits(fmap).flatten(2) * self.log_temperature.exp()
        weights = logits.float().softmax(-1).to(fmap.dtype)  # [N, K, h*w]
        feats = weights @ fmap.flatten(2).transpose(1, 2)  # [N, K, C]
        # feature-cell centres in [-1, 1] (u right, v down), then the expected position per keypoint
        v, u = torch.meshgrid(
            (torch.arange(h, device=fmap.device) + 0.5) / h * 2 - 1,
            (torch.arange(w, device=fmap.device) + 0.5) / w * 2 - 1,
            indexing="ij",
        )
        uv = weights @ torch.stack([u, v], -1).reshape(h * w, 2).to(fmap.dtype)  # [N, K, 2]
        feats = feats + self.uv_embed(fourier_features(uv, 4))
        return feats, weights.reshape(n, self.keypoints, h, w)


class FourDVLAPolicy(nn.Module):
    """The policy: ``forward(batch) -> (loss, metrics)``, ``predict_action_chunk(batch)``,
    ``select_action(observation)`` with history, ``reset()``, ``get_optim_params()``.

    Args:
        config: the model configuration.
        vocab: the instruction vocabulary (``InstructionTokenizer.build(...).vocab``); ignored for
            ``text='pretrained'``.
        stats: normalisation statistics from :func:`compute_stats` (default: identity).
    """

    def __init__(self, config: VLAConfig, vocab: list[str], stats: dict[str, Tensor] | None = None):
        super().__init__()
        self.config = c = config
        self.vocab = list(vocab)
        d = c.d_model
        self.vision = VisionEncoder(
            c.vision.backbone,
            c.vision.stage,
            c.vision.grid,
            c.vision.image_size,
            c.vision.pretrained_path,
            keypoints=c.vision.keypoints,
        )
        cv = self.vision.channels
        if c.spatial == "none":
            self.spatial = None
        else:  # camera-frame points live in another box than base-frame ones
            low, high = (c.workspace_low, c.workspace_high) if c.spatial == "base" else (c.camera_low, c.camera_high)
            self.spatial = SpatialEncoding(cv, c.fourier_freqs, tuple(low), tuple(high))
        self.proj = nn.Sequential(nn.Linear(cv, d), nn.LayerNorm(d))
        self.cam_embed = nn.Embedding(c.max_cameras, d)
        self.grid_pos = nn.Parameter(torch.randn(c.vision.tokens, d) * 0.02)  # per grid cell or keypoint
        self.max_offset = c.history_window * c.history_stride
        if c.time == "sinusoidal":
            self.time_embed = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        elif c.time == "learned":
            self.time_embed = nn.Embedding(self.max_offset + 1, d)
        self.state_proj = nn.Linear(c.state_dim, d)
        if c.text == "pretrained":
            self.text = PretrainedTextEncoder(c.text_path, d, c.max_text_len)
        else:
            self.text = ScratchTextEncoder(vocab, d, c.max_text_len)
        self.queries = nn.Parameter(torch.randn(c.chunk, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, c.heads, c.ffn, c.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.fusion = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, ACTION_DIM))
        stats = stats or {
            "action_mean": torch.zeros(6), "action_std": torch.ones(6),
            "state_mean": torch.zeros(c.state_dim), "state_std": torch.ones(c.state_dim),
        }  # fmt: skip
        for k, v in stats.items():
            self.register_buffer(k, torch.as_tensor(v, dtype=torch.float32).clone())
        if self.state_mean.shape != (c.state_dim,):
            raise ValueError(
                f"stats: state_mean has shape {list(self.state_mean.shape)}, config.state_dim={c.state_dim}"
            )
        if c.memory != "none":
            from vla.memory.read import MemoryConfig, SpatialMemory

            grid = c.place_grid
            self.history_memory = SpatialMemory(MemoryConfig(
                read=c.memory, place_embedding="learned", d_model=d, heads=c.heads, layers=1, ffn=c.ffn,
                top_k=c.memory_top_k, max_places=grid[0] * grid[1] * grid[2],
            ))  # fmt: skip
        self.sampler = make_sampler(c.sampler, c.history_k, c.bank_threshold)
        self.reset()

    # -- episode state (select_action) --------------------------------------------------------

    def reset(self) -> None:
        """Start a new episode: empty history and action queue. Assigns new objects, so a shallow
        copy of the policy (shared weights) gets state of its own after ``reset()``."""
        c = self.config
        self._bank = FrameBank(c.history_stride, c.history_window, capacity=max(256, c.history_window))
        self._queue: deque[Tensor] = deque()
        self._step = 0

    def get_optim_params(self) -> list[dict]:
        """Parameter groups for AdamW: no weight decay on biases, norms, embeddings and queries."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            table = "embed" in name or name.endswith(".table.weight")  # embeddings, place tables
            (no_decay if p.ndim < 2 or table or name in ("grid_pos", "queries") else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    # -- model ---------------------------------------------------------------------------------

    def _check(self, batch: dict) -> tuple[int, int, int]:
        c = self.config
        img = batch.get("observation.images")
        if img is None or img.ndim != 6 or img.shape[3] != 3:
            shape = None if img is None else list(img.shape)
            raise ValueError(f"observation.images: expected [B, T, C, 3, S, S], got {shape}")
        b, t, ncam = img.shape[:3]
        size = c.vision.image_size
        if tuple(img.shape[-2:]) != (size, size):
            raise ValueError(
                f"observation.images: expected {size}x{size} frames (vision.image_size), got {list(img.shape)}"
            )
        if ncam != len(c.cameras):
            raise ValueError(f"observation.images: {ncam} cameras, but the config reads {c.cameras}")
        want = {"observation.intrinsics": (b, t, ncam, 3, 3), "observation.extrinsics": (b, t, ncam, 4, 4)}
        if c.uses_depth:
            if batch.get("observation.depth") is None:
                raise ValueError(
                    f"observation.depth: spatial={c.spatial!r} lifts depth to points; the batch has no depth"
                )
            want["observation.depth"] = (b, t, ncam, *img.shape[-2:])
        want.update(
            {"observation.time": (b, t), "observation.frame_mask": (b, t), "observation.state": (b, c.state_dim)}
        )
        if c.memory != "none":
            want["observation.ee_position"] = (b, t, 3)
        for key, shape in want.items():
            v = batch.get(key)
            if v is None or tuple(v.shape) != shape:
                raise ValueError(f"{key}: expected shape {list(shape)}, got {None if v is None else list(v.shape)}")
        for key in ("observation.state", "observation.intrinsics", "observation.extrinsics", "observation.ee_position"):
            if key in want and not torch.isfinite(batch[key]).all():
                raise ValueError(f"{key}: contains NaN or inf")
        if len(batch.get("task", [])) != b:
            raise ValueError(f"task: expected {b} instructions, got {len(batch.get('task', []))}")
        return b, t, ncam

    def _frame_tokens(self, batch: dict, b: int, t: int, ncam: int) -> Tensor:
        c = self.config
        n = b * t * ncam
        images = batch["observation.images"]
        img = images.reshape(n, *images.shape[3:])
        if self.training and not c.history_grad and t > 1:
            # Past frames' visual features as a stop-gradient memory (as Transformer-XL treats its
            # cached segment): the backbone learns from the current frames; the fusion transformer
            # still learns how to use the history. Saves the backbone's backward pass on T - 1 frames.
            # The past pass runs in eval mode: BatchNorm normalises it with the running statistics
            # (as every frame is at inference) and the left-padding duplicates do not update them.
            with torch.no_grad():
                self.vision.eval()
                try:
                    past = self.vision(images[:, :-1].reshape(-1, *images.shape[3:]))
                finally:
                    self.vision.train()
            now = self.vision(images[:, -1].reshape(-1, *images.shape[3:]))

            def join(p, q):
                return torch.cat([p.reshape(b, t - 1, ncam, *p.shape[1:]), q.reshape(b, 1, ncam, *q.shape[1:])],
                                 dim=1).reshape(n, *q.shape[1:])  # fmt: skip

            feats = join(past[0], now[0])
            weights = None if now[1] is None else join(past[1], now[1])
        else:
            feats, weights = self.vision(img)  # [N, tokens, Cv], keypoint weights or None
        if self.spatial is not None:
            size = img.shape[-2:]
            pts, valid = lift_depth(
                batch["observation.depth"].reshape(n, *size).float(),
                batch["observation.intrinsics"].reshape(n, 3, 3).float(),
                batch["observation.extrinsics"].reshape(n, 4, 4).float(),
                frame=c.spatial,
            )
            if weights is None:
                cell, cell_valid = pool_points(pts, valid, c.vision.grid)
            else:
                cell, cell_valid = keypoint_points(pts, valid, weights)
            feats = feats + self.spatial(cell, cell_valid).to(feats.dtype)
        tok = self.proj(feats) + self.grid_pos  # [N, G*G, D]
        cams = torch.arange(ncam, device=tok.device).repeat(b * t)
        tok = tok + self.cam_embed(cams)[:, None]
        tok = tok.reshape(b, t, ncam * c.vision.tokens, -1)
        if c.time != "none":
            offset = (-batch["observation.time"]).clamp(0, self.max_offset)  # [B, T] steps back
            if c.time == "sinusoidal":
                tt = self.time_embed(sinusoid(offset, c.d_model).to(tok.dtype))
            else:
                tt = self.time_embed(offset.round().long())
            tok = torch.cat([tt[:, :, None], tok], dim=2)  # concatenated, not added
        return tok  # [B, T, tokens per frame, D]

    def _predict(self, batch: dict) -> Tensor:
        """Raw head outputs ``[B, H, 7]`` (normalised dx, drot; gripper logit)."""
        b, t, ncam = self._check(batch)
        frames = self._frame_tokens(batch, b, t, ncam)
        per_frame = frames.shape[2]
        frame_mask = batch["observation.frame_mask"].bool().to(frames.device)
        if self.config.memory != "none" and t > 1:
            frames, frame_mask, t = self._read_memory(batch, frames, frame_mask)
        text, text_mask = self.text(list(batch["task"]))
        state = (batch["observation.state"].float() - self.state_mean) / self.state_std
        if self.config.proprio != "full":  # the left-out entries are zero (their mean) in every sample
            keep = torch.zeros_like(state[0])
            if self.config.proprio == "gripper":
                keep[GRIPPER_WIDTH] = 1.0
            state = state * keep
        state_tok = self.state_proj(state)[:, None]
        q = self.queries.expand(b, -1, -1)
        x = torch.cat([text, state_tok, frames.reshape(b, t * per_frame, -1), q], dim=1)
        ones = torch.ones(b, 1, dtype=torch.bool, device=x.device)
        keep = torch.cat(
            [
                text_mask,
                ones,
                frame_mask[:, :, None].expand(b, t, per_frame).reshape(b, -1),
                ones.expand(b, q.shape[1]),
            ],
            dim=1,
        )
        out = self.fusion(x, src_key_padding_mask=~keep)
        return self.head(out[:, -q.shape[1] :])

    def _read_memory(self, batch: dict, frames: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor, int]:
        """Past frames as a spatially-aware memory read by the current frame's tokens.

        The tokens of the T - 1 past frames (``frames[:, :-1]``) are memory events with their step
        offset as time and the cell of the end-effector position at that frame as place
        (:func:`vla.memory.places.cell_ids` over the workspace box). The current frame's tokens are
        the queries; the read gives one token per query. Returns the tokens to fuse
        ``[B, 2, tokens per frame, D]`` (read tokens, then the current frame), their mask and 2."""
        from vla.memory.places import cell_ids

        c = self.config
        b, t, per_frame, d = frames.shape
        ee = batch["observation.ee_position"].to(frames.device).float()  # [B, T, 3]
        place = cell_ids(ee[:, :-1], c.workspace_low, c.memory_cell, c.place_grid, clamp=True)  # [B, T-1]
        past = frames[:, :-1].reshape(b, (t - 1) * per_frame, d)
        time = batch["observation.time"].to(frames.device).float()[:, :-1]
        mask = frame_mask[:, :-1]
        rep = (b, t - 1, per_frame)
        read = self.history_memory(
            frames[:, -1], past, time[..., None].expand(rep).reshape(b, -1),
            place[..., None].expand(rep).reshape(b, -1), mask[..., None].expand(rep).reshape(b, -1),
        )  # fmt: skip
        # a sample without any real past frame has nothing to read: its read tokens are masked out
        has_past = mask.any(1)
        tokens = torch.stack([read, frames[:, -1]], dim=1)
        return tokens, torch.stack([has_past, frame_mask[:, -1]], dim=1), 2

    def forward(self, batch: dict) -> tuple[Tensor, dict[str, float]]:
        """Training loss and its parts (in float32, also under bf16 autocast)."""
        pred = self._predict(batch).float()
        target = batch["action"].to(pred)
        if target.shape != pred.shape:
            raise ValueError(f"action: expected shape {list(pred.shape)}, got {list(target.shape)}")
        mask = batch.get("action_mask")
        mask = torch.ones(target.shape[:2], dtype=torch.bool, device=pred.device) if mask is None else mask.bool()
        m = mask.to(pred.dtype)
        denom = m.sum().clamp_min(1.0)
        tn = (target[..., :6] - self.action_mean) / self.action_std
        l_trans = (((pred[..., :3] - tn[..., :3]) ** 2).mean(-1) * m).sum() / denom
        l_rot = (((pred[..., 3:6] - tn[..., 3:6]) ** 2).mean(-1) * m).sum() / denom
        g = ((target[..., 6] + 1) / 2).clamp(0, 1)
        l_grip = (F.binary_cross_entropy_with_logits(pred[..., 6], g, reduction="none") * m).sum() / denom
        dx_hat = pred[..., :3] * self.action_std[:3] + self.action_mean[:3]  # metres
        dx = target[..., :3]
        moving = (dx.norm(dim=-1) > DIR_EPS).to(pred.dtype) * m
        l_dir_all = ((F.normalize(dx_hat, dim=-1, eps=1e-8) - F.normalize(dx, dim=-1, eps=1e-8)) ** 2).sum(-1)
        l_dir = (l_dir_all * moving).sum() / moving.sum().clamp_min(1.0)
        loss = l_trans + l_rot + l_grip + self.config.lambda_dir * l_dir
        with torch.no_grad():
            grip_acc = (((pred[..., 6] > 0) == (g > 0.5)).to(pred.dtype) * m).sum() / denom
        metrics = {"loss": loss.item(), "l_trans": l_trans.item(), "l_rot": l_rot.item(), "l_grip": l_grip.item(),
                   "l_dir": l_dir.item(), "grip_acc": grip_acc.item()}  # fmt: skip
        return loss, metrics

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict) -> Tensor:
        """Actions ``[B, H, 7]`` in env units: metres, radians, gripper -1 (open) or +1 (closed)."""
        pred = self._predict(batch)
        cont = pred[..., :6] * self.action_std + self.action_mean
        grip = torch.where(pred[..., 6:] > 0, 1.0, -1.0).to(cont)
        return torch.cat([cont, grip], dim=-1)

    # -- one step at a time, with history -------------------------------------------------------

    @torch.no_grad()
    def select_action(self, observation: dict) -> Tensor:
        """One action ``[7]`` for the current step; keeps the history and the action-chunk queue.

        ``observation``: one step without batch or time axes (``observation.images [C, 3, S, S]``,
        ``observation.depth [C, S, S]``, ``observation.intrinsics [C, 3, 3]``,
        ``observation.extrinsics [C, 4, 4]``, ``observation.state [S]``, ``task`` str), as
        :mod:`vla.adapter` builds it from an env observation.
        """
        return FourDVLAPolicy.select_actions([self], [observation])[0]

    @staticmethod
    @torch.no_grad()
    def select_actions(policies: list[FourDVLAPolicy], observations: list[dict]) -> Tensor:
        """:meth:`select_action` for several episodes at once: ``policies[i]`` (shallow copies
        sharing one set of weights, each with its own history and queue) acts on
        ``observations[i]``. The episodes whose queue is empty are run through the network as one
        batch, so parallel rollouts cost one forward pass per step instead of one each. Returns
        ``[N, 7]``; equal to calling each policy's :meth:`select_action` in turn."""
        if len(policies) != len(observations) or not policies:
            raise ValueError(f"select_actions: expected one observation per policy, got "
                             f"{len(observations)} for {len(policies)}")  # fmt: skip
        if len({id(p.queries) for p in policies}) != 1:
            raise ValueError("select_actions: the policies must share one set of weights (use shallow_copy())")
        for policy, observation in zip(policies, observations):
            policy._check_step(observation)  # all of them before any episode remembers this step
        batches = []
        for policy, observation in zip(policies, observations):
            batch = policy._history_batch(observation)
            if batch is not None:
                batches.append((policy, batch))
        if batches:
            head = batches[0][0]
            batch = {k: torch.cat([b[k] for _, b in batches]) if isinstance(v, Tensor) else
                     [x for _, b in batches for x in b[k]] for k, v in batches[0][1].items()}  # fmt: skip
            device = head.queries.device
            batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
            chunks = head.predict_action_chunk(batch).cpu()
            for (policy, _), chunk in zip(batches, chunks):
                policy._queue.extend(chunk)
        actions = []
        for policy in policies:
            policy._step += 1
            actions.append(policy._queue.popleft())
        return torch.stack(actions)

    def _history_batch(self, observation: dict) -> dict | None:
        """Remember this (checked) step in the bank; the model input ``[1, T, ...]`` if an action
        chunk is due (the queue is empty), else None."""
        c = self.config
        frame = {k: v for k, v in observation.items() if k.startswith("observation.") and k != "observation.state"}
        frame["observation.ee_position"] = torch.as_tensor(observation["observation.state"], dtype=torch.float32)[
            EE_POSITION
        ]
        feature = thumbnail_features(observation["observation.images"][0].permute(1, 2, 0))
        candidates = self._bank.window(self._step, feature, frame)
        if self._queue:
            return None
        idx = self.sampler.select(torch.stack([e.feature for e in candidates]))
        chosen = [candidates[i] for i in idx]
        batch = collate_history([e.payload for e in chosen], [e.step - self._step for e in chosen], c.frames_per_step)
        batch["observation.state"] = torch.as_tensor(observation["observation.state"], dtype=torch.float32)[None]
        batch["task"] = [observation["task"]]
        return batch

    def _check_step(self, observation: dict) -> None:
        """One step's input (no batch or time axes), checked as :meth:`_check` checks batches."""
        one = {k: torch.as_tensor(v)[None, None] for k, v in observation.items()
               if k.startswith("observation.") and k != "observation.state"}  # fmt: skip
        if "observation.state" not in observation:
            raise ValueError("observation.state: missing; the policy needs the proprioception")
        one["observation.state"] = torch.as_tensor(observation["observation.state"], dtype=torch.float32)[None]
        one["observation.ee_position"] = one["observation.state"][:, None, EE_POSITION]
        one["observation.time"] = torch.zeros(1, 1)
        one["observation.frame_mask"] = torch.ones(1, 1, dtype=torch.bool)
        one["task"] = [observation.get("task", "")]
        self._check(one)

    # -- weights --------------------------------------------------------------------------------

    def shallow_copy(self) -> FourDVLAPolicy:
        """A policy sharing these weights with episode state of its own (for parallel rollouts)."""
        clone = copy.copy(self)
        clone.reset()
        return clone

    def save(self, directory: str | Path, meta: dict | None = None) -> None:
        """``model.safetensors`` (weights and normalisation) + ``config.json`` (config, vocab, meta)."""
        from worldline.config import to_dict
        from worldline.io import save_json, save_weights

        directory = Path(directory)
        save_weights(self.state_dict(), directory / "model.safetensors")
        save_json({"config": to_dict(self.config), "vocab": self.vocab, "meta": meta or {}}, directory / "config.json")

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> FourDVLAPolicy:
        from worldline.config import from_dict
        from worldline.io import load_json, load_weights

        directory = Path(directory)
        info = load_json(directory / "config.json")
        config = from_dict(VLAConfig, info["config"], source=str(directory / "config.json"))
        weights = load_weights(directory / "model.safetensors", device=device)
        stats = {k: weights[k] for k in ("action_mean", "action_std", "state_mean", "state_std")}
        policy = cls(config, info["vocab"], stats).to(device)
        missing, unexpected = policy.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{directory}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        policy.meta = info.get("meta", {})
        return policy.eval()  # for inference (BatchNorm uses its running statistics); .train() to train


def collate_history(frames: list[dict], offsets: list[int], length: int) -> dict[str, Tensor]:
    """Stack chosen frames (oldest first) into one sample ``[1, T=length, ...]``, left-padded.

    Args:
        frames: per frame ``observation.images [C, 3, S, S]``, ``observation.depth [C, S, S]``
            (optional), ``observation.intrinsics``, ``observation.extrinsics``.
        offsets: step offset of each frame to the current one (<= 0).
        length: frames per step; missing ones are padding (``frame_mask`` False).
    """
    if not frames or len(frames) > length or len(frames) != len(offsets):
        raise ValueError(f"collate_history: expected 1..{length} frames with offsets, got {len(frames)}")
    pad = length - len(frames)
    out = {}
    for key in frames[-1]:
        stacked = torch.stack([torch.as_tensor(f[key]) for f in frames])
        if pad:
            stacked = torch.cat([stacked[:1].expand(pad, *stacked.shape[1:]), stacked])
        out[key] = stacked[None]
    out["observation.time"] = torch.tensor([[offsets[0]] * pad + list(offsets)], dtype=torch.float32)
    out["observation.frame_mask"] = torch.tensor([[False] * pad + [True] * len(frames)])
    return out
