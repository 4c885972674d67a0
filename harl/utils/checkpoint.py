"""Versioned, atomic checkpoints of everything a run needs to continue."""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from harl.errors import CheckpointError

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.pt$")


def rng_state() -> dict:
    """Every global RNG's state (python, numpy, torch CPU and CUDA)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Saves `step_<env_steps>.pt` files in a folder, keeping the latest `keep` of them.

    Writes go to a temporary file that is renamed into place, so a run killed mid-save never
    leaves a half-written checkpoint behind.
    """

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder, self.keep = Path(folder), keep
        self.folder.mkdir(parents=True, exist_ok=True)

    def save(self, env_steps: int, payload: dict) -> Path:
        path = self.folder / f"step_{env_steps}.pt"
        tmp = self.folder / f".step_{env_steps}.pt.tmp"
        torch.save({"format_version": FORMAT_VERSION, **payload}, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        for old in self.list()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def list(self) -> list[Path]:
        found = [p for p in self.folder.glob("step_*.pt") if _NAME.match(p.name)]
        return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1] if found else None


def load_checkpoint(path: Path | str, device: torch.device | str = "cpu") -> dict:
    """Load and check a checkpoint; any failure becomes a one-line `CheckpointError`."""
    path = Path(path)
    if path.is_dir():
        latest = Checkpointer(path / "checkpoints" if (path / "checkpoints").is_dir() else path, keep=1).latest()
        if latest is None:
            raise CheckpointError(f"no checkpoint found in {path}")
        path = latest
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a harl checkpoint ({type(err).__name__})") from None
    if not isinstance(data, dict) or "format_version" not in data:
        raise CheckpointError(f"{path} is not a harl checkpoint")
    if data["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {data['format_version']}, this harl reads version {FORMAT_VERSION}"
        )
    data["path"] = str(path)
    return data
