"""A 4D-VLA policy as an MV-Bench policy: ``reset()`` and ``act(observation, instruction)``.

The env observation (``cameras`` -> ``rgb``/``depth``/``intrinsics``/``extrinsics`` per camera,
``state``) becomes the model's single-step input through :func:`vla.processing.prepare_frames`;
bad input (a camera the policy reads is missing, no depth in 4D mode, K/w2c of the wrong shape,
NaN in the proprioception) raises ValueError naming the field.
"""

from __future__ import annotations

import numpy as np
import torch

from vla.configuration import VLAConfig
from vla.modeling import FourDVLAPolicy
from vla.processing import prepare_frames


def env_step_input(observation: dict, instruction: str, config: VLAConfig) -> dict:
    """One env observation -> the dict :meth:`FourDVLAPolicy.select_action` takes."""
    cams = observation.get("cameras")
    if not isinstance(cams, dict):
        raise ValueError("observation.cameras: missing; the policy needs camera observations")
    rgb, depth, K, w2c = [], [], [], []
    for name in config.cameras:
        if name not in cams:
            raise ValueError(
                f"observation.cameras: no camera {name!r}; the policy reads {config.cameras}, got {sorted(cams)}"
            )
        cam = cams[name]
        if config.uses_depth and cam.get("depth") is None:
            raise ValueError(
                f"observation.cameras.{name}.depth: missing, but spatial={config.spatial!r} lifts depth to points"
            )
        for key, shape in (("intrinsics", (3, 3)), ("extrinsics", (4, 4))):
            got = list(np.shape(cam.get(key)))
            if tuple(got) != shape:
                raise ValueError(f"observation.cameras.{name}.{key}: expected shape {list(shape)}, got {got}")
        rgb.append(cam["rgb"])
        depth.append(cam["depth"] if config.uses_depth else np.zeros(np.shape(cam["rgb"])[:2], np.float32))
        K.append(cam["intrinsics"])
        w2c.append(cam["extrinsics"])
    try:
        frames = prepare_frames(np.stack(rgb), np.stack(depth), np.stack(K), np.stack(w2c), config.vision.image_size)
    except ValueError as exc:  # name the observation field, not the helper's argument
        raise ValueError(f"observation.cameras.{'/'.join(config.cameras)}.{exc}") from None
    state = np.asarray(observation.get("state"), dtype=np.float32)
    if state.shape != (config.state_dim,):
        raise ValueError(f"observation.state: expected shape [{config.state_dim}], got {list(state.shape)}")
    if not np.isfinite(state).all():
        raise ValueError("observation.state: contains NaN or inf")
    step = {f"observation.{k}": v for k, v in frames.items()}
    if not config.uses_depth:
        step.pop("observation.depth")
    step["observation.state"] = torch.from_numpy(state)
    step["task"] = instruction
    return step


class MVBenchPolicy:
    """Wraps a :class:`FourDVLAPolicy` for :func:`envs.mvbench.evaluate.evaluate`.

    ``render_profile`` (from the checkpoint's metadata) lets the evaluator refuse a profile other
    than the training data's. Deep copies (one per parallel env) share the weights.
    """

    def __init__(self, policy: FourDVLAPolicy):
        self.policy = policy.eval()
        self.render_profile = getattr(policy, "meta", {}).get("render_profile")

    @property
    def wrist(self) -> bool:
        """Whether the policy reads the wrist camera (the evaluation must then render it)."""
        return "wrist" in self.policy.config.cameras

    def reset(self) -> None:
        self.policy.reset()

    def act(self, observation: dict, instruction: str) -> np.ndarray:
        step = env_step_input(observation, instruction, self.policy.config)
        return self.policy.select_action(step).numpy().astype(np.float32)

    def act_batch(self, slots: list[MVBenchPolicy], observations: list[dict], instructions: list[str]) -> np.ndarray:
        """``slots[i].act(observations[i], instructions[i])`` for all ``i`` with one forward pass
        (the evaluator's batched path: ``slots`` are deep copies of this policy, one per view)."""
        steps = [env_step_input(o, t, s.policy.config) for s, o, t in zip(slots, observations, instructions)]
        return FourDVLAPolicy.select_actions([s.policy for s in slots], steps).numpy().astype(np.float32)

    def __deepcopy__(self, memo) -> MVBenchPolicy:
        clone = MVBenchPolicy.__new__(MVBenchPolicy)
        clone.policy = self.policy.shallow_copy()
        clone.render_profile = self.render_profile
        return clone
