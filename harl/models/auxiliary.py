"""The architecture hooks every learner calls on the networks an architecture builds: an auxiliary loss that joins
the network's loss, and a maintenance schedule (e.g. periodic resets) driven by the env steps the learner trains on.

A part of a network that has such a term derives from `RegularisedPart` (a declaration, not a duck type; e.g.
Kaleidoscope's masked layers, `harl.models.kaleidoscope`). Actors and architecture-built critics offer the hooks
through `ArchitectureHooks`:

- `aux_loss(agents, task_loss)`: the sum of their parts' terms for the selected agents (all when None), which a
  learner adds to the loss it minimises for those agents (`task_loss`: that loss, each seed's (P,) — (1,) in a
  solo run — whose detached value a part may read, e.g. to scale its term); each seed's term (P,) (or 0-dim,
  broadcast, in a solo run), 0 for a network without such parts, so every architecture composes with every
  learner through the same line: `(task_loss + aux_loss(agents, task_loss)).sum()`.
- `advance(env_steps, run_env_steps)`: called once per training iteration with the env steps (each seed's) the
  iteration trained on and the run's total; parts run what falls due (their clocks are in their state, so a
  resumed run keeps the schedule).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import nn

Agents = torch.Tensor | Sequence[int] | None
"""The selected agents: a tensor or host list of agent indices, or None for all of them."""


class RegularisedPart(ABC):
    """A network part (an `nn.Module`) with an auxiliary loss and a maintenance schedule of its own."""

    @abstractmethod
    def aux_loss(self, agents: Agents, task_loss: torch.Tensor, record: bool = True) -> torch.Tensor:
        """Its term for the selected agents, to add to each seed's `task_loss` (P,): each seed's (P,), or 0-dim in a
        solo run; `record`: count this call in any running statistics the term keeps (False for re-evaluations at
        trial parameters, e.g. a line search)."""

    @abstractmethod
    def advance(self, env_steps: int, run_env_steps: int) -> None:
        """Count `env_steps` more trained env steps of a run of `run_env_steps`, and run what falls due."""


class ArchitectureHooks:
    """The hooks of a network built through an architecture (mixed into `nn.Module`s: actors, per-agent critics)."""

    def regularised_parts(self) -> list[RegularisedPart]:
        """Its parts that implement `RegularisedPart`."""
        assert isinstance(self, nn.Module)
        return [m for m in self.modules() if isinstance(m, RegularisedPart)]

    def aux_loss(self, agents: Agents, task_loss: torch.Tensor, record: bool = True) -> torch.Tensor | float:
        """The architecture's auxiliary loss for the selected agents, to add to each seed's `task_loss` (P,): (P,)
        or 0-dim (see `RegularisedPart.aux_loss`); 0 when it has none."""
        total: torch.Tensor | float = 0.0
        for part in self.regularised_parts():
            total = total + part.aux_loss(agents, task_loss, record)
        return total

    def advance(self, env_steps: int, run_env_steps: int) -> None:
        """Advance its parts' schedules by `env_steps` trained env steps of a run of `run_env_steps`."""
        for part in self.regularised_parts():
            part.advance(env_steps, run_env_steps)


def advance_networks(networks: Mapping[str, nn.Module], env_steps: int, run_env_steps: int) -> None:
    """Advance the schedules of every `RegularisedPart` of the given networks (a learner's `networks()`)."""
    for network in networks.values():
        for module in network.modules():
            if isinstance(module, RegularisedPart):
                module.advance(env_steps, run_env_steps)
