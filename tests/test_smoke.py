"""Every registered algorithm × architecture × environment trains a tiny budget through the CLI.

The default suite runs a pairwise cover of the supported triples (every learner × architecture, learner ×
environment and architecture × environment pair at least once, `pairwise_cover`); `pytest -m slow` runs the
other triples too, so the whole cross product stays one command away.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from harl.registry import ALGORITHMS, ARCHITECTURES, all_environments, load_extensions

from .conftest import TINY_MAMUJOCO, read_progress, run_train

load_extensions()

ENV_ARGS = {
    "matrix": ["--n_rollout_threads", "4", "--eval_episodes", "2", "--n_eval_rollout_threads", "2"],
    "mamujoco": TINY_MAMUJOCO,
    "vmas": [
        "--scenario",
        "dispersion",
        "--max_steps",
        "10",
        "--n_rollout_threads",
        "4",
        "--eval_episodes",
        "4",
        "--n_eval_rollout_threads",
        "4",
        "--hidden_sizes",
        "16,16",
    ],
    "mpe": [
        "--scenario",
        "simple_spread",
        "--max_cycles",
        "10",
        "--n_rollout_threads",
        "2",
        "--n_workers",
        "0",
        "--eval_episodes",
        "2",
        "--n_eval_rollout_threads",
        "2",
        "--hidden_sizes",
        "16,16",
    ],
    # 4 training and 4 evaluation games of one small map: JAX compiles the batched step once per process.
    "smacv2": [
        "--scenario",
        "3m",
        "--n_rollout_threads",
        "4",
        "--eval_episodes",
        "4",
        "--n_eval_rollout_threads",
        "4",
        "--hidden_sizes",
        "16,16",
    ],
}
ENV_ACTIONS = {
    "matrix": "discrete",
    "mamujoco": "continuous",
    "vmas": "discrete",
    "mpe": "discrete",
    "smacv2": "discrete",
}
# Environments from optional extras: their smoke runs are skipped when the package is absent.
ENV_PACKAGES = {"vmas": "vmas", "mpe": "mpe2", "smacv2": "jaxmarl"}
# Tiny values for whichever of these keys an algorithm's config has.
ALGO_TINY = {
    "episode_length": "10",
    "ppo_epoch": "2",
    "a2c_epoch": "2",
    "critic_epoch": "2",
    "warmup_steps": "20",
    "batch_size": "8",
    "train_interval": "5",
    "update_per_train": "1",
    "buffer_size": "1000",
    "n_step": "3",
}


# What every off-policy run logs (the SAC variants also their temperatures).
OFF_POLICY_SIGNALS = [
    "losses/critic/loss",
    "values/q_mean",
    "values/target_mean",
    "buffer/size",
    "timers/updates_per_second",
    "losses/<first agent>/actor_loss",
]
SAC_SIGNALS = ["losses/<first agent>/entropy", "losses/<first agent>/alpha", "losses/critic/alpha"]


# Tiny values for whichever of these keys an architecture's config has (a pre-training's env steps).
ARCH_TINY = {"pretrain_steps": "8"}


def tiny_args(algo: str, env: str, arch: str | None = None) -> list[str]:
    fields = {f.name for f in dataclasses.fields(ALGORITHMS[algo].config_cls)}
    args = [arg for key, value in ALGO_TINY.items() if key in fields for arg in (f"--{key}", value)]
    if arch is not None:
        arch_fields = {f.name for f in dataclasses.fields(ARCHITECTURES[arch].config_cls)}
        args += [arg for key, value in ARCH_TINY.items() if key in arch_fields for arg in (f"--{key}", value)]
    steps = "40" if ALGORITHMS[algo].on_policy else "60"
    return [*args, "--num_env_steps", steps, *ENV_ARGS[env]]


def check_run(run_dir, algo: str) -> None:
    """A finished tiny run: an evaluation, a checkpoint and, off-policy, every learner signal (finite losses)."""
    rows = read_progress(run_dir)
    assert rows[-1]["eval/episode_return"] != ""
    assert list((run_dir / "checkpoints").glob("step_*.pt"))
    if ALGORITHMS[algo].on_policy:
        return
    first_agent = next(k for k in rows[-1] if k.startswith("losses/") and k.endswith("/actor_loss")).split("/")[1]
    for key in OFF_POLICY_SIGNALS + (SAC_SIGNALS if "sac" in algo else []):
        key = key.replace("<first agent>", first_agent)
        assert any(row.get(key) not in ("", None) for row in rows), key
    assert all(math.isfinite(float(row["losses/critic/loss"])) for row in rows if row["losses/critic/loss"])


def supported(algo: str, env: str) -> bool:
    entry = ALGORITHMS[algo]
    return entry.discrete if ENV_ACTIONS[env] == "discrete" else entry.continuous


COMBOS = [
    (algo, arch, env)
    for algo in sorted(ALGORITHMS)
    for arch in sorted(ARCHITECTURES)
    for env in sorted(ENV_ACTIONS)
    if supported(algo, env)
]


def pairwise_cover(combos: list[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
    """A small set of the (algo, arch, env) triples that holds every pair any triple holds (greedy: each pick
    covers the most pairs not yet covered; ties go to the first in sorted order, so the cover is deterministic)."""

    def pairs(combo: tuple[str, str, str]) -> set[tuple[int, str, str]]:
        algo, arch, env = combo
        return {(0, algo, arch), (1, algo, env), (2, arch, env)}

    uncovered = set().union(*(pairs(c) for c in combos))
    cover = set()
    while uncovered:
        best = max(combos, key=lambda c: len(pairs(c) & uncovered))
        cover.add(best)
        uncovered -= pairs(best)
    return cover


def default_or_slow(combos: list[tuple[str, ...]], default: set[tuple[str, ...]]) -> list:
    """The combos as parameters, those outside `default` marked slow."""
    return [pytest.param(*c, marks=() if c in default else pytest.mark.slow) for c in combos]


@pytest.mark.parametrize(("algo", "arch", "env"), default_or_slow(COMBOS, pairwise_cover(COMBOS)))
def test_tiny_run_writes_logs_and_checkpoint(algo, arch, env, device, tmp_path):
    """On every available device (`conftest.DEVICES`): the CPU in CI, CUDA too where a GPU exists."""
    if env in ENV_PACKAGES:
        pytest.importorskip(ENV_PACKAGES[env])
    args = ["--algo", algo, "--arch", arch, "--env", env, "--device", device, *tiny_args(algo, env, arch)]
    check_run(run_train(tmp_path, *args), algo)


CONTINUOUS = sorted(a for a in ALGORITHMS if ALGORITHMS[a].continuous)
HETEROGENEOUS = [(algo, arch) for algo in CONTINUOUS for arch in sorted(ARCHITECTURES)]
DIAGONAL = {(algo, sorted(ARCHITECTURES)[k % len(ARCHITECTURES)]) for k, algo in enumerate(CONTINUOUS)}
DIAGONAL |= {(CONTINUOUS[k % len(CONTINUOUS)], arch) for k, arch in enumerate(sorted(ARCHITECTURES))}
# every continuous learner and every architecture at least once in the default suite; the rest with -m slow


@pytest.mark.parametrize(("algo", "arch"), default_or_slow(HETEROGENEOUS, DIAGONAL))
def test_heterogeneous_mamujoco(algo, arch, device, tmp_path):
    """HalfCheetah 6x1: agents with different observation sizes (on every available device)."""
    run_dir = run_train(
        tmp_path,
        "--algo",
        algo,
        "--arch",
        arch,
        "--env",
        "mamujoco",
        "--agent_conf",
        "6x1",
        "--device",
        device,
        *tiny_args(algo, "mamujoco", arch),
    )
    check_run(run_dir, algo)


def test_every_environment_is_covered():
    assert set(all_environments()) <= set(ENV_ACTIONS), "add new environments to the smoke matrix"


def test_the_default_cover_holds_every_pair_of_the_cross_product():
    cover = pairwise_cover(COMBOS)
    for first, second in ((0, 1), (0, 2), (1, 2)):
        assert {(c[first], c[second]) for c in cover} == {(c[first], c[second]) for c in COMBOS}
    assert {a for a, _ in DIAGONAL} == set(CONTINUOUS) and {r for _, r in DIAGONAL} == set(ARCHITECTURES)
