"""`--seeds N`: N seeds of one configuration trained as one batched learner, each exactly its solo run.

Equivalence goes through the public entry point: seed s of a `--seeds 3` run logs what a solo run of seed s
logs and ends with its parameters (the matrix games are stateless, so every seed's env data is its solo run's).
Gradient isolation, batched resume and the per-seed layout are checked on the learner and the CLI.
"""

from __future__ import annotations

import math

import pytest
import torch

from harl.cli import evaluate_cli, train, train_main
from harl.config import read_yaml
from harl.experiment import build_config, run_sizes
from harl.registry import get_environment, load_extensions
from harl.runners.base import build_learner
from harl.utils.checkpoint import load_checkpoint

from .conftest import read_progress

load_extensions()

COMMON = [
    "--eval_interval",
    "60",
    "--eval_episodes",
    "2",
    "--n_eval_rollout_threads",
    "2",
    "--hidden_sizes",
    "16,16",
    "--critic_hidden_sizes",
    "16",
    "--snd_interval",
    "60",
    "--snd_max_obs",
    "50",
    "--grad_stats",
    "true",
]  # evaluation, small networks, SND and gradient statistics: every seed-equivalence run logs them
MATRIX = ["--env", "matrix", "--n_agents", "3", "--n_rollout_threads", "3"]  # 3 agents, 3 envs per seed
TINY = [
    *MATRIX,
    "--episode_length",
    "10",
    "--actor_num_mini_batch",
    "2",
    "--critic_num_mini_batch",
    "2",
    "--critic_epoch",
    "2",
    *COMMON,
]
VOLATILE = ("charts/SPS", "timers/updates_per_second")
OFF_POLICY = ("hasac", "masac", "maddpg", "matd3", "haddpg", "hatd3")


def seed_folders(log_dir) -> dict[int, object]:
    """The run folders under `log_dir` by seed."""
    return {int(path.name.split("-")[1]): path for path in log_dir.glob("*/*/*/*/seed-*")}


def assert_same_run(batched, solo, atol: float = 1e-5) -> None:
    """Same logged rows (every metric within `atol`) and the same final parameters and optimiser state."""
    rows, solo_rows = read_progress(batched), read_progress(solo)
    assert [list(r) for r in rows] == [list(r) for r in solo_rows]
    for row, solo_row in zip(rows, solo_rows, strict=True):
        for key, value in row.items():
            if key in VOLATILE or value == solo_row[key]:
                continue
            close = math.isclose(float(value), float(solo_row[key]), rel_tol=atol, abs_tol=atol)  # ratios: relative
            assert close, (key, value, solo_row[key])
    ours, theirs = load_checkpoint(batched)["learner"], load_checkpoint(solo)["learner"]
    for part in ("actor", "critic"):
        for key, value in ours[part].items():
            torch.testing.assert_close(value, theirs[part][key], atol=atol, rtol=0, msg=f"{part}.{key}")
    assert {k for k in ours if k.endswith("_optimizer")} == {k for k in theirs if k.endswith("_optimizer")}
    for name in (k for k in ("actor_optimizer", "critic_optimizer") if k in theirs):  # HATRPO: no actor optimiser
        for index, state in ours[name]["state"].items():
            for key, value in state.items():
                torch.testing.assert_close(value, theirs[name]["state"][index][key], atol=atol, rtol=0)


def epochs(algo: str) -> list[str]:
    """Two actor epochs, under the name of the learner's family."""
    return ["--a2c_epoch" if "a2c" in algo else "--ppo_epoch", "2"]


@pytest.mark.parametrize("arch", ["nops", "fups_id", "hypermarl"])
@pytest.mark.parametrize("algo", ["mappo", "happo", "ippo", "haa2c", "maa2c"])
def test_a_seed_of_a_batched_run_is_its_solo_run(algo, arch, tmp_path):
    common = ["--algo", algo, "--arch", arch, *TINY, *epochs(algo), "--num_env_steps", "90"]
    assert train_main([*common, "--seed", "4", "--seeds", "3", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "5", "--log_dir", str(tmp_path / "solo")]) == 0
    batched, solo = seed_folders(tmp_path / "batched"), seed_folders(tmp_path / "solo")
    assert sorted(batched) == [4, 5, 6]
    for folder in batched.values():  # each seed's folder is laid out as a solo run's, and names its batch
        assert {p.name for p in folder.iterdir()} >= {"config.yaml", "progress.csv", "tb", "checkpoints", "batch.yaml"}
        assert "seeds: 1\n" in (folder / "config.yaml").read_text()
    assert_same_run(batched[5], solo[5])


HOPPER_RECURRENT = [
    *("--env", "mamujoco", "--scenario", "Hopper", "--agent_conf", "3x1", "--episode_limit", "30"),
    *("--n_rollout_threads", "2", "--episode_length", "10", "--num_env_steps", "80"),
    *("--recurrent", "true", "--rnn_hidden_size", "8", "--data_chunk_length", "5"),
    *("--actor_num_mini_batch", "2", "--critic_num_mini_batch", "2"),
    *COMMON[: COMMON.index("--snd_interval")],
    *COMMON[COMMON.index("--snd_interval") + 4 :],
]  # recurrent training on Hopper 3x1 (its seeds' episodes end apart) with every logged metric but SND


@pytest.mark.parametrize(
    ("algo", "arch", "workers"), [("mappo", "hypermarl", "1"), ("happo", "nops", "0"), ("ippo", "fups_id", "0")]
)
def test_a_seed_of_a_batched_recurrent_run_is_its_solo_run(algo, arch, workers, tmp_path):
    """Recurrent populations: Hopper's episodes end at different steps in every seed (falls), so each seed's GRU
    resets, training sequences and time-limit cuts are its own; seed 5 of a `--seeds 2` run is its solo run. The
    three cases cover a shared core run once per seed (hypermarl's centralised critic), per-agent cores (nops)
    and a shared core on per-agent inputs (fups_id, decentralised critic)."""
    common = ["--algo", algo, "--arch", arch, *HOPPER_RECURRENT, "--n_workers", workers, *epochs(algo)]
    assert train_main([*common, "--seed", "4", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "5", "--log_dir", str(tmp_path / "solo")]) == 0
    batched, solo = seed_folders(tmp_path / "batched"), seed_folders(tmp_path / "solo")
    lengths = [[row["charts/episode_length"] for row in read_progress(batched[seed])] for seed in (4, 5)]
    assert lengths[0] != lengths[1]  # the seeds' episodes ended at different steps
    assert_same_run(batched[5], solo[5])


@pytest.mark.parametrize("recurrent", [False, True])
def test_a_seed_of_a_batched_shared_critic_run_is_its_solo_run(recurrent, tmp_path):
    """`--critic shared`: each seed's one V(s) on its own states (feed-forward on the matrix game; recurrent on
    Hopper, whose seeds' episodes end apart), with the learning rates decaying linearly."""
    env = [*HOPPER_RECURRENT, "--n_workers", "0"] if recurrent else [*TINY, "--num_env_steps", "90"]
    common = ["--algo", "happo", "--arch", "hypermarl", *env, *epochs("happo"), "--critic", "shared"]
    common += ["--use_linear_lr_decay", "true"]  # and HARL's learning-rate decay, per seed as solo
    assert train_main([*common, "--seed", "4", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "5", "--log_dir", str(tmp_path / "solo")]) == 0
    assert_same_run(seed_folders(tmp_path / "batched")[5], seed_folders(tmp_path / "solo")[5])


@pytest.mark.parametrize("arch", ["nops", "fups_id", "hypermarl"])
def test_a_seed_of_a_batched_hatrpo_run_is_its_solo_run(arch, tmp_path):
    """Each seed's own agent order, conjugate gradient, step size and line search; its surrogate gradient's
    statistics are its own too."""
    cut = TINY.index("--actor_num_mini_batch")  # one trust-region step per agent on the whole rollout
    tiny = TINY[:cut] + TINY[cut + 2 :]
    common = ["--algo", "hatrpo", "--arch", arch, *tiny, "--kl_threshold", "0.002", "--num_env_steps", "90"]
    assert train_main([*common, "--seed", "4", "--seeds", "3", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "5", "--log_dir", str(tmp_path / "solo")]) == 0
    batched, solo = seed_folders(tmp_path / "batched"), seed_folders(tmp_path / "solo")
    assert sorted(batched) == [4, 5, 6]
    assert_same_run(batched[5], solo[5])
    rows = read_progress(batched[5])
    variances = [float(row["grad/param_variance"]) for row in rows if row["grad/param_variance"] != ""]
    assert variances and all(v > 0 for v in variances)
    assert any(float(v) > 0 for row in rows for k, v in row.items() if k.endswith("/step_fraction") and v != "")


OFF_POLICY_TINY = [
    *MATRIX,
    "--warmup_steps",
    "30",
    "--train_interval",
    "5",
    "--batch_size",
    "16",
    "--buffer_size",
    "60",
    "--n_step",
    "3",
    *COMMON,
]


@pytest.mark.parametrize("arch", ["nops", "fups_id", "hypermarl"])
@pytest.mark.parametrize("algo", ["hasac", "masac", "maddpg", "hatd3"])
def test_a_seed_of_a_batched_off_policy_run_is_its_solo_run(algo, arch, tmp_path):
    """Each seed samples its own envs' transitions with its own generator, draws its own noise, and keeps its own
    critic, targets and temperatures; the buffer wraps (60 transitions of 90) and the discrete actors explore by
    Gumbel samples, so every per-seed stream is exercised."""
    common = ["--algo", algo, "--arch", arch, *OFF_POLICY_TINY, "--num_env_steps", "90"]
    assert train_main([*common, "--seed", "4", "--seeds", "3", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "6", "--log_dir", str(tmp_path / "solo")]) == 0
    batched, solo = seed_folders(tmp_path / "batched"), seed_folders(tmp_path / "solo")
    assert sorted(batched) == [4, 5, 6]
    assert_same_run(batched[6], solo[6])
    ours, theirs = load_checkpoint(batched[6])["learner"], load_checkpoint(solo[6])["learner"]
    for part in ("target_critic", *(["target_actor"] if "target_actor" in theirs else [])):
        for key, value in ours[part].items():
            torch.testing.assert_close(value, theirs[part][key], atol=1e-5, rtol=0, msg=f"{part}.{key}")
    for key in ("log_alpha", "log_alpha_joint", "updates"):
        if key in theirs:
            torch.testing.assert_close(torch.as_tensor(ours[key]), torch.as_tensor(theirs[key]), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("algo", "arch", "workers"), [("hasac", "hypermarl", "1"), ("matd3", "nops", "0")])
def test_a_seed_of_a_batched_continuous_off_policy_run_is_its_solo_run(algo, arch, workers, tmp_path):
    """Continuous actions on MPE, whose envs are seeded one by one (env k of a batch's seed s as its solo run seeds
    its env k), in-process or in a worker: squashed-Gaussian and deterministic actors' noise, and TD3's target
    smoothing, per seed."""
    common = ["--algo", algo, "--arch", arch, "--env", "mpe", "--scenario", "simple_spread"]
    common += ["--continuous_actions", "true", "--max_cycles", "10", "--n_rollout_threads", "2", "--n_workers", workers]
    common += ["--warmup_steps", "20", "--train_interval", "5", "--batch_size", "8", "--buffer_size", "100"]
    common += ["--n_step", "2", "--hidden_sizes", "16,16", "--critic_hidden_sizes", "16", "--eval_interval", "0"]
    common += ["--num_env_steps", "60"]
    assert train_main([*common, "--seed", "1", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "2", "--log_dir", str(tmp_path / "solo")]) == 0
    assert_same_run(seed_folders(tmp_path / "batched")[2], seed_folders(tmp_path / "solo")[2])


KALEIDOSCOPE = ["--arch", "kaleidoscope", "--reset_interval", "20", "--threshold_init_bias", "1"]
# masks that start apart (σ(s) up to 0.5: many entries pruned by every agent) and a reset every iteration but the last


@pytest.mark.parametrize("algo", ["mappo", "happo", "hatrpo", "hasac"])
def test_a_seed_of_a_batched_kaleidoscope_run_is_its_solo_run(algo, tmp_path):
    """Kaleidoscope's masked layers in a population: each seed's regulariser term and adaptive coefficient (from its
    own task loss: all agents at once, one agent per turn, a line search's trial evaluations unrecorded, an
    off-policy actor step) and each reset's draws from the seed's own stream; the masked critics too (on-policy)."""
    if algo in OFF_POLICY:
        common = ["--algo", algo, *KALEIDOSCOPE, *OFF_POLICY_TINY]
    else:
        cut = TINY.index("--actor_num_mini_batch")
        tiny = TINY[:cut] + TINY[cut + 2 :] if algo == "hatrpo" else [*TINY, *epochs(algo)]
        common = ["--algo", algo, *KALEIDOSCOPE, *tiny]
    common += ["--num_env_steps", "90"]
    assert train_main([*common, "--seed", "4", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "5", "--log_dir", str(tmp_path / "solo")]) == 0
    batched, solo = seed_folders(tmp_path / "batched"), seed_folders(tmp_path / "solo")
    assert_same_run(batched[5], solo[5])
    rows = read_progress(batched[5])
    assert float(rows[-1]["kaleidoscope/actor/resets"]) >= 1
    assert any(float(row["kaleidoscope/actor/aux_loss"] or 0) != 0 for row in rows)
    ours, theirs = load_checkpoint(batched[5])["learner"], load_checkpoint(solo[5])["learner"]
    for key in (k for k in theirs["actor"] if "history" in k or k.endswith("_extra_state")):
        value, expected = ours["actor"][key], theirs["actor"][key]
        if isinstance(expected, dict):  # the reset clock and stream
            assert {k: v for k, v in value.items() if k != "generator"} == {
                k: v for k, v in expected.items() if k != "generator"
            }
            assert torch.equal(value["generator"], expected["generator"])
        else:
            torch.testing.assert_close(value, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("algo", ["mappo", "happo", "hasac"])
def test_a_seed_of_a_batched_coupled_hypernetwork_run_is_its_solo_run(algo, tmp_path):
    """`hypermarl_coupled` generates weights per sample: a population vmaps its members' whole forward over the
    seed dimension (`ModulePopulation`), for all agents (MAPPO), one agent per seed (HAPPO's turns) and the
    off-policy actor and per-agent selections of HASAC."""
    setting = [*OFF_POLICY_TINY] if algo in OFF_POLICY else [*TINY, *epochs(algo)]
    common = ["--algo", algo, "--arch", "hypermarl_coupled", *setting, "--num_env_steps", "90"]
    assert train_main([*common, "--seed", "4", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "5", "--log_dir", str(tmp_path / "solo")]) == 0
    assert_same_run(seed_folders(tmp_path / "batched")[5], seed_folders(tmp_path / "solo")[5])


@pytest.mark.parametrize("algo", ["mappo", "happo"])
def test_a_seed_of_a_batched_shared_embedding_run_is_its_solo_run(algo, tmp_path):
    """`--share_embedding true`: each seed's critic hypernetwork reads its own seed's rows of the actor
    population's embedding (detached), for all agents (MAPPO) and one agent per seed per turn (HAPPO). The
    critic's forward is bit-identical to its solo run's; its output bias head's gradient is summed in another
    order under vmap (about 1e-7 to 4e-5 relative), which HAPPO's gradient-noise statistic amplifies to about
    1.5e-5 after three rollouts: compared within 1e-4."""
    common = ["--algo", algo, "--arch", "hypermarl", "--share_embedding", "true", *TINY, *epochs(algo)]
    common += ["--num_env_steps", "90"]
    assert train_main([*common, "--seed", "4", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "5", "--log_dir", str(tmp_path / "solo")]) == 0
    assert_same_run(seed_folders(tmp_path / "batched")[5], seed_folders(tmp_path / "solo")[5], atol=1e-4)


SEPS = ["--arch", "seps", "--n_clusters", "2", "--partition", "0,1,1"]  # a given partition: no pre-training


@pytest.mark.parametrize("case", ["mappo-matrix", "hasac-matrix", "happo-hopper"])
def test_a_seed_of_a_batched_seps_run_is_its_solo_run(case, tmp_path):
    """SePS with a given partition: each seed's per-group layers and (Hopper's Gaussian policies) per-group
    log-stds are its own rows of the population's."""
    algo, env = case.split("-")
    if env == "hopper":
        cut = HOPPER_RECURRENT.index("--recurrent")
        feed_forward = HOPPER_RECURRENT[:cut] + HOPPER_RECURRENT[cut + 6 :]
        common = ["--algo", algo, *SEPS, *feed_forward, "--n_workers", "0", *epochs(algo)]
    elif algo in OFF_POLICY:
        common = ["--algo", algo, *SEPS, *OFF_POLICY_TINY, "--num_env_steps", "90"]
    else:
        common = ["--algo", algo, *SEPS, *TINY, *epochs(algo), "--num_env_steps", "90"]
    assert train_main([*common, "--seed", "4", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    assert train_main([*common, "--seed", "5", "--log_dir", str(tmp_path / "solo")]) == 0
    assert_same_run(seed_folders(tmp_path / "batched")[5], seed_folders(tmp_path / "solo")[5])


def test_a_batched_seps_run_learns_each_seeds_partition_and_resumes_with_them(tmp_path, capsys):
    """SePS without a given partition: each seed pre-trains on its own envs and clusters from its own seed (seeds 3
    and 4 learn different partitions here), is its solo run, and a resume rebuilds every seed's own groups."""
    common = ["--algo", "mappo", "--arch", "seps", "--n_clusters", "2", "--pretrain_steps", "30", *TINY]
    common += [*epochs("mappo"), "--num_env_steps", "90", "--save_interval", "60"]
    assert train_main([*common, "--seed", "3", "--seeds", "2", "--log_dir", str(tmp_path / "batched")]) == 0
    out = capsys.readouterr().out
    assert "seed 3: seps pre-training: 30 env steps" in out and "seed 4: seps pre-training: 30 env steps" in out
    assert train_main([*common, "--seed", "4", "--log_dir", str(tmp_path / "solo")]) == 0
    batched, solo = seed_folders(tmp_path / "batched"), seed_folders(tmp_path / "solo")
    partitions = {seed: read_yaml(folder / "config.yaml")["arch"]["partition"] for seed, folder in batched.items()}
    assert partitions[4] == read_yaml(solo[4] / "config.yaml")["arch"]["partition"]
    assert partitions[3] != partitions[4]
    assert_same_run(batched[4], solo[4])
    capsys.readouterr()
    assert train_main(["--resume", str(batched[3]), "--num_env_steps", "150"]) == 0
    assert "pre-training" not in capsys.readouterr().out
    for seed, folder in batched.items():
        saved = load_checkpoint(folder)
        assert saved["runner"]["env_steps"] >= 150 and saved["config"]["arch"]["partition"] == partitions[seed]
        assert saved["learner"]["actor"]["net.params.groups"].tolist() == partitions[seed]


@pytest.mark.parametrize("algo", ["mappo", "hatrpo"])
def test_linear_lr_decay_follows_the_trained_steps_and_survives_a_checkpoint(algo):
    """HARL's linear decay: before each rollout's update every optimiser runs at base × (1 − trained / total)
    (HATRPO: its critic's only), the same for every seed of a population, and a learner loaded from a seed's
    state continues the schedule. Three rollouts of 12 env steps in a run of 36: rates 1, 2/3, 1/3."""
    learner, env = population(algo, "hypermarl", seeds=2, decay=True)
    rates = []
    for _ in range(3):
        learner.train(filled_buffer(learner, env, torch.ones(4)))
        rates.append({name: opt.param_groups[0]["lr"] for name, opt in learner.optimizers().items()})
    bases = {name: lrs[0] for name, lrs in learner.base_lrs.items()}
    assert set(bases) == ({"critic_optimizer"} if algo == "hatrpo" else {"actor_optimizer", "critic_optimizer"})
    for k, rate in enumerate(rates):
        for name, base in bases.items():
            assert math.isclose(rate[name], base * (1 - k / 3)), (k, name)
    member = learner.write_members()[1]
    assert (
        member.trained_steps == 36
        and member.optimizers()["critic_optimizer"].param_groups[0]["lr"] == rates[2]["critic_optimizer"]
    )
    solo, _ = population(algo, "hypermarl", seeds=1, decay=True)
    solo.load_state_dict(member.state_dict())
    assert solo.trained_steps == 36
    solo.decay_learning_rates()
    assert solo.critic_optimizer.param_groups[0]["lr"] == 0.0  # the run's budget is spent


def test_a_batched_off_policy_run_resumes_with_every_seeds_replay_buffer(tmp_path):
    tiny = [arg if prev != "--buffer_size" else "300" for prev, arg in zip(["", *OFF_POLICY_TINY], OFF_POLICY_TINY)]
    common = ["--algo", "hasac", "--arch", "fups_id", *tiny, "--seeds", "2", "--save_interval", "45"]
    common += ["--save_buffer", "true"]
    assert train_main([*common, "--num_env_steps", "90", "--log_dir", str(tmp_path / "whole")]) == 0
    assert train_main([*common, "--num_env_steps", "45", "--log_dir", str(tmp_path / "parts")]) == 0
    parts = seed_folders(tmp_path / "parts")
    buffer = load_checkpoint(parts[2])["buffer"]  # a seed's own envs' part, laid out as a solo run's buffer
    assert buffer["n_envs"] == 3 and buffer["obs"].shape[:2] == (15, 3)
    assert train_main(["--resume", str(parts[1]), "--num_env_steps", "90"]) == 0
    for seed, folder in seed_folders(tmp_path / "whole").items():
        ours, theirs = load_checkpoint(parts[seed])["learner"], load_checkpoint(folder)["learner"]
        for key, value in ours["actor"].items():
            torch.testing.assert_close(value, theirs["actor"][key], atol=1e-6, rtol=0)


def population(algo: str, arch: str, seeds: int, decay: bool = False):
    """A learner of `seeds` seeds and a matrix env of its seeds' envs side by side (`decay`: linear learning-rate
    decay over a run of 36 env steps, three rollouts)."""
    overrides = {"run.seeds": str(seeds), "run.n_rollout_threads": "2", "env.n_agents": "3"}
    overrides.update({"algo.batch_size": "8"} if algo in OFF_POLICY else {"algo.episode_length": "6"})
    if decay:
        overrides.update({"algo.use_linear_lr_decay": "true", "run.num_env_steps": "36"})
    cfg, _ = build_config(algo, arch, "matrix", overrides, use_tuned=False)
    env = get_environment("matrix").make(cfg.env, n_envs=2 * seeds, seed=1, device="cpu")
    torch.manual_seed(1)
    return build_learner(cfg, env.spec, torch.device("cpu")), env


def tensors(state: dict) -> dict[str, torch.Tensor]:
    """A network's state dict without its extra (non-tensor) state."""
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def filled_buffer(learner, env, reward_scale: torch.Tensor):
    """One rollout, every env's rewards scaled by `reward_scale` (P·E,)."""
    buffer = learner.make_buffer(env.n_envs)
    out = env.reset(0)
    for _ in range(buffer.length):
        action = learner.act(out.obs, out.state, out.avail_actions)
        step = env.step(action.env_actions)
        rewards = step.reward * reward_scale[:, None]
        done = step.done.float()
        buffer.insert(out.obs, out.state, out.avail_actions, action.actions, action.log_probs, rewards, done)
        out = step
    buffer.finish(out.obs, out.state)
    return buffer


def filled_replay(learner, env, reward_scale: torch.Tensor):
    """A replay buffer of 20 vector steps, every env's rewards scaled by `reward_scale` (P·E,)."""
    buffer = learner.make_buffer(env.n_envs)
    out = env.reset(0)
    for _ in range(20):
        action = learner.act(out.obs, out.state, out.avail_actions)
        step = env.step(action.env_actions)
        rewards = step.reward * reward_scale[:, None]
        buffer.insert(
            out.obs,
            out.state,
            action.actions,
            rewards,
            step.final_obs,
            step.final_state,
            step.terminated,
            step.truncated,
            out.avail_actions,
            step.avail_actions,
        )
        out = step
    return buffer


@pytest.mark.parametrize(
    ("algo", "arch"), [("hasac", "hypermarl"), ("masac", "fups_id"), ("hatd3", "nops"), ("masac", "kaleidoscope")]
)
def test_one_seeds_replay_never_moves_another_seeds_parameters(algo, arch):
    runs = []
    for scale in (torch.ones(4), torch.tensor([1.0, 1.0, -7.0, 3.0])):  # the second seed's rewards changed
        learner, env = population(algo, arch, seeds=2)
        learner.train(filled_replay(learner, env, scale), 4)
        runs.append([m.state_dict() for m in learner.write_members()])
    (first, second), (first_changed, second_changed) = runs
    for part in ("actor", "critic", "target_critic"):
        for key, value in tensors(first[part]).items():
            assert torch.equal(value, first_changed[part][key]), f"seed 0's {part}.{key} moved"
        assert any(not torch.equal(v, second_changed[part][k]) for k, v in tensors(second[part]).items())


@pytest.mark.parametrize(
    ("algo", "arch"),
    [
        ("mappo", "fups_id"),
        ("happo", "hypermarl"),
        ("ippo", "nops"),
        ("hatrpo", "hypermarl"),
        ("mappo", "kaleidoscope"),
    ],
)
def test_one_seeds_data_never_moves_another_seeds_parameters(algo, arch):
    runs = []
    for scale in (torch.ones(4), torch.tensor([1.0, 1.0, -7.0, 3.0])):  # the second seed's rewards changed
        learner, env = population(algo, arch, seeds=2)
        learner.train(filled_buffer(learner, env, scale))
        runs.append([m.state_dict() for m in learner.seed_learners()])
    (first, second), (first_changed, second_changed) = runs
    for part in ("actor", "critic"):
        for key, value in tensors(first[part]).items():
            assert torch.equal(value, first_changed[part][key]), f"seed 0's {part}.{key} moved"
        assert any(not torch.equal(v, second_changed[part][k]) for k, v in tensors(second[part]).items())


def test_a_batched_run_resumes_all_its_seeds_from_any_of_them(tmp_path):
    common = [
        "--algo",
        "happo",
        "--arch",
        "hypermarl",
        *TINY,
        *epochs("happo"),
        "--seeds",
        "2",
        "--save_interval",
        "60",
    ]
    assert train_main([*common, "--num_env_steps", "150", "--log_dir", str(tmp_path / "whole")]) == 0
    assert train_main([*common, "--num_env_steps", "60", "--log_dir", str(tmp_path / "parts")]) == 0
    parts = seed_folders(tmp_path / "parts")
    assert train_main(["--resume", str(parts[2]), "--num_env_steps", "150"]) == 0
    assert evaluate_cli(["--checkpoint", str(parts[2]), "--episodes", "2"]) == 0  # a seed's folder is a solo run's
    for seed, folder in seed_folders(tmp_path / "whole").items():
        assert read_progress(parts[seed])[-1]["env_steps"] == "150"
        ours, theirs = load_checkpoint(parts[seed])["learner"], load_checkpoint(folder)["learner"]
        for key, value in ours["actor"].items():
            torch.testing.assert_close(value, theirs["actor"][key], atol=1e-6, rtol=0)


def test_a_batched_run_whose_seed_folder_is_missing_is_refused_in_one_line(tmp_path, capsys):
    common = ["--algo", "mappo", "--arch", "nops", *TINY, *epochs("mappo"), "--seeds", "2", "--num_env_steps", "30"]
    assert train_main([*common, "--log_dir", str(tmp_path)]) == 0
    folders = seed_folders(tmp_path)
    for path in sorted(folders[2].rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folders[2].rmdir()
    capsys.readouterr()

    assert train(["--resume", str(folders[1])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is missing or not a run folder" in err[0] and folders[2].name in err[0]


def test_a_batch_that_cannot_fit_is_refused_up_front(monkeypatch, capsys, tmp_path):
    """The memory estimate grows with the seeds: a configuration that fits alone is refused as a batch of 8."""
    import harl.experiment

    argv = ["--algo", "mappo", "--arch", "nops", "--env", "matrix", "--n_agents", "64", "--log_dir", str(tmp_path)]
    solo, _ = build_config("mappo", "nops", "matrix", {"env.n_agents": "64"})
    need = sum(get_environment("matrix").memory_estimate(solo.env, run_sizes(solo)).values())
    monkeypatch.setattr(harl.experiment, "available_memory", lambda device: 2 * need)
    assert train([*argv, "--list_keys"]) == 0
    capsys.readouterr()
    assert train([*argv, "--seeds", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(or fewer than --seeds 8)" in err[0]
    assert not any(tmp_path.iterdir())
