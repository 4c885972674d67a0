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

One source of defaults: a field's default lives in its dataclass, nowhere else. The YAML files under
`harl/configs/` hold only departures from the layers below them: every key of an algo YAML differs from the
dataclass default, and every key of an env YAML changes the resolved value for at least one of the learners it
applies to (all of them; the on- or off-policy ones for its `on_policy:` / `off_policy:` blocks). A tuned config
under `harl/tuned_configs/` likewise holds only keys whose value differs from those layers for its algo and arch (for
at least one architecture when its `main:` names none). `tests/test_config.py` and `tests/test_tuned_configs.py` fail
on a key that restates what the layers below give.

Numeric fields declare the values they accept with `bounded(...)` (a `Bounds` in the field's metadata); every
float must also be finite. Every section's `validate()` starts with `check_bounds`, which checks both for every
field generically; the rest of a `validate()` checks what involves several fields or choices.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import math
import textwrap
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from harl.errors import ConfigError, shown

SECTIONS = ("run", "algo", "env", "model", "arch")
PACKAGE_CONFIG_DIR = Path(__file__).parent / "configs"
TUNED_CONFIG_DIR = Path(__file__).parent / "tuned_configs"
SEED_LIMIT = 2**31
"""Seeds lie in [0, SEED_LIMIT): numpy's legacy seeding and JAX keys take 32-bit seeds, and runs derive
further seeds by offsets (env k: seed + k, evaluation: seed + 100_000 + iteration), which then still fit."""


@dataclass(frozen=True)
class Bounds:
    """The values a numeric config field accepts (each item's, for a list field). Floats must also be finite.

    Attributes:
        gt: exclusive lower bound.
        ge: inclusive lower bound.
        lt: exclusive upper bound.
        le: inclusive upper bound.
        note: why, or what the special values mean (appended to the error message).
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    note: str = ""

    def admits(self, value: float) -> bool:
        """Whether `value` lies within the bounds (NaN never does)."""
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def __str__(self) -> str:
        """The rule as the error message states it: `> 0`, `>= -1`, `in [0, 1]`, `in [0, 2**31) (why)`."""
        low, opening = (self.gt, "(") if self.gt is not None else (self.ge, "[")
        high, closing = (self.lt, ")") if self.lt is not None else (self.le, "]")
        if low is not None and high is not None:
            text = f"in {opening}{_number(low)}, {_number(high)}{closing}"
        elif low is not None:
            text = f"{'>' if opening == '(' else '>='} {_number(low)}"
        elif high is not None:
            text = f"{'<' if closing == ')' else '<='} {_number(high)}"
        else:
            text = "any number"
        return f"{text} ({self.note})" if self.note else text


def _number(value: float) -> str:
    """Bounds as people write them: 0, 0.5, 2**31."""
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def bounded(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    note: str = "",
) -> Any:
    """A dataclass field whose values (or list items) must lie within the given bounds, e.g.
    `lr: float = bounded(5e-4, gt=0)`, `gamma: float = bounded(0.99, ge=0, le=1)`."""
    bounds = Bounds(gt=gt, ge=ge, lt=lt, le=le, note=note)
    return field(default=default, default_factory=default_factory, metadata={"bounds": bounds})


def check_bounds(section_cfg: Any, section: str) -> None:
    """Check every field of a config section (a dataclass) against its declared `Bounds`, and floats for
    finiteness. Raises ConfigError naming `section.field`, the rule and the value."""
    for f in dataclasses.fields(section_cfg):
        value = getattr(section_cfg, f.name)
        bounds: Bounds | None = f.metadata.get("bounds")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item is None or isinstance(item, (bool, str)):
                continue
            finite = not isinstance(item, float) or math.isfinite(item)
            if finite and (bounds is None or bounds.admits(item)):
                continue
            rule = " ".join(part for part in ("" if finite else "a finite number", str(bounds or "")) if part)
            verb = "be" if item is value else "hold values"
            raise ConfigError(f"{section}.{f.name} must {verb} {rule}, got {shown(value)}")


@dataclass
class RunConfig:
    """Budget, seeding, device, logging, evaluation and checkpointing of one run."""

    num_env_steps: int = bounded(1_000_000, gt=0, le=2**53, note="step counts are logged as float64, exact to 2**53")
    """Total environment steps (vector steps × n_rollout_threads) to train for."""
    n_rollout_threads: int = bounded(20, gt=0)
    """Number of parallel training environments."""
    n_workers: int = bounded(-1, ge=-1, note="-1: auto, 0: in-process")
    """Env worker processes stepping the training envs beside the training process, which steps an equal
    share itself while they step theirs (-1: one stepping process per core of the run's share of the cores,
    `harl.utils.threads`, so share - 1 workers, at most envs - 1; 0: every env in-process). A new run refuses
    more than envs - 1 (n_rollout_threads × seeds - 1). Ignored by natively vectorised envs (matrix, vmas, smax)."""
    seed: int = bounded(1, ge=0, lt=SEED_LIMIT, note="what numpy's and the envs' seeding accept")
    """Seed of everything random in the run (torch, numpy, python, envs), in [0, 2**31): numpy and JAX take
    32-bit seeds, and the envs' and evaluation's seeds are offsets from it."""
    seeds: int = bounded(1, gt=0)
    """Seeds trained together in this process (`--seeds N`): seeds seed, seed+1, ..., seed+N-1 of the same
    configuration, each independent and written to its own run folder as a solo run of it would be, trained as
    one batched computation (`harl.models.population`). 1: a solo run."""
    device: str = "cpu"
    """Training device: cpu, cuda or cuda:N."""
    torch_threads: int = bounded(0, ge=0)
    """Intra-op threads of the training process (0: this run's share of the cores it may use, less its env
    workers; see `harl.utils.threads`)."""
    log_dir: str = "results"
    """Root folder of run folders."""
    exp_name: str = "default"
    """Experiment name, one level of the run folder."""
    log_interval: int = bounded(0, ge=0)
    """Env steps between training log rows (0: after every training iteration)."""
    eval_interval: int = bounded(100_000, ge=0)
    """Env steps between evaluations (0: only at the end)."""
    eval_episodes: int = bounded(20, gt=0)
    """Episodes per evaluation."""
    n_eval_rollout_threads: int = bounded(10, gt=0)
    """Parallel evaluation environments."""
    eval_deterministic: bool = True
    """Evaluate the mode of each policy instead of sampling."""
    save_interval: int = bounded(200_000, gt=0)
    """Env steps between checkpoints (a checkpoint is always written at the end)."""
    keep_checkpoints: int = bounded(3, gt=0)
    """How many of the latest checkpoints to keep."""
    progress_bar: bool = True
    """Show a tqdm progress bar when stderr is a terminal (false: the plain progress lines instead)."""
    progress_interval: float = bounded(10.0, ge=0, note="0: no plain progress lines")
    """Seconds between plain progress lines on stdout (env steps, SPS, ETA, latest eval, phase), printed when
    no bar is shown: stderr is not a terminal, or progress_bar is false (0: none)."""
    snd_interval: int = bounded(0, ge=0)
    """Env steps between `diversity/snd` logs, scored on the latest collected observations (0: never)."""
    snd_max_obs: int = bounded(1000, gt=0)
    """Joint observations (an evenly spaced subset of the latest rollout) the SND is computed on."""
    snd_samples: int = bounded(64, gt=0)
    """Monte-Carlo draws per distribution for Gaussian policies' SND."""
    grad_stats: bool = False
    """Log `grad/param_variance` and `grad/noise` of the actor gradients at every update."""
    time_limit_minutes: float = bounded(0.0, ge=0)
    """Wall-clock budget of this process (0: none): when spent, the run ends as at num_env_steps (final
    evaluation and checkpoint); `--resume` with a larger budget continues it."""
    compile: bool = False
    """`torch.compile` the forward (and backward) passes of the training process's networks, acting and
    updates alike (`harl.utils.compile`; checkpoints are the same either way). Off by default: on CPU it was
    measured slower than eager, compile time aside (`bench/compile.py`)."""

    def validate(self) -> None:
        check_bounds(self, "run")
        if self.seed + self.seeds > SEED_LIMIT:
            raise ConfigError(
                f"run.seeds {self.seeds} from run.seed {self.seed} reaches seed {self.seed + self.seeds - 1}, past the "
                f"largest seed {SEED_LIMIT - 1}; lower --seed or --seeds"
            )
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ConfigError(f"run.device must be cpu, cuda or cuda:N, got {shown(self.device)}")


@dataclass
class ModelConfig:
    """Network shape shared by every architecture (actor and critic)."""

    hidden_sizes: list[int] = bounded(default_factory=lambda: [128, 128], gt=0)
    """Hidden layer widths of actors and on-policy critics. Recurrent networks: the first is the observation
    encoder before the GRU, the others the hidden layers of the head after it."""
    critic_hidden_sizes: list[int] = bounded(default_factory=list, gt=0)
    """Hidden layer widths of critics (empty: same as hidden_sizes)."""
    activation: Literal["relu", "tanh", "elu", "leaky_relu", "silu"] = "relu"
    """Hidden activation."""
    layer_norm: bool = True
    """LayerNorm (without affine parameters) after every hidden layer."""
    feature_norm: bool = True
    """LayerNorm (over each agent's own observation entries) on the network input."""
    gain: float = bounded(0.01, gt=0)
    """Orthogonal-init gain of the actor's output layer."""
    std_init: float = bounded(1.0, gt=0)
    """Initial standard deviation of Gaussian policies (on-policy learners)."""
    recurrent: bool = False
    """GRU after an observation encoder (hidden_sizes[0]) in actors and on-policy critics; on-policy learners
    train on sequences of algo.data_chunk_length steps (off-policy learners are feed-forward only)."""
    rnn_hidden_size: int = bounded(128, gt=0)
    """Hidden state size of the GRU of recurrent networks."""

    def validate(self) -> None:
        check_bounds(self, "model")
        if not self.hidden_sizes:
            raise ConfigError("model.hidden_sizes must be a non-empty list of positive widths")

    @property
    def critic_sizes(self) -> list[int]:
        return list(self.critic_hidden_sizes or self.hidden_sizes)


@dataclass
class EmptyConfig:
    """A section with no options."""

    def validate(self) -> None:
        return None


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
    seed_archs: list[Any] | None = None
    """A batched run's (`run.seeds` > 1) architecture options per seed where its seeds learned their own (what an
    architecture's pre-training fills in, e.g. SePS partitions: `Pretraining.learned`); None: every seed's are
    `arch`. Not a section: each seed's saved config holds its own options."""

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


# ---------------------------------------------------------------------------- option docs


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a config dataclass (and of the dataclasses it derives from), read from
    the source: `{field name: docstring}`."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        except (OSError, TypeError):  # no source (e.g. a class made at run time)
            continue
        body = tree.body if isinstance(tree, ast.ClassDef) else []
        for node, following in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def first_sentence(text: str) -> str:
    """A docstring's first sentence on one line: up to the first full stop outside brackets (not the one of `e.g.`,
    `i.e.` or `et al.`)."""
    text = " ".join(text.split())
    depth = 0
    for index, char in enumerate(text):
        depth += (char in "([") - (char in ")]")
        ends = index + 1 == len(text) or text[index + 1] == " "
        if char == "." and depth == 0 and ends and text[: index + 1].split()[-1] not in ("e.g.", "i.e.", "al."):
            return text[: index + 1]
    return text


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
    raise ConfigError(f"{key} expects true/false, got {shown(value)}")


def _parse_scalar(key: str, tp: Any, value: Any) -> Any:
    if tp is bool:
        return _parse_bool(key, value)
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects an integer, got {shown(value)}")
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
        raise ConfigError(f"{key} expects an integer, got {shown(value)}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects a number, got {shown(value)}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} expects a number, got {shown(value)}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} expects a string, got {shown(value)}")
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
        raise ConfigError(f"{key} must be one of {', '.join(map(str, choices))}; got {shown(value)}")
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
            raise ConfigError(f"ambiguous key {shown(key)}: use one of {', '.join(leaves[key])}")
        section, name = leaves[key][0].split(".")
        return section, name
    candidates = cfg.full_keys() + list(leaves)
    matches = difflib.get_close_matches(key, candidates, n=3, cutoff=0.6)
    close = list(dict.fromkeys(full for m in matches for full in (leaves.get(m) or [m])))
    hint = f"; closest valid keys: {', '.join(close)}" if close else "; see --list_keys"
    raise ConfigError(f"unknown config key {shown(key)} for this algo/arch/env{hint}")


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
    """Read a YAML mapping with string keys at every level, turning a missing, unreadable, binary or
    ill-formed file, a non-mapping and a non-string key into ConfigError."""
    path = Path(path)
    try:
        data = _safe_load(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; give a YAML file") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text file (not UTF-8); give a YAML file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err.strerror or err}") from None
    except RecursionError:
        raise ConfigError(
            f"config file {path} nests its values too deeply; a harl config is sections of keys"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    _check_keys(data, path, "")
    return data


YAML_VALUES_LIMIT = 100_000
"""The most values (scalars, lists and mappings, each alias counted as what it stands for) a config file may hold
once its aliases are expanded: a harl config holds a few hundred, and nested aliases (a "billion laughs") would
otherwise expand to billions in every step that reads them."""


def _safe_load(text: str, path: Path) -> Any:
    """`yaml.safe_load`, refusing before anything is built a document whose aliases expand past
    `YAML_VALUES_LIMIT` values or refer to a value containing them (a recursive structure)."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_expansion(root, path)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Count the values under `root` as if every alias were written out (each shared node once, memoised), and
    raise ConfigError past `YAML_VALUES_LIMIT` or on a node that contains itself."""

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return list(node.value) if isinstance(node, yaml.SequenceNode) else []

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the path from the root to the node being counted
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, counted = stack.pop()
        key = id(node)
        if counted:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children(node))
            if sizes[key] > YAML_VALUES_LIMIT:
                raise ConfigError(
                    f"config file {path}: its aliases expand to more than {YAML_VALUES_LIMIT:,} values (a harl "
                    "config holds a few hundred); write the values out instead of nesting aliases"
                )
        elif key in open_nodes:
            raise ConfigError(
                f"config file {path}: an alias refers to a value that contains it (line {node.start_mark.line + 1}); "
                "a harl config holds no recursive values"
            )
        elif key not in sizes:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children(node))


def _check_keys(data: dict[Any, Any], path: Path, where: str) -> None:
    """Refuse non-string keys (YAML reads `1:`, `yes:` or `on:` as numbers and booleans) anywhere in `data`."""
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(
                f"config file {path}: key {shown(key)}{where} is not a string (YAML reads it as {type(key).__name__}); "
                "quote it"
            )
        if isinstance(value, dict):
            _check_keys(value, path, f" under {key}" if not where else f"{where}.{key}")


def split_main(data: dict[str, Any], path: Path | str) -> tuple[dict[str, str], dict[str, Any]]:
    """Separate the `main:` block (algo/arch/env names) of a config file from its sections."""
    data = dict(data)
    main = data.pop("main", None) or {}
    if not isinstance(main, dict) or set(main) - {"algo", "arch", "env"}:
        raise ConfigError(f"config file {path}: 'main' may only hold algo, arch and env")
    return {k: str(v) for k, v in main.items()}, data


def env_layer(data: dict[str, Any], on_policy: bool, arch: str) -> dict[str, Any]:
    """An env YAML may hold `on_policy:` / `off_policy:` blocks applied only to learners of that kind, and such a
    block an `archs:` mapping from architecture names to sections applied on top of it only with that
    architecture (e.g. a hypernetwork's own learning rate)."""
    data = dict(data)
    on = dict(data.pop("on_policy", None) or {})
    off = dict(data.pop("off_policy", None) or {})
    chosen = on if on_policy else off
    per_arch = chosen.pop("archs", None) or {}
    merged = dict(data)
    for block in (chosen, per_arch.get(arch) or {}):
        for section, values in block.items():
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
