"""Learners; importing this package registers them."""

from harl.algos import haddpg, happo, hasac, ippo, maddpg, mappo, masac  # noqa: F401
