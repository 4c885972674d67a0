"""The global RNGs of the training device: which CUDA device a run draws on, and a seeded block that leaves
them as they were.

A run draws random numbers from the CPU's global generator and, when it trains on CUDA, from that one
device's generator. Only those are saved, restored and forked: touching every visible GPU
(`torch.cuda.get_rng_state_all`, `fork_rng()` without `devices`) would start a CUDA context on each of them,
even for a CPU run, and restoring a list of per-GPU states fails on a machine with fewer GPUs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def cuda_index(device: torch.device | str) -> int | None:
    """The CUDA device index that `device` draws on (the current one for a bare "cuda"); None off CUDA.

    Nothing touches CUDA for a non-CUDA device, so a CPU run starts no CUDA context here.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return device.index if device.index is not None else torch.cuda.current_device()


@contextlib.contextmanager
def isolated_rng(seed: int, device: torch.device | str) -> Iterator[None]:
    """Run the block with the CPU's and the training `device`'s global generators seeded with `seed`, and
    give both back their states afterwards: what the block draws (evaluation episodes, an observation set)
    is reproducible from `seed` and leaves the training run's random stream untouched.

    Args:
        seed: seed of the block's draws.
        device: the training device; on CUDA its generator is forked too, no other GPU's.
    """
    index = cuda_index(device)
    with torch.random.fork_rng(devices=[] if index is None else [index], device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if index is not None:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
