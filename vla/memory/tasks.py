"""Procedural memory tasks (numpy, no downloads): Room-Ballet multi-task and Short-stay.

Both follow the structure of the reference tasks of the Spatially-Aware Transformer (Cho et al.
2024, junmokane/spatially-aware-transformer); sprites, colours and motions are our own.

**Room-Ballet multi-task.** 18 dancers in 8 rooms with unequal occupancy (8, 3, 2, 1, 1, 1, 1, 1
dancers; which room is which is shuffled per episode). Each dancer has its own colour and a
shape, and performs one of 8 dance classes: 16 frames of a sprite moving in a pattern (circles
either way, up-down, left-right, the two diagonals, plus-shapes either way) in a small crop
around it. Dancers perform one after another; the order is shuffled so that at least 4 dancers of
the big room come among the first 8 (as in the reference, so that LVFO never drops that room).
The memory holds 9 of the 18 dances (capacity 50%). A query shows one frame of a dancer (its last
dance frame) and asks for its dance class; four query tasks pick the dancer so that exactly one
eviction strategy is sure to have kept it:

====  ===========================================  =======
task  queried dancer                               kept by
====  ===========================================  =======
0     one of the last 9 to dance                   FIFO
1     one of the first 9 to dance                  LIFO
2     a dancer of the most occupied room           LVFO
3     the last dancer of a random room             MVFO
====  ===========================================  =======

(Classes never repeat within a room, as in the reference.)

**Short-stay.** An agent walks at random over an N x N grid of rooms (4 moves, a move into a
wall stays put), one step per observation, so it stays only briefly in each room and the visits
to a room are scattered in time. Each room holds an object of one of 8 kinds (a shape; its
colour is random and carries no label); each step shows a noisy, jittered crop of the object of
the current room. The query names a visited room; the answer is the kind of its object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla.memory.eviction import STRATEGIES, evict

CROP = 12  # pixels per side of a dancer / object crop
SPRITE = 4  # sprite side in pixels
STEP = 2  # pixels per dance move

# 4x4 shape masks (rows top to bottom)
_SHAPES = [
    "1111 1111 1111 1111",  # square
    "0110 1111 1111 0110",  # disc
    "0110 0110 1111 1111",  # T upside down
    "1001 0110 0110 1001",  # x
    "1000 1100 1110 1111",  # triangle
    "1111 1001 1001 1111",  # ring
    "0110 1111 0110 0110",  # cross
    "1111 0110 0110 0110",  # T
]
SHAPES = np.array([[[c == "1" for c in row] for row in s.split()] for s in _SHAPES], dtype=np.float32)  # [8, 4, 4]

_MOVES = {"N": (0, -1), "S": (0, 1), "E": (1, 0), "W": (-1, 0),
          "NE": (1, -1), "NW": (-1, -1), "SE": (1, 1), "SW": (-1, 1)}  # fmt: skip
DANCES = {
    "circle_cw": "N E S W " * 4,
    "circle_ccw": "N W S E " * 4,
    "up_and_down": "N S S N " * 4,
    "left_and_right": "E W W E " * 4,
    "diagonal_uldr": "NW SE SE NW " * 4,
    "diagonal_urdl": "NE SW SW NE " * 4,
    "plus_cw": "N S E W S N W E " * 2,
    "plus_ccw": "N S W E S N E W " * 2,
}
DANCE_NAMES = tuple(DANCES)
N_CLASSES = len(DANCES)
DANCE_FRAMES = 16
# sprite offset (dx, dy) in pixels at each of the 16 frames of each class: [8, 16, 2]
TRAJECTORIES = np.array(
    [np.cumsum([_MOVES[m] for m in seq.split()], axis=0) * STEP for seq in DANCES.values()], dtype=np.int64
)
OCCUPANCY = (8, 3, 2, 1, 1, 1, 1, 1)
N_DANCERS, N_ROOMS, CAPACITY = sum(OCCUPANCY), len(OCCUPANCY), 9
TASKS = ("newest", "oldest", "busiest room", "last of a room")
TASK_STRATEGY = ("fifo", "lifo", "lvfo", "mvfo")  # the strategy that answers each task


def palette(n: int) -> np.ndarray:
    """``n`` distinct saturated colours ``[n, 3]`` in [0, 1] (hues evenly spaced, two brightnesses)."""
    hue = (np.arange(n) * 0.618034) % 1.0  # golden-ratio steps keep neighbours apart
    value = np.where(np.arange(n) % 2 == 0, 1.0, 0.6)
    k = (np.array([5.0, 3.0, 1.0])[None] + hue[:, None] * 6) % 6
    return (value[:, None] * (1 - np.clip(np.minimum(k, 4 - k), 0, 1))).astype(np.float32)


COLOURS = palette(20)


def _videos() -> np.ndarray:
    """Binary videos ``[shapes, classes, 16, CROP, CROP]`` of every shape doing every dance."""
    out = np.zeros((len(SHAPES), N_CLASSES, DANCE_FRAMES, CROP, CROP), np.float32)
    c0 = (CROP - SPRITE) // 2
    for s, mask in enumerate(SHAPES):
        for k, traj in enumerate(TRAJECTORIES):
            for t, (dx, dy) in enumerate(traj):
                out[s, k, t, c0 + dy : c0 + dy + SPRITE, c0 + dx : c0 + dx + SPRITE] = mask
    return out


VIDEOS = _videos()


@dataclass
class BalletBatch:
    """A batch of Room-Ballet episodes (B episodes of 18 dances).

    frames:  float32 [B, 18, 16, 3, CROP, CROP] every dance, in visiting order, values in [0, 1]
    rooms:   int64 [B, 18] room id of each dance
    labels:  int64 [B, 18] dance class of each dance
    task:    int64 [B] query task (0..3)
    target:  int64 [B] index (visiting order) of the queried dancer
    query:   float32 [B, 3, CROP, CROP] the queried dancer's last dance frame
    kept:    int64 [B, 4, 9] indices each strategy keeps (order of :data:`STRATEGIES`)
    """

    frames: np.ndarray
    rooms: np.ndarray
    labels: np.ndarray
    task: np.ndarray
    target: np.ndarray
    query: np.ndarray
    kept: np.ndarray

    @property
    def answer(self) -> np.ndarray:
        return self.labels[np.arange(len(self.task)), self.target]


def ballet_episode(rng: np.random.Generator) -> dict:
    """One layout: rooms, classes, colours and shapes of the 18 dances in visiting order."""
    room_of_slot = np.repeat(np.arange(N_ROOMS), OCCUPANCY)  # slot -> row (row 0 holds 8 dancers)
    classes = np.empty(N_DANCERS, np.int64)
    start = 0
    perm = rng.permutation(N_CLASSES)
    for n in OCCUPANCY:  # distinct classes within a room
        classes[start : start + n] = perm[:n] if n == N_CLASSES else rng.choice(N_CLASSES, n, replace=False)
        start += n
    # visiting order: the reference's two shuffles (order[4:], then order[:8]); >= 4 big-room dancers first
    order = np.arange(N_DANCERS)
    order[4:] = rng.permutation(order[4:])
    order[:8] = rng.permutation(order[:8])
    room_ids = rng.permutation(N_ROOMS)  # which id each row gets
    colours = rng.permutation(len(COLOURS))[:N_DANCERS]
    shapes = rng.integers(0, len(SHAPES), N_DANCERS)
    return {
        "rooms": room_ids[room_of_slot[order]],
        "labels": classes[order],
        "colours": colours[order],
        "shapes": shapes[order],
    }


def ballet_query(episode: dict, task: int, rng: np.random.Generator) -> int:
    """Visiting index of the dancer asked about by ``task`` (see the module table)."""
    rooms = episode["rooms"]
    if task == 0:
        return int(rng.integers(N_DANCERS - CAPACITY, N_DANCERS))
    if task == 1:
        return int(rng.integers(0, CAPACITY))
    if task == 2:
        counts = np.bincount(rooms, minlength=N_ROOMS)
        return int(rng.choice(np.flatnonzero(rooms == counts.argmax())))
    if task == 3:
        room = rng.choice(np.unique(rooms))
        return int(np.flatnonzero(rooms == room)[-1])
    raise ValueError(f"task: expected 0..3, got {task}")


def dance_frames(shapes: np.ndarray, labels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Frames ``[..., 16, 3, CROP, CROP]`` of sprites ``shapes`` doing dances ``labels`` in ``colours`` (ids)."""
    video = VIDEOS[shapes, labels]  # [..., 16, CROP, CROP]
    rgb = COLOURS[colours]  # [..., 3]
    return video[..., None, :, :] * rgb[..., None, :, None, None]


def ballet_batch(rng: np.random.Generator, batch: int, tasks: np.ndarray | None = None) -> BalletBatch:
    """``batch`` episodes; the query tasks are ``tasks`` (default: 0, 1, 2, 3, 0, 1, ... as in the reference)."""
    tasks = np.arange(batch) % 4 if tasks is None else np.asarray(tasks, np.int64)
    eps = [ballet_episode(rng) for _ in range(batch)]
    rooms = np.stack([e["rooms"] for e in eps])
    labels = np.stack([e["labels"] for e in eps])
    frames = dance_frames(np.stack([e["shapes"] for e in eps]), labels, np.stack([e["colours"] for e in eps]))
    target = np.array([ballet_query(e, int(t), rng) for e, t in zip(eps, tasks)], np.int64)
    kept = np.array([[evict(s, r, CAPACITY) for s in STRATEGIES] for r in rooms], np.int64)
    query = frames[np.arange(batch), target, -1]
    return BalletBatch(frames.astype(np.float32), rooms, labels, tasks, target, query.astype(np.float32), kept)


@dataclass
class ShortStayBatch:
    """A batch of Short-stay walks.

    frames: float32 [B, L, 3, CROP, CROP] observation at each step
    places: int64 [B, L] room id at each step (row-major over the grid)
    kinds:  int64 [B, N*N] object kind in each room
    query:  int64 [B] queried room (always visited)
    """

    frames: np.ndarray
    places: np.ndarray
    kinds: np.ndarray
    query: np.ndarray

    @property
    def answer(self) -> np.ndarray:
        return self.kinds[np.arange(len(self.query)), self.query]


def random_walk(rng: np.random.Generator, grid: int, steps: int) -> np.ndarray:
    """Room ids ``[steps]`` of a uniform 4-move walk on a ``grid x grid`` board (a wall: stay)."""
    pos = rng.integers(0, grid, 2)
    moves = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])
    out = np.empty(steps, np.int64)
    for t in range(steps):
        out[t] = pos[1] * grid + pos[0]
        pos = np.clip(pos + moves[rng.integers(4)], 0, grid - 1)
    return out


def short_stay_batch(
    rng: np.random.Generator, batch: int, grid: int = 4, steps: int = 64, noise: float = 0.15
) -> ShortStayBatch:
    """``batch`` walks of ``steps`` steps over ``grid x grid`` rooms with one object each."""
    rooms = grid * grid
    places = np.stack([random_walk(rng, grid, steps) for _ in range(batch)])
    kinds = rng.integers(0, len(SHAPES), (batch, rooms))
    colours = rng.integers(0, len(COLOURS), (batch, rooms))
    c0 = (CROP - SPRITE) // 2
    frames = np.zeros((batch, steps, 3, CROP, CROP), np.float32)
    shift = rng.integers(-2, 3, (batch, steps, 2))
    for b in range(batch):
        for t in range(steps):
            p = places[b, t]
            y, x = c0 + shift[b, t, 1], c0 + shift[b, t, 0]
            sprite = SHAPES[kinds[b, p]] * COLOURS[colours[b, p]][:, None, None]
            frames[b, t, :, y : y + SPRITE, x : x + SPRITE] = sprite
    frames = np.clip(frames + noise * rng.standard_normal(frames.shape).astype(np.float32), 0, 1)
    query = np.array([rng.choice(np.unique(p)) for p in places], np.int64)
    return ShortStayBatch(frames, places, kinds, query)
