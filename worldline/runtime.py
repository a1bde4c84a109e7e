"""Process-wide settings for CPU throughput.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc returns every freed block above
its mmap threshold (128 KiB, adapting upward to at most 32 MiB) straight to the kernel, and trims
the heap top beyond ``M_TRIM_THRESHOLD``; the next allocation of that size then page-faults on
every page it touches while the kernel zeroes it. Work that allocates and frees many multi-MB
temporaries per step (the Gaussian rasterizer's pixel-pairs) can spend as long in those faults as
in arithmetic: one 10k-Gaussian 128 px forward took 85k minor faults and 0.28 s of system time
before :func:`retain_freed_memory`, and about 100 faults and 0 s after
(``python tools/bench/splat_raster.py``).

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


@functools.cache
def retain_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Keep freed blocks of up to ``limit_bytes`` in the process for reuse (glibc ``mallopt``: the
    mmap threshold raised to ``limit_bytes``, no heap trimming below 16 x that, 64 MiB top pad).
    Returns whether it took effect: False off glibc (macOS, musl, Windows), where it does nothing.
    The cost is resident memory: the high-water mark of the heap is not given back until exit."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    limit = max(0, min(int(limit_bytes), (1 << 31) - 1))
    ok = mallopt(_M_MMAP_THRESHOLD, limit)
    ok &= mallopt(_M_TRIM_THRESHOLD, min(16 * limit, (1 << 31) - 1))
    ok &= mallopt(_M_TOP_PAD, 64 << 20)
    return bool(ok)
