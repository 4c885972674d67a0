"""`keep_freed_memory`: a large tensor freed and allocated again is reused without faulting its pages
back in once the heap has settled; a user's own malloc settings switch the tuning off."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc tuning"
)

_FAULTS_PER_REALLOCATION = """
import resource, torch
from harl.utils.memory import keep_freed_memory
applied = keep_freed_memory()
n = (64 << 20) // 4  # a 64 MiB tensor: above glibc's largest dynamic mmap threshold (32 MiB)
faults = []
for _ in range(20):  # allocated, touched and freed, like an update's activations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(n).fill_(1.0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, *faults)
"""


def reallocation_faults(env: dict[str, str]) -> tuple[bool, list[int]]:
    """Run the snippet in a fresh interpreter: (whether the tuning applied, page faults per allocation)."""
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS_PER_REALLOCATION], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", [int(x) for x in out[1:]]


@glibc_only
def test_freed_large_tensors_are_reused_without_faulting_their_pages_back():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    pages = (64 << 20) // resource.getpagesize()
    applied, faults = reallocation_faults(env)
    assert applied
    assert max(faults[-5:]) < pages // 10, faults  # the settled heap serves them: no page faults again
    # glibc's defaults (any malloc setting of the user's turns the tuning off): every allocation faults
    applied, faults = reallocation_faults({**env, "GLIBC_TUNABLES": "glibc.malloc.perturb=0"})
    assert not applied
    assert min(faults) > pages // 2, faults
