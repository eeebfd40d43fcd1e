"""Keep freed CPU memory for reuse instead of handing it back to the OS after every step.

Why: glibc's malloc serves every request over 32 MiB (its largest mmap threshold) with a
fresh ``mmap`` and returns it with ``munmap`` on free, and it trims the heap's free top.
A training step allocates dozens of such tensors (alexnet2012 at batch 128: conv1's output
alone is 128x96x55x55 bf16 = 74 MB), so every step page-faults and zero-fills gigabytes
anew. PyTorch's CUDA allocator caches for the same reason; its CPU allocator does not.

Measured with ``alexnet bench train`` on the 2-core AMX CPU, off (``ALEXNET_MALLOC=system``)
-> on: torchvision fp32 52.6 -> 61.0 images/s, alexnet2012 bf16 72.2 -> 150.7, alexnet2014
179.9 -> 236.8 (docs/training.md). The cost: the process keeps its
peak heap while it trains, as a caching allocator does; ``train`` hands it back at the end
(``release_freed_memory``).

Done with ``mallopt`` on glibc (Linux); elsewhere it changes nothing. It governs the main
thread's heap, where the training step allocates: other threads' pools still map blocks over
64 MiB. With jemalloc or tcmalloc preloaded, those allocators manage memory their own way
(glibc's settings, or tcmalloc's no-op ``mallopt``, do not matter then).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_MAX = -4
ENVIRONMENT = "ALEXNET_MALLOC"  # "system" leaves malloc as it is

_applied = False


def reuse_freed_memory() -> bool:
    """Tell glibc malloc to serve large blocks from the heap and never trim it. Idempotent;
    True when it is in effect. Call it before the first large allocations; forked
    DataLoader workers inherit it."""
    global _applied
    if _applied:
        return True
    if os.environ.get(ENVIRONMENT, "") == "system":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)  # this process's own C library
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # mmap for no block (large ones come from the heap and are reused after free), and a
    # trim threshold of -1, which glibc reads as SIZE_MAX: the freed top is never returned
    _applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, -1) == 1
    return _applied


def release_freed_memory() -> None:
    """Hand the heap's free memory back to the OS (glibc ``malloc_trim``; works with trimming
    off). For the end of a run: a notebook that trained keeps only what it still uses."""
    if not _applied:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
