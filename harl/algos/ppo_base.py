"""What the on-policy learners share: their configs, the actor and per-agent critic, the critic update, and (for
the learners whose actor an optimiser steps: PPO and A2C) the actor's optimiser and surrogate.

The per-agent actor update (the part where the learners differ) lives in `mappo.py`, `happo.py`, `a2c.py` and
`hatrpo.py`, each readable top to bottom.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F

from harl.algos.advantages import Prepared, RolloutValues, bootstrapped_rewards, gae
from harl.algos.base import ActOutput, CollectionSchedule, network_diagnostics
from harl.algos.seed_population import build_members, read_networks, read_optimizer, write_networks, write_optimizer
from harl.buffers.rollout import ActorBatch, CriticBatch, RolloutBuffer
from harl.config import ExperimentConfig, bounded, check_bounds
from harl.errors import ConfigError
from harl.metrics.gradients import GradientStats
from harl.models.auxiliary import advance_networks
from harl.models.policies import GREEDY, ON_POLICY_ACTORS, SAMPLE, AgentValueCritic, OnPolicyActor
from harl.models.population import SeedLayout
from harl.models.recurrent import reset_hidden
from harl.optim import AgentAdam, clip_grad_norm_agentwise, grad_norms_agentwise
from harl.registry import ArchEntry
from harl.spec import EnvSpec
from harl.utils.value_norm import ValueNorm

VALUE_CHUNK = 16384  # states per critic call when evaluating a whole rollout (bounds the activations' memory)


@dataclass
class OnPolicyConfig:
    """What every on-policy learner's config holds: the rollout, the critic and the advantages (HARL's names and
    defaults). The actor's own hyper-parameters are the subclasses'."""

    episode_length: int = bounded(200, gt=0)
    """Vector steps per rollout (the rollout holds episode_length × n_rollout_threads samples)."""
    critic_lr: float = bounded(5e-4, gt=0)
    """Critic learning rate."""
    opti_eps: float = bounded(1e-5, gt=0)
    """Adam epsilon."""
    critic_epoch: int = bounded(5, gt=0)
    """Critic epochs per rollout."""
    critic_num_mini_batch: int = bounded(1, gt=0)
    """Critic minibatches per epoch."""
    clip_param: float = bounded(0.2, gt=0)
    """Value clip around the rollout's values (PPO: also the ratio clip)."""
    value_loss_coef: float = bounded(1.0, ge=0)
    """Critic loss weight."""
    use_clipped_value_loss: bool = True
    """Clip value updates around the rollout's values."""
    use_huber_loss: bool = True
    """Huber instead of squared value error."""
    huber_delta: float = bounded(10.0, gt=0)
    """Huber loss threshold."""
    use_valuenorm: bool = True
    """Normalise value targets with a running per-agent mean/std."""
    max_grad_norm: float = bounded(10.0, ge=0)
    """Gradient-norm clip (per agent for per-agent parameters; 0 disables)."""
    gamma: float = bounded(0.99, ge=0, le=1)
    """Discount factor."""
    gae_lambda: float = bounded(0.95, ge=0, le=1)
    """GAE λ."""
    use_linear_lr_decay: bool = False
    """Decay every optimiser's learning rate linearly to 0 over the run (HARL's): before each rollout's update,
    lr × (1 − env steps trained on so far / num_env_steps)."""
    critic: Literal["per_agent", "shared"] = "per_agent"
    """per_agent: every agent's value head V_i, built by the architecture (one per agent under nops; generated
    by a hypernetwork); shared: HARL's critic, one V(s) network on the global state for all agents (a plain MLP,
    or GRU network, whatever --arch: the architecture then builds the actors only), for equal-work comparisons
    with HARL. Centralised critics only (not ippo)."""
    data_chunk_length: int = bounded(10, gt=0)
    """Recurrent policies (`model.recurrent`): steps of one env per training sequence (BPTT chunk), at most
    episode_length; each chunk starts from the hidden state stored at its first step. Minibatches split chunks."""

    def validate(self) -> None:
        check_bounds(self, "algo")

    def minibatches(self) -> list[int]:
        """Minibatches per epoch of the updates that split the rollout (the critic's; the actor's where it has
        minibatches)."""
        return [self.critic_num_mini_batch]

    def rollout_length(self) -> int:
        """Vector steps its rollout buffer holds (what memory estimates read)."""
        return self.episode_length

    def check_run(self, cfg: ExperimentConfig, pretrained_steps: int | None) -> None:
        """Refuse (one line) a run these settings cannot train: recurrent training (`model.recurrent`) with fewer
        training sequences than minibatches, or a population's (`--seeds N`) sequences padded (each seed draws its
        own). `pretrained_steps` (env steps a new run spends before training; None: a saved run's config) does
        not matter: an on-policy run trains from its first rollout."""
        if not cfg.model.recurrent:
            return
        steps = min(self.data_chunk_length, self.episode_length)
        chunks = cfg.run.n_rollout_threads * math.ceil(self.episode_length / steps)
        most = max(self.minibatches())
        if chunks < most:
            raise ConfigError(
                f"recurrent training cuts the rollout into {chunks} sequences of {steps} steps (n_rollout_threads × "
                f"⌈episode_length / data_chunk_length⌉), fewer than the {most} minibatches asked for"
            )
        if cfg.run.seeds > 1 and self.episode_length % steps:
            raise ConfigError(
                f"--seeds {cfg.run.seeds} with recurrent policies needs whole training sequences (each seed draws "
                f"its own): episode_length {self.episode_length} is not a multiple of data_chunk_length {steps}; "
                "choose a data_chunk_length that divides it"
            )


@dataclass
class PolicyGradientConfig(OnPolicyConfig):
    """Learners whose actor an optimiser steps on minibatches (PPO, A2C)."""

    lr: float = bounded(5e-4, gt=0)
    """Actor learning rate."""
    actor_num_mini_batch: int = bounded(1, gt=0)
    """Actor minibatches per epoch."""
    entropy_coef: float = bounded(0.01, ge=0)
    """Entropy bonus weight."""

    def minibatches(self) -> list[int]:
        return [self.actor_num_mini_batch, self.critic_num_mini_batch]


@dataclass
class PPOConfig(PolicyGradientConfig):
    """Hyper-parameters of MAPPO/HAPPO/IPPO (HARL's names and defaults)."""

    ppo_epoch: int = bounded(5, gt=0)
    """Actor epochs per rollout."""


class ActorCriticLearner:
    """Actor (all agents), per-agent critic, their optimisers and the value normaliser: an
    `harl.algos.base.OnPolicyLearner`.

    Subclasses implement `train(buffer)`: `prepare` (the critic on the finished rollout, bootstraps, GAE),
    the critic update and their actor update, and `make_actor_optimizer` where an optimiser steps the actor.
    Feed-forward and recurrent (`model.recurrent`) learners train alike on `Sequences` of the rollout: chunks of
    one step each, or of `data_chunk_length` steps evaluated from their stored hidden states (chunked BPTT).
    """

    centralised_critic = True
    """Whether every agent's critic reads the global state (MAPPO, HAPPO) or only its own observation (IPPO)."""
    cfg: OnPolicyConfig

    def __init__(self, spec: EnvSpec, cfg: ExperimentConfig, arch: ArchEntry, device: torch.device, actor_kind: str):
        self.spec, self.device = spec, device
        self.cfg = cfg.algo
        self.seeds = cfg.run.seeds
        self.run_steps = cfg.run.num_env_steps  # each seed's: the clock of the architecture's schedules
        self.layout = SeedLayout(self.seeds, spec.n_agents)
        self.n_agents = spec.n_agents * self.seeds  # every seed's agents, seed-major (virtual agents)
        self.members: list[ActorCriticLearner] = []  # a population's solo learners, one per seed (`seed_population`)
        self.action_rngs: list[torch.Generator] | None = None  # None: actions from torch's global RNG
        self.actor: OnPolicyActor
        if self.seeds == 1:
            self.actor = ON_POLICY_ACTORS[actor_kind](spec, arch, cfg.model, cfg.arch).to(device)
            self.critic = AgentValueCritic(
                spec, arch, cfg.model, cfg.arch, centralised=self.centralised_critic, shared=self.cfg.critic == "shared"
            )
            self.critic.to(device)
            arch.link_networks(self.actor, self.critic, cfg.arch)
            self.rngs = [torch.Generator().manual_seed(cfg.run.seed)]
        else:
            solo = cast(Callable[..., ActorCriticLearner], type(self))  # registered subclass: (spec, cfg, arch, device)
            self.members, self.action_rngs = build_members(
                lambda member_cfg: solo(spec, member_cfg, arch, device), cfg, device
            )
            self.actor = ON_POLICY_ACTORS[actor_kind].population([m.actor for m in self.members], self.action_rngs)
            self.critic = AgentValueCritic.population([m.critic for m in self.members])
            arch.link_networks(self.actor, self.critic, cfg.arch)  # each seed's critic to its seed's actor
            self.rngs = [m.rng for m in self.members]  # each seed's minibatch and agent-order stream
        self.actor_optimizer = self.make_actor_optimizer()
        self.critic_optimizer = AgentAdam(self.critic.parameters(), lr=self.cfg.critic_lr, eps=self.cfg.opti_eps)
        self.base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.optimizers().items()}
        self.trained_steps = 0  # each seed's env steps trained on so far (the learning rates' decay clock)
        self.value_norm = ValueNorm((self.n_agents,)).to(device) if self.cfg.use_valuenorm else None
        if self.members:
            self.read_members()
        self.grad_stats = GradientStats(self.seeds) if cfg.run.grad_stats else None
        self.recurrent = cfg.model.recurrent
        self.hidden_size = cfg.model.rnn_hidden_size if self.recurrent else 0  # 0: no hidden states
        self.critic_carry: torch.Tensor | None = None  # (E, N, H) recurrent critic states carried between rollouts
        self.chunk_length = self.cfg.data_chunk_length if self.recurrent else 1
        self.schedule = CollectionSchedule(steps_per_iteration=self.cfg.episode_length)

    def make_actor_optimizer(self) -> AgentAdam | None:
        """The actor's optimiser; None where no optimiser steps the actor (HATRPO moves it by trust-region steps)."""
        return None

    def optimizers(self) -> dict[str, AgentAdam]:
        """The learner's optimisers by their checkpoint names."""
        named = {"actor_optimizer": self.actor_optimizer, "critic_optimizer": self.critic_optimizer}
        return {name: optimizer for name, optimizer in named.items() if optimizer is not None}

    @property
    def rng(self) -> torch.Generator:
        """The first seed's minibatch and agent-order stream (a solo run's only one)."""
        return self.rngs[0]

    def make_buffer(self, n_envs: int) -> RolloutBuffer:
        """A rollout buffer of `episode_length` steps of `n_envs` envs (with hidden states when recurrent)."""
        return RolloutBuffer(
            self.spec,
            self.schedule.steps_per_iteration,
            n_envs,
            self.device,
            hidden_size=self.hidden_size,
            chunk_length=self.chunk_length,
        )

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"actor": self.actor, "critic": self.critic}

    def diagnostics(self) -> dict[str, float]:
        return network_diagnostics(self.networks())

    # ------------------------------------------------------------------ acting

    def initial_hidden(self, n_envs: int) -> torch.Tensor | None:
        """Hidden states (E, N, H) of fresh episodes, for the actor or the critic; None for feed-forward networks.
        A population's envs hold its seeds' envs side by side (P·E, n, H), as its buffer does."""
        if not self.recurrent:
            return None
        return torch.zeros(n_envs, self.spec.n_agents, self.hidden_size, device=self.device)

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        avail: torch.Tensor | None,
        *,
        deterministic: bool = False,
        hidden: torch.Tensor | None = None,
    ) -> ActOutput:
        """Every agent's action on one vector step.

        Args:
            obs: (E, N, O) observations.
            state: (E, S) global states (unused by the actor).
            avail: (E, N, A) available actions, or None.
            deterministic: take each policy's mode instead of sampling.
            hidden: the actor's hidden states (E, N, H) before this step (recurrent learners; start from
                `initial_hidden` and zero them where an episode ends).

        Returns:
            Env-ready actions (E, N, A), stored actions (E, N, A), their log-probs (E, N) and the actor's
            hidden states after this step (E, N, H) (None for feed-forward learners).
        """
        layout = self.layout  # a population's envs (P·E, n, ...) as its networks' virtual agents (E, P·n, ...)
        avail = None if avail is None else layout.to_agents(avail)
        obs, exploration = layout.to_agents(obs), GREEDY if deterministic else SAMPLE
        if self.recurrent:
            actions, log_probs, hidden = self.actor.act_step(obs, layout.to_agents(hidden), avail, exploration)
            hidden = layout.to_envs(hidden)
        else:
            actions, log_probs = self.actor.act(obs, avail, exploration)
        env_actions = self.actor.env_actions(actions)
        return ActOutput(layout.to_envs(env_actions), layout.to_envs(actions), layout.to_envs(log_probs), hidden)

    @torch.no_grad()
    def values(
        self, inputs: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Denormalised per-agent values (E, N) of the critic's inputs (states (E, S) or observations (E, N, O),
        see `AgentValueCritic.inputs`), and the critic's hidden states (E, N, H) after them (recurrent
        learners, from `hidden` before them; None for feed-forward learners). A population's envs hold its
        seeds' envs side by side (P·E, n): each env is valued by its own seed's critic."""
        if not self.recurrent:
            return self._seed_values(inputs, env_dim=0), hidden
        layout = self.layout
        values, hidden = self.critic.forward_sequence(
            self._critic_view(inputs, 0).unsqueeze(0), layout.to_agents(hidden)
        )
        return layout.to_envs(self._denormalize(values[0])), layout.to_envs(hidden)

    def _critic_view(self, inputs: torch.Tensor, env_dim: int) -> torch.Tensor:
        """The critic's inputs in env layout, (..., P·E, S) or (..., P·E, n, O) with envs at `env_dim`, as its
        network reads them: (..., E, P, S) states (one per seed) or (..., E, P·n, O) (a solo run's unchanged)."""
        layout = self.layout
        return layout.states_to_seeds(inputs, env_dim) if self.centralised_critic else layout.to_agents(inputs, env_dim)

    def _denormalize(self, values: torch.Tensor) -> torch.Tensor:
        """Values (..., P·n) in the critic's output scale -> returns' scale."""
        return self.value_norm.denormalize(values) if self.value_norm is not None else values

    def _seed_values(self, inputs: torch.Tensor, env_dim: int) -> torch.Tensor:
        """Feed-forward: denormalised values (..., P·E, n) of inputs (..., P·E, S) or (..., P·E, n, O) (envs at
        `env_dim`), each env valued by its own seed's critic (a solo run's: P = 1)."""
        x = self._critic_view(inputs, env_dim)
        lead = x.shape[: env_dim + 1]  # (..., E)
        values = self._denormalize(self.critic(x.flatten(0, env_dim)))  # (B, P·n)
        return self.layout.to_envs(values.view(*lead, -1), env_dim)

    @torch.no_grad()
    def values_sequence(
        self, inputs: torch.Tensor, hidden: torch.Tensor, resets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent learners: denormalised values (L, E, N) along input sequences ((L, E, S) states or
        (L, E, N, O) observations) from the critic's hidden states `hidden` (E, N, H) before them, zeroed
        before the steps where `resets` (L, E) is 1; also the hidden states after every step (L, E, N, H).
        A population's are in env layout (P·E envs of n agents), each env valued by its own seed's critic."""
        layout = self.layout
        resets = layout.states_to_seeds(resets, 1)  # (L, E, P): each seed's own episode starts
        values, hiddens = self.critic.forward_sequence(
            self._critic_view(inputs, 1), layout.to_agents(hidden), resets, every_hidden=True
        )
        return layout.to_envs(self._denormalize(values), 1), layout.to_envs(hiddens, 1)

    # ------------------------------------------------------------------ after the rollout

    @torch.no_grad()
    def value_rollout(self, buffer: RolloutBuffer) -> RolloutValues:
        """The critic on a finished rollout: its values at the rollout's steps and at the states after it, and at
        the final states of its time-limit cuts (a recurrent critic's: also its hidden states before every
        training chunk, and those it carries into the next rollout, `critic_carry`).

        The critic's weights do not change during a rollout, so it is evaluated once on all the rollout's
        states after it (a recurrent critic along them from its carried hidden states) rather than at every
        step, which keeps its cost off the path between env steps.
        """
        if self.recurrent:
            return self._recurrent_rollout_values(buffer)
        t, e, inputs_of = buffer.length, buffer.n_envs, self.critic.inputs
        if self.seeds > 1:
            return self._population_rollout_values(buffer)
        finals = [inputs_of(cut.final_obs, cut.final_state) for cut in buffer.cuts]  # (k_i, S) or (k_i, N, O)
        rollout = inputs_of(buffer.obs, buffer.state).flatten(0, 1)  # (T·E, S) or (T·E, N, O)
        inputs = torch.cat([rollout, inputs_of(buffer.next_obs, buffer.next_state), *finals])  # (T·E + E + Σk, ...)
        values = torch.cat([self.values(chunk)[0] for chunk in inputs.split(VALUE_CHUNK)])  # (T·E + E + Σk, N)
        cut_values = values[(t + 1) * e :] if buffer.cuts else None  # (Σk, N)
        return RolloutValues(values[: (t + 1) * e].view(t + 1, e, -1), cut_values)

    def _population_rollout_values(self, buffer: RolloutBuffer) -> RolloutValues:
        """A population's critic on its rollout: every seed's envs at every step in one call per step block, and a
        time-limit cut's final inputs where they stand among all envs (each env is valued by its own seed)."""
        e, inputs_of = buffer.n_envs, self.critic.inputs
        inputs = torch.cat([inputs_of(buffer.obs, buffer.state), inputs_of(buffer.next_obs, buffer.next_state)[None]])
        steps_per_call = max(1, VALUE_CHUNK // e)  # (T+1, P·E, ...) in blocks of steps -> (T+1, P·E, n)
        values = torch.cat([self._seed_values(block, env_dim=1) for block in inputs.split(steps_per_call)])
        return RolloutValues(values, self._population_cut_values(buffer) if buffer.cuts else None)

    def _population_cut_values(self, buffer: RolloutBuffer, hiddens: torch.Tensor | None = None) -> torch.Tensor:
        """(Σk, n) a population's values of its time-limit cuts' final inputs, each valued where it stands among
        all envs (every env by its own seed's critic); a recurrent critic's from its hidden states after the cut's
        step, `hiddens` (T+1, P·E, n, H)."""
        inputs_of, finals = self.critic.inputs, []
        for cut in buffer.cuts:  # the cut envs' final inputs in place of their next ones
            dense = inputs_of(buffer.obs[cut.step], buffer.state[cut.step]).clone()  # (P·E, ...)
            dense[cut.envs] = inputs_of(cut.final_obs, cut.final_state)
            hidden = None if hiddens is None else hiddens[cut.step]
            finals.append(self.values(dense, hidden)[0][cut.envs])  # (k, n)
        return torch.cat(finals)

    def _recurrent_rollout_values(self, buffer: RolloutBuffer) -> RolloutValues:
        """Recurrent critics: the critic runs along the rollout's states and the states after it from the hidden
        states carried into the rollout, zeroed after every episode end, as it would have step by step. The
        result holds the hidden states the training chunks start from, and `critic_carry` those before the next
        rollout; a cut at step t is valued on its final state from the hidden state after step t."""
        t, e, chunk, inputs_of = buffer.length, buffer.n_envs, buffer.chunk_length, self.critic.inputs
        after = inputs_of(buffer.next_obs, buffer.next_state)  # (E, S) or (E, N, O)
        inputs = torch.cat([inputs_of(buffer.obs, buffer.state), after.unsqueeze(0)])  # (T+1, E, ...)
        resets = torch.cat([torch.zeros_like(buffer.dones[:1]), buffer.dones])  # (T+1, E): zero after an end
        if self.critic_carry is None:  # the first rollout starts from zeros
            self.critic_carry = torch.zeros(e, buffer.n_agents, self.hidden_size, device=self.device)
        carried = self.critic_carry  # (E, N, H)
        seed_envs = e // self.seeds  # a population's calls take the same envs of every seed
        envs_per_call = max(1, VALUE_CHUNK // ((t + 1) * self.seeds))
        firsts = torch.arange(self.seeds, device=self.device).unsqueeze(1) * seed_envs  # (P, 1)
        calls = [
            (firsts + block).flatten() for block in torch.arange(seed_envs, device=self.device).split(envs_per_call)
        ]
        values, hiddens = zip(
            *(self.values_sequence(inputs[:, envs], carried[envs], resets[:, envs]) for envs in calls), strict=True
        )
        if len(values) > 1:  # (T+1, E, N), (T+1, E, N, H); a population's calls back in env order
            values, hiddens = torch.cat(values, dim=1), torch.cat(hiddens, dim=1)
            if self.seeds > 1:
                order = torch.argsort(torch.cat(calls))
                values, hiddens = values[:, order], hiddens[:, order]
        else:
            values, hiddens = values[0], hiddens[0]
        # hidden states before the steps the chunks start at (after the first) and before the next rollout: those
        # after the previous step, zeroed at episode ends
        starts = range(chunk, t, chunk)  # the chunks' first steps after step 0
        previous = torch.tensor([s - 1 for s in starts] + [t - 1], device=self.device)  # (⌈T/L⌉,)
        before = reset_hidden(hiddens[previous], buffer.dones[previous])  # (⌈T/L⌉, E, N, H)
        chunk_hidden = torch.cat([carried.unsqueeze(0), before[:-1]])  # (⌈T/L⌉, E, N, H)
        self.critic_carry = before[-1]
        cut_values = None
        if buffer.cuts and self.seeds > 1:
            cut_values = self._population_cut_values(buffer, hiddens)
        elif buffer.cuts:
            finals = torch.cat([inputs_of(cut.final_obs, cut.final_state) for cut in buffer.cuts])  # (Σk, ...)
            final_hidden = torch.cat([hiddens[cut.step, cut.envs] for cut in buffer.cuts])  # (Σk, N, H)
            cut_values = self.values(finals, final_hidden)[0]
        return RolloutValues(values, cut_values, chunk_hidden)

    # ------------------------------------------------------------------ learning

    def prepare(self, buffer: RolloutBuffer) -> Prepared:
        """The learner's one step between a finished rollout and its update: the critic on the rollout, the
        time-limit bootstraps, GAE, then the rollout as training sequences with advantages normalised over each
        seed's batch; the architecture's schedules advance by the rollout's env steps."""
        steps = buffer.length * buffer.n_envs // self.seeds  # each seed's env steps in this rollout
        if self.cfg.use_linear_lr_decay:
            self.decay_learning_rates()
        self.trained_steps += steps
        advance_networks(self.networks(), steps, self.run_steps)
        rollout = self.value_rollout(buffer)
        rewards = bootstrapped_rewards(buffer.rewards, buffer.cuts, rollout.cut_values, self.cfg.gamma)
        # (T, E, N) each; a population's (T, P·E, n): advantages normalised per seed
        advantages, returns = gae(rewards, rollout.values, buffer.dones, self.cfg.gamma, self.cfg.gae_lambda)
        per_seed = advantages.unflatten(1, (self.seeds, -1)).transpose(0, 1).flatten(1)  # (P, T·E·n)
        mean, std = per_seed.mean(1), per_seed.std(1)  # (P,)
        normalised = (per_seed - mean[:, None]) / (std[:, None] + 1e-5)
        normalised = normalised.view(self.seeds, advantages.shape[0], -1, *advantages.shape[2:]).transpose(0, 1)
        values = rollout.values[:-1]  # (T, E, N)
        sequences = buffer.sequences(
            normalised.flatten(1, 2),
            values,
            returns,
            rollout.chunk_hidden,
            centralised_critic=self.centralised_critic,
            layout=self.layout,
        )
        return Prepared(sequences, values, returns)

    def decay_learning_rates(self) -> None:
        """Every optimiser's learning rate at its base value × (1 − trained env steps / num_env_steps) (HARL's
        linear decay, evaluated before each rollout's update: the first update runs at the base rates)."""
        fraction = max(0.0, 1.0 - self.trained_steps / self.run_steps)
        for name, optimizer in self.optimizers().items():
            for group, base in zip(optimizer.param_groups, self.base_lrs[name], strict=True):
                group["lr"] = base * fraction

    def batch_log_probs_entropy(self, batch: ActorBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (L, B, k) of the batch's actions along its sequences under the current actor."""
        if self.recurrent:
            return self.actor.sequence_log_probs_entropy(
                batch.obs, batch.actions, batch.hidden, batch.resets, batch.avail, batch.agents
            )
        steps, size = batch.obs.shape[:2]
        avail = None if batch.avail is None else batch.avail.flatten(0, 1)
        log_probs, entropy = self.actor.log_probs_entropy(
            batch.obs.flatten(0, 1), batch.actions.flatten(0, 1), avail, batch.agents
        )  # (L·B, k)
        return log_probs.view(steps, size, -1), entropy.view(steps, size, -1)

    def batch_values(self, batch: CriticBatch) -> torch.Tensor:
        """Normalised values (M, N) at the batch's real steps under the current critic."""
        if self.recurrent:
            values, _ = self.critic.forward_sequence(batch.inputs, batch.hidden, batch.resets)  # (L, B, N)
        else:
            values = self.critic(batch.inputs.flatten(0, 1)).view(*batch.inputs.shape[:2], -1)  # (L, B, N)
        return batch.flat(values)

    def train_critic(self, prepared: Prepared) -> list[dict[str, float]]:
        """Clipped, Huber value loss on (normalised) returns for every agent's value head; one metrics dict per seed."""
        sequences = prepared.sequences
        returns = self.layout.to_agents(prepared.returns, env_dim=1).flatten(0, 1)  # (T·E, N): a seed's E envs
        if self.value_norm is not None:
            self.value_norm.update(returns)
        losses, norms = [], []
        for _ in range(self.cfg.critic_epoch):
            for batch in sequences.critic_minibatches(self.cfg.critic_num_mini_batch, self.rngs):
                values = self.batch_values(batch)  # (M, N)
                targets, old_values = batch.returns, batch.values
                if self.value_norm is not None:
                    targets, old_values = self.value_norm.normalize(targets), self.value_norm.normalize(old_values)
                loss = self._value_error(targets - values)
                if self.cfg.use_clipped_value_loss:
                    clipped = old_values + (values - old_values).clamp(-self.cfg.clip_param, self.cfg.clip_param)
                    loss = torch.maximum(loss, self._value_error(targets - clipped))
                loss = self.seed_means(loss) * self.cfg.value_loss_coef  # (P,): each seed's own loss
                self.critic_optimizer.zero_grad()
                (loss + self.critic.aux_loss(None, loss)).sum().backward()
                norms.append(self._clip(self.critic_optimizer)[0])
                self.critic_optimizer.step()
                losses.append(loss.detach())
        per_seed = lambda x: x.unflatten(1, (self.seeds, -1)).transpose(0, 1).flatten(1).mean(1)  # noqa: E731
        return self.seed_metrics(
            {
                "losses/critic/value_loss": torch.stack(losses).mean(0),
                "losses/critic/grad_norm": torch.stack(norms).mean(0),
                "values/mean_value": per_seed(prepared.values),
                "values/mean_return": per_seed(prepared.returns),
            }
        )

    def seed_means(self, x: torch.Tensor) -> torch.Tensor:
        """(P,) each seed's mean of per-agent terms x (M, P·k) (a solo run's: (1,), the mean of x (M, k))."""
        return x.unflatten(-1, (self.seeds, -1)).transpose(0, -2).flatten(1).mean(1)

    def seed_metrics(self, metrics: dict[str, torch.Tensor]) -> list[dict[str, float]]:
        """Per-seed metrics (P,) each -> one dict per seed, read from the device in one copy."""
        names = list(metrics)
        values = torch.stack([metrics[name].reshape(self.seeds) for name in names]).cpu().tolist()  # (metrics, P)
        return [{name: row[s] for name, row in zip(names, values, strict=True)} for s in range(self.seeds)]

    def _value_error(self, error: torch.Tensor) -> torch.Tensor:
        if self.cfg.use_huber_loss:
            return F.huber_loss(error, torch.zeros_like(error), reduction="none", delta=self.cfg.huber_delta)
        return 0.5 * error.pow(2)

    def _clip(self, optimizer: AgentAdam) -> tuple[torch.Tensor, torch.Tensor]:
        """Agent-wise gradient clipping (a population's: per virtual agent, and each seed's shared parameters as
        its own group). Returns the norms before clipping: each seed's total (P,), and (N,) of each agent's own
        (per-agent) parameters."""
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if self.cfg.max_grad_norm > 0:
            per_agent, shared = clip_grad_norm_agentwise(params, self.cfg.max_grad_norm, self.n_agents, self.seeds)
        else:
            per_agent, shared = grad_norms_agentwise(params, self.n_agents, self.seeds)
        totals = (per_agent.pow(2).view(self.seeds, -1).sum(1) + shared.pow(2)).sqrt()  # (P,)
        return totals.detach(), per_agent.detach()

    def add_gradient_stats(self, metrics: list[dict[str, float]]) -> None:
        """Each seed's gradient statistics of this update into its metrics (when `run.grad_stats` is on)."""
        if self.grad_stats is not None:
            for row, gradient_stats in zip(metrics, self.grad_stats.summary(), strict=True):
                row.update(gradient_stats)

    def record_actor_gradients(
        self, grads: Sequence[torch.Tensor | None] | None = None, new_group: bool = False
    ) -> None:
        """Feed an actor gradient to the gradient statistics (when `run.grad_stats` is on): `grads`, one per actor
        parameter (None: zero), or else the parameters' `.grad`; `new_group` starts a new group of gradients."""
        if self.grad_stats is not None:
            if new_group:
                self.grad_stats.next_group()
            self.grad_stats.record(self.actor.parameters(), grads)

    # ------------------------------------------------------------------ a population's members

    def write_networks(self) -> list[ActorCriticLearner]:
        """The population's current networks written into its members (each seed's solo learner), which it
        returns: what acting, evaluation and diagnostics read."""
        write_networks(self.actor, [m.actor for m in self.members])
        write_networks(self.critic, [m.critic for m in self.members])
        return self.members

    def write_members(self) -> list[ActorCriticLearner]:
        """The population's whole state (networks, optimisers, value normalisers) written into its members, which
        it returns: what a seed's checkpoint holds."""
        members = self.write_networks()
        for name, optimizer in self.optimizers().items():
            write_optimizer(optimizer, [m.optimizers()[name] for m in members])
            for member in members:  # the decayed learning rates (every seed's alike)
                for own, group in zip(member.optimizers()[name].param_groups, optimizer.param_groups, strict=True):
                    own["lr"] = group["lr"]
        for member in members:
            member.trained_steps = self.trained_steps
        if self.value_norm is not None:
            for s, member in enumerate(members):
                for name, value in self.value_norm.state_dict().items():
                    rows = value.view(self.seeds, -1)[s] if value.dim() else value
                    member.value_norm.get_buffer(name).copy_(rows)
        return members

    def read_members(self) -> None:
        """The population's state stacked from its members' (at construction, and after they load checkpoints)."""
        members = self.members
        read_networks(self.actor, [m.actor for m in members])
        read_networks(self.critic, [m.critic for m in members])
        for name, optimizer in self.optimizers().items():
            read_optimizer(optimizer, [m.optimizers()[name] for m in members])
            for group, own in zip(optimizer.param_groups, members[0].optimizers()[name].param_groups, strict=True):
                group["lr"] = own["lr"]
        self.trained_steps = members[0].trained_steps
        if self.value_norm is not None:
            for name, value in self.value_norm.state_dict().items():
                own = [m.value_norm.get_buffer(name) for m in members]
                self.value_norm.get_buffer(name).copy_(torch.cat(own) if value.dim() else own[0])

    def seed_learners(self) -> list[ActorCriticLearner]:
        """One solo learner per seed holding that seed's current networks (a solo run: itself)."""
        return self.write_networks() if self.members else [self]

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        if self.members:
            states = [m.state_dict() for m in self.write_members()]
            for state, generator in zip(states, self.action_rngs or [], strict=True):
                state["action_generator"] = generator.get_state()
            return {"seeds": states}
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            **{name: optimizer.state_dict() for name, optimizer in self.optimizers().items()},
            "value_norm": self.value_norm.state_dict() if self.value_norm is not None else None,
            "generator": self.rng.get_state(),
            "trained_env_steps": self.trained_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        if self.members:
            for member, own, generator in zip(self.members, state["seeds"], self.action_rngs or [], strict=True):
                member.load_state_dict(own)
                generator.set_state(own["action_generator"])
            self.read_members()
            return
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        for name, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state[name])
        if self.value_norm is not None:
            self.value_norm.load_state_dict(state["value_norm"])
        self.rng.set_state(state["generator"])
        self.trained_steps = state.get("trained_env_steps", 0)  # absent from checkpoints older than the decay


class PolicyGradientLearner(ActorCriticLearner, ABC):
    """A learner whose actor `AgentAdam` steps on minibatches of a surrogate (PPO, A2C). How the agents take their
    steps (all at once, or one after another) is the update scheme's (`mappo.SimultaneousUpdate`,
    `happo.SequentialUpdate`); the surrogate and the number of epochs are the family's (`PPOLearner`, A2C's)."""

    cfg: PolicyGradientConfig
    actor_optimizer: AgentAdam

    def make_actor_optimizer(self) -> AgentAdam:
        return AgentAdam(self.actor.parameters(), lr=self.cfg.lr, eps=self.cfg.opti_eps)

    @property
    @abstractmethod
    def actor_epochs(self) -> int:
        """Actor epochs per rollout."""

    @abstractmethod
    def surrogate(self, batch: ActorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Surrogate terms to maximise and entropies (M, k) of the batch's agents at its real steps, and
        diagnostics by their logged names (each (M, k), without gradients)."""


class PPOLearner(PolicyGradientLearner):
    """PPO's clipped surrogate, `ppo_epoch` epochs per rollout."""

    cfg: PPOConfig

    @property
    def actor_epochs(self) -> int:
        return self.cfg.ppo_epoch

    def surrogate(self, batch: ActorBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        log_probs, entropy = (batch.flat(x) for x in self.batch_log_probs_entropy(batch))  # (M, k)
        old_log_probs, advantages = batch.log_probs, batch.advantages
        ratio = torch.exp(log_probs - old_log_probs)
        surrogate = torch.minimum(
            ratio * advantages, ratio.clamp(1 - self.cfg.clip_param, 1 + self.cfg.clip_param) * advantages
        )
        with torch.no_grad():
            diagnostics = {
                "ratio": ratio.detach(),
                "approx_kl": (ratio - 1) - (log_probs - old_log_probs),
                "clip_frac": ((ratio - 1).abs() > self.cfg.clip_param).float(),
            }
        return surrogate, entropy, diagnostics


def seed_agent_metrics(agent_ids, values: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    """`losses/<agent>/<name>` per seed from (P·n,) per-virtual-agent values of each name, seed-major: one dict per
    seed, read from the device in one copy."""
    names = list(values)
    rows = torch.stack([values[name] for name in names]).view(len(names), -1, len(agent_ids)).cpu().tolist()
    return [
        {
            f"losses/{agent}/{name}": v
            for name, per_seed in zip(names, rows, strict=True)
            for agent, v in zip(agent_ids, per_seed[s], strict=True)
        }
        for s in range(len(rows[0]) if rows else 1)
    ]
