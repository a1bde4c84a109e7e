"""Memory eviction strategies: which events stay when a memory of fixed capacity is full.

Events arrive one at a time, each with a place id. While the memory has room, every event is
stored. When it is full, an arriving event is handled by the strategy:

======  ======================================================================================
FIFO    first in, first out: evict the oldest stored event, store the new one (keeps the newest)
LIFO    last in, first out: the memory keeps what it has and the new event is not stored (keeps
        the oldest)
LVFO    least-visited first out: evict the oldest event of the place with the fewest stored
        events, store the new one (keeps busy places)
MVFO    most-visited first out: evict the oldest event of the place with the most stored events,
        store the new one (keeps at least the newest event of every place seen)
======  ======================================================================================

As in the reference code (``sfu`` in junmokane/spatially-aware-transformer), the arriving event is
never itself a candidate for LVFO/MVFO eviction and only places that hold an event count. Ties
between places are broken by the place whose oldest stored event is oldest (the reference takes
the lowest room id, whose order is random there), so the result depends only on the sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

STRATEGIES = ("fifo", "lifo", "lvfo", "mvfo")


class EventMemory:
    """A fixed-capacity memory of event indices with an eviction strategy.

    ``add(place)`` stores the next event (index 0, 1, 2, ... in arrival order) or not, and returns
    the index of the event that left the memory (the evicted one, the refused new one for LIFO,
    or None while there is room). ``kept`` lists the stored indices in arrival order.
    """

    def __init__(self, capacity: int, strategy: str):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: unknown {strategy!r}; expected one of {STRATEGIES}")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity: expected a positive int, got {capacity!r}")
        self.capacity, self.strategy = capacity, strategy
        self._events: list[tuple[int, int]] = []  # (index, place), arrival order
        self._next = 0

    @property
    def kept(self) -> list[int]:
        return [i for i, _ in self._events]

    @property
    def places(self) -> list[int]:
        return [p for _, p in self._events]

    def add(self, place: int) -> int | None:
        index = self._next
        self._next += 1
        if len(self._events) < self.capacity:
            self._events.append((index, place))
            return None
        if self.strategy == "lifo":
            return index
        if self.strategy == "fifo":
            victim = 0
        else:
            count: dict[int, int] = {}
            first: dict[int, int] = {}  # position of each place's oldest stored event
            for pos, (_, p) in enumerate(self._events):
                count[p] = count.get(p, 0) + 1
                first.setdefault(p, pos)
            pick = min if self.strategy == "lvfo" else max
            target = pick(count.values())
            victim = min(first[p] for p, n in count.items() if n == target)
        evicted = self._events.pop(victim)[0]
        self._events.append((index, place))
        return evicted


def evict(strategy: str, places: Sequence[int], capacity: int) -> list[int]:
    """Indices (arrival order) of the events a memory of ``capacity`` keeps after seeing events at
    ``places`` one by one, under ``strategy`` (fifo | lifo | lvfo | mvfo)."""
    memory = EventMemory(capacity, strategy)
    for p in places:
        memory.add(int(p))
    return memory.kept
