"""Environment adapters. Each registers itself when its module is imported; `harl.registry` imports an
adapter only when its name is looked up (all of them for `--list`), so importing one piece of harl (a
buffer, an adapter) never imports the others."""

from harl.registry import register_environment_module

for _name, _module in {
    "mamujoco": "harl.envs.mamujoco",
    "matrix": "harl.envs.matrix",
    "mpe": "harl.envs.mpe",
    "smacv2": "harl.envs.smax",
    "vmas": "harl.envs.vmas",
}.items():
    register_environment_module(_name, _module)
