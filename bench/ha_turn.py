"""HASAC updates with the HA-turn savings vs without them, in one process (not a test).

Exact savings of a sequential (HA) update, each timed against its previous implementation (kept below as
the reference and patched in for the "before" updates), on the same learner and replay buffer, updates
alternating (before, after, before, ...) within each round, medians over rounds of this process's CPU time
per update (1 thread):

1. `hypermarl`: a hypernetwork whose weights changed in the turn's optimiser step re-generated *every*
   agent's layers (and cached them) to re-sample the agent in turn's action; now it generates that agent's.
2. `nops`: per-agent rows were gathered in the parameter's logical order, so the gradient autograd sent back
   (zeros outside the agent's rows) was re-laid out to the parameter's transposed memory order before
   becoming `.grad`; `agent_rows` gathers in memory order.
3. both: the frozen critic's twin minimum was differentiated by autograd through both heads for every
   sample; `JointQCritic.min_q` sends each sample's gradient through its minimum head only.
4. `nops`: each agent's turn recomputed its actor pass; it now replays its pass of the update's starting
   forward (`AgentMLP.replay`: its weights have not moved since), drawing fresh noise as before.

Settings as `bench/peer_update.py`: 2 agents (HalfCheetah 2x3 sizes) and 17 agents (obs 20, act 1,
state 50), batch 1000, hidden [256, 256], n_step 10.

Usage: python bench/ha_turn.py [--rounds 3] [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from peer_update import N_STEP, our_learner
from replay_common import filled_buffer, mamujoco_spec, uniform_spec

import harl.models.agent_mlp as agent_mlp
from harl.algos.hasac import HASAC
from harl.models.off_policy import JointQCritic
from harl.registry import load_extensions
from harl.utils.memory import keep_freed_memory
from hypermarl_ext.hypernet import HyperParams


def previous_layers(self: HyperParams, agents: torch.Tensor | None):
    """`HyperParams.layers` before: a stale cache is refilled with every agent's layers, whatever the selection."""
    if torch.is_grad_enabled():
        return self.generate(agents)
    sources = self.sources()
    key = tuple((t.data_ptr(), t._version) for t in sources)
    if key != self._cache.key:
        self._cache.key, self._cache.sources = key, [t.detach() for t in sources]
        self._cache.layers = self.generate(None)
    if agents is None:
        return self._cache.layers
    return [(w[agents], b[agents]) for w, b in self._cache.layers]


def previous_agent_rows(param: torch.Tensor, agents: torch.Tensor | None) -> torch.Tensor:
    """Row gathering before: in the tensor's logical order."""
    return param if agents is None else param[agents]


def previous_min_q(
    self: JointQCritic,
    state: torch.Tensor,
    actions: torch.Tensor,
    heads: torch.Tensor | None = None,
    state_embedding: torch.Tensor | None = None,
) -> torch.Tensor:
    """The twin minimum before: autograd through every head for every sample."""
    return self(state, actions, heads, state_embedding).min(-1).values


def paired_cpu_ms_per_update(
    learner, buffer, seconds: float, use_new: Callable[[HASAC, bool], None]
) -> tuple[float, float]:
    """CPU ms per update before and after a saving: one warm-up update each, then updates alternate between
    the previous and the current implementation, each timed alone, until both have had `seconds`."""
    spent = {False: 0.0, True: 0.0}
    for new in (False, True):
        use_new(learner, new)
        learner.update(buffer)
    calls = 0
    while calls < 2 or min(spent.values()) < seconds:
        for new in (False, True):
            use_new(learner, new)
            start = time.process_time()
            learner.update(buffer)
            spent[new] += time.process_time() - start
        calls += 1
    use_new(learner, True)
    return spent[False] / calls * 1e3, spent[True] / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_extensions()
    keep_freed_memory()
    device = torch.device("cpu")
    savings: list[tuple[str, str, Callable[[HASAC, bool], None]]] = [
        ("hypermarl", "re-sample generates the agent in turn only", _use_layers),
        ("nops", "rows gathered in memory order", _use_rows),
    ]
    savings += [(arch, "critic backward through the minimum head", _use_min_q) for arch in ("nops", "hypermarl")]
    savings.append(("nops", "turns replay the starting forward", _use_replay))
    print("hasac update, 1 thread, CPU ms per update, medians over rounds of alternating updates")
    print(f"{'setting':<36}{'arch':<11}{'saving':<44}{'before':>8}{'after':>8}{'gain':>7}")
    for name, spec in {
        "2 agents (HalfCheetah 2x3)": mamujoco_spec("HalfCheetah", "2x3"),
        "17 agents (obs 20, act 1, state 50)": uniform_spec(17, 20, 1, 50),
    }.items():
        buffer = filled_buffer(spec, device, N_STEP)
        for arch, saving, use_new in savings:
            learner = our_learner(spec, "hasac", arch, device)
            rounds = [paired_cpu_ms_per_update(learner, buffer, args.seconds, use_new) for _ in range(args.rounds)]
            before, after = (statistics.median(times) for times in zip(*rounds, strict=True))
            print(f"{name:<36}{arch:<11}{saving:<44}{before:>8.1f}{after:>8.1f}{before / after:>6.2f}x", flush=True)


_CURRENT_LAYERS = HyperParams.layers
_CURRENT_ROWS = agent_mlp.agent_rows


def _use_layers(learner: HASAC, new: bool) -> None:
    HyperParams.layers = _CURRENT_LAYERS if new else previous_layers


def _use_rows(learner: HASAC, new: bool) -> None:
    agent_mlp.agent_rows = _CURRENT_ROWS if new else previous_agent_rows


_CURRENT_MIN_Q = JointQCritic.min_q


def _use_min_q(learner: HASAC, new: bool) -> None:
    JointQCritic.min_q = _CURRENT_MIN_Q if new else previous_min_q  # type: ignore[method-assign]


def _use_replay(learner: HASAC, new: bool) -> None:
    learner.replays_start_pass = new


if __name__ == "__main__":
    main()
