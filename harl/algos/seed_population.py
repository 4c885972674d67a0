"""The members of a learner that trains several seeds at once (`--seeds N`, see `harl.models.population`).

A population learner of seeds K .. K+P-1 first builds P solo learners, its *members*: member s exactly as a
solo run of seed K+s builds its learner (the torch RNG seeded with that seed first), so every seed starts from
the parameters its solo run starts from. The population's networks stack the members' (`population_network`),
and its optimiser states and value normalisers stack theirs. The members then serve as each seed's solo view:
the learner writes the population's current networks into them (so a seed is evaluated and diagnosed as a solo
run is), and for a checkpoint its optimiser states and normalisers too (so a seed's checkpoint *is* a solo run's);
it stacks their state back on resume.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from harl.config import ExperimentConfig
from harl.models.agent_mlp import is_per_agent
from harl.models.population import StackedMembers, member_view, stack_members

LearnerT = TypeVar("LearnerT")


def member_config(cfg: ExperimentConfig, index: int) -> ExperimentConfig:
    """The solo config of a population's seed `index`: `run.seed` + index, one seed, its own architecture options
    where the seeds learned their own (`ExperimentConfig.seed_archs`)."""
    member = copy.deepcopy(cfg)
    member.run.seed = cfg.run.seed + index
    member.run.seeds = 1
    if cfg.seed_archs is not None:
        member.arch, member.seed_archs = copy.deepcopy(cfg.seed_archs[index]), None
    return member


def build_members(
    build: Callable[[ExperimentConfig], LearnerT], cfg: ExperimentConfig, device: torch.device
) -> tuple[list[LearnerT], list[torch.Generator]]:
    """The members of a population of `cfg.run.seeds` seeds, each built by `build(member_config)` after seeding
    torch with its seed (as a solo run's learner is), and each seed's action-sampling generator: the stream a
    solo run of that seed samples its actions from (torch's global RNG right after building its learner)."""
    members, rngs = [], []
    for index in range(cfg.run.seeds):
        member_cfg = member_config(cfg, index)
        torch.manual_seed(member_cfg.run.seed)
        members.append(build(member_cfg))
        generator = torch.Generator(device=device)
        if device.type == "cpu":
            generator.set_state(torch.get_rng_state())
        else:  # building on the CPU leaves the device's stream where seeding put it
            generator.manual_seed(member_cfg.run.seed)
        rngs.append(generator)
    return members, rngs


def _rows(value: torch.Tensor, param: torch.Tensor, seeds: int) -> torch.Tensor:
    """(P, ...) a population optimiser state tensor seen per seed: moments like their parameter, per-agent step
    counts (P·n,) by seed; a scalar step count is every seed's."""
    if value.dim() == 0:  # a shared step count: every seed steps together
        return value.expand(seeds)
    if value.shape == param.shape:  # moments (or the step counts of a 1-D per-agent parameter, alike)
        return value.unflatten(0, (seeds, -1)) if is_per_agent(param) else value
    return value.view(seeds, -1)  # per-agent step counts (P·n,)


@torch.no_grad()
def write_optimizer(population: torch.optim.Optimizer, members: Sequence[torch.optim.Optimizer]) -> None:
    """Each member optimiser's state: its seed's rows of the population's."""
    seeds = len(members)
    params = [p for group in population.param_groups for p in group["params"]]
    member_params = [[p for group in m.param_groups for p in group["params"]] for m in members]
    for k, param in enumerate(params):
        state = population.state.get(param)
        for member, own in zip(members, member_params, strict=True):
            member.state.pop(own[k], None)
        if not state:
            continue
        per_seed = {key: _rows(value, param, seeds) for key, value in state.items()}
        for s, (member, own) in enumerate(zip(members, member_params, strict=True)):
            member.state[own[k]] = {key: rows[s].clone() for key, rows in per_seed.items()}


@torch.no_grad()
def read_optimizer(population: torch.optim.Optimizer, members: Sequence[torch.optim.Optimizer]) -> None:
    """The population optimiser's state stacked from its members' (through `load_state_dict`, so step counts
    that differ between agents are noticed)."""
    params = [p for group in population.param_groups for p in group["params"]]
    member_params = [[p for group in m.param_groups for p in group["params"]] for m in members]
    state = {}
    for k, param in enumerate(params):
        own = [m.state.get(mp[k]) for m, mp in zip(members, member_params, strict=True)]
        if not all(own):
            continue
        stacked = {}
        for key in own[0]:
            values = [o[key] for o in own]
            if key == "step" and values[0].dim() == 0:  # a shared step count: every seed steps together
                stacked[key] = values[0].clone()
            else:
                rows = stack_members(values)
                stacked[key] = rows.flatten(0, 1) if is_per_agent(param) else rows
        state[k] = stacked
    population.load_state_dict({"state": state, "param_groups": population.state_dict()["param_groups"]})


@torch.no_grad()
def write_networks(population: torch.nn.Module, members: Sequence[torch.nn.Module]) -> None:
    """Each member network's parameters (matching parameters by order) and its layer sources' buffers and state: its
    seed's rows of the population's."""
    for param, *member_params in zip(population.parameters(), *(m.parameters() for m in members), strict=True):
        for member_param, row in zip(member_params, member_view(param, len(members)), strict=True):
            member_param.copy_(row)
    for module in population.modules():
        if isinstance(module, StackedMembers):
            module.write_members()


@torch.no_grad()
def read_networks(population: torch.nn.Module, members: Sequence[torch.nn.Module]) -> None:
    """The population network's parameters (matching parameters by order) and its layer sources' buffers and state,
    stacked from its members'."""
    for param, *member_params in zip(population.parameters(), *(m.parameters() for m in members), strict=True):
        member_view(param, len(members)).copy_(torch.stack([p.detach() for p in member_params]))
    for module in population.modules():
        if isinstance(module, StackedMembers):
            module.read_members()
