"""Strict, typed, layered configuration."""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field

import pytest

from harl.config import (
    PACKAGE_CONFIG_DIR,
    ExperimentConfig,
    ModelConfig,
    RunConfig,
    apply_overrides,
    env_layer,
    parse_value,
    read_yaml,
)
from harl.errors import ConfigError
from harl.experiment import build_config, default_config
from harl.registry import ALGORITHMS, ARCHITECTURES, all_environments, load_extensions

load_extensions()


def test_leaf_and_dotted_keys_are_parsed_by_type():
    cfg, _ = build_config(
        "mappo",
        "nops",
        "matrix",
        {"seed": "7", "algo.lr": "1e-3", "hidden_sizes": "[32, 16]", "layer_norm": "true", "num_env_steps": "1e6"},
    )
    assert cfg.run.seed == 7 and cfg.algo.lr == 1e-3 and cfg.model.hidden_sizes == [32, 16]
    assert cfg.model.layer_norm is True and cfg.run.num_env_steps == 1_000_000


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("sed", "1", "closest valid keys: run.seed"),
        ("algo.lrr", "1", "closest valid keys"),
        ("seed", "one", "expects an integer"),
        ("lr", "fast", "expects a number"),
        ("layer_norm", "maybe", "expects true/false"),
        ("activation", "sigmoid", "must be one of"),
        ("game", "chess", "unknown matrix game"),
        ("num_env_steps", "0", r"must be in \(0, 2\*\*53\]"),
    ],
)
def test_bad_overrides_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=message):
        build_config("mappo", "nops", "matrix", {key: value})


def test_ambiguous_leaf_is_refused():
    @dataclass
    class WithSeed:
        seed: int = 0

        def validate(self):
            return None

    cfg = ExperimentConfig("a", "b", "c", RunConfig(), WithSeed(), WithSeed(), ModelConfig(), WithSeed())
    with pytest.raises(ConfigError, match="ambiguous key 'seed'"):
        apply_overrides(cfg, {"seed": 3})
    apply_overrides(cfg, {"algo.seed": 3})
    assert cfg.algo.seed == 3 and cfg.run.seed == 1


def test_values_are_never_evaluated():
    @dataclass
    class Holder:
        names: list[str] = field(default_factory=list)

    with pytest.raises(ConfigError):
        parse_value("run.seed", int, "__import__('os').getpid()")
    assert parse_value("x", list[str], "a,b") == ["a", "b"]


def test_layers_apply_in_order(tmp_path):
    cfg, sources = build_config("mappo", "nops", "matrix", {})
    assert cfg.run.num_env_steps == 120_000  # env YAML over the algo YAML's and dataclass defaults
    assert cfg.algo.episode_length == 10  # the env YAML's on_policy block
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("main: {algo: mappo}\nrun: {num_env_steps: 5000, seed: 3}\n")
    cfg, sources = build_config(None, "nops", "matrix", {"seed": "4"}, load_config=tuned)
    assert cfg.algo_name == "mappo" and cfg.run.num_env_steps == 5000 and cfg.run.seed == 4
    assert sources[-1] == str(tuned)


def test_load_config_conflicts_and_unknown_keys(tmp_path):
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("main: {algo: happo}\n")
    with pytest.raises(ConfigError, match="conflicts"):
        build_config("mappo", "nops", "matrix", {}, load_config=tuned)
    tuned.write_text("algo: {learning_rate: 0.1}\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        build_config("mappo", "nops", "matrix", {}, load_config=tuned)
    tuned.write_text("algo: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config("mappo", "nops", "matrix", {}, load_config=tuned)


def test_saved_config_round_trips():
    from harl.experiment import config_from_dict

    cfg, _ = build_config("happo", "fups_id", "matrix", {"seed": "9", "hidden_sizes": "8"})
    again = config_from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()


def test_tuned_config_is_applied_for_its_scenario_only():
    cfg, sources = build_config("happo", "nops", "mamujoco", {})
    assert sources[-1].endswith("tuned_configs/mamujoco/HalfCheetah-2x3/happo.yaml")
    assert cfg.algo.clip_param == 0.05 and cfg.algo.ppo_epoch == 15 and cfg.model.hidden_sizes == [128, 128, 128]
    cfg, _ = build_config("happo", "nops", "mamujoco", {"clip_param": "0.1"})
    assert cfg.algo.clip_param == 0.1  # the command line wins
    cfg, sources = build_config("happo", "nops", "mamujoco", {"agent_conf": "6x1"})
    assert cfg.algo.clip_param == 0.2 and not any("tuned_configs" in s for s in sources)
    cfg, sources = build_config("happo", "nops", "mamujoco", {}, use_tuned=False)
    assert cfg.algo.clip_param == 0.2


# ---------------------------------------------------------------------------- declared bounds


def config_classes() -> list[tuple[str, type]]:
    """(section, class) of every config section a run can have."""
    classes = [("run", RunConfig), ("model", ModelConfig)]
    classes += [("algo", entry.config_cls) for entry in ALGORITHMS.values()]
    classes += [("env", entry.config_cls) for entry in all_environments().values()]
    classes += [("arch", entry.config_cls) for entry in ARCHITECTURES.values()]
    return list(dict.fromkeys(classes))


def numeric_fields(cls: type) -> list[dataclasses.Field]:
    """Fields of `cls` holding ints or floats (alone, optional or in a list)."""
    hints = typing.get_type_hints(cls)
    found = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = set(typing.get_args(tp)) - {type(None)} or {tp}
        if args & {int, float} or any(typing.get_args(a) in ((int,), (float,)) for a in args):
            found.append(f)
    return found


def outside(bounds, tp_is_float: bool) -> list[float]:
    """Values just outside `bounds` (and NaN, infinities for floats)."""
    values: list[float] = [math.nan, math.inf, -math.inf] if tp_is_float else []
    step = 1e-3 if tp_is_float else 1
    if bounds.gt is not None:
        values.append(bounds.gt)
    if bounds.ge is not None:
        values.append(bounds.ge - step)
    if bounds.lt is not None:
        values.append(bounds.lt)
    if bounds.le is not None:
        values.append(bounds.le + step)
    return values


@pytest.mark.parametrize(("section", "cls"), config_classes(), ids=lambda x: getattr(x, "__name__", x))
def test_every_numeric_field_declares_bounds_and_validate_enforces_them(section, cls):
    hints = typing.get_type_hints(cls)
    for f in numeric_fields(cls):
        bounds = f.metadata.get("bounds")
        assert bounds is not None, f"{cls.__name__}.{f.name} declares no bounds (use harl.config.bounded)"
        is_float = float in typing.get_args(hints[f.name]) or hints[f.name] is float
        is_list = typing.get_origin(hints[f.name]) is list
        bad_values = outside(bounds, is_float)
        assert bad_values, f"{cls.__name__}.{f.name}: bounds without a limit"
        for bad in bad_values:
            cfg = cls()
            setattr(cfg, f.name, [bad] if is_list else bad)
            with pytest.raises(ConfigError, match=rf"^{section}\.{f.name} must "):
                cfg.validate()


def test_bounds_messages_state_the_rule():
    with pytest.raises(ConfigError, match=r"^run\.seed must be in \[0, 2\*\*31\) \(what numpy's"):
        build_config("mappo", "nops", "matrix", {"seed": "-1"})
    with pytest.raises(ConfigError, match=r"^algo\.lr must be a finite number > 0, got nan$"):
        build_config("mappo", "nops", "matrix", {"lr": "nan"})
    with pytest.raises(ConfigError, match=r"^model\.critic_hidden_sizes must hold values > 0, got \[8, -1\]$"):
        build_config("mappo", "nops", "matrix", {"critic_hidden_sizes": "8,-1"})
    cfg, _ = build_config("mappo", "nops", "matrix", {"seed": str(2**31 - 1), "gamma": "1", "entropy_coef": "0"})
    assert cfg.run.seed == 2**31 - 1 and cfg.algo.gamma == 1.0


# ---------------------------------------------------------------------------- one source of defaults


def algo_yaml_cases() -> list[tuple[str, str, object]]:
    cases = []
    for algo in sorted(ALGORITHMS):
        path = PACKAGE_CONFIG_DIR / "algos" / f"{algo}.yaml"
        if path.is_file():
            cases += [(algo, key, value) for key, value in flat(read_yaml(path))]
    return cases


def flat(data: dict) -> list[tuple[str, object]]:
    return [(f"{section}.{key}", value) for section, values in data.items() for key, value in values.items()]


@pytest.mark.parametrize(("algo", "key", "value"), algo_yaml_cases())
def test_algo_yaml_keys_depart_from_the_dataclass_defaults(algo, key, value):
    """The rule at the top of harl/config.py: defaults live in the dataclasses, YAML layers hold departures."""
    defaults = default_config(algo, "nops", "matrix")
    changed = copy.deepcopy(defaults)
    apply_overrides(changed, {key: value})
    assert changed.to_dict() != defaults.to_dict(), f"harl/configs/algos/{algo}.yaml restates the default of {key}"


def env_yaml_cases() -> list[tuple[str, str | None, str, object]]:
    """(env, block, key, value) of every packaged env YAML value outside the blocks' `archs:` mappings."""
    cases = []
    for path in sorted((PACKAGE_CONFIG_DIR / "envs").glob("*.yaml")):
        data = read_yaml(path)
        for block in (None, "on_policy", "off_policy"):
            if block:
                layer = {k: v for k, v in (data.get(block) or {}).items() if k != "archs"}
            else:
                layer = {k: v for k, v in data.items() if k not in ENV_BLOCKS}
            cases += [(path.stem, block, key, value) for key, value in flat(layer)]
    return cases


def env_yaml_arch_cases() -> list[tuple[str, str, str, str, object]]:
    """(env, block, arch, key, value) of every value in the packaged env YAMLs' per-architecture mappings."""
    cases = []
    for path in sorted((PACKAGE_CONFIG_DIR / "envs").glob("*.yaml")):
        data = read_yaml(path)
        for block in ENV_BLOCKS:
            for arch, sections in ((data.get(block) or {}).get("archs") or {}).items():
                cases += [(path.stem, block, arch, key, value) for key, value in flat(sections)]
    return cases


ENV_BLOCKS = ("on_policy", "off_policy")


@pytest.mark.parametrize(("env", "block", "key", "value"), env_yaml_cases())
def test_env_yaml_keys_change_the_config_of_some_learner(env, block, key, value):
    assert env in all_environments(), f"harl/configs/envs/{env}.yaml names no registered env"
    algos = [name for name, entry in ALGORITHMS.items() if block is None or entry.on_policy == (block == "on_policy")]
    changes = []
    for algo in algos:
        below = default_config(algo, "nops", env)
        section, name = key.split(".")
        if section == "algo" and not hasattr(below.algo, name):
            continue  # a block's algo key applies to the learners whose config has it (`experiment.learner_layer`)
        algo_yaml = PACKAGE_CONFIG_DIR / "algos" / f"{algo}.yaml"
        if algo_yaml.is_file():
            apply_overrides(below, read_yaml(algo_yaml))
        changed = copy.deepcopy(below)
        apply_overrides(changed, {key: value})
        changes.append(changed.to_dict() != below.to_dict())
    assert any(changes), f"harl/configs/envs/{env}.yaml restates what the layers below give for {key}"


def test_env_yaml_block_keys_apply_to_the_learners_that_have_them():
    """smacv2's on_policy block sets PPO's `ppo_epoch` and the actor's `lr`: HAA2C takes the lr, HATRPO neither."""
    ppo, _ = build_config("mappo", "nops", "smacv2", {}, use_tuned=False)
    a2c, _ = build_config("haa2c", "nops", "smacv2", {}, use_tuned=False)
    trpo, _ = build_config("hatrpo", "nops", "smacv2", {}, use_tuned=False)
    assert ppo.algo.ppo_epoch == 4 and a2c.algo.lr == ppo.algo.lr == 0.002 and a2c.algo.a2c_epoch == 5
    assert trpo.algo.critic_lr == 0.002 and trpo.algo.episode_length == 128 and not hasattr(trpo.algo, "lr")


@pytest.mark.parametrize(("env", "block", "arch", "key", "value"), env_yaml_arch_cases())
def test_env_yaml_per_arch_values_name_a_registered_arch_and_change_its_config(env, block, arch, key, value):
    assert arch in ARCHITECTURES, f"harl/configs/envs/{env}.yaml: {block}.archs names no registered arch {arch!r}"
    for algo, entry in ALGORITHMS.items():
        if entry.on_policy != (block == "on_policy"):
            continue
        cfg, _ = build_config(algo, arch, env, {})
        plain, _ = build_config(algo, "nops", env, {})
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == value  # the arch's value wins over the block's
        assert getattr(getattr(plain, section), name) != value  # and only for that arch


def test_env_layer_blocks_are_the_only_nesting():
    for path in sorted((PACKAGE_CONFIG_DIR / "envs").glob("*.yaml")):
        for on_policy in (True, False):
            for arch in ARCHITECTURES:
                layer = env_layer(read_yaml(path), on_policy, arch)
                assert set(layer) <= {"run", "algo", "env", "model", "arch"}, path
