"""Memory of the process: what a device has left (`available_memory`), and keeping freed tensor memory in the
process instead of handing it back to the OS after every update (`keep_freed_memory`).

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
from pathlib import Path

import torch

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


def available_memory(device: str) -> int | None:
    """Bytes still available on `device` (cpu, cuda or cuda:N): the host's available memory (MemAvailable of
    /proc/meminfo, else its free pages) or the GPU's free memory; None where it cannot be told (e.g. no CUDA)."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return None
        index = torch.device(device).index
        index = torch.cuda.current_device() if index is None else index
        return torch.cuda.mem_get_info(index)[0] if index < torch.cuda.device_count() else None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def format_bytes(count: float) -> str:
    """`count` bytes in binary units: 512 B, 1.5 KiB, 20.0 GiB, 14.6 TiB."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    power = 0
    while count >= 1024 and power < len(units) - 1:
        count /= 1024
        power += 1
    return f"{count:.0f} B" if power == 0 else f"{count:.1f} {units[power]}"
