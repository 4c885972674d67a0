"""Versioned, atomic checkpoints of everything a run needs to continue, loaded without running code.

A checkpoint is a `torch.save` zip archive of a dict holding only tensors, numbers, strings, lists,
tuples and dicts, so it loads with `torch.load(weights_only=True)`: a file that would import anything
(e.g. a pickle whose payload calls `os.system`) is refused before any of it runs. Format 1 (harl before
the RNG states became tensors) also held the numpy RNG key as a numpy array; it still loads, with
numpy's array reconstruction as the only extra type allowed. Checkpoints load on the CPU (`load_checkpoint`);
the RNG states saved are the CPU's and the training device's (`rng_state`).
"""

from __future__ import annotations

import importlib
import os
import pickle
import random
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from harl.errors import CheckpointError, shown
from harl.utils.rng import cuda_index

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_NAME = re.compile(r"^step_(\d+)\.pt$")
_TMP = re.compile(r"^\.step_(\d+)\.pt\.tmp$")
# numpy's array reconstruction: the only globals a format-1 checkpoint needs (its numpy RNG key array)
_reconstruct = importlib.import_module(
    "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
)._reconstruct
LEGACY_GLOBALS: list[Any] = [
    np.ndarray,
    np.dtype,
    (_reconstruct, "numpy._core.multiarray._reconstruct"),
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
    type(np.dtype(np.uint32)),  # the key's dtype, rebuilt from its pickled state
]
LEGACY_NAMES = {
    "numpy.ndarray",
    "numpy.dtype",
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",
}


class CorruptCheckpoint(CheckpointError):
    """A checkpoint file that cannot be read (truncated, bit-flipped, not a harl checkpoint)."""


def rng_state(device: torch.device | str = "cpu") -> dict:
    """Every global RNG's state a run on `device` draws from, as tuples, ints, floats and tensors: python's,
    numpy's, torch's CPU generator and, when `device` is CUDA, that device's generator (no other GPU's).

    Args:
        device: the training device (the default, the CPU, saves no CUDA state and touches no GPU).
    """
    kind, key, pos, has_gauss, cached = np.random.get_state(legacy=True)  # key: (624,) uint32
    index = cuda_index(device)
    return {
        "python": random.getstate(),  # (version, 625 ints, None)
        "numpy": (kind, torch.from_numpy(np.asarray(key, dtype=np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),  # (5056,) uint8
        "cuda_device": None if index is None else torch.cuda.get_rng_state(index),  # (16,) uint8 or None
    }


def set_rng_state(state: dict, device: torch.device | str = "cpu") -> None:
    """Restore what `rng_state` saved into a run on `device`.

    The CUDA state goes to the training device only, and only when it is CUDA. Checkpoints of earlier harl
    versions hold every visible GPU's state under "cuda" (a list, None without CUDA): the training device's
    index picks its state from that list when there is one. Format 1's numpy key (an array) is read too.

    Args:
        state: `rng_state()`'s output, loaded on the CPU.
        device: the training device.
    """
    random.setstate(state["python"])
    kind, key, pos, has_gauss, cached = state["numpy"]
    key = key.cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
    np.random.set_state((kind, key.astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    index = cuda_index(device)
    if index is None:
        return
    cuda = state.get("cuda_device")
    every_gpu = state.get("cuda") or []  # (earlier versions) one state per visible GPU
    if cuda is None and index < len(every_gpu):
        cuda = every_gpu[index]
    if cuda is not None:
        torch.cuda.set_rng_state(cuda.cpu(), index)


def checkpoint_step(path: Path) -> int:
    """The env steps in a checkpoint's file name (`step_<env_steps>.pt`)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not named step_<env_steps>.pt")
    return int(match.group(1))


def list_checkpoints(folder: Path) -> list[Path]:
    """A folder's `step_<env_steps>.pt` files, oldest first (empty when the folder does not exist)."""
    folder = Path(folder)
    found = [p for p in folder.glob("step_*.pt") if _NAME.match(p.name)] if folder.is_dir() else []
    return sorted(found, key=checkpoint_step)


class Checkpointer:
    """Saves `step_<env_steps>.pt` files in a folder, keeping the latest `keep` of them.

    Writes go to a temporary file that is renamed into place, so a run killed mid-save never leaves a
    half-written checkpoint behind; a save that fails (e.g. on a full disk) removes its temporary file, and the
    ones a kill leaves are removed when the next Checkpointer opens the folder (only the process holding the run
    folder's lock makes one).
    """

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder, self.keep = Path(folder), keep
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.iterdir():
            if _TMP.match(stale.name):
                stale.unlink(missing_ok=True)

    def save(self, env_steps: int, payload: dict) -> Path:
        """Write `payload` as the checkpoint at `env_steps` (atomically), then drop the oldest beyond `keep`."""
        path = self.folder / f"step_{env_steps}.pt"
        tmp = self.folder / f".step_{env_steps}.pt.tmp"
        try:
            with open(tmp, "wb") as f:  # through a Python file, a full disk surfaces as its OSError (ENOSPC)
                torch.save({"format_version": FORMAT_VERSION, **payload}, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        for old in self.list()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def list(self) -> list[Path]:
        """The checkpoints in the folder, oldest first."""
        return list_checkpoints(self.folder)

    def latest(self) -> Path | None:
        """The newest checkpoint, or None."""
        found = self.list()
        return found[-1] if found else None

    def latest_step(self) -> int | None:
        """The env steps of the newest checkpoint, or None."""
        latest = self.latest()
        return None if latest is None else checkpoint_step(latest)


def set_aside_newer(folder: Path, env_steps: int) -> list[Path]:
    """Rename the checkpoints past `env_steps` (unreadable ones a resume skipped) to `*.pt.corrupt`.

    Without this, a resumed run's `keep` rotation could delete the good checkpoints it writes while
    keeping the unreadable newer ones. Returns the new names.
    """
    moved = []
    for path in list_checkpoints(folder):
        if checkpoint_step(path) > env_steps:
            target = path.with_name(path.name + ".corrupt")
            path.replace(target)
            moved.append(target)
    return moved


class RemovedCheckpoint(CheckpointError):
    """A checkpoint file that was listed (or named) but is gone when read: rotated away by its run, or deleted."""


def _removed(path: Path) -> RemovedCheckpoint:
    """The error for a checkpoint file that does not exist, saying when its run has rotated it away."""
    named = _NAME.match(path.name) is not None
    newer = [p for p in list_checkpoints(path.parent) if named and checkpoint_step(p) > checkpoint_step(path)]
    if not newer:
        return RemovedCheckpoint(f"checkpoint not found: {path}")
    return RemovedCheckpoint(
        f"checkpoint {path} was removed: its run keeps only its latest checkpoints (keep_checkpoints) and rotated it "
        f"away; the newest is now {newer[-1].name} (give the run folder to load the newest)"
    )


def _unsafe_globals(file: IO[bytes]) -> list[str]:
    """The imports a torch zip archive's pickle would perform beyond weights-only types (nothing is run)."""
    try:
        file.seek(0)
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(file))
    except Exception:  # unreadable: reported as corrupt by the caller
        return []


def _read(path: Path) -> dict:
    """Read one checkpoint file on the CPU with the weights-only unpickler; one-line `CheckpointError` on any
    failure. The file is opened once, so a run rotating it away meanwhile cannot cut the read short."""
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise _removed(path) from None
    except OSError as err:
        raise CorruptCheckpoint(f"checkpoint {path} cannot be read: {err.strerror or err}") from None
    with file:
        return _read_open(path, file)


def _read_open(path: Path, file: IO[bytes]) -> dict:
    """`_read` of the open `file` (at `path`)."""
    if not zipfile.is_zipfile(file):
        raise CorruptCheckpoint(f"checkpoint {path} is corrupt or not a harl checkpoint (not a torch zip archive)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                file.seek(0)
                data = torch.load(file, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError:
                unsafe = _unsafe_globals(file)
                if not unsafe:
                    raise
                if not set(unsafe) <= LEGACY_NAMES:
                    refused = ", ".join(sorted(set(unsafe) - LEGACY_NAMES))
                    raise CheckpointError(
                        f"refusing checkpoint {path}: loading it would import {refused}, which no harl checkpoint "
                        "holds (it may carry code; nothing of it was run)"
                    ) from None
                with torch.serialization.safe_globals(LEGACY_GLOBALS):
                    file.seek(0)
                    data = torch.load(file, map_location="cpu", weights_only=True)
                if not isinstance(data, dict) or data.get("format_version") != 1:
                    raise CorruptCheckpoint(
                        f"checkpoint {path} holds numpy arrays outside a format-1 RNG state"
                    ) from None
    except CheckpointError:
        raise
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CorruptCheckpoint(
            f"checkpoint {path} is corrupt or not a harl checkpoint ({type(err).__name__})"
        ) from None
    if not isinstance(data, dict) or "format_version" not in data or "runner" not in data:
        raise CorruptCheckpoint(f"checkpoint {path} is corrupt or not a harl checkpoint (no harl payload)")
    if data["format_version"] not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has format version {data['format_version']}; this harl reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    data["path"] = str(path)
    return data


def _candidates(path: Path) -> Iterator[Path]:
    yield from reversed(list_checkpoints(path / "checkpoints" if (path / "checkpoints").is_dir() else path))


def load_checkpoint(path: Path | str) -> dict:
    """Load and check a checkpoint file, or the newest readable one of a run folder / checkpoints folder.

    Every tensor loads on the CPU, whatever the training device: the `load_state_dict` methods place them
    (parameters and optimiser moments on their parameters' device, the learners' CPU `torch.Generator`
    states stay on the CPU, replay storage is copied into the device buffer without a second device copy).
    When newer checkpoints of a folder are unreadable, the newest readable one is returned and
    `data["fallback"]` says which were skipped and how many env steps are lost; one removed since the folder was
    listed (rotated away by a running training) is skipped too. Any failure is a one-line `CheckpointError`; a
    checkpoint file that is gone says whether its run rotated it away.

    Args:
        path: a checkpoint file, a run folder or its `checkpoints/`.
    """
    path = Path(path)
    if not path.is_dir():
        return _read(path)
    skipped: list[tuple[Path, CorruptCheckpoint]] = []
    removed: list[Path] = []
    for candidate in _candidates(path):
        try:
            data = _read(candidate)
        except CorruptCheckpoint as err:
            skipped.append((candidate, err))
            continue
        except RemovedCheckpoint:
            removed.append(candidate)  # rotated away since the folder was listed
            continue
        if skipped:
            lost = checkpoint_step(skipped[0][0]) - checkpoint_step(candidate)
            names = ", ".join(p.name for p, _ in skipped)
            data["fallback"] = (
                f"{names} unreadable ({skipped[0][1]}); using {candidate.name} instead, {lost} env steps lost"
            )
        return data
    if skipped:
        raise skipped[0][1]
    if removed:
        raise CheckpointError(
            f"the checkpoints of {path} were removed while being loaded (rotated away by a running training, or "
            "deleted); try again"
        )
    raise CheckpointError(f"no checkpoint found in {path}")


def describe_mismatch(checkpoint: dict, config: dict, spec: dict) -> str:
    """One line: what a checkpoint was made with and what the current run asks for (algo, arch, env, sizes).

    Args:
        checkpoint: a loaded checkpoint (its `config`, `spec` and `path`).
        config: the current run's `ExperimentConfig.to_dict()`.
        spec: the current environment's layout (`agent_ids`, `obs_dims`, `act_dims`, `state_dim`).
    """
    made = checkpoint.get("config") or {}

    def summary(cfg: dict, layout: dict | None) -> str:
        main, model = cfg.get("main", {}), cfg.get("model", {})
        text = f"{main.get('algo')}/{main.get('arch')} on {main.get('env')}"
        if layout:
            text += (
                f", {len(layout.get('agent_ids', []))} agents, obs dims {layout.get('obs_dims')}, "
                f"action dims {layout.get('act_dims')}, state dim {layout.get('state_dim')}"
            )
        return text + f", hidden sizes {model.get('hidden_sizes')}"

    differing = [
        f"{section}.{key} {shown(made.get(section, {}).get(key))} vs {shown(config.get(section, {}).get(key))}"
        for section in ("main", "env", "model", "arch", "algo")
        for key in sorted(set(made.get(section, {})) | set(config.get(section, {})))
        if made.get(section, {}).get(key) != config.get(section, {}).get(key)
    ]
    line = (
        f"checkpoint {checkpoint.get('path')} does not fit this learner: it was made with "
        f"{summary(made, checkpoint.get('spec'))}; this run asks for {summary(config, spec)}"
    )
    return line + (f" (differing: {', '.join(differing)})" if differing else "")
