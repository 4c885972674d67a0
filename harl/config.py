"""Typed experiment configuration with strict, layered overrides.

A run's configuration has five sections, each a dataclass:

- `run`   (`RunConfig`): budget, seeding, device, logging, evaluation, checkpoints.
- `algo`  (the algorithm's config class): learner hyper-parameters.
- `env`   (the environment's config class): scenario and env options.
- `model` (`ModelConfig`): network sizes and layers, shared by every architecture.
- `arch`  (the architecture's config class): architecture options (e.g. hypernetwork sizes).

Values are layered: dataclass defaults < `harl/configs/algos/<algo>.yaml` <
`harl/configs/envs/<env>.yaml` < tuned config (`--load_config`, or the matching file under
`tuned_configs/`) < CLI overrides. Every layer goes through `apply_overrides`, which accepts
`section.key` or a bare `key` whose leaf name is unique, parses strings by the field's declared
type (never `eval`) and rejects unknown, ambiguous or ill-typed keys with a `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from harl.errors import ConfigError

SECTIONS = ("run", "algo", "env", "model", "arch")
PACKAGE_CONFIG_DIR = Path(__file__).parent / "configs"
TUNED_CONFIG_DIR = Path(__file__).parent / "tuned_configs"


@dataclass
class RunConfig:
    """Budget, seeding, device, logging, evaluation and checkpointing of one run."""

    num_env_steps: int = 1_000_000
    """Total environment steps (vector steps × n_rollout_threads) to train for."""
    n_rollout_threads: int = 20
    """Number of parallel training environments."""
    n_workers: int = -1
    """Env worker processes stepping the training envs beside the training process, which steps an equal
    share itself while they step theirs (-1: one stepping process per core, so cores - 1 workers; capped
    at envs - 1; 0: every env in-process). Ignored by natively vectorised envs (matrix, vmas, smax)."""
    seed: int = 1
    """Seed of everything random in the run (torch, numpy, python, envs)."""
    device: str = "cpu"
    """Training device: cpu, cuda or cuda:N."""
    torch_threads: int = 0
    """Intra-op threads for torch on CPU (0: torch's default)."""
    log_dir: str = "results"
    """Root folder of run folders."""
    exp_name: str = "default"
    """Experiment name, one level of the run folder."""
    log_interval: int = 0
    """Env steps between training log rows (0: after every training iteration)."""
    eval_interval: int = 100_000
    """Env steps between evaluations (0: only at the end)."""
    eval_episodes: int = 20
    """Episodes per evaluation."""
    n_eval_rollout_threads: int = 10
    """Parallel evaluation environments."""
    eval_deterministic: bool = True
    """Evaluate the mode of each policy instead of sampling."""
    save_interval: int = 200_000
    """Env steps between checkpoints (a checkpoint is always written at the end)."""
    keep_checkpoints: int = 3
    """How many of the latest checkpoints to keep."""
    progress_bar: bool = True
    """Show a tqdm progress bar (only when stderr is a terminal)."""
    snd_interval: int = 0
    """Env steps between `diversity/snd` logs, scored on the latest collected observations (0: never)."""
    snd_max_obs: int = 1000
    """Joint observations (an evenly spaced subset of the latest rollout) the SND is computed on."""
    snd_samples: int = 64
    """Monte-Carlo draws per distribution for Gaussian policies' SND."""
    grad_stats: bool = False
    """Log `grad/param_variance` and `grad/noise` of the actor gradients at every update."""
    time_limit_minutes: float = 0.0
    """Wall-clock budget of this process (0: none): when spent, the run ends as at num_env_steps (final
    evaluation and checkpoint); `--resume` with a larger budget continues it."""

    def validate(self) -> None:
        positive(
            self,
            "num_env_steps",
            "n_rollout_threads",
            "eval_episodes",
            "n_eval_rollout_threads",
            "save_interval",
            "keep_checkpoints",
        )
        non_negative(self, "eval_interval", "log_interval", "torch_threads", "time_limit_minutes", "snd_interval")
        positive(self, "snd_max_obs", "snd_samples")
        if self.n_workers < -1:
            raise ConfigError("run.n_workers must be -1 (auto), 0 (in-process) or a positive count")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ConfigError(f"run.device must be cpu, cuda or cuda:N, got {self.device!r}")


@dataclass
class ModelConfig:
    """Network shape shared by every architecture (actor and critic)."""

    hidden_sizes: list[int] = field(default_factory=lambda: [128, 128])
    """Hidden layer widths of actors and on-policy critics. Recurrent networks: the first is the observation
    encoder before the GRU, the others the hidden layers of the head after it."""
    critic_hidden_sizes: list[int] = field(default_factory=list)
    """Hidden layer widths of critics (empty: same as hidden_sizes)."""
    activation: Literal["relu", "tanh", "elu", "leaky_relu", "silu"] = "relu"
    """Hidden activation."""
    layer_norm: bool = True
    """LayerNorm (without affine parameters) after every hidden layer."""
    feature_norm: bool = True
    """LayerNorm (over each agent's own observation entries) on the network input."""
    gain: float = 0.01
    """Orthogonal-init gain of the actor's output layer."""
    std_init: float = 1.0
    """Initial standard deviation of Gaussian policies (on-policy learners)."""
    recurrent: bool = False
    """GRU after an observation encoder (hidden_sizes[0]) in actors and on-policy critics; on-policy learners
    train on sequences of algo.data_chunk_length steps (off-policy learners are feed-forward only)."""
    rnn_hidden_size: int = 128
    """Hidden state size of the GRU of recurrent networks."""

    def validate(self) -> None:
        if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
            raise ConfigError("model.hidden_sizes must be a non-empty list of positive widths")
        if any(h <= 0 for h in self.critic_hidden_sizes):
            raise ConfigError("model.critic_hidden_sizes must hold positive widths")
        positive(self, "std_init", "gain", "rnn_hidden_size")

    @property
    def critic_sizes(self) -> list[int]:
        return list(self.critic_hidden_sizes or self.hidden_sizes)


@dataclass
class EmptyConfig:
    """A section with no options."""

    def validate(self) -> None:
        return None


def positive(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(cfg, name)}")


def non_negative(cfg: Any, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(cfg, name)}")


@dataclass
class ExperimentConfig:
    """The resolved configuration of a run: registry names plus the five sections."""

    algo_name: str
    arch_name: str
    env_name: str
    run: RunConfig
    algo: Any
    env: Any
    model: ModelConfig
    arch: Any

    def validate(self) -> None:
        for section in SECTIONS:
            getattr(self, section).validate()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"main": {"algo": self.algo_name, "arch": self.arch_name, "env": self.env_name}}
        for section in SECTIONS:
            out[section] = dataclasses.asdict(getattr(self, section))
        return out

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def leaf_keys(self) -> dict[str, list[str]]:
        """Map every leaf name to the full `section.key` names that carry it."""
        leaves: dict[str, list[str]] = {}
        for section in SECTIONS:
            for f in dataclasses.fields(getattr(self, section)):
                leaves.setdefault(f.name, []).append(f"{section}.{f.name}")
        return leaves

    def full_keys(self) -> list[str]:
        return [k for keys in self.leaf_keys().values() for k in keys]


# ---------------------------------------------------------------------------- value parsing


def _parse_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{key} expects true/false, got {value!r}")


def _parse_scalar(key: str, tp: Any, value: Any) -> Any:
    if tp is bool:
        return _parse_bool(key, value)
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                number = float(value.replace("_", ""))
            except ValueError:
                number = None
            if number is not None and number.is_integer():
                return int(number)
        raise ConfigError(f"{key} expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} expects a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {tp}")


def parse_value(key: str, tp: Any, value: Any) -> Any:
    """Convert `value` (a CLI string or a YAML value) to the declared type `tp`, or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if isinstance(value, str) or type(value) in {type(c) for c in choices}:
            for choice in choices:
                if str(choice) == str(value):
                    return choice
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {value!r}")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return parse_value(key, args[0], value)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str):
            text = value.strip().strip("[]").strip()
            items: list[Any] = [v.strip() for v in text.split(",") if v.strip()] if text else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        return [parse_value(key, item_tp, v) for v in items]
    return _parse_scalar(key, tp, value)


# ---------------------------------------------------------------------------- overrides


def resolve_key(cfg: ExperimentConfig, key: str) -> tuple[str, str]:
    """Turn `section.key` or a unique leaf `key` into (section, field name), or raise ConfigError."""
    leaves = cfg.leaf_keys()
    if "." in key:
        section, name = key.split(".", 1)
        if section in SECTIONS and name in {f.name for f in dataclasses.fields(getattr(cfg, section))}:
            return section, name
    elif key in leaves:
        if len(leaves[key]) > 1:
            raise ConfigError(f"ambiguous key {key!r}: use one of {', '.join(leaves[key])}")
        section, name = leaves[key][0].split(".")
        return section, name
    candidates = cfg.full_keys() + list(leaves)
    matches = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    close = list(dict.fromkeys(full for m in matches for full in (leaves.get(m) or [m])))
    hint = f"; closest valid keys: {', '.join(close)}" if close else "; see --list_keys"
    raise ConfigError(f"unknown config key {key!r} for this algo/arch/env{hint}")


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, Any], source: str = "") -> None:
    """Apply flat (`section.key` / leaf) or nested (`{section: {key: value}}`) overrides in place."""
    where = f" (in {source})" if source else ""
    for key, value in _flatten(overrides):
        try:
            section, name = resolve_key(cfg, key)
            target = getattr(cfg, section)
            tp = typing.get_type_hints(type(target))[name]
            setattr(target, name, parse_value(f"{section}.{name}", tp, value))
        except ConfigError as err:
            raise ConfigError(f"{err}{where}") from None


def _flatten(overrides: dict[str, Any]) -> list[tuple[str, Any]]:
    flat: list[tuple[str, Any]] = []
    for key, value in overrides.items():
        if key in SECTIONS and isinstance(value, dict):
            flat.extend((f"{key}.{k}", v) for k, v in value.items())
        else:
            flat.append((key, value))
    return flat


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning syntax errors and non-mappings into ConfigError."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def split_main(data: dict[str, Any], path: Path | str) -> tuple[dict[str, str], dict[str, Any]]:
    """Separate the `main:` block (algo/arch/env names) of a config file from its sections."""
    data = dict(data)
    main = data.pop("main", None) or {}
    if not isinstance(main, dict) or set(main) - {"algo", "arch", "env"}:
        raise ConfigError(f"config file {path}: 'main' may only hold algo, arch and env")
    return {k: str(v) for k, v in main.items()}, data


def env_layer(data: dict[str, Any], on_policy: bool) -> dict[str, Any]:
    """An env YAML may hold `on_policy:` / `off_policy:` blocks applied only to learners of that kind."""
    data = dict(data)
    on = data.pop("on_policy", None) or {}
    off = data.pop("off_policy", None) or {}
    chosen = on if on_policy else off
    merged = dict(data)
    for section, values in chosen.items():
        merged[section] = {**merged.get(section, {}), **values}
    return merged


def tuned_config_path(env_name: str, scenario: str, algo_name: str, arch_name: str) -> Path | None:
    """The tuned config under `tuned_configs/<env>/<scenario>/` for this algo and arch, if one exists:
    `<algo>-<arch>.yaml` first, then `<algo>.yaml`."""
    folder = TUNED_CONFIG_DIR / env_name / scenario
    for name in (f"{algo_name}-{arch_name}.yaml", f"{algo_name}.yaml"):
        if (folder / name).is_file():
            return folder / name
    return None
