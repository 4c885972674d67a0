"""Keep freed tensor memory in the process instead of handing it back to the OS after every update.

glibc's malloc serves large blocks (above a threshold that grows only up to 32 MiB) with `mmap` and
returns them to the OS on `free`; the next allocation of the same size page-faults every page back in.
A training update allocates and frees activations of (agents, batch, hidden) floats, tens of MiB each
for large agent counts, several times per epoch, so the faults cost more than the arithmetic on them:
an element-wise op on a fresh 35 MiB tensor took 15 ms instead of 1.7 ms on a 2-core VM, and one MAPPO
update on Humanoid 17x1 (20 envs x 200 steps) 3.1 s instead of 1.9 s. Raising the mmap and trim
thresholds keeps such blocks in the heap for reuse (after the first few updates, once freed blocks have
coalesced into ones large enough for the aligned requests).

The price is memory: the heap keeps its high-water mark, a few times the largest update's activations,
instead of returning it. A run is opted out by any malloc setting of the user's in the environment, e.g.
`GLIBC_TUNABLES=glibc.malloc.trim_threshold=131072`, or by preloading another allocator (jemalloc,
tcmalloc), which such tuning does not touch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap and freed memory up to this size stays there.
KEEP_BYTES = 1 << 30

# Settings a user makes through the environment win over ours.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to `KEEP_BYTES` for this process.

    Does nothing (and returns False) off glibc, or where the user set malloc options in the
    environment; returns True once the thresholds are set.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
