"""Environment adapters; importing this package registers them."""

from harl.envs import mamujoco, matrix, mpe, smax, vmas  # noqa: F401
