"""`--arch seps` (Selective Parameter Sharing): the pre-training recovers known agent types, agents share exactly their
group's network, every learner trains it through the CLI with the pre-training counted in the env steps, and a run
saves, resumes and evaluates from its saved partition without pre-training again."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harl.cli import evaluate_cli, train, train_main
from harl.config import ModelConfig, read_yaml
from harl.errors import ConfigError, UserError
from harl.experiment import build_config
from harl.models.net_spec import NetSpec
from harl.models.seps import GroupedParams, SePSConfig, cluster, kmeans, silhouette
from harl.registry import ALGORITHMS, get_architecture, load_extensions
from harl.spec import EnvSpec, StepOutput
from harl.utils.checkpoint import load_checkpoint

from .conftest import TINY_MAMUJOCO, read_progress, run_train
from .test_bad_input import assert_one_line_error
from .test_smoke import ALGO_TINY

load_extensions()
CPU = torch.device("cpu")
SEPS = get_architecture("seps")
MATRIX = ["--env", "matrix", "--n_rollout_threads", "4", "--eval_episodes", "2", "--n_eval_rollout_threads", "2"]


class TypedAgentsEnv:
    """One-step games where agent i has type `types[i]` and is paid 1 for choosing the action of its type's index
    (0 otherwise): agents of one type have identical transitions, agents of different types do not."""

    def __init__(self, types: list[int], n_envs: int) -> None:
        n, a = len(types), max(types) + 1
        self.types, self.n_envs, self.n_workers = torch.tensor(types), n_envs, 0
        self.spec = EnvSpec(
            agent_ids=tuple(f"agent_{i}" for i in range(n)),
            obs_dims=(2,) * n,
            state_dim=1,
            action_type="discrete",
            act_dims=(a,) * n,
            act_low=np.zeros((n, a), dtype=np.float32),
            act_high=np.ones((n, a), dtype=np.float32),
        )

    def _output(self, reward: torch.Tensor, done: bool) -> StepOutput:
        obs = torch.ones(self.n_envs, self.spec.n_agents, 2)
        flag = torch.full((self.n_envs,), done)
        return StepOutput(
            obs=obs,
            state=torch.ones(self.n_envs, 1),
            avail_actions=None,
            reward=reward,
            terminated=flag,
            truncated=torch.zeros_like(flag),
            final_obs=obs,
            final_state=torch.ones(self.n_envs, 1),
            episode_return=reward.mean(1),
            episode_length=torch.ones(self.n_envs),
        )

    def reset(self, seed: int) -> StepOutput:
        return self._output(torch.zeros(self.n_envs, self.spec.n_agents), done=False)

    def step(self, actions: torch.Tensor) -> StepOutput:
        return self._output((actions[..., 0].cpu() == self.types).float(), done=True)  # (E, N) paid per type


def canonical(labels: list[int]) -> list[int]:
    """Labels renumbered in order of first appearance (the partition's own convention)."""
    order: dict[int, int] = {}
    return [order.setdefault(label, len(order)) for label in labels]


@pytest.mark.parametrize("types", [[0, 1, 0, 1], [2, 0, 1, 1, 0, 2]], ids=["2 types", "3 types"])
def test_pretraining_recovers_the_agent_types(types):
    # 10x the authors' learning rate, so that 640 env steps of data suffice (the types were recovered from seeds 0-2)
    cfg = SePSConfig(n_clusters=max(types) + 1, pretrain_steps=640, encoder_lr=3e-3)
    [result] = SEPS.pretrain.run(env=TypedAgentsEnv(types, 16), arch_cfg=cfg, seeds=[0], device=CPU)
    assert result.arch_cfg.partition == canonical(types)
    assert result.env_steps == 640 and result.metrics["pretrain/env_steps"] == 640.0
    again = SEPS.pretrain.run(env=TypedAgentsEnv(types, 16), arch_cfg=cfg, seeds=[0], device=CPU)
    assert again == [result]  # deterministic for a seed


def test_pretraining_chooses_the_number_of_groups_by_the_silhouette_score():
    """`n_clusters` 0: the k in 2..N-1 of the highest silhouette score, saved in the options with the partition."""
    types = [2, 0, 1, 1, 0, 2]
    cfg = SePSConfig(n_clusters=0, pretrain_steps=640, encoder_lr=3e-3)
    [result] = SEPS.pretrain.run(env=TypedAgentsEnv(types, 16), arch_cfg=cfg, seeds=[0], device=CPU)
    assert result.arch_cfg.n_clusters == 3 and result.arch_cfg.partition == canonical(types)
    assert "3 by the silhouette score" in result.summary


def test_the_silhouette_score_against_its_definition():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [9.0, 0.0], [9.0, 0.1]])
    true, merged, alone = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 0, 1, 1, 1, 1]), torch.arange(6)
    expected = []
    for i, p in enumerate(points.tolist()):
        mine = [q for q, label in zip(points.tolist(), true.tolist()) if label == true[i]]
        a = sum(math.dist(p, q) for q in mine) / (len(mine) - 1)
        b = min(
            sum(math.dist(p, q) for q, label in zip(points.tolist(), true.tolist()) if label == other) / 2
            for other in {0, 1, 2} - {int(true[i])}
        )
        expected.append((b - a) / max(a, b))
    assert silhouette(points, true) == pytest.approx(sum(expected) / 6)
    assert silhouette(points, true) > silhouette(points, merged)
    assert silhouette(points, alone) == 0.0  # every point alone: 0 by definition
    torch.manual_seed(0)
    assert cluster(points, SePSConfig(n_clusters=0, kmeans_restarts=5)) == ([0, 0, 1, 1, 2, 2], 3)


def test_pretraining_leaves_the_global_random_streams_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    SEPS.pretrain.run(env=TypedAgentsEnv([0, 1], 4), arch_cfg=SePSConfig(pretrain_steps=16), seeds=[1], device=CPU)
    assert torch.equal(torch.rand(3), expected)


def test_a_given_partition_needs_no_pretraining():
    cfg = SePSConfig(partition=[0, 1, 0])
    assert SEPS.pretrain.env_steps(cfg, 4) == 0
    assert SEPS.pretrain.run(env=TypedAgentsEnv([0, 1, 0], 4), arch_cfg=cfg, seeds=[0], device=CPU) is None
    assert SEPS.pretrain.env_steps(SePSConfig(pretrain_steps=10), 4) == 12  # whole vector steps


def test_kmeans_separates_clear_clusters_and_labels_by_first_point():
    points = torch.tensor([[5.0, 5.0], [0.0, 0.0], [5.1, 5.0], [0.1, 0.0], [9.0, 0.0]])
    torch.manual_seed(0)
    assert kmeans(points, 3, restarts=5).tolist() == [0, 1, 0, 1, 2]


def seps_net(partition: list[int], agent_id: bool, in_dim: int = 3) -> torch.nn.Module:
    spec = NetSpec.full_input(
        n_agents=len(partition),
        in_dim=in_dim,
        out_dim=2,
        hidden_sizes=[8],
        out_gain=1.0,
        role="actor",
        model=ModelConfig(),
    )
    return SEPS.build_net(
        spec=spec, arch_cfg=SePSConfig(n_clusters=max(partition) + 1, partition=partition, agent_id=agent_id)
    )


def test_agents_share_exactly_their_groups_network():
    partition = [0, 1, 0, 2, 1]
    net = seps_net(partition, agent_id=False)
    x = torch.randn(7, 1, 3).expand(-1, 5, -1)  # every agent on the same inputs
    with torch.no_grad():
        out = net(x)  # (7, 5, 2)
    for i in range(5):
        for j in range(5):
            assert torch.equal(out[:, i], out[:, j]) == (partition[i] == partition[j]), (i, j)
    with_id = seps_net(partition, agent_id=True)
    assert isinstance(with_id.params, GroupedParams) and with_id.append_id
    for weight, _ in with_id.params.layers(None):  # (N, in, out): each agent's row is its group's
        for i in range(5):
            for j in range(5):
                assert torch.equal(weight[i], weight[j]) == (partition[i] == partition[j])


def test_an_agents_loss_moves_only_its_groups_parameters():
    net = seps_net([0, 1, 0, 2], agent_id=True)
    net(torch.randn(6, 1, 3), torch.tensor([2])).square().sum().backward()  # agent 2 alone, group 0
    for weight in net.params.weights:  # (G, in, out)
        assert bool(weight.grad[0].abs().sum() > 0) and bool((weight.grad[1:] == 0).all())


def test_the_partition_is_in_the_state_dict_and_a_different_one_does_not_load():
    net = seps_net([0, 1, 1], agent_id=True)
    assert net.state_dict()["params.groups"].tolist() == [0, 1, 1]
    other = seps_net([0, 1, 0], agent_id=True)
    with pytest.raises(RuntimeError, match="saved partition"):
        other.load_state_dict(net.state_dict())


def test_option_bounds():
    with pytest.raises(ConfigError, match=r"^arch\.n_clusters must be >= 0, got -1$"):
        build_config("mappo", "seps", "matrix", {"n_clusters": "-1"}, use_tuned=False)
    with pytest.raises(ConfigError, match=r"names group 2, but arch\.n_clusters is 2"):
        build_config("mappo", "seps", "matrix", {"partition": "0,1,2,0"}, use_tuned=False)
    with pytest.raises(UserError, match=r"^--n_clusters 0 chooses between 2 and n_agents - 1 groups, and this envi"):
        SEPS.pretrain.run(env=TypedAgentsEnv([0, 1], 2), arch_cfg=SePSConfig(n_clusters=0), seeds=[0], device=CPU)
    with pytest.raises(UserError, match=r"this environment has 4 agents; use at most 4 groups"):
        SEPS.pretrain.run(env=TypedAgentsEnv([0, 1, 0, 1], 2), arch_cfg=SePSConfig(n_clusters=5), seeds=[0], device=CPU)


def test_a_batch_of_seeds_pretrains_each_seed_as_its_solo_run():
    """One collection pass over every seed's envs, then each seed's encoder and k-means from its own seed: each
    seed's result is its solo run's (seeds 1 and 2 here learn different partitions of the same four agents)."""
    cfg = SePSConfig(n_clusters=2, pretrain_steps=64, encoder_epochs=1)
    batched = SEPS.pretrain.run(env=TypedAgentsEnv([0, 1, 2, 3], 2 * 8), arch_cfg=cfg, seeds=[1, 2], device=CPU)
    solos = [
        SEPS.pretrain.run(env=TypedAgentsEnv([0, 1, 2, 3], 8), arch_cfg=cfg, seeds=[s], device=CPU)[0] for s in (1, 2)
    ]
    assert batched == solos
    assert batched[0].arch_cfg.partition != batched[1].arch_cfg.partition


# ---------------------------------------------------------------------------------------------- through the CLI


def tiny(algo: str, steps: int, pretrain: int | None = 20) -> list[str]:
    fields = set(ALGORITHMS[algo].config_cls.__dataclass_fields__)
    args = [arg for key, value in ALGO_TINY.items() if key in fields for arg in (f"--{key}", value)]
    args += [] if pretrain is None else ["--pretrain_steps", str(pretrain)]
    return ["--algo", algo, "--arch", "seps", *args, "--num_env_steps", str(steps)]


@pytest.mark.parametrize(
    ("algo", "env"),
    [("mappo", MATRIX), ("maddpg", MATRIX), ("mappo", TINY_MAMUJOCO)],
    ids=["mappo-matrix", "maddpg-matrix", "mappo-mamujoco"],
)
def test_learners_train_seps_with_its_pretraining_counted(algo, env, tmp_path, capsys):
    """On- and off-policy, discrete and continuous (every learner × env: test_smoke; happo: the resume test)."""
    env = env if env is MATRIX else ["--env", "mamujoco", *env]
    steps = 60 if ALGORITHMS[algo].on_policy else 80
    run_dir = run_train(tmp_path, *tiny(algo, steps), *env)
    out = capsys.readouterr().out
    assert out.count("seps pre-training: 20 env steps of random actions") == 1
    rows = read_progress(run_dir)
    assert int(float(rows[0]["env_steps"])) == 20 and rows[0]["pretrain/env_steps"] == "20.0"
    assert rows[-1]["eval/episode_return"] != ""
    saved = load_checkpoint(run_dir)
    partition = saved["config"]["arch"]["partition"]
    n_agents = len(saved["spec"]["agent_ids"])
    assert len(partition) == n_agents and set(partition) <= {0, 1} and partition[0] == 0
    assert saved["runner"]["env_steps"] >= steps and saved["runner"]["pretrain_steps"] == 20
    groups = [v for k, v in saved["learner"]["actor"].items() if k.endswith("groups")]
    assert groups and all(g.tolist() == partition for g in groups)
    assert read_yaml(run_dir / "config.yaml")["arch"]["partition"] == partition


def test_resume_and_evaluate_reuse_the_saved_partition(tmp_path, capsys):
    run_dir = run_train(tmp_path, *tiny("happo", 60), *MATRIX, "--save_interval", "40")
    saved = load_checkpoint(run_dir)
    partition = saved["config"]["arch"]["partition"]
    capsys.readouterr()
    assert train_main(["--resume", str(run_dir), "--num_env_steps", "140"]) == 0
    out = capsys.readouterr().out
    assert "pre-training" not in out and f"at {saved['runner']['env_steps']} env steps" in out
    resumed = load_checkpoint(run_dir)
    assert resumed["runner"]["env_steps"] >= 140 and resumed["config"]["arch"]["partition"] == partition
    assert resumed["learner"]["actor"]["net.params.groups"].tolist() == partition
    assert any(not torch.equal(saved["learner"]["actor"][k], v) for k, v in resumed["learner"]["actor"].items())
    steps = [int(float(row["env_steps"])) for row in read_progress(run_dir)]
    assert steps == sorted(set(steps))
    assert evaluate_cli(["--checkpoint", str(run_dir), "--episodes", "2"]) == 0
    assert "pre-training" not in capsys.readouterr().out


def test_off_policy_warmup_starts_after_the_pretraining():
    """The warm-up's random actions fill the replay buffer after the pre-training (whose steps are not stored)."""
    options = {"pretrain_steps": "40", "warmup_steps": "30", "batch_size": "8", "n_rollout_threads": "4"}
    options["train_interval"] = "5"  # a training phase every 20 env steps
    message = (
        "--num_env_steps 50 would train nothing: hasac's first update waits for warmup_steps 30 env steps, past this "
        "run's last training phase (at 20 env steps after the architecture's 40 env steps of pre-training); raise "
        "--num_env_steps to 70 or lower --warmup_steps to 20 or less"
    )
    with pytest.raises(ConfigError) as refused:
        build_config("hasac", "seps", "matrix", {**options, "num_env_steps": "50"}, use_tuned=False)
    assert str(refused.value) == message
    build_config("hasac", "seps", "matrix", {**options, "num_env_steps": "70"}, use_tuned=False)


BAD = [
    (["--n_clusters", "-1"], "arch.n_clusters must be >= 0, got -1"),
    (["--n_clusters", "0", "--partition", "0,1,0,1"], "arch.n_clusters 0 lets the pre-training choose the number"),
    (["--n_clusters", "0", "--seeds", "2"], "--seeds 2 with --arch seps: with --n_clusters 0 each seed's pre-training"),
    (["--n_clusters", "5"], "--n_clusters 5: this environment has 4 agents; use at most 4 groups"),
    (["--partition", "0,1,0"], "--partition 0,1,0 gives 3 agents a group; this environment has 4 agents"),
    (["--partition", "0,1,3,0"], "arch.partition [0, 1, 3, 0] names group 3, but arch.n_clusters is 2"),
    (["--pretrain_steps", "0"], "arch.pretrain_steps must be >= 1, got 0"),
    (["--pretrain_steps", "100"], "--num_env_steps 60 would train nothing: --arch seps's pre-training takes 100"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[" ".join(case[0]) for case in BAD])
def test_bad_options_exit_2_with_one_line(argv, message, capsys, tmp_path):
    args = [*tiny("mappo", 60, None if "--pretrain_steps" in argv else 20), *MATRIX, *argv]
    assert train([*args, "--log_dir", str(tmp_path)]) == 2
    assert message in assert_one_line_error(capsys)
    assert not list(tmp_path.glob("*/*/*/*/seed-*"))  # no run folder left behind
