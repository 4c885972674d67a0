"""What the off-policy update benchmarks share: env specs at real and replicated sizes, and a replay buffer
filled with random transitions (not a test)."""

from __future__ import annotations

import numpy as np
import torch

from harl.buffers.replay import ReplayBuffer
from harl.envs.mamujoco import MaMuJoCoConfig, MaMuJoCoEnv
from harl.spec import EnvSpec

N_ENVS = 20


def mamujoco_spec(scenario: str, agent_conf: str) -> EnvSpec:
    """A MaMuJoCo scenario's spec with global observations (HARL's setting)."""
    return MaMuJoCoEnv(MaMuJoCoConfig(scenario=scenario, agent_conf=agent_conf, obs_mode="global")).spec


def replicated_spec(base: EnvSpec, n_agents: int) -> EnvSpec:
    """`n_agents` agents, each with the per-agent sizes of `base`'s first agent (same state)."""
    return EnvSpec(
        agent_ids=tuple(f"agent_{i}" for i in range(n_agents)),
        obs_dims=(base.obs_dims[0],) * n_agents,
        state_dim=base.state_dim,
        action_type="continuous",
        act_dims=(base.act_dims[0],) * n_agents,
        act_low=np.repeat(base.act_low[:1], n_agents, axis=0),
        act_high=np.repeat(base.act_high[:1], n_agents, axis=0),
    )


def filled_buffer(spec: EnvSpec, device: torch.device, n_step: int) -> ReplayBuffer:
    """A full 100k-transition replay buffer of random transitions (rare episode ends) with n-step targets."""
    buffer = ReplayBuffer(spec, 100_000, N_ENVS, n_step, 0.99, device)
    e, n = N_ENVS, spec.n_agents
    for _ in range(buffer.length):
        ended = torch.rand(e, device=device) < 0.002
        buffer.insert(
            torch.randn(e, n, spec.obs_dim_max, device=device),
            torch.randn(e, spec.state_dim, device=device),
            torch.rand(e, n, spec.act_dim_max, device=device) * 2 - 1,
            torch.randn(e, n, device=device),
            torch.randn(e, n, spec.obs_dim_max, device=device),
            torch.randn(e, spec.state_dim, device=device),
            ended & (torch.rand(e, device=device) < 0.5),
            ended,
        )
    return buffer


def uniform_spec(n_agents: int, obs_dim: int, act_dim: int, state_dim: int) -> EnvSpec:
    """`n_agents` continuous agents of equal sizes, actions in [-1, 1]."""
    return EnvSpec(
        agent_ids=tuple(f"agent_{i}" for i in range(n_agents)),
        obs_dims=(obs_dim,) * n_agents,
        state_dim=state_dim,
        action_type="continuous",
        act_dims=(act_dim,) * n_agents,
        act_low=-np.ones((n_agents, act_dim), dtype=np.float32),
        act_high=np.ones((n_agents, act_dim), dtype=np.float32),
    )


def matmul_work(
    spec: EnvSpec, hidden: list[int], n_q: int = 2, sequential: bool = True, reference: bool = False
) -> float:
    """Multiply-adds of the matmuls of one `nops` HASAC (`sequential`) or MASAC update, per sample (a backward
    pass counted as twice its forward, less the input gradient of the first layer where inputs need none; the
    critic's backward in the actor update as its input gradients only).

    Ours (`reference=False`) computes the critic's state term once per update, sends each sample's gradient
    back through its minimum Q head only (half the twin critic's hidden input gradients), and in HASAC replays
    each agent's pass of the starting joint action in its turn (`AgentMLP.replay`) and does not re-sample the
    last agent's action; `reference=True` counts the straightforward update: the whole critic input in every
    turn, every head's backward, every agent's pass recomputed in its turn, every agent's re-sample."""
    n, act = spec.n_agents, spec.act_dim_max
    actor = [spec.obs_dim_max, *hidden, 2 * act]  # mean and log-std
    actor_fwd = sum(i * o for i, o in zip(actor[:-1], actor[1:]))
    actor_bwd = 2 * actor_fwd - actor[0] * actor[1]  # no gradient w.r.t. observations
    critic_in = spec.state_dim + n * act
    critic = [critic_in, *hidden, 1]
    critic_fwd = n_q * sum(i * o for i, o in zip(critic[:-1], critic[1:]))
    critic_bwd = 2 * critic_fwd - n_q * critic_in * hidden[0]
    critic_update = n * actor_fwd + 2 * critic_fwd + critic_bwd  # next actions, target Q, Q, backward
    if reference:  # the actor update's critic pass and its input gradients, every head, the whole input
        actor_critic = 2 * critic_fwd
    else:  # the state term reused; input gradients through one head per sample, to the actions only
        action_part = critic_fwd - n_q * spec.state_dim * hidden[0]
        actor_critic = action_part + action_part / n_q
    if not sequential:  # every agent's action, one critic pass and its input gradients, every actor's backward
        return critic_update + n * (actor_fwd + actor_bwd) + actor_critic
    joint_actions = n * actor_fwd  # the current joint action, before the agents' turns
    resamples = n if reference else n - 1  # ours does not re-sample the last agent, whose action nobody reads
    turn_fwd = actor_fwd if reference else 0  # ours replays the pass of the starting joint action
    turns = n * (turn_fwd + actor_bwd + actor_critic) + resamples * actor_fwd
    return critic_update + joint_actions + turns
