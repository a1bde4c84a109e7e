"""The Adaptive Memory Allocator (AMA) of the Spatially-Aware Transformer (Cho et al. 2024).

Which events a full memory should keep depends on the task: the newest ones (FIFO), the oldest
(LIFO), those of busy places (LVFO) or those of rarely visited ones (MVFO). AMA learns the choice
as a contextual bandit: the context is the task id (one-hot), the arms are the eviction
strategies, and a small Q-network Linear(n_tasks -> 64) - ReLU - Linear(64 -> n_strategies)
estimates the reward of each arm. Arms are drawn epsilon-greedily, epsilon annealed linearly from
1.0 to 0.2 over training, and greedily at evaluation. The reward of a sample is minus its
downstream loss (detached); the Q-loss is the MSE between Q(context, chosen arm) and that reward,
added to the model's loss with weight 0.1, so the bandit and the memory model train together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AdaptiveMemoryAllocator(nn.Module):
    """Contextual bandit over memory strategies.

    Args:
        n_tasks: number of task ids (the one-hot context).
        strategies: arm names, e.g. ``("fifo", "lifo", "lvfo", "mvfo")``.
        hidden: Q-network width (64 in the reference).
        eps_start, eps_end: epsilon is annealed linearly from ``eps_start`` to ``eps_end``...
        anneal_steps: ...over this many training steps, and stays at ``eps_end`` after.
        q_weight: weight of the Q-loss in the joint loss.
    """

    def __init__(
        self,
        n_tasks: int,
        strategies: Sequence[str],
        hidden: int = 64,
        eps_start: float = 1.0,
        eps_end: float = 0.2,
        anneal_steps: int = 1000,
        q_weight: float = 0.1,
    ):
        super().__init__()
        if n_tasks < 1:
            raise ValueError(f"n_tasks: expected >= 1, got {n_tasks}")
        if not strategies:
            raise ValueError("strategies: expected at least one strategy name")
        if not 0.0 <= eps_end <= eps_start <= 1.0:
            raise ValueError(f"eps_start/eps_end: expected 0 <= eps_end <= eps_start <= 1, got {eps_start}, {eps_end}")
        self.n_tasks, self.strategies = n_tasks, tuple(strategies)
        self.eps_start, self.eps_end, self.anneal_steps, self.q_weight = eps_start, eps_end, anneal_steps, q_weight
        self.q = nn.Sequential(nn.Linear(n_tasks, hidden), nn.ReLU(), nn.Linear(hidden, len(self.strategies)))

    def epsilon(self, step: int) -> float:
        """Exploration rate at a training step (linear from eps_start to eps_end)."""
        frac = max(step, 0) / max(self.anneal_steps, 1)
        if frac >= 1.0:
            return self.eps_end
        return self.eps_start + (self.eps_end - self.eps_start) * frac

    def values(self, task: Tensor) -> Tensor:
        """Q-values ``[B, n_strategies]`` for task ids ``[B]``."""
        if task.is_floating_point() or (task < 0).any() or (task >= self.n_tasks).any():
            raise ValueError(f"task: expected integer ids in [0, {self.n_tasks}), got {task.tolist()[:8]}")
        return self.q(F.one_hot(task.long(), self.n_tasks).float())

    def choose(self, task: Tensor, step: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Arm per sample ``[B]``: epsilon-greedy at training ``step``, greedy when ``step`` is None."""
        with torch.no_grad():
            greedy = self.values(task).argmax(-1)
        if step is None:
            return greedy
        explore = torch.rand(task.shape, generator=generator) < self.epsilon(step)
        random = torch.randint(len(self.strategies), task.shape, generator=generator)
        return torch.where(explore.to(greedy.device), random.to(greedy.device), greedy)

    def loss(self, task: Tensor, chosen: Tensor, sample_loss: Tensor) -> Tensor:
        """Weighted Q-loss: ``q_weight * MSE(Q(task, chosen), -sample_loss.detach())``."""
        q = self.values(task).gather(-1, chosen.long()[:, None])[:, 0]
        return self.q_weight * F.mse_loss(q, -sample_loss.detach().float())

    def policy(self) -> dict[int, str]:
        """The greedy strategy for every task id."""
        with torch.no_grad():
            arms = self.values(torch.arange(self.n_tasks, device=self.q[0].weight.device)).argmax(-1)
        return {t: self.strategies[int(a)] for t, a in enumerate(arms)}
