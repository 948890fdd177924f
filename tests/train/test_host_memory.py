"""keep_freed_memory: after it, a large block comes from the heap (kept for reuse), not from a fresh mmap."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")

PROBE = r"""
import ctypes, sys
from pacos.train.host_memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
address = libc.malloc(64 << 20)  # above glibc's largest mmap threshold (32 MiB)
for line in open("/proc/self/maps"):
    span, *rest = line.split()
    low, high = (int(x, 16) for x in span.split("-"))
    if low <= address < high:
        print(kept, line.rstrip().endswith("[heap]"))
"""


def _probe(mode: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_a_large_block_comes_from_the_heap_once_freed_memory_is_kept():
    if _probe("default") != ["None", "False"]:
        pytest.skip("this libc does not mmap large blocks (not glibc)")
    assert _probe("keep") == ["True", "True"]
