"""The training device's checks, on every available device (`conftest.DEVICES`: the CPU in CI, CUDA too
wherever a GPU exists): save → resume → evaluate, same seed → same run, evaluation that leaves the training
RNG stream alone, RNG states of the training device only, checkpoints loaded on the CPU, and invalid
probabilities caught before sampling without a host sync. The every-learner × architecture smoke runs are
`test_smoke.py`'s, over the same devices.

Where CUDA cannot run here, its calls are faked (`fake_cuda`) to check what would be asked of it.
"""

from __future__ import annotations

import io

import pytest
import torch

from harl.algos.base import ActOutput
from harl.cli import evaluate_cli, train_main
from harl.errors import TrainingDiverged
from harl.evaluation import evaluate
from harl.experiment import build_config
from harl.registry import get_environment, load_extensions
from harl.runners.base import build_learner
from harl.utils import finite
from harl.utils.checkpoint import Checkpointer, load_checkpoint, rng_state, set_rng_state
from harl.utils.rng import cuda_index, isolated_rng

from .conftest import read_progress, run_train

load_extensions()

MATRIX = ["--env", "matrix", "--n_rollout_threads", "4", "--eval_episodes", "2", "--n_eval_rollout_threads", "2"]
TINY = {
    "mappo": ["--episode_length", "10", "--ppo_epoch", "1", "--critic_epoch", "1"],
    "hasac": ["--warmup_steps", "20", "--batch_size", "8", "--train_interval", "5", "--buffer_size", "200"],
}
VOLATILE = ("charts/SPS", "timers/updates_per_second")
HOST_SYNCS = ("item", "tolist", "__bool__", "cpu", "numpy", "__float__", "__int__")
"""Tensor methods that read a tensor on the host: a device sync on CUDA (the issue's counting method)."""


def tensors(tree) -> list[torch.Tensor]:
    """Every tensor in a nest of dicts, lists and tuples."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for value in tree.values() for t in tensors(value)]
    if isinstance(tree, (list, tuple)):
        return [t for value in tree for t in tensors(value)]
    return []


def load_cpu(state: dict) -> dict:
    """`state` as a checkpoint holds it after loading: a save/load round trip onto the CPU."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location="cpu", weights_only=True)


def device_draws(device: str) -> torch.Tensor:
    """The next draws of the CPU's and the device's global generators, (8,) on the CPU."""
    return torch.cat([torch.rand(4), torch.rand(4, device=device).cpu()])


# ---------------------------------------------------------------- runs on the device


@pytest.mark.parametrize(("algo", "arch"), [("mappo", "hypermarl"), ("hasac", "nops")])
def test_save_resume_evaluate(algo, arch, device, tmp_path, capsys):
    """A run on the device checkpoints (every tensor loads on the CPU), resumes on the device from where it
    stopped and evaluates there, from the checkpoint, with stochastic actions."""
    args = ["--algo", algo, "--arch", arch, *MATRIX, *TINY[algo], "--device", device, "--save_interval", "40"]
    run_dir = run_train(tmp_path, *args, "--num_env_steps", "40")
    saved = load_checkpoint(run_dir)
    assert {t.device.type for t in tensors(saved)} == {"cpu"}
    assert saved["learner"]["generator"].dtype == torch.uint8  # a CPU ByteTensor, as Generator.set_state needs
    assert (saved["runner"]["rng"]["cuda_device"] is None) == (device == "cpu")  # the training GPU's only
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "80"]) == 0
    resumed = load_checkpoint(run_dir)
    assert resumed["runner"]["env_steps"] == 80 and resumed["config"]["run"]["device"] == device
    assert any(not torch.equal(saved["learner"]["actor"][k], v) for k, v in resumed["learner"]["actor"].items())
    capsys.readouterr()
    code = evaluate_cli(["--checkpoint", str(run_dir), "--device", device, "--episodes", "2", "--stochastic"])
    assert code == 0, capsys.readouterr().err
    assert "episode return over 2 episodes" in capsys.readouterr().out


@pytest.mark.parametrize("algo", ["mappo", "hasac"])
def test_same_seed_same_run(algo, device, tmp_path):
    """Two runs of one seed on the device log the same values and end with the same parameters."""
    args = ["--algo", algo, "--arch", "hypermarl", *MATRIX, *TINY[algo], "--device", device, "--seed", "4"]
    first, second = (run_train(tmp_path / name, *args, "--num_env_steps", "60") for name in "ab")
    rows = [
        [{k: v for k, v in row.items() if k not in VOLATILE} for row in read_progress(run)] for run in (first, second)
    ]
    assert rows[0] == rows[1]
    a, b = load_checkpoint(first)["learner"], load_checkpoint(second)["learner"]
    for key, value in a["actor"].items():
        assert torch.equal(value, b["actor"][key]), key


def test_evaluation_leaves_the_training_rng_alone(device):
    """Stochastic evaluation on the device draws under its own seed (the same episodes twice) and the CPU's
    and the device's generators then continue as if it had not run."""
    cfg, _ = build_config("mappo", "nops", "matrix", {"device": device}, use_tuned=False)
    env = get_environment("matrix").make(cfg.env, n_envs=2, seed=0, device=torch.device(device))
    learner = build_learner(cfg, env.spec, torch.device(device))
    torch.manual_seed(0)
    expected = device_draws(device)
    torch.manual_seed(0)
    results = [evaluate(learner, env, 4, False, seed=9, device=torch.device(device)) for _ in range(2)]
    assert results[0] == results[1]
    assert torch.equal(device_draws(device), expected)


# ---------------------------------------------------------------- RNG states of the training device


def test_isolated_rng_seeds_and_restores_the_device(device):
    torch.manual_seed(1)
    expected = device_draws(device)
    torch.manual_seed(1)
    with isolated_rng(5, device):
        inside = device_draws(device)
    with isolated_rng(5, device):
        assert torch.equal(device_draws(device), inside)
    assert torch.equal(device_draws(device), expected)


def test_rng_state_round_trip(device):
    """A checkpoint's RNG states, loaded on the CPU, give the same draws again on the CPU and the device."""
    state = rng_state(device)
    expected = device_draws(device)
    set_rng_state(load_cpu(state), device)
    assert torch.equal(device_draws(device), expected)


class FakeCuda:
    """Records the CUDA RNG calls harl makes, on a machine that may have no GPU (`fake_cuda`)."""

    def __init__(self, monkeypatch, n_gpus: int) -> None:
        self.n_gpus, self.calls = n_gpus, []
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_rng_state", self.get_rng_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda, "default_generators", tuple(self.Generator(self, i) for i in range(n_gpus)))
        for every in ("get_rng_state_all", "set_rng_state_all"):  # these start a context on every GPU
            monkeypatch.setattr(torch.cuda, every, lambda *args, name=every: pytest.fail(f"{name} called"))

    class Generator:
        """A GPU's default generator: records its seeding."""

        def __init__(self, fake: FakeCuda, index: int) -> None:
            self.fake, self.index = fake, index

        def manual_seed(self, seed: int) -> None:
            self.fake.calls.append(("seed", self.index, seed))

    def _check(self, index: int) -> None:
        if not 0 <= index < self.n_gpus:
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")

    def get_rng_state(self, index: int) -> torch.Tensor:
        self._check(index)
        self.calls.append(("get", index))
        return torch.full((16,), index, dtype=torch.uint8)

    def set_rng_state(self, state: torch.Tensor, index: int) -> None:
        self._check(index)
        assert state.device.type == "cpu" and state.dtype == torch.uint8
        self.calls.append(("set", index, int(state[0])))


def test_a_cpu_run_never_touches_cuda(monkeypatch):
    fake = FakeCuda(monkeypatch, n_gpus=0)
    state = rng_state("cpu")
    assert state["cuda_device"] is None
    set_rng_state({**state, "cuda_device": torch.zeros(16, dtype=torch.uint8)}, "cpu")
    with isolated_rng(3, "cpu"):
        torch.rand(2)
    assert fake.calls == [] and cuda_index("cpu") is None


def test_only_the_training_gpus_rng_is_saved_and_restored(monkeypatch):
    fake = FakeCuda(monkeypatch, n_gpus=2)
    assert cuda_index("cuda") == 0 and cuda_index("cuda:1") == 1
    state = rng_state("cuda:1")
    assert torch.equal(state["cuda_device"], torch.full((16,), 1, dtype=torch.uint8))
    set_rng_state(state, "cuda:1")
    set_rng_state(state, "cuda:0")  # a run resumed on another GPU continues its stream there
    assert fake.calls == [("get", 1), ("set", 1, 1), ("set", 0, 1)]


def test_evaluation_forks_and_seeds_the_training_gpu_only(monkeypatch):
    fake = FakeCuda(monkeypatch, n_gpus=2)
    with isolated_rng(5, "cuda:1"):
        assert fake.calls == [("get", 1), ("seed", 1, 5)]
    assert fake.calls[2:] == [("set", 1, 1)]  # given back its state


def test_earlier_checkpoints_rng_states_still_load(monkeypatch):
    """Before: every visible GPU's state in a list under "cuda" (None without CUDA). The training device's
    entry is restored; a machine with fewer GPUs than the saving one restores what it can, without failing."""
    cpu_only = {k: v for k, v in rng_state("cpu").items() if k != "cuda_device"}
    set_rng_state({**cpu_only, "cuda": None}, "cpu")
    fake = FakeCuda(monkeypatch, n_gpus=2)
    every_gpu = [torch.full((16,), 10 + i, dtype=torch.uint8) for i in range(4)]
    set_rng_state({**cpu_only, "cuda": every_gpu}, "cuda:1")
    set_rng_state({**cpu_only, "cuda": every_gpu[:1]}, "cuda:1")  # saved on one GPU: nothing for cuda:1
    set_rng_state({**cpu_only, "cuda": None}, "cuda:0")  # saved without CUDA
    assert fake.calls == [("set", 1, 11)]


def test_checkpoints_load_on_the_cpu_whatever_the_device(tmp_path):
    """`map_location` is always the CPU: a learner's CPU generator state stays a CPU ByteTensor (on CUDA,
    mapping it to the device made `Generator.set_state` raise TypeError)."""
    generator = torch.Generator().manual_seed(2)
    payload = {"runner": {"env_steps": 8}, "learner": {"generator": generator.get_state(), "w": torch.ones(3)}}
    path = Checkpointer(tmp_path, keep=1).save(8, payload)
    loaded = load_checkpoint(path)
    assert {t.device.type for t in tensors(loaded)} == {"cpu"}
    restored = torch.Generator()
    restored.set_state(loaded["learner"]["generator"])
    assert torch.equal(torch.rand(3, generator=restored), torch.rand(3, generator=generator.manual_seed(2)))


# ---------------------------------------------------------------- invalid probabilities


@pytest.fixture
def no_host_syncs(monkeypatch, device):
    """Fail on any host read of a tensor (and, on CUDA, on any device sync) inside the block it gives."""

    def forbid():
        for name in HOST_SYNCS:
            monkeypatch.setattr(torch.Tensor, name, lambda *args, name=name: pytest.fail(f"host sync: {name}"))
        if device != "cpu":
            torch.cuda.set_sync_debug_mode("error")

    def allow():
        monkeypatch.undo()
        if device != "cpu":
            torch.cuda.set_sync_debug_mode("default")

    return forbid, allow


def test_invalid_probabilities_are_replaced_and_reported_once(device, no_host_syncs):
    finite.invalid_probabilities()  # a clean record
    probs = torch.tensor(
        [[0.2, 0.8, 0.0], [float("nan"), 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, -1.0, 1.0], [float("inf"), 0, 0]],
        device=device,
    )
    forbid, allow = no_host_syncs
    forbid()
    ok = finite.sampleable_probs(probs[:1])
    fixed = finite.sampleable_probs(probs)
    allow()
    draws = torch.multinomial(fixed, 50, replacement=True)  # (5, 50): runs, where invalid rows would not
    assert torch.equal(ok, probs[:1]) and torch.equal(fixed[0], probs[0])
    assert torch.equal(fixed[1:], torch.ones(4, 3, device=device))
    assert set(draws[0].tolist()) <= {0, 1} and 0 <= int(draws.min()) and int(draws.max()) <= 2
    assert finite.invalid_probabilities() == finite.PROBLEM
    assert finite.invalid_probabilities() is None  # read once: the record is cleared
    per_agent = finite.sampleable_probs(probs.view(1, 5, 3))  # (E, N, A): rows along the last dim
    assert torch.equal(per_agent.view(5, 3), fixed) and finite.invalid_probabilities() == finite.PROBLEM
    finite.sampleable_probs(probs[:1])
    assert finite.invalid_probabilities() is None


class NanPolicy:
    """A stochastic policy whose action probabilities are NaN, sampled as harl's categorical actors do."""

    def initial_hidden(self, n_envs: int) -> None:
        return None

    def act(self, obs, state, avail, *, deterministic=False, hidden=None) -> ActOutput:
        probs = torch.full((obs.shape[0] * obs.shape[1], 2), float("nan"), device=obs.device)
        actions = torch.multinomial(finite.sampleable_probs(probs), 1).view(obs.shape[0], obs.shape[1], 1)
        return ActOutput(actions.float(), actions)


def test_evaluation_with_invalid_probabilities_stops_with_one_line(device):
    finite.invalid_probabilities()
    cfg, _ = build_config("mappo", "nops", "matrix", {"device": device}, use_tuned=False)
    env = get_environment("matrix").make(cfg.env, n_envs=2, seed=0, device=torch.device(device))
    with pytest.raises(TrainingDiverged, match="evaluation stopped: the policy's action probabilities were invalid"):
        evaluate(NanPolicy(), env, 2, False, seed=0, device=torch.device(device))
    assert finite.invalid_probabilities() is None
