"""User-facing errors: anything raised as `UserError` is bad input, reported as one line with exit code 2."""


class UserError(Exception):
    """Bad input from the user (config key, value, scenario, checkpoint...). The CLI prints it and exits 2."""


class ConfigError(UserError):
    """An unknown, ambiguous or ill-typed configuration key or value."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or incompatible with the requested run."""


class TrainingDiverged(UserError):
    """Training produced a non-finite loss, gradient norm, parameter or action: the run stops with one line
    naming the quantity and the update, before anything from that update is checkpointed."""


class EnvWorkerError(RuntimeError):
    """An environment worker process died or stopped answering."""
