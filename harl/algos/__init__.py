"""Learners; importing this package registers them."""

from harl.algos import happo, mappo  # noqa: F401
