"""The three registries everything composes through: algorithms, architectures, environments.

Registries are plain dicts filled where each thing is defined (`register_*` at import time).
Extensions (such as `hypermarl_ext`) add entries through the same functions; they are found
through the `harl.extensions` entry-point group (declared in pyproject.toml) or the comma-separated
`HARL_EXTENSIONS` environment variable, and imported by `load_extensions()`.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

from harl.errors import UserError, shown


@dataclass(frozen=True)
class AlgoEntry:
    """A learner and what it can do.

    Attributes:
        name: registry key (`--algo`).
        learner_cls: class with `__init__(spec, cfg, arch, device)` (see `harl.algos.base.Learner`).
        config_cls: dataclass of the algorithm's hyper-parameters (the `algo` config section), with `validate()`
            (its own values) and `check_run(experiment_cfg, pretrained_steps)`, which refuses in one line a run its
            settings cannot train (e.g. a budget that ends before its first update); `pretrained_steps` is what a
            new run spends before training (the architecture's pre-training), None for a saved run's config.
        on_policy: True for PPO-style learners (rollout buffer), False for replay-buffer learners.
        sequential: True for heterogeneous-agent (HA) learners that update agents one after another.
        discrete: supports discrete action spaces.
        continuous: supports continuous action spaces.
        actor_kind: the actor distribution it needs per action type, e.g. {"continuous": "gaussian"}.
        recurrent: can train recurrent policies (`model.recurrent`: GRU networks trained on sequences).
        batched_seeds: can train several seeds as one batched computation (`--seeds N`, `harl.models.population`).
        description: one line for `--list`.
    """

    name: str
    learner_cls: type
    config_cls: type
    on_policy: bool
    sequential: bool
    discrete: bool
    continuous: bool
    actor_kind: dict[str, str]
    recurrent: bool = False
    batched_seeds: bool = False
    description: str = ""


@dataclass(frozen=True)
class ArchEntry:
    """A way of parameterising the per-agent networks (NoPS, FuPS, HyperMARL, ...).

    Attributes:
        name: registry key (`--arch`).
        config_cls: dataclass of the architecture's options (the `arch` config section).
        build_net: `(*, spec: harl.models.net_spec.NetSpec, arch_cfg) -> AgentNet`, a module mapping
            (B, k, in_dim) to (B, k, out_dim) for k selected agents (all by default) at once.
        build_agent_param: `(*, n_agents, width, init_value, role, arch_cfg) -> AgentParam`, a module returning a
            (n_agents, width) tensor (per agent or shared), used for state-independent log-stds.
        shares_parameters: True when agents' networks share trainable parameters (FuPS, hypernetworks).
        recurrent_core: how recurrent networks (`model.recurrent`) parameterise their observation encoder and GRU:
            "per_agent" (stacked independent weights) or "shared" (one set for all agents). The feed-forward
            head after the GRU is always `build_net`'s.
        supports: `(algo_entry, arch_cfg) -> str | None`, a reason this learner cannot use the architecture
            with these options, or None.
        link_networks: `(actor, critic, arch_cfg) -> None`, called by learners whose critic the architecture
            builds per agent, after building both networks and before making their optimisers (e.g. to let
            the critic read a tensor the actor owns).
        legacy_options: values of options that did not exist when a run's config was saved: a saved config
            (resume, evaluation) that lacks one of these keys gets this value, which rebuilds what it ran.
        batched_seeds: `(arch_cfg) -> str | None`, a reason its networks (with these options) cannot train several
            seeds as one batch (`--seeds N`: they must be `AgentMLP`s whose weights depend on their own parameters
            only), or None.
        pretrain: a phase the architecture runs on the training env before its networks are built (see
            `Pretraining`; e.g. SePS learns which agents share a network), or None. A new run's runner calls it,
            whatever the learner; a resumed or evaluated run does not: its saved config holds what it learned.
        description: one line for `--list`.
    """

    name: str
    config_cls: type
    build_net: Callable[..., Any]
    build_agent_param: Callable[..., Any]
    shares_parameters: bool
    recurrent_core: Literal["shared", "per_agent"] = "shared"
    supports: Callable[[AlgoEntry, Any], str | None] = lambda algo, arch_cfg: None
    link_networks: Callable[[Any, Any, Any], None] = lambda actor, critic, arch_cfg: None
    legacy_options: Mapping[str, Any] = field(default_factory=dict)
    batched_seeds: Callable[[Any], str | None] = lambda arch_cfg: None
    pretrain: Pretraining | None = None
    description: str = ""


@dataclass(frozen=True)
class Pretrained:
    """What an architecture's pre-training (`Pretraining.run`) gives the run.

    Attributes:
        arch_cfg: the architecture's options with what it learned (the networks are built from them, and the run's
            saved config holds them, so resuming and evaluating rebuild the same networks without pre-training).
        env_steps: the env steps it took (counted in the run's env steps, so in its `num_env_steps` budget).
        metrics: scalars logged at the run's first row (e.g. `pretrain/env_steps`).
        summary: one line printed for the run's log.
    """

    arch_cfg: Any
    env_steps: int
    metrics: dict[str, float]
    summary: str


@dataclass(frozen=True)
class Pretraining:
    """A phase an architecture runs on a new run's training env before the learner (and so its networks) is built.

    Attributes:
        env_steps: `(arch_cfg, n_envs) -> int`, the env steps it will take with these options on `n_envs` training
            envs (0: nothing left to learn, e.g. options that already hold its result); read before a run starts,
            to refuse a budget it would use up.
        run: `(*, env, arch_cfg, seeds, device) -> list[Pretrained] | None`, run it on the run's vectorised
            training env (`harl.envs.vector`; the runner resets it afterwards), which holds the envs of `seeds` side
            by side (seed-major: one seed for a solo run, P for a batched one), and return each seed's result, as a
            solo run of that seed would learn it, deterministically for its seed and leaving the global random
            streams as it found them; None when the options already hold its result. Bad options it can only judge
            on the env (e.g. against the number of agents) raise `harl.errors.UserError`.
        learned: the options it fills in (`Pretrained.arch_cfg`): the seeds of a batched run may differ in them
            and in nothing else.
    """

    env_steps: Callable[[Any, int], int]
    run: Callable[..., list[Pretrained] | None]
    learned: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSizes:
    """What an env's memory estimate reads of a run besides the env's own options, gathered by generic code from the
    run's config and its learner's and architecture's declarations (`harl.experiment.run_sizes`).

    Attributes:
        n_envs: training envs of every seed together.
        n_eval_envs: evaluation envs.
        seeds: seeds trained as one batch (each with its own networks and rollout buffer).
        actor_width: features into the actor's output layer (the last hidden size).
        agent_copies: the architecture keeps per-agent layers (it shares no parameters between agents).
        rollout_length: vector steps an on-policy rollout buffer holds (0: the learner keeps none).
    """

    n_envs: int
    n_eval_envs: int
    seeds: int
    actor_width: int
    agent_copies: bool
    rollout_length: int


@dataclass(frozen=True)
class EnvEntry:
    """An environment family.

    Attributes:
        name: registry key (`--env`).
        config_cls: dataclass of the env options (the `env` config section); must define
            `scenario_name() -> str` (used for run folders and tuned configs) and `validate()`.
        make: `(env_cfg, *, n_envs, seed, device, n_workers=0, seeds=1) -> VecEnv`: `n_envs` envs, env k seeded
            with `seed + k`, stepped by `n_workers` worker processes beside the calling one where the env supports
            it; `seeds` > 1: the envs of that many seeds side by side (seed-major), env k of seed s seeded with
            `seed + s + k` as its solo run's where the env seeds envs one by one (`harl.envs.vector`).
        scenarios: `() -> list[str]`, the valid scenario names, for `--list` and error messages.
        description: one line for `--list`.
        memory_estimate: `(env_cfg, sizes: RunSizes) -> {part: bytes}`, what a run allocates at least on its
            device, estimated from the env's options and the run's sizes alone; a run that cannot fit is refused
            before allocating (None: no estimate).
        action_type: `(env_cfg) -> "continuous" | "discrete"`, the actions an env of this config has, known
            without building it, so that options the actions rule out are refused before a run starts (None:
            checked once the env is built).
    """

    name: str
    config_cls: type
    make: Callable[..., Any]
    scenarios: Callable[[], list[str]]
    description: str = ""
    memory_estimate: Callable[[Any, RunSizes], dict[str, int]] | None = None
    action_type: Callable[[Any], str] | None = None


ALGORITHMS: dict[str, AlgoEntry] = {}
ARCHITECTURES: dict[str, ArchEntry] = {}
ENVIRONMENTS: dict[str, EnvEntry] = {}
ENVIRONMENT_MODULES: dict[str, str] = {}
"""Environments registered by name only, with the module whose import registers them (imported on lookup)."""


def _register(registry: dict, entry: Any) -> Any:
    if entry.name in registry and registry[entry.name] != entry:
        raise ValueError(f"{entry.name!r} is already registered")
    registry[entry.name] = entry
    return entry


def register_algorithm(entry: AlgoEntry) -> AlgoEntry:
    return _register(ALGORITHMS, entry)


def register_architecture(entry: ArchEntry) -> ArchEntry:
    return _register(ARCHITECTURES, entry)


def register_environment(entry: EnvEntry) -> EnvEntry:
    return _register(ENVIRONMENTS, entry)


def register_environment_module(name: str, module: str) -> None:
    """Announce environment `name`, registered by importing `module` the first time it is looked up."""
    ENVIRONMENT_MODULES[name] = module


_loaded = False


def load_extensions() -> None:
    """Import harl's built-in modules and every registered extension (idempotent)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module("harl.envs")
    importlib.import_module("harl.models.architectures")
    importlib.import_module("harl.models.dico")
    importlib.import_module("harl.models.kaleidoscope")
    importlib.import_module("harl.models.seps")
    importlib.import_module("harl.algos")
    names = [ep.value for ep in entry_points(group="harl.extensions")]
    names += [n.strip() for n in os.environ.get("HARL_EXTENSIONS", "").split(",") if n.strip()]
    for module in dict.fromkeys(names):
        importlib.import_module(module)


def _lookup(registry: dict, kind: str, name: str) -> Any:
    load_extensions()
    if name not in registry:
        raise UserError(f"unknown {kind} {shown(name)}; valid: {', '.join(sorted(registry))}")
    return registry[name]


def get_algorithm(name: str) -> AlgoEntry:
    return _lookup(ALGORITHMS, "algorithm", name)


def get_architecture(name: str) -> ArchEntry:
    return _lookup(ARCHITECTURES, "architecture", name)


def get_environment(name: str) -> EnvEntry:
    load_extensions()
    if name not in ENVIRONMENTS and name in ENVIRONMENT_MODULES:
        importlib.import_module(ENVIRONMENT_MODULES[name])
    if name not in ENVIRONMENTS:
        valid = ", ".join(sorted({*ENVIRONMENTS, *ENVIRONMENT_MODULES}))
        raise UserError(f"unknown environment {shown(name)}; valid: {valid}")
    return ENVIRONMENTS[name]


def all_environments() -> dict[str, EnvEntry]:
    """Every environment, importing the adapters registered by name only (for `--list` and tests)."""
    load_extensions()
    for name in ENVIRONMENT_MODULES:
        get_environment(name)
    return dict(sorted(ENVIRONMENTS.items()))


def check_compatible(
    algo: AlgoEntry, arch: ArchEntry, action_type: str | None = None, arch_cfg: Any | None = None
) -> None:
    """Refuse an impossible algorithm × architecture (× its options, × action type) combination with a clear message."""
    reason = arch.supports(algo, arch_cfg) if arch_cfg is not None else None
    if reason:
        raise UserError(f"--algo {algo.name} cannot use --arch {arch.name}: {reason}")
    if action_type == "discrete" and not algo.discrete:
        raise UserError(f"--algo {algo.name} supports continuous actions only; this environment's are discrete")
    if action_type == "continuous" and not algo.continuous:
        raise UserError(f"--algo {algo.name} supports discrete actions only; this environment's are continuous")
