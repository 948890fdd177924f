"""Training on CPU: freed activation memory stays in the process for the next step instead of going back to the OS.

glibc's malloc serves every allocation above its mmap threshold (32 MiB at most, dynamic below that) with a
fresh `mmap` and returns it with `munmap` when freed, so each step of CPU training page-faults its
activations in again (the kernel zeroes every page) and the first steps, before the threshold has grown,
do so for most of them. PyTorch's CPU tuning guide answers this with jemalloc or tcmalloc through
LD_PRELOAD; `keep_freed_memory` gets glibc to do the same from inside the process: no mmap for large blocks
(they come from the heap, which keeps freed blocks for reuse) and the heap's free top given back only past
2 GiB. Peak memory is about the same (the step's peak is reached anyway; a few percent more was
measured, docs/training.md); memory freed after the peak mostly stays with the process, which for `pacos
train` ends once it has saved. The setting is the process's: a Python session that called `train()` keeps it.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_TRIM_ABOVE = 2**31 - 1  # bytes of free heap top before any goes back: mallopt's largest (it takes an int)


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; False (and nothing changed) where it is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: its C library's malloc
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE))
