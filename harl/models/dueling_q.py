"""Per-agent dueling Q networks: HAD3QN's "actors" (HARL's `DuelingQNet`), for discrete actions.

Every agent's network is built through `arch.build_net(..., role="actor")` with one output per action plus one
for the state value, so every registered architecture (NoPS, FuPS, FuPS+ID, hypernetworks...) builds them. The
outputs combine as in the dueling architecture: Q_i(o, a) = V_i(o) + A_i(o, a) - mean_b A_i(o, b), the mean over
the agent's own actions (padded actions of agents with fewer actions are left out). HARL's network splits its
trunk into separate value and advantage MLPs; here the two streams share every hidden layer and part at the
output layer.

Actions are one-hot vectors (B, k, A) over each agent's own actions, as the joint Q critic reads them; the replay
buffer and the environment take action indices. An agent never selects a padded or unavailable action: greedy
choices take the masked argmax, exploration draws uniformly over the available actions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harl.config import ModelConfig
from harl.models.agent_mlp import ForwardRecord
from harl.models.distributions import CategoricalPolicies
from harl.models.off_policy import OffPolicyActor, net_outputs
from harl.models.policies import Exploration, actor_net_spec
from harl.registry import ArchEntry
from harl.spec import EnvSpec


class DuelingQActor(OffPolicyActor):
    """Every agent's dueling Q network on its own observation, greedy (or epsilon-greedy) over its own available
    actions.

    Args:
        spec: the environment's spec (discrete actions).
        arch: the architecture that builds the network.
        model_cfg: sizes, activation and normalisation layers.
        arch_cfg: the architecture's options.
    """

    def __init__(self, spec: EnvSpec, arch: ArchEntry, model_cfg: ModelConfig, arch_cfg) -> None:
        super().__init__(spec)
        self.n_actions = spec.act_dim_max
        net_spec = actor_net_spec(spec, spec.act_dim_max + 1, model_cfg)  # advantages (A) and the value (1)
        self.net = arch.build_net(spec=net_spec, arch_cfg=arch_cfg)

    def q_values(
        self, obs: torch.Tensor, agents: torch.Tensor | None = None, recorded: ForwardRecord | None = None
    ) -> torch.Tensor:
        """Q values (B, k, A) of the k selected agents (all when None) on obs (B, k, O): V + A - mean(A) over each
        agent's own actions (padded entries zero); `recorded`: the network's passes to replay (`net_outputs`)."""
        out = net_outputs(self.net, obs, agents, recorded)  # (B, k, A + 1)
        advantage, value = out[..., : self.n_actions], out[..., self.n_actions :]  # (B, k, A), (B, k, 1)
        own = self._rows(self.act_mask, agents)  # (k, A)
        mean_advantage = (advantage * own).sum(-1, keepdim=True) / own.sum(-1, keepdim=True)  # (B, k, 1)
        return (value + advantage - mean_advantage) * own

    def valid(self, agents: torch.Tensor | None, avail: torch.Tensor | None, batch: int) -> torch.Tensor:
        """(batch, k, A) bool: the selected agents' own actions that are available (`avail` (batch, k, A) or None)."""
        valid = self._rows(self.act_mask, agents).bool().expand(batch, -1, -1)
        return valid if avail is None else valid & avail.bool()

    def greedy(
        self,
        obs: torch.Tensor,
        agents: torch.Tensor | None = None,
        avail: torch.Tensor | None = None,
        recorded: ForwardRecord | None = None,
    ) -> torch.Tensor:
        """One-hot greedy actions (B, k, A): each selected agent's best own available action."""
        q = self.q_values(obs, agents, recorded)
        q = q.masked_fill(~self.valid(agents, avail, q.shape[0]), float("-inf"))
        return F.one_hot(q.argmax(-1), self.n_actions).to(q.dtype)

    def act(self, obs: torch.Tensor, avail: torch.Tensor | None, exploration: Exploration) -> tuple[torch.Tensor, None]:
        """Every agent's one-hot action (B, N, A): greedy, or with probability `exploration.epsilon` (one draw per
        agent and env) uniform over its own available actions; no log-probs."""
        actions = self.greedy(obs, None, avail)
        if exploration.epsilon > 0:
            explore = self.noise.rand_like(actions[..., :1]) < exploration.epsilon  # (B, N, 1)
            actions = torch.where(explore, self.random_actions(obs.shape[0], avail), actions)
        return actions, None

    def distribution(self, obs: torch.Tensor, avail: torch.Tensor | None = None) -> CategoricalPolicies:
        """Every agent's greedy policy (B, N, A) (one-hot), as it acts in deterministic evaluation."""
        return CategoricalPolicies(self.greedy(obs, None, avail))

    def env_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """One-hot actions (B, N, A) -> action indices (B, N, 1), as the environment takes them."""
        return actions.argmax(-1, keepdim=True)

    def stored_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """One-hot actions (B, N, A) are stored as indices (B, N, 1)."""
        return actions.argmax(-1, keepdim=True)

    def critic_actions(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored action indices (B, N, 1) -> one-hot actions (B, N, A)."""
        return F.one_hot(stored.squeeze(-1).long(), self.n_actions).to(self.act_mask.dtype)

    def random_actions(self, batch: int, avail: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot actions (batch, N, A) drawn uniformly over each agent's own available actions."""
        choice = self.noise.multinomial(self.valid(None, avail, batch).float()).squeeze(-1)  # (batch, N)
        return F.one_hot(choice, self.n_actions).to(self.act_mask.dtype)
