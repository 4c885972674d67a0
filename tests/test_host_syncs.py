"""Collection makes (almost) no host syncs: calls that would wait for a device, counted on the CPU.

Every call of `Tensor.item/tolist/__bool__/cpu/numpy/__float__/__int__` made from `harl/` or `hypermarl_ext/`
while a runner collects is counted (on CUDA each would be a host-device round trip). Budgets per vector env
step: at most 1 on VMAS (whose adapter must read where episodes ended: VMAS resets worlds by index), at most 0.5
on the matrix games.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from harl.experiment import build_config
from harl.registry import get_algorithm, load_extensions
from harl.runners import runner_for

load_extensions()

SYNCING = ("item", "tolist", "__bool__", "cpu", "numpy", "__float__", "__int__")
OURS = (f"{Path('harl')}/", "hypermarl_ext/")


class SyncCounter:
    """Counts the syncing Tensor calls made from our packages (by call site) while active."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def __enter__(self) -> SyncCounter:
        self.originals = {name: getattr(torch.Tensor, name) for name in SYNCING}
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, self._counting(name, original))
        return self

    def __exit__(self, *exc) -> None:
        for name, original in self.originals.items():
            setattr(torch.Tensor, name, original)

    def _counting(self, name, original):
        def call(tensor, *args, **kwargs):
            caller = sys._getframe(1)
            path = caller.f_code.co_filename
            if any(f"/{root}" in path for root in OURS):
                self.calls[(name, path.rsplit("/", 2)[-1], caller.f_lineno)] += 1
            return original(tensor, *args, **kwargs)

        return call


CASES = [
    ("vmas", "mappo", "nops", 1, 1.0),
    ("vmas", "mappo", "hypermarl", 3, 1.0),
    ("matrix", "mappo", "fups_id", 1, 0.5),
    ("matrix", "hasac", "hypermarl", 1, 0.5),
]


@pytest.mark.parametrize(
    ("env", "algo", "arch", "seeds", "budget"), CASES, ids=["-".join(map(str, c[:4])) for c in CASES]
)
def test_collection_syncs_stay_within_budget(env, algo, arch, seeds, budget, tmp_path):
    overrides = {"run.seeds": str(seeds), "run.n_rollout_threads": "4", "model.hidden_sizes": "16,16"}
    if env == "vmas":
        overrides.update({"env.scenario": "dispersion", "algo.episode_length": "128"})  # an episode ends at 100
    if not get_algorithm(algo).on_policy:
        overrides.update({"algo.warmup_steps": "0", "algo.train_interval": "20", "algo.batch_size": "1000"})
    cfg, _ = build_config(algo, arch, env, overrides, use_tuned=env == "vmas")
    folders = [tmp_path / f"seed-{k}" for k in range(seeds)]
    runner = runner_for(get_algorithm(algo))(cfg, folders if seeds > 1 else folders[0], None)
    try:
        with SyncCounter() as counter:
            runner.iterate() if not get_algorithm(algo).on_policy else runner.collect()
        steps = runner.schedule.steps_per_iteration
        per_step = sum(counter.calls.values()) / steps
        assert per_step <= budget, f"{per_step:.2f} per vector step: {counter.calls.most_common(5)}"
    finally:
        runner.close()
