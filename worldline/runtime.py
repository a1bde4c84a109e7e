"""Process-wide settings for CPU throughput.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc returns every freed block above
its mmap threshold (128 KiB, adapting upward) straight to the kernel and trims the heap top beyond
``M_TRIM_THRESHOLD``; the next allocation of that size then page-faults on every page it touches
while the kernel zeroes it. Work that allocates and frees many multi-MB temporaries per step (the
Gaussian rasterizer's pixel-pairs) can spend a large share of its time in those faults;
``python tools/bench/splat_raster.py`` measures with and without (``--default-malloc``).

These are process-wide: the command-line entry points and benchmarks call them, library code does
not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20
"""glibc's documented ceiling for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2); older glibc
refuses larger values"""


@functools.cache
def retain_freed_memory(limit_bytes: int = MMAP_THRESHOLD_MAX) -> bool:
    """Keep freed blocks of up to ``limit_bytes`` (at most 32 MiB) in the process for reuse: glibc
    ``mallopt`` raises the mmap threshold to ``limit_bytes``, and only if that succeeded sets the
    trim threshold to 1 GiB and a 64 MiB top pad (both of which would otherwise freeze glibc's
    adaptive threshold). Returns whether it took effect: False off glibc (macOS, musl, Windows) or
    if glibc refused, and then nothing was changed. Cached: a second call does nothing. The cost is
    resident memory: the heap's high-water mark is kept until exit."""
    limit = int(limit_bytes)
    if not 0 < limit <= MMAP_THRESHOLD_MAX:
        raise ValueError(f"limit_bytes: expected 1 .. {MMAP_THRESHOLD_MAX}, got {limit_bytes}")
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, limit) != 1:
        return False
    mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    mallopt(_M_TOP_PAD, 64 << 20)
    return True
