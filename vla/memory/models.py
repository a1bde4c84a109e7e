"""Small models around :class:`vla.memory.read.SpatialMemory` for the memory tasks.

- :class:`FrameEncoder`: a CNN for one small frame (RGB or RGB-D) -> ``d`` features.
- :class:`BalletModel`: Room-Ballet. A dance (16 frames) is one event: its frames are encoded one
  by one and the 16 feature vectors, in order, are mapped to one memory token (so the token knows
  the motion, not only the look). The query is one frame of the asked-about dancer; the read
  output is classified into the 8 dance classes.
- :class:`PlaceQueryModel`: Short-stay and the embodied task. One observation per step is one
  event; the query names a place (its place embedding plus a learned query vector) and the read
  output is classified into what is there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vla.memory.embeddings import PlaceEmbedding
from vla.memory.read import MemoryConfig, SpatialMemory


class FrameEncoder(nn.Module):
    """``[N, C, S, S]`` -> ``[N, dim]``: two stride-2 convolutions, a linear layer and a LayerNorm
    (so the content of a memory token is on the scale of the time and place embeddings added to
    it; without it they drown the content at initialisation and attention starts blind)."""

    def __init__(self, channels: int, size: int, dim: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        )  # fmt: skip
        side = (size + 3) // 4
        self.fc = nn.Linear(2 * width * side * side, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.fc(self.net(x)))


class BalletModel(nn.Module):
    """Room-Ballet: dances in memory, a frame as the query, the dance class as the answer.

    An event token is the sum of a motion code and a look code: the dance's 16 frames stacked as
    channels (``16 * 3``) and encoded at once (the sprite's path over time), plus the encoding of
    its last frame by the same encoder that encodes the query frame.

    The answer is a pointer over the memory (a copy head, as in pointer networks): the memory
    read (:class:`SpatialMemory`, with its time and place embeddings) turns the query into a
    context vector, which scores every stored dance; the answer distribution is the
    score-weighted mix of the stored dances' own class predictions,
    ``p(y) = sum_j softmax(score)_j p(y | dance_j)``. Each stored dance is also classified on its
    own (``event_logits``, an auxiliary target). This gives the read a learning signal from the
    first steps even when every class is in memory once (see
    :func:`vla.memory.experiments.train_ballet`); a plain classifier on the read output sat at
    chance there for our whole budget.

    ``forward(frames [B, M, F, 3, S, S], rooms [B, M], time [B, M], query [B, 3, S, S],
    mask [B, M] | None) -> (log_probs [B, n_classes], event_logits [B, M, n_classes])``.
    """

    def __init__(self, memory: MemoryConfig, size: int, frames: int = 16, n_classes: int = 8):
        super().__init__()
        d = memory.d_model
        self.motion = FrameEncoder(3 * frames, size, d, width=32)
        self.look = FrameEncoder(3, size, d)
        self.memory = SpatialMemory(memory)
        self.event_head = nn.Linear(d, n_classes)
        self.point_q, self.point_k = nn.Linear(d, d), nn.Linear(d, d)

    def forward(
        self, frames: Tensor, rooms: Tensor, time: Tensor, query: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        b, m = frames.shape[:2]
        flat = frames.reshape(b * m, *frames.shape[2:])  # [B*M, F, 3, S, S]
        events = (self.motion(flat.flatten(1, 2)) + self.look(flat[:, -1])).reshape(b, m, -1)  # [B, M, D]
        q = self.look(query)[:, None]  # [B, 1, D]
        context = self.memory(q, events, time.float(), rooms, mask)  # [B, 1, D]
        keys = self.memory.embed(events, time.float(), rooms)  # the tokens the read saw
        score = (self.point_q(context) @ self.point_k(keys).transpose(1, 2))[:, 0] / keys.shape[-1] ** 0.5
        if mask is not None:
            score = score.masked_fill(~mask, float("-inf"))
        event_logits = self.event_head(events)  # [B, M, C]
        log_p = torch.logsumexp(score.log_softmax(-1)[..., None] + event_logits.log_softmax(-1), dim=1)
        return log_p, event_logits


class PlaceQueryModel(nn.Module):
    """What is at a place: step observations in memory, a place as the query.

    ``forward(frames [B, L, C, S, S], places [B, L], time [B, L], query_place [B], mask [B, L] | None,
    positions [B, L, 3] | None) -> (logits [B, n_classes], event_logits [B, L, n_classes])``.
    ``positions`` feed a ``fourier`` place embedding (``places`` then only group the memory). The
    event logits classify what each observation shows, on its own (an auxiliary target).
    """

    def __init__(self, memory: MemoryConfig, channels: int, size: int, n_classes: int, n_places: int):
        super().__init__()
        d = memory.d_model
        self.frame = FrameEncoder(channels, size, d)
        self.memory = SpatialMemory(memory)
        # the query names its place with the memory's own place embedding where the memory has an
        # id-based one (so a query and the events of its place share a code); else with a table
        # of its own (FIFO: events carry no place, the model must tell places from the images)
        shared = self.memory.place is not None and not self.memory.place.uses_positions
        self.query_place = self.memory.place if shared else PlaceEmbedding(d, "learned", n_places)
        self.query_token = nn.Parameter(torch.randn(d) * 0.02)
        self.head = nn.Linear(d, n_classes)
        self.event_head = nn.Linear(d, n_classes)

    def forward(
        self,
        frames: Tensor,
        places: Tensor,
        time: Tensor,
        query_place: Tensor,
        mask: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        b, steps = frames.shape[:2]
        events = self.frame(frames.reshape(b * steps, *frames.shape[2:])).reshape(b, steps, -1)
        q = (self.query_token + self.query_place(query_place))[:, None]
        place = positions if positions is not None else places
        out = self.memory(q, events, time.float(), place, mask, group=places)[:, 0]
        return self.head(out), self.event_head(events)
