"""Assemble a run's configuration from the registries and YAML layers, and make its run folder."""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harl.config import (
    PACKAGE_CONFIG_DIR,
    ExperimentConfig,
    ModelConfig,
    RunConfig,
    apply_overrides,
    env_layer,
    read_yaml,
    split_main,
    tuned_config_path,
)
from harl.errors import ConfigError, UserError, shown
from harl.registry import (
    ALGORITHMS,
    AlgoEntry,
    RunSizes,
    check_compatible,
    get_algorithm,
    get_architecture,
    get_environment,
)
from harl.utils.memory import available_memory, format_bytes
from harl.utils.run_lock import RunLock


def default_config(algo: str, arch: str, env: str) -> ExperimentConfig:
    """Dataclass defaults for this algo/arch/env, before any YAML."""
    algo_entry, arch_entry, env_entry = get_algorithm(algo), get_architecture(arch), get_environment(env)
    check_compatible(algo_entry, arch_entry)
    return ExperimentConfig(
        algo_name=algo,
        arch_name=arch,
        env_name=env,
        run=RunConfig(),
        algo=algo_entry.config_cls(),
        env=env_entry.config_cls(),
        model=ModelConfig(),
        arch=arch_entry.config_cls(),
    )


def build_config(
    algo: str | None,
    arch: str | None,
    env: str | None,
    overrides: dict[str, Any] | None = None,
    load_config: str | Path | None = None,
    use_tuned: bool = True,
) -> tuple[ExperimentConfig, list[str]]:
    """Resolve a configuration: defaults < algo YAML < env YAML < tuned config < CLI overrides.

    `load_config` replaces the automatic choice of a tuned config (the file under
    `tuned_configs/<env>/<scenario>/` named `<algo>-<arch>.yaml` or `<algo>.yaml`). A config file's
    `main:` block supplies algo/arch/env names the caller left out and must agree with the others.
    Returns the config and the list of files applied, in order.
    """
    overrides = dict(overrides or {})
    loaded: dict[str, Any] = {}
    if load_config is not None:
        main, loaded = split_main(read_yaml(Path(load_config)), load_config)
        names = {"algo": algo, "arch": arch, "env": env}
        for key, value in main.items():
            if names[key] is None:
                names[key] = value
            elif names[key] != value:
                raise ConfigError(f"--{key} {names[key]} conflicts with {key}: {value} in {load_config}")
        algo, arch, env = names["algo"], names["arch"], names["env"]
    missing = [flag for flag, value in (("--algo", algo), ("--arch", arch), ("--env", env)) if value is None]
    if missing:
        raise UserError(f"missing {', '.join(missing)} (see --list for the registered names)")
    cfg = default_config(algo, arch, env)
    on_policy = get_algorithm(algo).on_policy
    sources: list[str] = []
    for path, layer in (
        (PACKAGE_CONFIG_DIR / "algos" / f"{algo}.yaml", None),
        (PACKAGE_CONFIG_DIR / "envs" / f"{env}.yaml", on_policy),
    ):
        if path.is_file():
            data = read_yaml(path)
            apply_overrides(
                cfg, learner_layer(env_layer(data, layer, arch), cfg) if layer is not None else data, str(path)
            )
            sources.append(str(path))
    if load_config is not None:
        apply_overrides(cfg, loaded, str(load_config))
        sources.append(str(load_config))
    elif use_tuned:
        probe = copy.deepcopy(cfg)
        apply_overrides(probe, overrides, "command line")
        probe.env.validate()
        tuned = tuned_config_path(env, probe.env.scenario_name(), algo, arch)
        if tuned is not None:
            main, data = split_main(read_yaml(tuned), tuned)
            apply_overrides(cfg, data, str(tuned))
            sources.append(str(tuned))
    apply_overrides(cfg, overrides, "command line")
    cfg.validate()
    check_arch_options(cfg)
    check_recurrent(cfg)
    check_seeds(cfg)
    check_workers(cfg)
    check_pretraining(cfg)
    cfg.algo.check_run(cfg, pretraining_steps(cfg))
    check_memory(cfg)
    return cfg, sources


def learner_layer(layer: dict[str, Any], cfg: ExperimentConfig) -> dict[str, Any]:
    """An env YAML's layer with its `algo` keys restricted to those the learner's config has: an `on_policy:` block
    sets what the on-policy learners share and what only some have (e.g. PPO's `ppo_epoch`, which HAA2C's and
    HATRPO's configs lack)."""
    if not isinstance(layer.get("algo"), dict):
        return layer
    fields = {f.name for f in dataclasses.fields(cfg.algo)}
    return {**layer, "algo": {key: value for key, value in layer["algo"].items() if key in fields}}


def config_from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Rebuild a saved config (a run's `config.yaml` or a checkpoint's `config`), then apply overrides."""
    main, sections = split_main(data, "saved config")
    if set(main) != {"algo", "arch", "env"}:
        raise ConfigError("saved config lacks main: {algo, arch, env}")
    cfg = default_config(main["algo"], main["arch"], main["env"])
    saved_arch = sections.get("arch") or {}
    if isinstance(saved_arch, dict):  # options newer than the saved config: what it was run with
        legacy = get_architecture(main["arch"]).legacy_options
        sections = {**sections, "arch": {**{k: v for k, v in legacy.items() if k not in saved_arch}, **saved_arch}}
    apply_overrides(cfg, sections, "saved config")
    apply_overrides(cfg, overrides or {}, "command line")
    cfg.validate()
    check_arch_options(cfg)
    check_recurrent(cfg)
    cfg.algo.check_run(cfg, None)
    check_seeds(cfg)
    check_memory(cfg)
    return cfg


def check_arch_options(cfg: ExperimentConfig) -> None:
    """Refuse architecture options the learner cannot use (e.g. a shared embedding without a generated critic)."""
    check_compatible(get_algorithm(cfg.algo_name), get_architecture(cfg.arch_name), arch_cfg=cfg.arch)


def learners_that(can: Callable[[AlgoEntry], bool]) -> str:
    """The registered learners whose entry declares a capability, comma-separated (for refusals)."""
    return ", ".join(sorted(name for name, entry in ALGORITHMS.items() if can(entry)))


def check_recurrent(cfg: ExperimentConfig) -> None:
    """Refuse `model.recurrent` where it cannot train: a feed-forward-only learner or SND logging (it scores
    policies on single observations); what the learner's own settings allow, its config's `check_run` says."""
    if not cfg.model.recurrent:
        return
    if not get_algorithm(cfg.algo_name).recurrent:
        able = learners_that(lambda entry: entry.recurrent)
        raise ConfigError(
            f"--model.recurrent true: {cfg.algo_name} trains feed-forward policies only; recurrent policies "
            f"need an on-policy learner ({able})"
        )
    if cfg.run.snd_interval > 0:
        raise ConfigError("--snd_interval needs feed-forward policies (SND scores single observations); set it to 0")


def check_seeds(cfg: ExperimentConfig) -> None:
    """Refuse `--seeds N` (N > 1) where the seeds cannot train as one batch: a learner or architecture that does
    not declare it (`batched_seeds` in their registry entries)."""
    seeds = cfg.run.seeds
    if seeds == 1:
        return
    if not get_algorithm(cfg.algo_name).batched_seeds:
        able = learners_that(lambda entry: entry.batched_seeds)
        raise ConfigError(
            f"--seeds {seeds}: {cfg.algo_name} trains one seed per process so far; learners that batch seeds: {able} "
            "(or run the seeds as separate processes, e.g. with harl-sweep)"
        )
    reason = get_architecture(cfg.arch_name).batched_seeds(cfg.arch)
    if reason:
        raise ConfigError(f"--seeds {seeds} with --arch {cfg.arch_name}: {reason}")


def check_workers(cfg: ExperimentConfig) -> None:
    """Refuse (for a new run) more env workers than the training envs can use: each steps at least one env, and
    the training process steps a share itself."""
    run = cfg.run
    envs = run.n_rollout_threads * run.seeds
    if run.n_workers > envs - 1:
        which = "n_rollout_threads × seeds" if run.seeds > 1 else "n_rollout_threads"
        raise ConfigError(
            f"--n_workers {run.n_workers}: the {envs} training envs ({which}) take at most {envs - 1} env workers "
            "(the training process steps a share itself); lower --n_workers, or use -1 (one per core)"
        )


def pretraining_steps(cfg: ExperimentConfig) -> int:
    """The env steps the architecture's pre-training (`ArchEntry.pretrain`) will take in a new run of `cfg`."""
    pretraining = get_architecture(cfg.arch_name).pretrain
    return 0 if pretraining is None else pretraining.env_steps(cfg.arch, cfg.run.n_rollout_threads)


def check_pretraining(cfg: ExperimentConfig) -> None:
    """Refuse (for a new run) a budget the architecture's pre-training would use up: its env steps count in it."""
    steps = pretraining_steps(cfg)
    if steps and steps >= cfg.run.num_env_steps:
        raise ConfigError(
            f"--num_env_steps {cfg.run.num_env_steps} would train nothing: --arch {cfg.arch_name}'s pre-training "
            f"takes {steps} env steps of it first; raise --num_env_steps above {steps} or shorten the pre-training"
        )


def run_sizes(cfg: ExperimentConfig) -> RunSizes:
    """What an env's memory estimate reads of the run: its sizes, its learner's rollout length and whether its
    architecture keeps per-agent layers (their declarations)."""
    return RunSizes(
        n_envs=cfg.run.seeds * cfg.run.n_rollout_threads,
        n_eval_envs=cfg.run.n_eval_rollout_threads,
        seeds=cfg.run.seeds,
        actor_width=cfg.model.hidden_sizes[-1],
        agent_copies=not get_architecture(cfg.arch_name).shares_parameters,
        rollout_length=cfg.algo.rollout_length(),
    )


def check_memory(cfg: ExperimentConfig) -> None:
    """Refuse a run whose env's `memory_estimate` (a lower bound) exceeds the memory its device has available."""
    estimate = get_environment(cfg.env_name).memory_estimate
    available = None if estimate is None else available_memory(cfg.run.device)  # None: cannot be told
    if estimate is None or available is None:
        return
    parts = sorted(estimate(cfg.env, run_sizes(cfg)).items(), key=lambda item: -item[1])
    need = sum(size for _, size in parts)
    if need > available:
        listed = ", ".join(f"{name} {format_bytes(size)}" for name, size in parts)
        raise ConfigError(
            f"this run needs at least {format_bytes(need)} on {cfg.run.device} ({listed}), more than the "
            f"{format_bytes(available)} available there; use fewer agents or environments"
            + (f" (or fewer than --seeds {cfg.run.seeds})" if cfg.run.seeds > 1 else "")
        )


NAME_MAX = 255
"""The longest folder name (in bytes) common file systems (ext4, XFS, APFS, NTFS) accept."""


def run_folder_base(cfg: ExperimentConfig) -> Path:
    """`<log_dir>/<env>/<scenario>/<algo>-<arch>/<exp_name>/`, refusing names that would leave `log_dir`.

    Every level below `log_dir` must be one plain folder name: not empty, not `.` or `..`, without a
    path separator.
    """
    levels = {
        "--env": cfg.env_name,
        "the scenario name": cfg.env.scenario_name(),
        "--algo/--arch": f"{cfg.algo_name}-{cfg.arch_name}",
        "--exp_name": cfg.run.exp_name,
    }
    for flag, name in levels.items():
        if name in ("", ".", "..") or any(sep in name for sep in ("/", "\\", os.sep, "\0")):
            raise UserError(
                f"{flag} {shown(name)} must be a plain folder name (not empty, not . or .., no / or \\): "
                "it becomes one level of the run folder under --log_dir"
            )
        if len(os.fsencode(name)) > NAME_MAX:
            raise UserError(
                f"{flag} {shown(name)} is {len(os.fsencode(name))} bytes long; a folder name takes at most "
                f"{NAME_MAX} (it becomes one level of the run folder under --log_dir)"
            )
    return Path(cfg.run.log_dir).joinpath(*levels.values())


def run_folder(cfg: ExperimentConfig) -> RunLock:
    """Create and lock `<run_folder_base>/seed-<k>-<timestamp>/` (made unique); the lock's `folder` is it.

    The folder appears already locked (see `harl.utils.run_lock`), so no other process sees it unheld.
    `RunLock.discard()` removes it again (with the parents it created) when the run cannot start.
    """
    base = run_folder_base(cfg)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        return RunLock.create(base, f"seed-{cfg.run.seed}-{stamp}")
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise UserError(
            f"--log_dir {cfg.run.log_dir}: cannot create the run folder: {err.strerror or err}{where}"
        ) from None


def check_env_compatible(cfg: ExperimentConfig, action_type: str) -> None:
    """Refuse a learner × architecture × run options that cannot work on an env with these actions."""
    algo = get_algorithm(cfg.algo_name)
    check_compatible(algo, get_architecture(cfg.arch_name), action_type)
    if getattr(cfg.algo, "discrete_policy_loss", "gumbel") == "exact" and action_type != "discrete":
        raise UserError(
            f"--discrete_policy_loss exact: this environment's actions are {action_type}; the exact expectation "
            "is over discrete actions (use the default, gumbel, or a discrete env)"
        )
    if cfg.run.snd_interval > 0 and algo.actor_kind.get(action_type) == "deterministic":
        raise UserError(
            f"--snd_interval: {cfg.algo_name}'s actors are deterministic; SND compares action "
            "distributions (use a stochastic learner, e.g. hasac/masac/mappo)"
        )
