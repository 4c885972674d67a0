"""Run utilities: logging, checkpoints, seeding, normalisers."""
