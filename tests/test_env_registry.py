"""What every registered environment does alike: the same seed gives the same episodes (and the global torch RNG is
left alone), and through `harl-train` an unknown scenario is refused in one line naming the valid ones (those
`--list` shows), and without its optional extra an env says in one line what to install (or, needing none, trains).
Env-specific behaviour stays in the per-env test files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from harl.cli import train
from harl.experiment import build_config
from harl.registry import all_environments, get_environment

ENVS = sorted(all_environments())

SCENARIO_KEY = {"matrix": "game"}
"""The env option that picks the scenario, where it is not `scenario`."""

INSTALL = {
    "mamujoco": (
        "error: the mamujoco environment needs gymnasium-robotics and mujoco: pip install 'harl-hypermarl[mamujoco]' "
        "(in a clone of the repository: pip install -e '.[mamujoco]')"
    ),
    "mpe": "pip install mpe2",
    "smacv2": "pip install jaxmarl",
    "vmas": "pip install vmas",
}
"""What the refusal of an env without its optional extra says: the whole line, or a part of it. An env not named
here needs no extra and trains with the core dependencies only."""

EXTRAS = (
    *("mujoco", "gymnasium_robotics", "vmas", "mpe2", "pettingzoo", "gymnasium", "jax", "jaxmarl"),
    *("ray", "rliable", "matplotlib", "pandas", "scipy"),
)
"""The packages of every optional extra: blocked in the process of `without_extras`, they cannot be imported."""

TINY = ["--num_env_steps", "40", "--n_rollout_threads", "4", "--episode_length", "10", "--hidden_sizes", "16,16"]

WITHOUT_EXTRAS = """
import contextlib, io, json, sys
sys.modules.update(dict.fromkeys({blocked!r}))
from harl.cli import train
from harl.registry import all_environments
results = {{}}
for env in all_environments():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        args = ["--algo", "mappo", "--arch", "nops", "--env", env, "--eval_episodes", "2", *{tiny!r}]
        code = train([*args, "--log_dir", {log_dir!r} + "/" + env])
    results[env] = [code, out.getvalue(), err.getvalue()]
print(json.dumps(results))
"""


PACKAGES = {"mamujoco": "gymnasium_robotics", "mpe": "mpe2", "smacv2": "jaxmarl", "vmas": "vmas"}
"""The package each optional env imports (its tests are skipped without it)."""

SEED_FREE = {"matrix"}
"""Envs whose observations do not depend on the seed (a stateless matrix game)."""


def test_every_env_case_names_a_registered_env():
    assert set(SCENARIO_KEY) | set(INSTALL) | set(PACKAGES) | SEED_FREE <= set(ENVS)


def random_actions(spec, avail: torch.Tensor | None, n_envs: int, rng: torch.Generator) -> torch.Tensor:
    """Uniform valid actions (E, N, A) for the spec: action indices among each agent's own available actions, or
    points of each agent's own action box (padded dims zero)."""
    mask = torch.as_tensor(spec.act_mask).bool()  # (N, A)
    if spec.discrete:
        valid = mask.expand(n_envs, *mask.shape) & (True if avail is None else avail.bool())
        return torch.multinomial(valid.flatten(0, 1).float(), 1, generator=rng).view(n_envs, -1, 1)
    low, high = torch.as_tensor(spec.act_low).float(), torch.as_tensor(spec.act_high).float()
    return (low + torch.rand(n_envs, *mask.shape, generator=rng) * (high - low)) * mask


@pytest.mark.parametrize("env", ENVS)
def test_same_seed_same_episodes_and_global_rng_untouched(env):
    """Each env with its default options, reset with a seed and stepped with the same valid random actions."""
    if env in PACKAGES:
        pytest.importorskip(PACKAGES[env])
    cfg, _ = build_config("mappo", "nops", env, {}, use_tuned=False)

    def rollout(seed: int) -> list[torch.Tensor]:
        vec = get_environment(env).make(cfg.env, n_envs=2, seed=0, device="cpu")
        out, rng = vec.reset(seed), torch.Generator().manual_seed(0)
        outs = [out.obs, out.state]
        for _ in range(4):
            out = vec.step(random_actions(vec.spec, out.avail_actions, 2, rng))
            outs += [out.obs, out.state, out.reward]
        vec.close()
        return outs

    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first, second, other = rollout(7), rollout(7), rollout(8)
    assert torch.equal(torch.rand(1), expected_next)  # the env drew from its own streams only
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    if env not in SEED_FREE:
        assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("env", ENVS)
def test_unknown_scenario_is_refused_listing_the_valid_ones(env, capsys):
    key = SCENARIO_KEY.get(env, "scenario")
    assert train(["--algo", "mappo", "--arch", "nops", "--env", env, f"--{key}", "nope", "--list_keys"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1, captured.err
    prefix = f"error: unknown {env} {'scenario' if key == 'scenario' else key} 'nope'; valid: "
    assert captured.err.startswith(prefix), captured.err
    listed = captured.err.strip().removeprefix(prefix).split(", ")
    # the names `--list` shows, without their agent counts: "HalfCheetah-2x3" -> HalfCheetah, "dispersion (n_agents
    # >= 1)" -> dispersion
    assert set(listed) == {name.split()[0].split("-")[0] for name in all_environments()[env].scenarios()}


@pytest.fixture(scope="module")
def without_extras(tmp_path_factory) -> dict[str, list]:
    """`harl-train --algo mappo --arch nops --env ENV` with tiny budgets for every registered env, in one process
    where no optional extra can be imported: {env: [exit code, stdout, stderr]}, run folders under `log_dir/ENV`."""
    log_dir = tmp_path_factory.mktemp("without_extras")
    code = WITHOUT_EXTRAS.format(blocked=EXTRAS, tiny=TINY, log_dir=str(log_dir))
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    return {**json.loads(result.stdout), "log_dir": str(log_dir)}


@pytest.mark.parametrize("env", ENVS)
def test_env_without_its_extra_says_what_to_install_or_trains(env, without_extras):
    code, out, err = without_extras[env]
    folder = os.path.join(without_extras["log_dir"], env)
    if env not in INSTALL:  # needs no extra: trains with the core dependencies only
        assert code == 0, err
        assert "run folder:" in out
        return
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: the {env} environment ") and "pip install" in lines[0]
    assert INSTALL[env] in lines[0]
    assert not os.path.exists(folder)  # refused before leaving a run folder
