"""Which history frames a 4D-VLA step sees: the episode's frame bank and the samplers over it.

4D-VLA (arXiv 2506.22242, Algorithm 1) samples k informative frames from a window of n history
frames, starting from the current frame and using feature similarity, so that a long static
stretch (the robot waiting, the scene unchanged) does not fill the context with duplicates while
a frame that showed something since gone (a cue, an object's old position) can survive. The
paper's exact rule is not public; ours is below. Defaults k = 5, n = 20, stride 6 are ours.

The bank. A :class:`FrameBank` keeps the frames of one episode whose step index is a multiple of
``stride`` (at most ``capacity`` of them, oldest dropped first) with a cheap feature for each: a
small thumbnail of the image (:func:`thumbnail_features`), so features are computed once per
frame and cached, and sampling costs a k x n block of cosine similarities. The window at step t is
the last ``n - 1`` bank frames before t plus the current frame; with stride 6 and n = 20 it spans
the last 114 steps (5.7 s at 20 Hz; stride 4 spanned too little of a LitBowl episode to reach
back to its cue in 90% of the steps, see ``tools/bench/memory_bank_cue.py``). :func:`window_steps`
gives the same window from step indices alone, so training (which reads whole episodes) and
inference (which sees one step at a time) pick from the same candidates.

Memory-bank sampling (:class:`MemoryBankSampler`), on features f (cosine similarity c):

    kept = [current]                            # always kept, never replaced
    for t in window, newest to oldest (current excluded):
        if max_{j in kept} c(f_t, f_j) < tau and |kept| < k:
            kept += [t]                         # distinct from everything kept: add it
            continue
        # redundant with a kept frame, or no slot left: try a swap with the most redundant
        # kept frame j* (not the current one), whose redundancy is r_j = max_{i in kept, i != j} c(f_j, f_i)
        j* = argmax_{j in kept, j != current} r_j          # ties: the newest
        if max_{i in kept, i != j*} c(f_t, f_i) < r_{j*}:   # t is more distinct than j* was
            kept = kept - [j*] + [t]
    return sorted(kept)                          # oldest first; fewer than k when the window
                                                 # holds fewer distinct frames

The loop is deterministic (no randomness, ties broken toward newer frames). Walking back means an
old frame survives only if it is more distinct than what newer frames already cover, which is what
keeps a vanished cue. For ablation, :class:`UniformSampler` (k frames evenly spread over the
window, oldest and current included), :class:`RecentSampler` (the k newest) and
:class:`SingleFrameSampler` (the current frame only) share the interface: ``select(features) ->
indices`` into the window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_K = 5
DEFAULT_WINDOW = 20
DEFAULT_STRIDE = 6
DEFAULT_THRESHOLD = 0.98
THUMBNAIL = 8  # pixels per side of the feature thumbnail


def thumbnail_features(rgb: np.ndarray | torch.Tensor, size: int = THUMBNAIL) -> torch.Tensor:
    """Cheap per-frame features: an area-averaged ``size x size`` thumbnail, centred per frame.

    Args:
        rgb: uint8 ``[..., H, W, 3]`` (or float in [0, 1]).

    Returns:
        float32 ``[..., size * size * 3]``. Subtracting each frame's mean makes cosine similarity
        compare the layout of the image, not its overall brightness.
    """
    x = torch.as_tensor(np.asarray(rgb) if not isinstance(rgb, torch.Tensor) else rgb)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"rgb: expected [..., H, W, 3], got {list(x.shape)}")
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2).float()
    if not torch.is_floating_point(torch.as_tensor(rgb)) or x.max() > 1.0:
        x = x / 255.0
    t = F.adaptive_avg_pool2d(x, size).reshape(x.shape[0], -1)
    t = t - t.mean(dim=1, keepdim=True)
    return t.reshape(*lead, -1)


def window_steps(t: int, n: int = DEFAULT_WINDOW, stride: int = DEFAULT_STRIDE) -> list[int]:
    """Candidate steps at step ``t``: the last ``n - 1`` multiples of ``stride`` before ``t``, then ``t``."""
    if t < 0 or n < 1 or stride < 1:
        raise ValueError(f"window_steps: expected t >= 0, n >= 1, stride >= 1; got t={t}, n={n}, stride={stride}")
    past = list(range(0, t, stride))[-(n - 1) :] if n > 1 else []
    return past + [t]


def _cosine(features: torch.Tensor) -> torch.Tensor:
    f = F.normalize(features.float(), dim=-1, eps=1e-8)
    return f @ f.T


class FrameSampler:
    """Pick indices into a window of frames (oldest first, the last one is the current frame)."""

    name = "base"

    def __init__(self, k: int = DEFAULT_K):
        if k < 1:
            raise ValueError(f"k: expected at least 1 frame, got {k}")
        self.k = k

    def select(self, features: torch.Tensor) -> list[int]:
        """Indices (sorted, the current frame ``n - 1`` last) into a window ``features [n, F]``."""
        if len(features) == 0:
            raise ValueError("features: the window is empty")
        return self._select(features)

    def _select(self, features: torch.Tensor) -> list[int]:
        raise NotImplementedError


class MemoryBankSampler(FrameSampler):
    """Algorithm 1 of 4D-VLA, our rule (see the module docstring)."""

    name = "memory_bank"

    def __init__(self, k: int = DEFAULT_K, threshold: float = DEFAULT_THRESHOLD):
        super().__init__(k)
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold: expected a cosine similarity in [-1, 1], got {threshold}")
        self.threshold = threshold

    def _select(self, features: torch.Tensor) -> list[int]:
        n = len(features)
        sim = _cosine(features).tolist()  # python floats: the loop is over at most n * k entries
        cur = n - 1
        kept = [cur]
        for t in range(n - 2, -1, -1):
            if len(kept) < self.k and max(sim[t][j] for j in kept) < self.threshold:
                kept.append(t)
                continue
            others = [j for j in kept if j != cur]
            if not others:
                continue
            redundancy = {j: max(sim[j][i] for i in kept if i != j) for j in others}
            worst = max(others, key=lambda j: (redundancy[j], j))  # ties: the newest
            if max(sim[t][i] for i in kept if i != worst) < redundancy[worst]:
                kept[kept.index(worst)] = t
        return sorted(kept)


class UniformSampler(FrameSampler):
    """k frames evenly spread over the window (oldest and current included)."""

    name = "uniform"

    def _select(self, features: torch.Tensor) -> list[int]:
        n = len(features)
        return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(self.k, n))})


class RecentSampler(FrameSampler):
    """The k newest frames."""

    name = "recent"

    def _select(self, features: torch.Tensor) -> list[int]:
        n = len(features)
        return list(range(max(0, n - self.k), n))


class SingleFrameSampler(FrameSampler):
    """Only the current frame."""

    name = "single"

    def __init__(self, k: int = 1):
        super().__init__(1)

    def _select(self, features: torch.Tensor) -> list[int]:
        return [len(features) - 1]


SAMPLERS = {c.name: c for c in (MemoryBankSampler, UniformSampler, RecentSampler, SingleFrameSampler)}


def make_sampler(name: str, k: int = DEFAULT_K, threshold: float = DEFAULT_THRESHOLD) -> FrameSampler:
    """A sampler by name: ``memory_bank``, ``uniform``, ``recent`` or ``single``."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler: unknown {name!r}; known: {sorted(SAMPLERS)}")
    if name == "memory_bank":
        return MemoryBankSampler(k, threshold)
    return SAMPLERS[name](k)


@dataclass
class BankEntry:
    step: int
    feature: torch.Tensor  # [F]
    payload: object  # whatever the policy needs again for this frame (its observation)


class FrameBank:
    """One episode's history at inference: frames at multiples of ``stride``, at most ``capacity``.

    Examples:
        >>> bank = FrameBank(stride=4, window=20)
        >>> for t, frame in enumerate(frames):  # doctest: +SKIP
        ...     steps, payloads = bank.sample(t, thumbnail_features(frame), frame, sampler)
    """

    def __init__(self, stride: int = DEFAULT_STRIDE, window: int = DEFAULT_WINDOW, capacity: int = 256):
        if stride < 1 or window < 1 or capacity < window:
            raise ValueError(
                f"FrameBank: expected stride >= 1, window >= 1, capacity >= window; "
                f"got stride={stride}, window={window}, capacity={capacity}"
            )
        self.stride, self.window_size = stride, window
        self._entries: deque[BankEntry] = deque(maxlen=capacity)

    def reset(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def window(self, step: int, feature: torch.Tensor, payload: object) -> list[BankEntry]:
        """The candidates at the current ``step``: up to ``window - 1`` bank frames before it, then
        the current frame (oldest first). Remembers the current frame if it falls on the stride."""
        if self._entries and step <= self._entries[-1].step:
            raise ValueError(f"step: expected steps to increase within an episode, got {step} after "
                             f"{self._entries[-1].step}; call reset() between episodes")  # fmt: skip
        past = list(self._entries)[-(self.window_size - 1) :] if self.window_size > 1 else []
        current = BankEntry(step, feature, payload)
        if step % self.stride == 0:
            self._entries.append(current)
        return past + [current]

    def sample(
        self, step: int, feature: torch.Tensor, payload: object, sampler: FrameSampler
    ) -> tuple[list[int], list[object]]:
        """:meth:`window`, then ``sampler``: the chosen steps (oldest first, the current step
        last) and their payloads."""
        candidates = self.window(step, feature, payload)
        idx = sampler.select(torch.stack([e.feature for e in candidates]))
        return [candidates[i].step for i in idx], [candidates[i].payload for i in idx]
