"""Our HASAC/MASAC updates beside a reference written the simplest way HARL does it (not a test).

The reference (`RefSAC`, here) is a faithful re-implementation of HARL's off-policy SAC algorithm in the
straightforward style of its code, not its code: one `nn.Module` squashed-Gaussian actor per agent (trunk,
mean and log-std layers), a Python loop over agents wherever agents act, one `torch.optim.Adam` per agent
(its default implementation on the device), one twin-Q critic on the state and the concatenated joint
action, per-agent temperatures each with its own Adam plus the critic target's joint temperature, and a
parameter-by-parameter polyak loop. HASAC's actor update visits the agents in a random order, steps each
one's optimiser on its own loss against the joint action its predecessors' updated policies give, then
tunes its temperature and re-samples its action; MASAC steps all agents on one joint loss.
`hypermarl` in the reference is HyperMARL's MLP hypernetwork (learned embeddings, one generator MLP per
weight and per bias head, as the authors build it) generating one agent's weights at a time, shared by
all agents with one Adam (as HARL's `share_param`: every agent's turn steps the shared parameters).

Both sides sample the same replay buffer (random transitions, n-step targets), with equal sizes: batch
1000, hidden [256, 256], n_step 10, auto-α, no feature/layer norm. Settings: 2 agents at HalfCheetah 2x3's
sizes (global observations) and 17 agents with obs 20, act 1, state 50; torch threads 1 and 2. Rounds are
interleaved (every learner of every setting once per round) and the medians of the time per update are
reported (with one thread on CPU this process's CPU time, robust to other work on the machine; with more
threads, or on CUDA, wall time); within a round a learner's updates alternate with its reference's, each
timed alone, so the machine's drift in speed reaches both alike. Ratios (reference / ours, > 1: we are faster):

- every learner against the reference of the same algorithm and architecture (target ≥ 1.3×);
- our `hasac` + `hypermarl` against the reference `hasac` + `nops` (target ≥ 1.0×);
- our `masac` + `hypermarl` at 17 agents against the reference `hasac` + `nops` (target ≥ 4×);

printed beside the ratios of the updates' matmul work (`replay_common.matmul_work`): the speed-ups a
compute-bound implementation can have over a compute-bound reference of equal efficiency per multiply.

Usage: python bench/peer_update.py [--device cpu|cuda] [--threads 1 2] [--rounds 3] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from replay_common import filled_buffer, mamujoco_spec, matmul_work, uniform_spec
from torch import nn

from harl.buffers.replay import ReplayBuffer
from harl.config import apply_overrides
from harl.experiment import default_config
from harl.registry import get_algorithm, get_architecture, load_extensions
from harl.spec import EnvSpec
from harl.utils.memory import keep_freed_memory

BATCH, HIDDEN, N_STEP = 1000, [256, 256], 10
LR, ALPHA_LR, GAMMA_POLYAK, ALPHA = 5e-4, 3e-4, 0.005, 0.2
ALGOS, ARCHS = ("hasac", "masac"), ("nops", "hypermarl")


def relu_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of `sizes` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def squashed_sample(mean: torch.Tensor, log_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised tanh-Gaussian action (B, A) and its log-probability (B,)."""
    std = log_std.clamp(-20.0, 2.0).exp()
    normal = torch.distributions.Normal(mean, std)
    pre_tanh = normal.rsample()
    correction = 2 * (math.log(2.0) - pre_tanh - F.softplus(-2 * pre_tanh))
    return torch.tanh(pre_tanh), (normal.log_prob(pre_tanh) - correction).sum(-1)


class RefGaussianActor(nn.Module):
    """One agent's policy: a ReLU trunk, then separate mean and log-std layers."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(relu_mlp([obs_dim, *HIDDEN]), nn.ReLU())
        self.mean = nn.Linear(HIDDEN[-1], act_dim)
        self.log_std = nn.Linear(HIDDEN[-1], act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(obs)
        return self.mean(features), self.log_std(features)


class RefHyperActor(nn.Module):
    """Every agent's policy from one MLP hypernetwork: agent i's embedding feeds, per target layer, a generator
    MLP ending in the weight head and another ending in the bias head; agent i's weights are generated when it
    acts. Target layers: obs -> HIDDEN -> (mean, log-std)."""

    def __init__(self, n_agents: int, obs_dim: int, act_dim: int, embedding_dim: int = 8, width: int = 64) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.randn(n_agents, embedding_dim))
        sizes = [obs_dim, *HIDDEN, 2 * act_dim]
        self.dims = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.weight_generators = nn.ModuleList([relu_mlp([embedding_dim, width, i * o]) for i, o in self.dims])
        self.bias_generators = nn.ModuleList([relu_mlp([embedding_dim, width, o]) for _, o in self.dims])

    def forward(self, obs: torch.Tensor, agent: int) -> tuple[torch.Tensor, torch.Tensor]:
        context = self.embedding[agent]
        x = obs
        for layer, (fan_in, fan_out) in enumerate(self.dims):
            weight = self.weight_generators[layer](context).view(fan_out, fan_in)
            x = F.linear(x, weight, self.bias_generators[layer](context))
            if layer < len(self.dims) - 1:
                x = torch.relu(x)
        return x.chunk(2, dim=-1)


class RefTwinQ(nn.Module):
    """Two Q networks on the state concatenated with the joint action."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.q1, self.q2 = relu_mlp([in_dim, *HIDDEN, 1]), relu_mlp([in_dim, *HIDDEN, 1])

    def forward(self, state: torch.Tensor, joint_action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([state, joint_action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class RefSAC:
    """HARL-style HASAC (sequential) or MASAC (simultaneous) with `nops` or `hypermarl` actors."""

    def __init__(self, spec: EnvSpec, arch: str, sequential: bool, device: torch.device, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.n, self.sequential = spec.n_agents, sequential
        obs_dim, act_dim = spec.obs_dim_max, spec.act_dim_max
        if arch == "nops":
            self.actors = [RefGaussianActor(obs_dim, act_dim).to(device) for _ in range(self.n)]
            self.policies: list[Callable] = list(self.actors)
            self.actor_optimizers = [torch.optim.Adam(actor.parameters(), lr=LR) for actor in self.actors]
        else:
            hyper = RefHyperActor(self.n, obs_dim, act_dim).to(device)
            self.policies = [lambda obs, i=i: hyper(obs, i) for i in range(self.n)]
            self.actor_optimizers = [torch.optim.Adam(hyper.parameters(), lr=LR)] * self.n  # shared
        self.critic = RefTwinQ(spec.state_dim + self.n * act_dim).to(device)
        self.target_critic = copy.deepcopy(self.critic)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=LR)
        self.log_alphas = [torch.tensor(math.log(ALPHA), device=device, requires_grad=True) for _ in range(self.n)]
        self.alpha_optimizers = [torch.optim.Adam([log_alpha], lr=ALPHA_LR) for log_alpha in self.log_alphas]
        self.log_alpha_joint = torch.tensor(math.log(ALPHA), device=device, requires_grad=True)
        self.joint_alpha_optimizer = torch.optim.Adam([self.log_alpha_joint], lr=ALPHA_LR)
        self.target_entropy = -float(act_dim)
        self.rng = torch.Generator().manual_seed(seed)

    def sample(self, agent: int, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return squashed_sample(*self.policies[agent](obs[:, agent]))

    def tune_alpha(self, log_alpha: torch.Tensor, optimizer: torch.optim.Optimizer, log_prob: torch.Tensor) -> None:
        loss = -(log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def update(self, buffer: ReplayBuffer) -> None:
        batch = buffer.sample(BATCH, self.rng)
        # critic
        with torch.no_grad():
            next_samples = [self.sample(i, batch.next_obs) for i in range(self.n)]
            next_joint = torch.cat([a for a, _ in next_samples], dim=-1)
            next_log_prob = torch.stack([lp for _, lp in next_samples]).sum(0)
            next_q = torch.min(*self.target_critic(batch.next_state, next_joint))
            alpha_joint = self.log_alpha_joint.exp()
            target = batch.reward.mean(-1) + batch.discount * (next_q - alpha_joint * next_log_prob)
        q1, q2 = self.critic(batch.state, batch.actions.flatten(1))
        critic_loss = 0.5 * ((q1 - target).pow(2).mean() + (q2 - target).pow(2).mean())
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        # actors
        self.critic.requires_grad_(False)
        if self.sequential:
            with torch.no_grad():
                samples = [self.sample(i, batch.obs) for i in range(self.n)]
            actions = [a for a, _ in samples]
            log_probs = [lp for _, lp in samples]
            for i in torch.randperm(self.n, generator=self.rng).tolist():
                actions[i], log_probs[i] = self.sample(i, batch.obs)
                q = torch.min(*self.critic(batch.state, torch.cat(actions, dim=-1)))
                loss = (self.log_alphas[i].detach().exp() * log_probs[i] - q).mean()
                self.actor_optimizers[i].zero_grad()
                loss.backward()
                self.actor_optimizers[i].step()
                self.tune_alpha(self.log_alphas[i], self.alpha_optimizers[i], log_probs[i])
                with torch.no_grad():
                    actions[i], log_probs[i] = self.sample(i, batch.obs)
        else:
            samples = [self.sample(i, batch.obs) for i in range(self.n)]
            actions, log_probs = [a for a, _ in samples], [lp for _, lp in samples]
            q = torch.min(*self.critic(batch.state, torch.cat(actions, dim=-1)))
            weighted = sum(self.log_alphas[i].detach().exp() * log_probs[i] for i in range(self.n))
            loss = (weighted - q).mean()
            for optimizer in dict.fromkeys(self.actor_optimizers):
                optimizer.zero_grad()
            loss.backward()
            for optimizer in dict.fromkeys(self.actor_optimizers):
                optimizer.step()
            for i in range(self.n):
                self.tune_alpha(self.log_alphas[i], self.alpha_optimizers[i], log_probs[i])
        self.critic.requires_grad_(True)
        joint_log_prob = torch.stack(log_probs).sum(0)
        self.tune_alpha(self.log_alpha_joint, self.joint_alpha_optimizer, joint_log_prob + self.target_entropy)
        with torch.no_grad():
            for param, target_param in zip(self.critic.parameters(), self.target_critic.parameters(), strict=True):
                target_param.mul_(1 - GAMMA_POLYAK).add_(GAMMA_POLYAK * param)


def our_learner(spec: EnvSpec, algo: str, arch: str, device: torch.device):
    cfg = default_config(algo, arch, "mamujoco")
    apply_overrides(
        cfg,
        {
            "algo.batch_size": BATCH,
            "algo.n_step": N_STEP,
            "model.hidden_sizes": HIDDEN,
            "model.layer_norm": False,
            "model.feature_norm": False,
        },
    )
    return get_algorithm(algo).learner_cls(spec, cfg, get_architecture(arch), device)


def clock_for(threads: int, device: torch.device) -> Callable[[], float]:
    """This process's CPU time for one-thread CPU runs (other processes on a shared machine barely distort it),
    wall time otherwise (several threads: the latency a user waits for; CUDA: the host only waits)."""
    return time.process_time if device.type == "cpu" and threads == 1 else time.perf_counter


def paired_seconds_per_update(
    pair: dict[str, object], buffer: ReplayBuffer, seconds: float, device: torch.device
) -> dict[str, float]:
    """Seconds per `update(buffer)` of each learner of `pair` (reference and ours) by `clock_for` the current
    thread count: one warm-up call each, then their updates alternate, each timed alone, until both have had
    `seconds` (at least 2 calls each), so that a machine's drift in speed reaches both sides alike."""
    clock = clock_for(torch.get_num_threads(), device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for learner in pair.values():
        learner.update(buffer)  # type: ignore[attr-defined]
    sync()
    spent = dict.fromkeys(pair, 0.0)
    calls = 0
    while calls < 2 or min(spent.values()) < seconds:
        for side, learner in pair.items():
            start = clock()
            learner.update(buffer)  # type: ignore[attr-defined]
            sync()
            spent[side] += clock() - start
        calls += 1
    return {side: total / calls for side, total in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    parser.add_argument("--seconds", type=float, default=1.5, help="timing window per learner and round")
    args = parser.parse_args()
    load_extensions()
    keep_freed_memory()  # as a training run's process does (see harl.utils.memory)
    device = torch.device(args.device)
    settings = {
        "2 agents (HalfCheetah 2x3)": mamujoco_spec("HalfCheetah", "2x3"),
        "17 agents (obs 20, act 1, state 50)": uniform_spec(17, 20, 1, 50),
    }
    learners: dict[tuple[str, str, str], object] = {}
    buffers = {}
    for name, spec in settings.items():
        buffers[name] = filled_buffer(spec, device, N_STEP)
        for algo in ALGOS:
            for arch in ARCHS:
                learners[name, "ours", f"{algo}+{arch}"] = our_learner(spec, algo, arch, device)
                learners[name, "ref", f"{algo}+{arch}"] = RefSAC(spec, arch, algo == "hasac", device)
    times: dict[tuple[int, str, str, str], list[float]] = {}
    for round_index in range(args.rounds):
        for threads in args.threads:
            torch.set_num_threads(threads)
            for name in settings:
                for learner_name in _keys():
                    pair = {side: learners[name, side, learner_name] for side in ("ref", "ours")}
                    per_update = paired_seconds_per_update(pair, buffers[name], args.seconds, device)
                    for side, seconds in per_update.items():
                        times.setdefault((threads, name, side, learner_name), []).append(seconds)
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)
    median = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"\nSAC updates, batch {BATCH}, hidden {HIDDEN}, n_step {N_STEP}, auto-alpha, device {device}; "
        f"median ms per update over {args.rounds} interleaved rounds (1 thread on CPU: this process's CPU time; "
        "otherwise wall time); speed-up = reference / ours"
    )
    print(f"{'threads':>7}  {'setting':<37}{'learner':<17}{'ref ms':>9}{'our ms':>9}{'speed-up':>10}")
    for threads in args.threads:
        for name in settings:
            for algo in ALGOS:
                for arch in ARCHS:
                    key = f"{algo}+{arch}"
                    ref, ours = median[threads, name, "ref", key], median[threads, name, "ours", key]
                    print(f"{threads:>7}  {name:<37}{key:<17}{ref * 1e3:>9.1f}{ours * 1e3:>9.1f}{ref / ours:>9.2f}x")
    print("\ncompute-bound speed-ups (reference matmul work / ours, `replay_common.matmul_work`, nops):")
    for name, spec in settings.items():
        hasac, masac = (
            matmul_work(spec, HIDDEN, reference=True) / matmul_work(spec, HIDDEN),
            matmul_work(spec, HIDDEN, sequential=False, reference=True) / matmul_work(spec, HIDDEN, sequential=False),
        )
        simultaneous = matmul_work(spec, HIDDEN, reference=True) / matmul_work(spec, HIDDEN, sequential=False)
        print(f"  {name}: hasac {hasac:.2f}x, masac {masac:.2f}x, reference hasac / our masac {simultaneous:.2f}x")
    print("\ntargets (speed-up = reference ms / our ms):")
    for threads in args.threads:
        for name in settings:
            ref_hasac = median[threads, name, "ref", "hasac+nops"]
            worst = min(median[threads, name, "ref", k] / median[threads, name, "ours", k] for k in _keys())
            print(f"  threads {threads}, {name}: every learner vs its reference, worst {worst:.2f}x (target >= 1.3x)")
            hyper = ref_hasac / median[threads, name, "ours", "hasac+hypermarl"]
            print(f"  threads {threads}, {name}: our hasac+hypermarl vs reference hasac+nops {hyper:.2f}x (>= 1.0x)")
            if name.startswith("17"):
                simultaneous = ref_hasac / median[threads, name, "ours", "masac+hypermarl"]
                print(
                    f"  threads {threads}, {name}: "
                    f"our masac+hypermarl vs reference hasac+nops {simultaneous:.2f}x (>= 4x)"
                )


def _keys() -> list[str]:
    return [f"{algo}+{arch}" for algo in ALGOS for arch in ARCHS]


if __name__ == "__main__":
    main()
