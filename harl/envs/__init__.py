"""Environment adapters; importing this package registers them."""

from harl.envs import mamujoco, matrix  # noqa: F401
