"""harl: heterogeneous-agent RL with interchangeable per-agent architectures (NoPS, FuPS, HyperMARL)."""

__version__ = "0.1.0"
