"""Reading a memory of events: flat attention (FIFO transformer, SAT-FIFO) and the hierarchical
place-grouped read of SAT-PM (after HCAM, Lampinen et al. 2021).

One module, :class:`SpatialMemory`, selected by :class:`MemoryConfig.read`:

=============  ==============  ===========================================================
read           place embedded  how a query reads the memory
=============  ==============  ===========================================================
``fifo``       no              flat attention over every token (the FIFO transformer)
``sat-fifo``   yes             the same, with place embeddings added to the tokens (SAT)
``sat-pm``     yes             hierarchical: chunks = places (SAT-PM, place memory)
``time-pm``    yes             hierarchical: chunks = runs of consecutive steps (HCAM's time
                               chunks, with SAT's place embeddings: the reference's SAT-FIFO-TH)
=============  ==============  ===========================================================

The hierarchical read, per query and per layer:

1. group the memory tokens into chunks (by place id, or by ``chunk_size`` consecutive tokens);
2. summarise each chunk by the masked mean of its tokens;
3. score each chunk by the scaled dot product of the projected query and the projected summary,
   and keep the ``top_k`` best;
4. attend (multi-head) within each selected chunk only;
5. sum the ``top_k`` results weighted by the softmax of their chunk scores.

With a single chunk holding everything this is exactly flat attention (test). The read budget,
the most tokens one query attends, is ``budget``: flat reads see the newest ``budget`` tokens,
hierarchical ones ``top_k`` chunks of at most ``budget // top_k`` tokens (the newest of a place),
so place-grouped and time-grouped memories can be compared at the same cost.

Shapes: query ``[B, Q, D]``; memory ``[B, M, D]`` ordered oldest first; time ``[B, M]`` step
indices; place ``[B, M]`` int ids (or ``[B, M, 3]`` positions with ``place_embedding='fourier'``,
then ``group [B, M]`` ids say which tokens share a place); mask ``[B, M]`` True = a real token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vla.memory.embeddings import PlaceEmbedding, TimeEmbedding

READS = ("fifo", "sat-fifo", "sat-pm", "time-pm")


@dataclass
class MemoryConfig:
    read: Literal["fifo", "sat-fifo", "sat-pm", "time-pm"] = "sat-pm"
    """fifo | sat-fifo | sat-pm | time-pm (see the module docstring)"""
    place_embedding: Literal["sinusoidal", "learned", "fourier"] = "learned"
    """how places are embedded (every read but fifo); fourier reads 3D positions"""
    time_embedding: bool = True
    """add a sinusoidal time embedding of each event's step"""
    d_model: int = 64
    heads: int = 4
    layers: int = 1
    """read layers: each is a memory read (cross-attention) and a feed-forward block on the query"""
    ffn: int = 128
    top_k: int = 2
    """chunks read per query (hierarchical reads). Use >= 2 to train: the chunk scores learn only
    through the softmax over the selected chunks, which is constant (1) for a single chunk"""
    chunk_size: int = 8
    """tokens per time chunk (time-pm)"""
    budget: int | None = None
    """most tokens one query attends: flat reads see the newest ``budget``; hierarchical ones
    ``top_k`` chunks of at most ``budget // top_k`` (overrides chunk_size); None: no limit"""
    max_places: int = 64
    """place ids are < max_places (learned table rows; chunks of sat-pm)"""
    place_low: list[float] = field(default_factory=lambda: [-1.0, -1.0, -1.0])
    place_high: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])
    """box (metres) that the fourier place embedding maps to [-1, 1]"""

    def __post_init__(self):
        checks = [
            (self.read in READS, f"read: expected one of {READS}, got {self.read!r}"),
            (self.d_model % self.heads == 0, f"d_model: {self.d_model} must be divisible by heads={self.heads}"),
            (self.top_k >= 1, f"top_k: expected >= 1, got {self.top_k}"),
            (self.chunk_size >= 1, f"chunk_size: expected >= 1, got {self.chunk_size}"),
            (self.layers >= 1, f"layers: expected >= 1, got {self.layers}"),
            (self.budget is None or self.budget >= self.top_k, f"budget: expected >= top_k, got {self.budget}"),
            (self.max_places >= 1, f"max_places: expected >= 1, got {self.max_places}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @property
    def uses_place(self) -> bool:
        return self.read != "fifo"

    @property
    def hierarchical(self) -> bool:
        return self.read in ("sat-pm", "time-pm")


def chunk_read(
    q: Tensor, k: Tensor, v: Tensor, chunk_of: Tensor, selected: Tensor, weights: Tensor, mask: Tensor
) -> Tensor:
    """Multi-head attention restricted to selected chunks, mixed by chunk weights.

    Args:
        q: ``[B, H, Q, d]``; k, v: ``[B, H, M, d]``.
        chunk_of: ``[B, M]`` chunk id of each memory token.
        selected: ``[B, Q, K]`` chunk ids chosen for each query.
        weights: ``[B, Q, K]`` their mixing weights (rows sum to 1 over real chunks).
        mask: ``[B, M]`` real tokens.

    Returns:
        ``[B, H, Q, d]``: sum over the K chunks of weight x attention within that chunk. A chunk
        with no real token contributes nothing.
    """
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # [B, H, Q, M]
    inside = (chunk_of[:, None, None, :] == selected[..., None]) & mask[:, None, None, :]  # [B, Q, K, M]
    logits = logits[:, :, :, None, :].masked_fill(~inside[:, None], float("-inf"))  # [B, H, Q, K, M]
    attn = torch.nan_to_num(logits.float().softmax(-1), nan=0.0).to(v.dtype)  # empty chunk -> zeros
    out = attn @ v[:, :, None]  # [B, H, Q, K, d]
    return (out * weights[:, None, :, :, None].to(out.dtype)).sum(3)


class MemoryRead(nn.Module):
    """One read layer: queries attend to the memory (flat or hierarchical), then a feed-forward."""

    def __init__(self, config: MemoryConfig):
        super().__init__()
        c = self.config = config
        d = c.d_model
        self.norm_q, self.norm_m, self.norm_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
        if c.hierarchical:
            self.summary_q, self.summary_k = nn.Linear(d, d), nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, c.ffn), nn.GELU(), nn.Linear(c.ffn, d))
        self.last_chunks: Tensor | None = None  # [B, Q, K] chunks read by the last call (inspection)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.config.heads, d // self.config.heads).transpose(1, 2)

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor, chunk_of: Tensor | None, n_chunks: int) -> Tensor:
        c = self.config
        b, nq, d = query.shape
        qn, mn = self.norm_q(query), self.norm_m(memory)
        q, k, v = self._heads(self.q(qn)), self._heads(self.k(mn)), self._heads(self.v(mn))
        if chunk_of is None:  # flat: one chunk holding every token
            chunk_of = torch.zeros(mask.shape, dtype=torch.long, device=mask.device)
            selected = torch.zeros(b, nq, 1, dtype=torch.long, device=mask.device)
            weights = torch.ones(b, nq, 1, device=query.device)
        else:
            member = F.one_hot(chunk_of.clamp_min(0), n_chunks).to(mn.dtype) * mask[..., None]  # [B, M, G]
            count = member.sum(1)  # [B, G]
            summary = (member.transpose(1, 2) @ mn) / count.clamp_min(1)[..., None]  # masked mean [B, G, D]
            score = (self.summary_q(qn) @ self.summary_k(summary).transpose(1, 2)) / math.sqrt(d)  # [B, Q, G]
            score = score.masked_fill((count == 0)[:, None], float("-inf"))
            top, selected = score.topk(min(c.top_k, n_chunks), dim=-1)  # [B, Q, K]
            weights = torch.nan_to_num(top.float().softmax(-1), nan=0.0)  # no chunk at all -> zeros
            self.last_chunks = selected
        read = chunk_read(q, k, v, chunk_of, selected, weights, mask)  # [B, H, Q, d]
        x = query + self.out(read.transpose(1, 2).reshape(b, nq, d))
        return x + self.ffn(self.norm_f(x))


class SpatialMemory(nn.Module):
    """Place- and time-embedded episodic memory with a configurable read (see the module docstring).

    ``forward(query, memory, time, place, mask, group=None) -> [B, Q, D]``.
    """

    def __init__(self, config: MemoryConfig):
        super().__init__()
        c = self.config = config
        self.place = (
            PlaceEmbedding(c.d_model, c.place_embedding, c.max_places, c.place_low, c.place_high)
            if c.uses_place
            else None
        )
        self.time = TimeEmbedding(c.d_model) if c.time_embedding else None
        self.layers = nn.ModuleList(MemoryRead(c) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.d_model)

    def embed(self, memory: Tensor, time: Tensor, place: Tensor | None) -> Tensor:
        """Memory tokens with their time and (for SAT reads) place embeddings added."""
        x = memory
        if self.time is not None:
            x = x + self.time(time)
        if self.place is not None:
            if place is None:
                raise ValueError(f"place: read={self.config.read!r} embeds places; give place ids or positions")
            x = x + self.place(place)
        return x

    def _chunks(self, place: Tensor | None, mask: Tensor, group: Tensor | None):
        """Chunk id per token ``[B, M]`` (-1 = not read; None for flat reads), the number of chunk
        ids, and the mask of the tokens read."""
        c = self.config
        m = mask.shape[1]
        if not c.hierarchical:
            if c.budget is not None:  # flat with a budget: only the newest `budget` real tokens
                newer = mask.flip(1).long().cumsum(1).flip(1)  # real tokens at or after each index
                mask = mask & (newer <= c.budget)
            return None, 1, mask
        per_chunk = c.chunk_size if c.budget is None else c.budget // c.top_k
        if c.read == "time-pm":
            rank = mask.long().cumsum(1) - 1  # index among real tokens, oldest first
            chunk = torch.where(mask, rank // per_chunk, -1)
            return chunk, max(1, math.ceil(m / per_chunk)), mask
        ids = group if group is not None else place
        if ids is None or ids.is_floating_point():
            raise ValueError("group: sat-pm chunks the memory by place id; give integer place ids (or group ids)")
        if ids.shape != mask.shape:
            raise ValueError(f"group: expected shape {list(mask.shape)}, got {list(ids.shape)}")
        if mask.any() and (ids[mask] < 0).any() | (ids[mask] >= c.max_places).any():
            raise ValueError(f"group: place ids must be in [0, {c.max_places}) (max_places)")
        ids = ids.clamp(0, c.max_places - 1)
        if c.budget is not None:  # keep the newest per_chunk tokens of each place
            same = (ids[:, :, None] == ids[:, None, :]) & mask[:, None, :]  # [B, M, M]
            later = torch.triu(torch.ones(m, m, dtype=torch.bool, device=mask.device), diagonal=1)
            newer_same = (same & later).sum(-1)  # real tokens of the same place after each token
            mask = mask & (newer_same < per_chunk)
        # number each sample's places 0, 1, ... (sorted by id), so the chunk count is the number of
        # places present (<= M), not the size of the place vocabulary
        key = torch.where(mask, ids, c.max_places)  # padding sorts last
        sorted_key, order = key.sort(dim=1)
        first = torch.ones_like(sorted_key, dtype=torch.bool)
        first[:, 1:] = sorted_key[:, 1:] != sorted_key[:, :-1]
        rank = torch.empty_like(sorted_key).scatter_(1, order, first.long().cumsum(1) - 1)
        chunk = torch.where(mask, rank, -1)
        return chunk, max(1, int(chunk.max()) + 1), mask

    def forward(
        self,
        query: Tensor,
        memory: Tensor,
        time: Tensor,
        place: Tensor | None = None,
        mask: Tensor | None = None,
        group: Tensor | None = None,
    ) -> Tensor:
        c = self.config
        if memory.ndim != 3 or memory.shape[-1] != c.d_model or query.ndim != 3 or query.shape[-1] != c.d_model:
            raise ValueError(
                f"memory/query: expected [B, M, {c.d_model}] and [B, Q, {c.d_model}], "
                f"got {list(memory.shape)} and {list(query.shape)}"
            )
        if mask is None:
            mask = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
        if mask.shape != memory.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask: expected bool [B, M] = {list(memory.shape[:2])}, got {mask.dtype} {list(mask.shape)}"
            )
        if time.shape != mask.shape:
            raise ValueError(f"time: expected shape {list(mask.shape)}, got {list(time.shape)}")
        if place is not None:
            want = (*mask.shape, 3) if place.is_floating_point() else tuple(mask.shape)
            if tuple(place.shape) != want:
                raise ValueError(f"place: expected shape {list(want)}, got {list(place.shape)}")
            if not place.is_floating_point():  # padding may carry any id (e.g. -1): embed it as 0
                place = torch.where(mask, place, 0)
        x = self.embed(memory, time, place)
        chunk_of, n_chunks, read_mask = self._chunks(place, mask, group)
        q = query
        for layer in self.layers:
            q = layer(q, x, read_mask, chunk_of, n_chunks)
        return self.norm(q)
