"""SePS, Selective Parameter Sharing (Christianos et al., ICML 2021), as the architecture `--arch seps`.

A new run first pre-trains (the registry entry's `pretrain` hook, called by the runner for any learner):

1. it steps the training envs with a uniformly random policy for `pretrain_steps` env steps (counted in the run's
   env steps) and keeps every agent's transition (o, a, o', r);
2. it trains a VAE-style encoder of agent identity: the encoder maps agent i's one-hot id to a Gaussian
   N(μ_i, σ_i²) over `encoder_dim` features, and a decoder predicts the agent's next observation and reward from
   (o, a, z), z a sample of agent i's code; the loss is the summed squared error of the prediction plus
   `kl_weight` times the KL divergence of the codes from N(0, I);
3. k-means (k-means++ seeding, `kmeans_restarts` restarts, the lowest inertia kept) on the agents' means μ_i
   partitions the agents into `n_clusters` groups, labelled in order of their first agent (agent 0 is in group 0);
   with `n_clusters` 0, k-means runs for every k from 2 to n_agents − 1 and the k of the highest mean silhouette
   score is kept (the authors' code chooses k when it is given none; this criterion and range are those of a public
   port of their clustering code).

Afterwards each group shares one network, with a one-hot agent id appended to its input (FuPS+ID within a group;
`agent_id false`: plain sharing within a group, as the authors' code). The groups are a tensor dimension: every
layer's weights are stacked over the groups, (G, in, out), and gathered by each agent's group (`GroupedParams`),
so all agents still run in one batched matmul per layer. State-independent log-stds are per group too.

How the networks learn the partition: the partition is an option, `partition` (one group per agent). The
pre-training hook runs before the learner is built and returns the options with the learned partition; the run's
config (its `config.yaml` and every checkpoint's `config`) then holds it, so `--resume` and `harl-evaluate`
rebuild the same grouped networks from the saved config and never pre-train again. A batch of seeds (`--seeds N`)
collects every seed's transitions in one pass over their envs (seed s's actions from a generator seeded with s),
then trains each seed's encoder and runs its k-means from its own seed: each seed learns its solo run's partition
(`ExperimentConfig.seed_archs` holds them; each seed's folder its own). Every grouped network also
keeps it as a buffer (`groups`, in its state dict). A `partition` given by the user is used as is (no
pre-training). A network built outside a run without a partition (e.g. a learner built directly in a script)
places agent i in group i mod n_clusters until given one.

What is grouped: every network the architecture builds, the actors (on- and off-policy, and the HAD3QN Q
networks) and the per-agent value critics of the on-policy learners (MAPPO, HAPPO, IPPO, ...), with the same
partition. The off-policy learners' joint Q critics are not per agent (one network for all agents, whatever the
architecture). Recurrent networks (`model.recurrent`) share their observation encoder and GRU between all agents
(as under `fups_id`); their heads are grouped.

Defaults are the authors' (github.com/uoe-agents/seps: a 64-unit encoder and decoder, 10 code features, Adam at
3e-4, batches of 128, 10 epochs, KL weight 1e-4, 10 k-means restarts) except where said; `n_clusters` defaults to 2
(0 chooses it, as the authors' code does when given none, by the silhouette score). Not reproduced: they collect
the pre-training transitions with the policy being trained (their first network, initially near-uniform) during
their first 5,000 updates (200,000 env steps at 8 envs × 5 steps) and train it meanwhile, where this pre-training
uses a uniformly random policy (as the paper describes) for `pretrain_steps` env steps before training starts; their
encoder is trained on CPU with a data loader, this one on the run's device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from harl.config import bounded, check_bounds
from harl.errors import ConfigError, UserError, shown
from harl.models.agent_mlp import AgentMLP, LayerParams, agent_rows, orthogonal_stack
from harl.models.net_spec import NetSpec
from harl.models.population import stacked_parameter
from harl.registry import ArchEntry, Pretrained, Pretraining, register_architecture
from harl.utils.rng import isolated_rng

RESET_SEED_OFFSET = 104_729
"""The pre-training envs are reset with the run's seed plus this (the training episodes start from the seed)."""


@dataclass
class SePSConfig:
    """Options of `seps`."""

    n_clusters: int = bounded(2, ge=0)
    """Number of groups k: each group of agents shares one network; at most the number of agents. 0: chosen by the
    pre-training, the k in 2..n_agents−1 whose k-means partition has the highest mean silhouette score (needs at
    least 3 agents and no given partition)."""
    partition: list[int] = bounded(default_factory=list, ge=0)
    """Each agent's group in [0, n_clusters), in agent order (e.g. 0,0,1,1). Empty: learned by pre-training (which
    numbers groups in order of their first agent), which a new run does first and then records here (the run's
    config.yaml and checkpoints hold it, so resuming and evaluating reuse it); given: used as is, without
    pre-training."""
    agent_id: bool = True
    """Append a one-hot agent id to the input of each group's network (FuPS+ID within a group); false: plain
    parameter sharing within a group (the authors' code)."""
    pretrain_steps: int = bounded(5000, ge=1)
    """Env steps of uniformly random actions collected for the encoder (counted in the run's env steps; rounded up
    to whole vector steps of n_rollout_threads envs)."""
    encoder_dim: int = bounded(10, ge=1)
    """Features of each agent's code (the authors' z_features)."""
    encoder_hidden: int = bounded(64, ge=1)
    """Width of the encoder's hidden layer and of the decoder's two hidden layers."""
    encoder_lr: float = bounded(3e-4, gt=0)
    """Adam learning rate of the encoder and decoder."""
    encoder_epochs: int = bounded(10, ge=1)
    """Passes over the pre-training transitions."""
    encoder_batch_size: int = bounded(128, ge=1)
    """Transitions (of one agent each) per encoder update."""
    kl_weight: float = bounded(1e-4, ge=0)
    """Weight of the codes' KL divergence from N(0, I) beside the summed squared prediction error."""
    kmeans_restarts: int = bounded(10, ge=1)
    """k-means runs from different k-means++ seedings; the one of lowest inertia gives the partition."""

    def validate(self) -> None:
        check_bounds(self, "arch")
        if self.partition and self.n_clusters == 0:
            raise ConfigError(
                "arch.n_clusters 0 lets the pre-training choose the number of groups, and a given arch.partition "
                "skips the pre-training: give --n_clusters with --partition"
            )
        if self.partition and max(self.partition) >= self.n_clusters:
            raise ConfigError(
                f"arch.partition {shown(self.partition)} names group {max(self.partition)}, but arch.n_clusters is "
                f"{self.n_clusters} (groups 0..{self.n_clusters - 1})"
            )


def agent_groups(arch_cfg: SePSConfig, n_agents: int) -> torch.Tensor:
    """(n_agents,) long: each agent's group, from `arch_cfg.partition` (i mod n_clusters while it is empty).

    Raises:
        UserError: more groups than agents, or a partition of another number of agents.
    """
    check_cluster_count(arch_cfg, n_agents)
    if not arch_cfg.partition:
        return torch.arange(n_agents) % max(arch_cfg.n_clusters, 1)
    if len(arch_cfg.partition) != n_agents:
        raise UserError(
            f"--partition {','.join(map(str, arch_cfg.partition))} gives {len(arch_cfg.partition)} agents a group; "
            f"this environment has {n_agents} agents"
        )
    return torch.tensor(arch_cfg.partition, dtype=torch.long)


def check_cluster_count(arch_cfg: SePSConfig, n_agents: int) -> None:
    """Refuse more groups than agents, and a number of groups to choose (`n_clusters` 0) among fewer than 3."""
    if arch_cfg.n_clusters == 0 and n_agents < 3:
        raise UserError(
            f"--n_clusters 0 chooses between 2 and n_agents - 1 groups, and this environment has {n_agents} agents; "
            "give --n_clusters"
        )
    if arch_cfg.n_clusters > n_agents:
        raise UserError(
            f"--n_clusters {arch_cfg.n_clusters}: this environment has {n_agents} agents; use at most {n_agents} groups"
        )


class GroupedModule(nn.Module):
    """A module with a `groups` buffer (each agent's group) that loads only a state of the same partition: the
    partition is the network's structure, so a checkpoint of another one does not fit it."""

    groups: torch.Tensor

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors):
        saved = state_dict.get(prefix + "groups")
        if saved is not None and not torch.equal(saved.to(self.groups.device), self.groups):
            errors.append(f"{prefix}groups: saved partition {saved.tolist()}, this network's {self.groups.tolist()}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected, errors)


class GroupedParams(LayerParams, GroupedModule):
    """One set of layer parameters per group, stacked (G, in, out), each agent reading its group's.

    Args:
        groups: (n_agents,) long, each agent's group in [0, n_groups).
        n_groups: G.
        dims: (in, out) of every layer.
        gains: orthogonal-init gain of every layer.
    """

    def __init__(self, groups: torch.Tensor, n_groups: int, dims: list[tuple[int, int]], gains: list[float]) -> None:
        super().__init__()
        # one network per group: trainable tensors shared by the agents of a group, so not tagged per agent
        self.weights = nn.ParameterList(
            [nn.Parameter(orthogonal_stack(n_groups, i, o, g)) for (i, o), g in zip(dims, gains)]
        )  # each (G, in, out)
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(n_groups, o)) for _, o in dims])  # each (G, out)
        self.register_buffer("groups", groups.long().clone())  # (n_agents,)

    def layers(self, agents: torch.Tensor | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rows = self.groups if agents is None else self.groups[agents]  # (k,) the selected agents' groups
        return [(agent_rows(w, rows), agent_rows(b, rows)) for w, b in zip(self.weights, self.biases)]


class GroupedAgentParam(GroupedModule):
    """A state-independent (n_agents, width) parameter with one row per group (e.g. Gaussian log-stds).

    Args:
        groups: (n_agents,) long, each agent's group in [0, n_groups).
        n_groups: G.
        width: the row width.
        init_value: every entry's initial value.
    """

    def __init__(self, groups: torch.Tensor, n_groups: int, width: int, init_value: float) -> None:
        super().__init__()
        self.n_agents = groups.numel()
        self.value = nn.Parameter(torch.full((n_groups, width), float(init_value)))  # (G, width); (P, G, width)
        self.register_buffer("groups", groups.long().clone())  # (n_agents,): rows of value.flatten(0, -2)

    @classmethod
    def population(cls, members: Sequence[GroupedAgentParam]) -> GroupedAgentParam:
        """The members' rows (one member per seed) for their P·n virtual agents, seed-major: values (P, G, width)
        (a `SeedParameter`: seed s's rows serve only seed s's agents), virtual agent s·n + i reading row
        s·G + (agent i's group in seed s)."""
        first = members[0]
        n_groups, width = first.value.shape
        groups = torch.cat([m.groups + s * n_groups for s, m in enumerate(members)])  # (P·n,)
        population = cls(groups, len(members) * n_groups, width, 0.0)
        population.value = stacked_parameter([m.value for m in members])  # (P, G, width)
        return population

    def forward(self, agents: torch.Tensor | None = None) -> torch.Tensor:
        """Returns (k, width) for the selected agents (all when None)."""
        rows = self.value.reshape(-1, self.value.shape[-1])  # (G, width), a population's (P·G, width)
        return rows[self.groups if agents is None else self.groups[agents]]


def build_seps_net(*, spec: NetSpec, arch_cfg: SePSConfig) -> AgentMLP:
    """An `AgentMLP` whose layers are `GroupedParams` over the partition (with a one-hot id when `agent_id`)."""
    groups = agent_groups(arch_cfg, spec.n_agents)
    dims, gains = spec.layers(extra_inputs=spec.n_agents if arch_cfg.agent_id else 0)
    return spec.mlp(GroupedParams(groups, group_count(arch_cfg), dims, gains), arch_cfg.agent_id)


def build_seps_agent_param(
    *, n_agents: int, width: int, init_value: float, role: str, arch_cfg: SePSConfig
) -> GroupedAgentParam:
    """One row per group: the agents of a group share their state-independent parameters as their network."""
    return GroupedAgentParam(agent_groups(arch_cfg, n_agents), group_count(arch_cfg), width, init_value)


def group_count(arch_cfg: SePSConfig) -> int:
    """The networks' number of groups: `n_clusters` (1 while it is still to be chosen by a pre-training)."""
    return max(arch_cfg.n_clusters, 1)


# ---------------------------------------------------------------------------------------------- pre-training


@dataclass(frozen=True)
class Transitions:
    """Every agent's pre-training transitions, flattened over steps, envs and agents (T = steps·envs·agents).

    Attributes:
        agent: (T,) long, whose transition it is.
        inputs: (T, obs_dim_max + act_dim_max) the observation and the action (one-hot for discrete actions,
            normalised to [-1, 1] for continuous ones), padded entries zero.
        targets: (T, obs_dim_max + 1) the next observation and the reward.
    """

    agent: torch.Tensor
    inputs: torch.Tensor
    targets: torch.Tensor


@torch.no_grad()
def collect_random(env, vector_steps: int, seeds: Sequence[int], device: torch.device) -> list[Transitions]:
    """Step `env` (a `harl.envs.vector` VecEnv of the envs of `seeds`, side by side, seed-major) `vector_steps` times
    with uniformly random actions over each agent's own (available) actions or action box, from a reset with
    `seeds[0] + RESET_SEED_OFFSET` (each seed's envs start as its solo run's would); seed s's actions are drawn from
    a generator seeded with s. Returns each seed's transitions."""
    spec = env.spec
    n, a = spec.n_agents, spec.act_dim_max
    envs_per_seed = env.n_envs // len(seeds)
    rngs = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
    act_mask = torch.as_tensor(spec.act_mask, device=device)  # (N, A) bool
    low = torch.as_tensor(spec.act_low, dtype=torch.float32, device=device)  # (N, A)
    high = torch.as_tensor(spec.act_high, dtype=torch.float32, device=device)
    inputs, targets = [], []
    out = env.reset(seeds[0] + RESET_SEED_OFFSET)
    for _ in range(vector_steps):
        obs = out.obs.to(device)  # (P·E, N, O)
        if spec.discrete:
            valid = act_mask.expand(obs.shape[0], n, a)
            if out.avail_actions is not None:
                valid = valid & out.avail_actions.to(device).bool()
            weights = valid.float().unflatten(0, (len(seeds), envs_per_seed)).flatten(1, 2)  # (P, E·N, A)
            choice = torch.cat(
                [torch.multinomial(w, 1, generator=rng).view(-1, n) for w, rng in zip(weights, rngs)]
            )  # (P·E, N)
            env_actions = choice.unsqueeze(-1)  # (P·E, N, 1) indices
            actions = F.one_hot(choice, a).float()  # (P·E, N, A)
        else:
            uniform = torch.cat([torch.rand(envs_per_seed, n, a, device=device, generator=rng) for rng in rngs])
            actions = (2 * uniform - 1) * act_mask  # (P·E, N, A) in [-1, 1]
            env_actions = (low + (actions + 1) * (high - low) / 2) * act_mask  # within each agent's bounds
        out = env.step(env_actions)
        inputs.append(torch.cat([obs, actions], -1))  # (P·E, N, O + A)
        targets.append(torch.cat([out.final_obs.to(device), out.reward.to(device).unsqueeze(-1)], -1))  # (P·E, N, O+1)
    inputs_all, targets_all = torch.stack(inputs), torch.stack(targets)  # (S, P·E, N, ·)
    agent = torch.arange(n, device=device).expand(inputs_all.shape[0], envs_per_seed, n)  # (S, E, N)
    blocks = [slice(k * envs_per_seed, (k + 1) * envs_per_seed) for k in range(len(seeds))]
    return [
        Transitions(agent.reshape(-1), inputs_all[:, rows].flatten(0, 2), targets_all[:, rows].flatten(0, 2))
        for rows in blocks
    ]


class AgentEncoder(nn.Module):
    """The VAE of agent identity: one-hot id -> N(μ, σ²) over `dim` features; (o, a, z) -> (o', r).

    Args:
        n_agents: the one-hot ids' width.
        dim: the code's features.
        hidden: hidden width.
        input_dim: the decoder's (o, a) width.
        target_dim: the decoder's (o', r) width.
    """

    def __init__(self, n_agents: int, dim: int, hidden: int, input_dim: int, target_dim: int) -> None:
        super().__init__()
        self.n_agents, self.dim = n_agents, dim
        self.encoder = nn.Sequential(nn.Linear(n_agents, hidden), nn.ReLU(), nn.Linear(hidden, 2 * dim))
        self.decoder = nn.Sequential(
            nn.Linear(dim + input_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, target_dim),
        )

    def codes(self, agent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and log-variances (B, dim) of the agents' codes, agent: (B,) long."""
        out = self.encoder(F.one_hot(agent, self.n_agents).float())  # (B, 2·dim)
        return out[:, : self.dim], out[:, self.dim :]

    def loss(self, agent: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The batch's summed squared prediction error plus the summed KL divergence (unweighted), as a pair."""
        mean, log_var = self.codes(agent)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)  # reparameterised sample, (B, dim)
        prediction = self.decoder(torch.cat([z, inputs], -1))  # (B, target_dim)
        error = (prediction - targets).square().sum()
        kl = -0.5 * (1 + log_var - mean.square() - log_var.exp()).sum()
        return torch.stack([error, kl])


def train_encoder(data: Transitions, n_agents: int, cfg: SePSConfig) -> tuple[torch.Tensor, float]:
    """Train an `AgentEncoder` on the transitions; returns every agent's code mean (N, dim) and the last epoch's
    mean loss per transition. Draws from the global generators."""
    device = data.inputs.device
    model = AgentEncoder(
        n_agents, cfg.encoder_dim, cfg.encoder_hidden, data.inputs.shape[-1], data.targets.shape[-1]
    ).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.encoder_lr)
    weights = torch.tensor([1.0, cfg.kl_weight], device=device)
    count = data.agent.numel()
    epoch_loss = torch.zeros((), device=device)
    for _ in range(cfg.encoder_epochs):
        order = torch.randperm(count, device=device)
        epoch_loss = torch.zeros((), device=device)
        for start in range(0, count, cfg.encoder_batch_size):
            rows = order[start : start + cfg.encoder_batch_size]
            loss = (model.loss(data.agent[rows], data.inputs[rows], data.targets[rows]) * weights).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            epoch_loss += loss.detach()
    with torch.no_grad():
        means, _ = model.codes(torch.arange(n_agents, device=device))
    return means, float(epoch_loss) / count


def kmeans(points: torch.Tensor, k: int, restarts: int, iterations: int = 300) -> torch.Tensor:
    """(N,) long labels of k-means on points (N, D): Lloyd's iterations from k-means++ seedings, the restart of
    lowest inertia kept, labels numbered in order of their first point. Draws from the global generator."""
    points = points.double()
    n = points.shape[0]
    best, best_inertia = torch.zeros(n, dtype=torch.long), math.inf
    for _ in range(restarts):
        centres = kmeans_plus_plus(points, k)  # (k, D)
        labels = torch.zeros(n, dtype=torch.long, device=points.device)
        for _ in range(iterations):
            labels = torch.cdist(points, centres).argmin(1)  # (N,)
            sums = torch.zeros_like(centres).index_add_(0, labels, points)  # (k, D)
            counts = torch.bincount(labels, minlength=k).unsqueeze(1)  # (k, 1)
            moved = torch.where(counts > 0, sums / counts.clamp(min=1), centres)  # an empty cluster keeps its centre
            if torch.equal(moved, centres):
                break
            centres = moved
        inertia = float(torch.cdist(points, centres).gather(1, labels.unsqueeze(1)).square().sum())
        if inertia < best_inertia:
            best, best_inertia = labels.cpu(), inertia
    first = torch.full((k,), n, dtype=torch.long).scatter_reduce(0, best, torch.arange(n), "amin")  # (k,)
    rank = torch.argsort(torch.argsort(first))  # a label's rank by its first point
    return rank[best]


def cluster(points: torch.Tensor, arch_cfg: SePSConfig) -> tuple[list[int], int]:
    """Labels of the agents' code means `points` (N, D) and the number of groups: k-means with `n_clusters` groups,
    or, with `n_clusters` 0, the k in 2..N−1 of the highest mean silhouette score (the fewer groups on a tie). Draws
    from the global generator."""
    if arch_cfg.n_clusters:
        return kmeans(points, arch_cfg.n_clusters, arch_cfg.kmeans_restarts).tolist(), arch_cfg.n_clusters
    scored = []
    for k in range(2, points.shape[0]):
        labels = kmeans(points, k, arch_cfg.kmeans_restarts)
        scored.append((silhouette(points, labels), -k, labels.tolist()))
    _, minus_k, labels = max(scored, key=lambda item: (item[0], item[1]))
    return labels, -minus_k


def silhouette(points: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean silhouette score of a partition of points (N, D), in [-1, 1] (higher: tighter, better separated
    clusters): point i's (b_i − a_i) / max(a_i, b_i), a_i its mean distance to the other points of its cluster, b_i
    its smallest mean distance to the points of another cluster; 0 for a point alone in its cluster."""
    points = points.double()
    distances = torch.cdist(points, points)  # (N, N)
    same = labels[:, None] == labels[None, :]  # (N, N)
    sizes = same.sum(1)  # (N,) the size of each point's cluster
    a = (distances * same).sum(1) / (sizes - 1).clamp(min=1)  # (N,) the diagonal adds 0
    clusters = labels.unique()
    member = labels[None, :] == clusters[:, None]  # (K, N)
    mean_to = (distances @ member.double().T) / member.sum(1)  # (N, K) mean distance to each cluster's points
    mean_to[member.T] = math.inf  # a point's own cluster is not "another"
    b = mean_to.amin(1)  # (N,)
    scores = torch.where(sizes > 1, (b - a) / torch.maximum(a, b).clamp(min=1e-12), torch.zeros_like(a))
    return float(scores.mean())


def kmeans_plus_plus(points: torch.Tensor, k: int) -> torch.Tensor:
    """k initial centres (k, D) from points (N, D): the first uniformly, each next one with probability
    proportional to its squared distance to the nearest chosen centre (uniformly once every point is chosen)."""
    chosen = [int(torch.randint(points.shape[0], ()))]
    for _ in range(1, k):
        distance = torch.cdist(points, points[chosen]).amin(1).square()  # (N,)
        weights = distance if bool((distance > 0).any()) else torch.ones_like(distance)
        chosen.append(int(torch.multinomial(weights, 1)))
    return points[chosen].clone()


def pretrain_steps(arch_cfg: SePSConfig, n_envs: int) -> int:
    """The env steps pre-training takes on `n_envs` envs (whole vector steps): none once the options hold a
    partition."""
    return 0 if arch_cfg.partition else math.ceil(arch_cfg.pretrain_steps / n_envs) * n_envs


def pretrain(*, env, arch_cfg: SePSConfig, seeds: Sequence[int], device: torch.device) -> list[Pretrained] | None:
    """Learn each seed's partition on its envs of `env` (see the module docstring): the transitions of all seeds
    are collected in one pass, then each seed's encoder and k-means run from its own seed; None when `arch_cfg`
    already holds a partition."""
    if arch_cfg.partition:
        return None
    spec = env.spec
    check_cluster_count(arch_cfg, spec.n_agents)
    envs_per_seed = env.n_envs // len(seeds)
    steps = pretrain_steps(arch_cfg, envs_per_seed)
    results = []
    for seed, data in zip(seeds, collect_random(env, steps // envs_per_seed, seeds, device), strict=True):
        with isolated_rng(seed, device):
            means, loss = train_encoder(data, spec.n_agents, arch_cfg)
            labels, k = cluster(means.cpu(), arch_cfg)
        groups = ", ".join(
            f"{g}: {' '.join(a for a, label in zip(spec.agent_ids, labels) if label == g)}"
            for g in range(k)
            if g in labels
        )
        results.append(
            Pretrained(
                arch_cfg=replace(arch_cfg, n_clusters=k, partition=labels),
                env_steps=steps,
                metrics={
                    "pretrain/env_steps": float(steps),
                    "pretrain/encoder_loss": loss,
                    "pretrain/groups": len(set(labels)),
                },
                summary=(
                    f"seps pre-training: {steps:,} env steps of random actions, encoder loss {loss:.4g} per "
                    f"transition; partition {labels} (groups {groups}"
                    + (f"; {k} by the silhouette score)" if arch_cfg.n_clusters == 0 else ")")
                ),
            )
        )
    return results


def batched_seps(arch_cfg: SePSConfig) -> str | None:
    """Seeds batch with their own partitions, not with numbers of groups of their own (`n_clusters` 0): one batch
    stacks every seed's per-group layers, which needs one number of groups."""
    if arch_cfg.n_clusters == 0:
        return (
            "with --n_clusters 0 each seed's pre-training may choose another number of groups, and one batch stacks "
            "the seeds' per-group layers; give --n_clusters, or run the seeds separately"
        )
    return None


register_architecture(
    ArchEntry(
        name="seps",
        config_cls=SePSConfig,
        build_net=build_seps_net,
        build_agent_param=build_seps_agent_param,
        shares_parameters=True,
        batched_seeds=batched_seps,
        pretrain=Pretraining(env_steps=pretrain_steps, run=pretrain, learned=("partition", "n_clusters")),
        description="SePS: agents clustered by a pre-trained identity encoder, one network per group (--n_clusters)",
    )
)
