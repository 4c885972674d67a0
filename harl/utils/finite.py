"""Invalid categorical probabilities caught before `torch.multinomial` sees them, without a host sync per step.

`torch.multinomial` on probabilities with a NaN, an infinity, a negative entry or a zero sum raises a
RuntimeError on the CPU (a traceback) and is a device-side assert on CUDA, which kills the process. Asking the
host whether a batch is valid before each draw would cost one device sync per env step. Instead
`sampleable_probs` replaces each invalid row by a uniform one on the device (so the draw always runs) and
records on the device that it did; `invalid_probabilities` reads that record, one sync per device, once per
update, and the caller stops the run with a `TrainingDiverged` line naming the update. Read where the run
checks for divergence (after each update, before anything is saved) and at the end of
`harl.evaluation.evaluate`, it stops a run before anything from the update that met them is checkpointed.
"""

from __future__ import annotations

import torch

_REPLACED: dict[torch.device, torch.Tensor] = {}
"""Per device, a () bool tensor on it: whether `sampleable_probs` replaced a row since `invalid_probabilities`
last read it."""

PROBLEM = "the policy's action probabilities were invalid (NaN, infinite, negative or summing to zero)"
"""What `invalid_probabilities` reports, for a `TrainingDiverged` line."""


def sampleable_probs(probs: torch.Tensor) -> torch.Tensor:
    """`probs` (..., A) with every invalid row (a non-finite or negative entry, or a zero sum) replaced by a
    uniform one, ready for `torch.multinomial`; that a row was replaced is recorded on `probs`' device.

    Runs entirely on the device: no host sync.

    Args:
        probs: unnormalised probabilities (..., A), one categorical distribution per row of the last dim.
    """
    valid = (torch.isfinite(probs) & (probs >= 0)).all(-1, keepdim=True) & (probs.sum(-1, keepdim=True) > 0)  # (..., 1)
    replaced = _REPLACED.get(probs.device)
    if replaced is None:
        replaced = _REPLACED[probs.device] = torch.zeros((), dtype=torch.bool, device=probs.device)
    replaced |= ~valid.all()
    return torch.where(valid, probs, torch.ones_like(probs))  # (..., A)


def invalid_probabilities() -> str | None:
    """`PROBLEM` when `sampleable_probs` replaced a row since the last call, else None; clears the record.

    Reads one flag per device that sampled (a host sync on CUDA): call it once per update, not per step.
    """
    seen = False
    for replaced in _REPLACED.values():
        seen |= bool(replaced)
        replaced.zero_()
    return PROBLEM if seen else None
