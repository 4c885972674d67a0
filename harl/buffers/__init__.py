"""Rollout (on-policy) and replay (off-policy) storage, preallocated on the training device."""
