"""`--compile true` (`harl.utils.compile`): compiled learners act, update and checkpoint exactly as eager ones."""

from __future__ import annotations

import pytest
import torch

from harl.cli import train, train_main
from harl.errors import UserError
from harl.experiment import build_config
from harl.registry import get_environment, load_extensions
from harl.runners.base import build_learner
from harl.utils import compile as compile_utils
from harl.utils.checkpoint import load_checkpoint
from harl.utils.compile import compile_learner, inductor_problem, is_compiled

from .conftest import run_train

load_extensions()

TINY_HASAC = [
    "--algo",
    "hasac",
    "--env",
    "mamujoco",
    "--n_rollout_threads",
    "2",
    "--warmup_steps",
    "60",
    "--train_interval",
    "20",
    "--batch_size",
    "16",
    "--buffer_size",
    "500",
    "--n_step",
    "3",
    "--hidden_sizes",
    "8,8",
    "--episode_limit",
    "20",
    "--eval_episodes",
    "1",
    "--n_eval_rollout_threads",
    "2",
    "--n_workers",
    "0",
    "--save_interval",
    "100",
    "--progress_interval",
    "0",
]


@pytest.fixture
def fast_backend(monkeypatch):
    """Dynamo and AOTAutograd without inductor's C++ code generation: the wrapping, guards, graph breaks and
    backward passes as with `--compile true`, in a fraction of the compile time."""
    monkeypatch.setattr(compile_utils, "BACKEND", "aot_eager")


@pytest.fixture
def inductor():
    problem = inductor_problem(torch.device("cpu"))
    if problem is not None:
        pytest.skip(f"torch.compile's inductor backend is unusable on this machine: {problem}")


def _learner_pair(algo: str, arch: str, seed: int = 3):
    """Two learners from one state on a tiny MaMuJoCo spec, the first compiled, and the env."""
    overrides = {"hidden_sizes": "8,8", "episode_limit": "5", "seed": str(seed)}
    if algo != "mappo":
        overrides.update(batch_size="16", n_step="2")
    cfg, _ = build_config(algo, arch, "mamujoco", overrides, use_tuned=False)
    env = get_environment("mamujoco").make(cfg.env, n_envs=3, seed=0, device=torch.device("cpu"))
    compiled = build_learner(cfg, env.spec, torch.device("cpu"))
    eager = build_learner(cfg, env.spec, torch.device("cpu"))
    eager.load_state_dict(compiled.state_dict())
    assert compile_learner(compiled, True) > 0
    return compiled, eager, env


def _same_draws(fn, *learners):
    """`fn(learner)` for each learner from the same torch RNG state."""
    results = []
    for learner in learners:
        torch.manual_seed(11)
        results.append(fn(learner))
    return results


def _filled_replay(learner, env, steps: int = 12):
    buffer = learner.make_buffer(3)
    out = env.reset(0)
    for _ in range(steps):
        act = learner.random_act(3)
        step = env.step(act.env_actions)
        buffer.insert(
            out.obs,
            out.state,
            act.actions,
            step.reward,
            step.final_obs,
            step.final_state,
            step.terminated,
            step.truncated,
        )
        out = step
    return buffer


def test_state_dict_keys_and_networks_are_untouched(fast_backend):
    compiled, eager, _ = _learner_pair("hasac", "hypermarl")
    assert compiled.state_dict()["actor"].keys() == eager.state_dict()["actor"].keys()
    assert not any("_orig_mod" in key for key in compiled.actor.state_dict())
    assert is_compiled(compiled.actor.net) and is_compiled(compiled.critic) and not is_compiled(eager.actor.net)
    assert compile_learner(compiled, True) == 0  # already compiled: nothing compiled twice
    assert compile_learner(eager, False) == 0 and not is_compiled(eager.critic)


def test_compiled_actor_matches_eager_with_inductor(inductor):
    """Actions, log-probs, the PPO log-probs of given actions and their gradients agree to float tolerance."""
    compiled, eager, env = _learner_pair("mappo", "nops")
    out = env.reset(0)
    for deterministic in (True, False):
        a, b = _same_draws(
            lambda learner, mode=deterministic: learner.act(out.obs, out.state, None, deterministic=mode),
            compiled,
            eager,
        )
        torch.testing.assert_close(a.actions, b.actions)
        torch.testing.assert_close(a.log_probs, b.log_probs)
    grads = []
    for learner in (compiled, eager):
        learner.actor.zero_grad()
        log_probs, entropy = learner.actor.log_probs_entropy(out.obs, a.actions)
        (log_probs.sum() + entropy.sum()).backward()
        grads.append([p.grad.clone() for p in learner.actor.parameters()])
    for got, want in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["nops", "hypermarl"])
def test_compiled_hasac_updates_and_acts_like_eager(arch, fast_backend):
    """Same losses and parameters after two sequential updates; acting afterwards uses the updated weights
    (the hypernetwork's generated-weight cache is not frozen into a compiled graph)."""
    compiled, eager, env = _learner_pair("hasac", arch)
    buffer = _filled_replay(eager, env)
    obs = env.reset(1).obs
    before = compiled.act(obs, None, None, deterministic=True).actions
    for _ in range(2):
        got, want = _same_draws(lambda learner: learner.update(buffer), compiled, eager)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-4, atol=1e-5)
    for p, q in zip(compiled.actor.parameters(), eager.actor.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    after, expected = (learner.act(obs, None, None, deterministic=True).actions for learner in (compiled, eager))
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(after, before)


def test_compile_true_trains_and_checkpoints_load_either_way(tmp_path, fast_backend):
    """A run with --compile true trains; its checkpoint resumes without compile, and that one's with it."""
    run = run_train(tmp_path, *TINY_HASAC, "--arch", "nops", "--num_env_steps", "80", "--compile", "true")
    assert load_checkpoint(run / "checkpoints")["runner"]["env_steps"] == 80
    for steps, compiled in (("120", "false"), ("160", "true")):
        assert train_main(["--resume", str(run), "--num_env_steps", steps, "--compile", compiled]) == 0
        assert load_checkpoint(run / "checkpoints")["runner"]["env_steps"] == int(steps)


def test_bad_compile_value_exits_2_with_one_line(capsys, tmp_path):
    code = train([*TINY_HASAC, "--arch", "nops", "--compile", "maybe", "--log_dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("error: ") and "compile" in line and "maybe" in line


def test_inductor_is_checked_on_the_learners_device(monkeypatch):
    """The toolchain probe runs on the device the learner trains on (CUDA needs Triton, the CPU a C++
    compiler); a failing probe is one line naming that device."""
    cfg, _ = build_config("mappo", "nops", "mamujoco", {"hidden_sizes": "8", "episode_limit": "5"}, use_tuned=False)
    env = get_environment("mamujoco").make(cfg.env, n_envs=1, seed=0, device=torch.device("cpu"))
    learner = build_learner(cfg, env.spec, torch.device("cpu"))
    probed: list[torch.device] = []
    monkeypatch.setattr(compile_utils, "inductor_problem", lambda device: probed.append(device) or "no toolchain")
    with pytest.raises(UserError, match="on cpu here, which failed \\(no toolchain\\)"):
        compile_learner(learner, True)
    assert probed == [torch.device("cpu")] and not is_compiled(learner.actor.net)
