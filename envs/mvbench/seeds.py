"""Episode seeds for MV-Bench: disjoint streams for collection and evaluation.

An episode's initial layout is fixed by its seed. Collection and evaluation draw seeds from two
streams that can never meet: a stream's seeds all have the stream's parity (collection even,
evaluation odd), so no evaluation episode can start from a demonstration's layout, whatever seeds
and episode counts either side uses. Within a stream the seed mixes (task name, user seed,
episode) through NumPy's SeedSequence; the task enters by a hash of its name, so adding or
renaming another task changes no existing seed.
"""

from __future__ import annotations

import hashlib

import numpy as np

STREAMS = {"collect": 0, "eval": 1}


def task_key(task: str) -> int:
    """A stable 64-bit integer for a task name (not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.blake2b(task.encode(), digest_size=8).digest(), "little")


def episode_seed(stream: str, task: str, seed: int, episode: int) -> int:
    """Seed of episode ``episode`` of ``task`` under user seed ``seed`` in ``stream``.

    Args:
        stream: ``"collect"`` or ``"eval"``.
        task: the task name.
        seed: the user's seed (``--seed`` of collect, each of ``--seeds`` of eval); >= 0.
        episode: the episode (attempt) index; >= 0.

    Returns:
        A non-negative int below 2**32; even for collection, odd for evaluation.
    """
    if stream not in STREAMS:
        raise ValueError(f"stream: expected one of {sorted(STREAMS)}, got {stream!r}")
    if seed < 0 or episode < 0:
        raise ValueError(f"seed/episode: expected non-negative integers, got seed={seed}, episode={episode}")
    bits = np.random.SeedSequence([STREAMS[stream], task_key(task), seed, episode]).generate_state(1, np.uint32)[0]
    return (int(bits) & ~1) | STREAMS[stream]
