"""Learners; importing this package registers them."""

from harl.algos import a2c, had3qn, haddpg, happo, hasac, hatrpo, ippo, maddpg, mappo, masac  # noqa: F401
