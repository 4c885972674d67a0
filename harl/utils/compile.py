"""`run.compile`: `torch.compile` (inductor) on the forward passes of a learner's networks.

`compile_learner` replaces, on each instance, the `forward` of every `AgentMLP` (the actors' and on-policy
critics' networks of every architecture, and the encoders and heads of recurrent ones) and `JointQCritic`
(the off-policy critics) found in the learner's `networks()` (target copies, made before, stay eager: they
run once per update without gradients) with a compiled copy of its class's function,
bound to that instance. What is compiled is a function, never a wrapper module: parameters, buffers and
`state_dict()` keys stay exactly those of the eager networks (no `_orig_mod.` prefixes), so a checkpoint
saved with compile loads without it and vice versa, and `copy.deepcopy` of a network binds the copy's own
compiled forward to the copy (the standard library deep-copies bound methods that way). Both the update and
the acting path go through these forwards, the backward passes included (AOTAutograd).

Only deterministic computations are compiled: sampling (noise, Gumbel, multinomial) stays eager, so a
compiled and an eager learner from the same state draw the same random numbers and give the same actions,
log-probabilities and losses to float tolerance (inductor reorders reductions). Hypernetwork weight sources
generate and cache their layers under `torch.no_grad()` keyed on tensor versions (`hypermarl_ext.hypernet`):
that Python-side cache is kept out of the graphs (their `layers()` runs eagerly, a graph break), so acting
after an optimiser step always uses freshly generated weights. The GRU of recurrent networks is not compiled:
its Python loop over time steps would be unrolled into one graph per sequence length (1 when acting,
`data_chunk_length` when training, the rollout length when valuing it).

Shapes: a forward is compiled for the first shapes it sees and recompiled with dynamic sizes where they
change (agent selections of one agent or all, acting, training and evaluation batches), within torch's
recompile limit, raised here to `RECOMPILE_LIMIT` per function (beyond it a forward runs eagerly).

Measured (`bench/compile.py`, torch 2.13 CPU inductor, 1 thread, HalfCheetah 2x3 sizes, hidden [256, 256],
batch 1000): compiled updates are slower than eager ones (the training graphs save ReLU masks as booleans,
whose vectorised store is slow in the generated code), acting is at parity, and compiling costs tens of
seconds the first time (less once inductor's on-disk cache holds the kernels). So `run.compile` is off by
default; it is there for GPUs and for future torch releases, where it can be measured again with the bench.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harl.algos.base import Learner
from harl.errors import UserError
from harl.models.agent_mlp import AgentMLP, LayerParams, SharedParams, StackedParams
from harl.models.off_policy import JointQCritic

COMPILED_MODULES: tuple[type[nn.Module], ...] = (AgentMLP, JointQCritic)
"""Module types whose `forward` `compile_learner` compiles."""

RECOMPILE_LIMIT = 32
"""Compiled variants per function: (agent selections) × (grad mode) × (frozen or trainable critic) × (batch
shapes before they turn dynamic) × (actor, critic and target networks' configurations) stays below it."""

BACKEND = "inductor"
"""The `torch.compile` backend (tests use "aot_eager" for speed where they check the wrapping, not the kernels)."""


@functools.cache
def inductor_problem(device: torch.device) -> str | None:
    """Why `torch.compile`'s default backend cannot run on `device` (e.g. no C++ compiler for the CPU, no
    Triton for CUDA), or None when it can. Checked once per device, with a small compiled probe."""
    try:
        probe = torch.compile(lambda x: torch.relu(x) * 2.0, dynamic=False)
        ones = torch.ones(4, device=device)
        if not torch.equal(probe(ones), torch.full((4,), 2.0, device=device)):
            return "a compiled probe computed a wrong result"
    except Exception as err:  # any failure of the toolchain means: no compile here
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return f"{type(err).__name__}: {first_line}"
    return None


def learner_device(learner: Learner) -> torch.device:
    """The device of the learner's networks (its training device)."""
    return next(p for network in learner.networks().values() for p in network.parameters()).device


def is_compiled(module: nn.Module) -> bool:
    """Whether `compile_learner` replaced this module's forward."""
    forward = module.__dict__.get("forward")
    return isinstance(forward, types.MethodType) and forward.__func__ is _compiled_forward(type(module), BACKEND)


_COMPILED_FORWARDS: dict[tuple[type[nn.Module], str], Callable[..., Any]] = {}


def _compiled_forward(cls: type[nn.Module], backend: str) -> Callable[..., Any]:
    """One compiled copy of `cls.forward` (dynamo caches graphs per code object, so one per class is enough)."""
    if (cls, backend) not in _COMPILED_FORWARDS:
        _COMPILED_FORWARDS[cls, backend] = torch.compile(cls.forward, backend=backend, dynamic=None)
    return _COMPILED_FORWARDS[cls, backend]


@functools.cache
def _eager_layers(cls: type[LayerParams]):
    """`cls.layers` run eagerly inside compiled forwards (a graph break), for weight sources with Python state."""
    return torch.compiler.disable(cls.layers, recursive=True)


def compile_learner(learner: Learner, enabled: bool) -> int:
    """Compile the forwards of the learner's `AgentMLP`s and joint Q critics in place when `enabled`
    (`run.compile`); returns how many forwards were compiled (0 when not enabled).

    Raises:
        UserError: `torch.compile` cannot run on the learner's device on this machine.
    """
    if not enabled:
        return 0
    device = learner_device(learner)
    problem = inductor_problem(device) if BACKEND == "inductor" else None
    if problem is not None:
        raise UserError(
            f"--compile true needs a working torch.compile (inductor) on {device} here, which failed ({problem})"
        )
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    count = 0
    for network in learner.networks().values():
        for module in network.modules():
            if not isinstance(module, COMPILED_MODULES) or is_compiled(module):
                continue
            if isinstance(module, AgentMLP) and not isinstance(module.params, (StackedParams, SharedParams)):
                module.params.layers = types.MethodType(  # type: ignore[method-assign]
                    _eager_layers(type(module.params)), module.params
                )
            module.forward = types.MethodType(_compiled_forward(type(module), BACKEND), module)
            count += 1
    return count
