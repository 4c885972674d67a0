"""The matrix-game study: HyperMARL paper section 3.3 / Table 2, with HyperMARL rows added.

REINFORCE on the n-agent Specialisation and Synchronisation games (`harl.envs.matrix`) with
single-hidden-layer policies built by harl's registered architectures (the same builders training
runs use), for NoPS, FuPS, FuPS+ID, HyperMARL (MLP), HyperMARL (linear) and DiCo (unconstrained, and at
SND_des 1.2: the logits' diversity held at the target on the constant observation). SePS and Kaleidoscope
have no row: SePS's clustering needs transitions that tell agents apart (every agent here sees the same
constant observation), and Kaleidoscope's method is its mask-diversity loss, which this study's plain
REINFORCE loss does not include (train it with `--arch kaleidoscope` through harl-train instead):

    python examples/matrix_games.py                       # the full study (Table 2 + HyperMARL rows)
    python examples/matrix_games.py --agents 2 --seeds 1 --trials 500 --out -   # a quick look

Settings (paper Table 4): SGD, lr 0.01, batch 10 plays per update, 10 000 updates ("trials"),
1 000 evaluation plays, ReLU hidden layer, softmax output; 20 seeds by default (the paper averaged 5:
`--seeds 5`). Every agent sees the constant
observation 1 and learns from the team reward (the mean payoff, as the environment hands it out;
`--reward agent`: its own payoff). The update is plain REINFORCE without a baseline on the joint
log-probability, the loss summed over the batch's plays, −Σ_b R_b Σ_i log π_i(a_bi) (`--reduction mean`
averages instead, i.e. a 10× smaller step), its gradient taken exactly through the networks.
Parameter counts follow Table 4: NoPS has 4 hidden units per agent; FuPS and FuPS+ID share one network
with 4n hidden units; both hypernetworks generate, per agent, the NoPS-sized policy (4 hidden units).
The MLP hypernetwork rows use `hypermarl`'s own defaults (embedding 8, generator width 64: the paper's
MAPPO sizes), so they hold far more parameters than the networks they generate; `--embedding_dim` and
`--hypernet_hidden` size them otherwise. The counts are printed with the results.

Every (method, n, seed, game) draws its actions from its own random generator, seeded from the method's
key, n, the seed and the game, and every (method, n, seed) its initial parameters from a seed of its own too,
so a row is the same whether it runs alone or beside other methods and games. Everything is vectorised:
seeds and both games are a leading replica dimension of every network (`torch.func.vmap` over stacked
copies), all methods step together, and since the observation is constant each update needs one forward of
every policy and the analytic gradient of the REINFORCE loss with respect to the logits, backpropagated
through the networks.
"""

from __future__ import annotations

import copy
import re
import shlex
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.func import functional_call, stack_module_state, vmap

from harl.cli import guarded
from harl.config import ModelConfig
from harl.envs.matrix import GAMES, MatrixGameVecEnv
from harl.errors import UserError
from harl.models.net_spec import NetSpec
from harl.registry import ARCHITECTURES, get_architecture, load_extensions
from harl.utils.cli_args import ArgParser, int_list

ANALYSIS_MARKER = "<!-- analysis: text below this line is kept when the file is regenerated -->"
PAPER_TABLE2 = {
    "specialisation": {
        "NoPS": {2: (0.9996, 0.0004), 4: (0.9988, 0.0007), 8: (0.9989, 0.0008)},
        "FuPS": {2: (0.7493, 0.0062), 4: (0.6826, 0.0039), 8: (0.6545, 0.0025)},
        "FuPS+ID": {2: (0.9999, 0.0002), 4: (0.9995, 0.0003), 8: (0.7275, 0.0293)},
    },
    "synchronisation": {
        "NoPS": {2: (0.9993, 0.0004), 4: (0.9976, 0.0022), 8: (0.1250, 0.0)},
        "FuPS": {2: (0.9999, 0.0002), 4: (1.0, 0.0), 8: (0.3000, 0.3500)},
        "FuPS+ID": {2: (0.9999, 0.0), 4: (0.9999, 0.0003), 8: (0.1250, 0.0)},
    },
}
"""The paper's Table 2 (mean ± std over 5 seeds), for the side-by-side comparison."""


@dataclass(frozen=True)
class Method:
    """A row of the study: a registered architecture and how its sizes depend on the number of agents n.

    Attributes:
        label: the row name.
        arch: the registered architecture.
        key: the name `--methods` takes (default: `arch`); it also seeds the row's random streams.
        shared_hidden: True: one hidden layer of `width`·n units (a shared network); False: `width` units
            per agent's (possibly generated) network.
        hyper_mlp: an MLP hypernetwork, sized by the study's `--embedding_dim` / `--hypernet_hidden` when given.
        options: architecture options other than the defaults.
    """

    label: str
    arch: str
    key: str = ""
    shared_hidden: bool = False
    hyper_mlp: bool = False
    options: tuple[tuple[str, object], ...] = ()

    @property
    def name(self) -> str:
        return self.key or self.arch


METHODS = (
    Method("NoPS", "nops"),
    Method("FuPS", "fups", shared_hidden=True),
    Method("FuPS+ID", "fups_id", shared_hidden=True),
    Method("HyperMARL (MLP)", "hypermarl", hyper_mlp=True),
    Method(
        "HyperMARL (MLP, shared trunk)", "hypermarl", "hypermarl_shared", hyper_mlp=True, options=(("trunk", "shared"),)
    ),
    Method(
        "HyperMARL (MLP, earlier: shared trunk, paper init)",
        "hypermarl",
        "hypermarl_earlier",
        hyper_mlp=True,
        options=(("trunk", "shared"), ("hypernet_init", "paper"), ("embedding_gain", 1.0)),
    ),
    Method("HyperMARL (linear)", "hypermarl_linear"),
    Method("DiCo (unconstrained)", "dico", "dico", options=(("target_diversity", -1.0),)),
    Method("DiCo (SND_des 1.2)", "dico", "dico_1.2", options=(("target_diversity", 1.2),)),
)
"""Every row `--methods` can pick (by `Method.name`); all of them by default."""


def method_seed(method: Method, n_agents: int, base_seed: int, seed: int, stream: str) -> int:
    """The seed of one (method, n, seed)'s random stream ("init" or "actions"), independent of the other rows."""
    return zlib.crc32(f"{method.name}|{n_agents}|{base_seed}|{seed}|{stream}".encode())


@dataclass
class StudyResult:
    """Final scores of one number of agents.

    Attributes:
        n_agents: n.
        methods: the labels of the methods run, in order.
        games: the games, in order.
        stochastic: (M, G, S) mean team reward of 1 000 (eval_trials) sampled plays per seed.
        greedy: (M, G, S) team reward of every agent taking its most likely action.
        parameters: trainable parameters of each method's policy.
    """

    n_agents: int
    methods: list[str]
    games: list[str]
    stochastic: torch.Tensor
    greedy: torch.Tensor
    parameters: dict[str, int]


class VectorisedPolicy:
    """R independent copies (replicas) of one architecture's policy network, evaluated with one vmap call."""

    def __init__(
        self,
        method: Method,
        n: int,
        width: int,
        replicas: list[int],
        seed: int,
        hyper_sizes: tuple[int | None, int | None] = (None, None),
    ) -> None:
        entry = get_architecture(method.arch)
        hidden = [width * n] if method.shared_hidden else [width]
        model_cfg = ModelConfig(hidden_sizes=hidden, activation="relu", layer_norm=False, feature_norm=False, gain=0.01)
        arch_cfg = entry.config_cls(**dict(method.options))
        if method.hyper_mlp:
            embedding, hidden_width = hyper_sizes
            if embedding is not None:
                arch_cfg.embedding_dim = embedding
            if hidden_width is not None:
                arch_cfg.hypernet_hidden_dims = [hidden_width]
        net_spec = NetSpec.full_input(
            n_agents=n, in_dim=1, out_dim=n, hidden_sizes=hidden, out_gain=model_cfg.gain, role="actor", model=model_cfg
        )
        nets = {}
        for r in sorted(set(replicas)):  # one initialisation per seed, shared by that seed's games
            torch.manual_seed(method_seed(method, n, seed, r, "init"))
            nets[r] = entry.build_net(spec=net_spec, arch_cfg=arch_cfg)
        modules = [copy.deepcopy(nets[r]) for r in replicas]
        self.parameter_count = sum(p.numel() for p in modules[0].parameters() if p.requires_grad)
        self.params, self.buffers = stack_module_state(modules)  # leaves (R, ...) requiring grad
        skeleton = copy.deepcopy(modules[0]).to("meta")
        obs = torch.ones(1, n, 1)  # the games' constant observation: (B=1, N, 1)

        def logits(params: dict, buffers: dict) -> torch.Tensor:
            return functional_call(skeleton, (params, buffers), (obs,), tie_weights=False)[0]  # (N, A)

        self._logits = vmap(logits)

    def logits(self) -> torch.Tensor:
        """(R, N, A) every replica's action logits."""
        return self._logits(self.params, self.buffers)


class ActionNoise:
    """The uniform draws behind every method's sampled actions: one generator per (method, n, seed, game).

    Replicas are grouped by game (replica g·S + s plays game g with seed s), in the order of `rngs`;
    each draws `CHUNK` training updates at a time.
    """

    CHUNK = 100

    def __init__(self, methods: list[Method], n_agents: int, seeds: int, games: Sequence[str], base_seed: int) -> None:
        self.n_agents = n_agents
        self.rngs = [
            [
                torch.Generator().manual_seed(method_seed(m, n_agents, base_seed, s, f"actions|{game}"))
                for game in games
                for s in range(seeds)
            ]
            for m in methods
        ]

    def draw(self, *shape: int) -> torch.Tensor:
        """(M, G·S, *shape) uniforms in [0, 1), for leading dims `shape[:-2]` and plays × agents `shape[-2:]`."""
        return torch.stack([torch.stack([torch.rand(shape, generator=g) for g in gens]) for gens in self.rngs])

    def training(self, trials: int, batch: int):
        """Yields, for every training update, (M, G·S, batch, N, 1) uniforms."""
        for start in range(0, trials, self.CHUNK):
            block = self.draw(self.CHUNK, batch, self.n_agents)  # (M, G·S, CHUNK, B, N)
            for t in range(min(self.CHUNK, trials - start)):
                yield block[:, :, t, :, :, None]


def sample_actions(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Independent categorical draws: probs (..., N, A) and uniforms (..., B, N, 1) -> actions (..., B, N)."""
    cdf = probs.cumsum(-1).unsqueeze(-3)  # (..., 1, N, A)
    return (u > cdf).sum(-1).clamp(max=probs.shape[-1] - 1)


def payoffs(envs: list[MatrixGameVecEnv], actions: torch.Tensor, seeds: int) -> torch.Tensor:
    """actions (M, G·S, B, N), replicas grouped by game -> every agent's payoff (M, G·S, B, N)."""
    m, _, b, n = actions.shape
    out = []
    for g, env in enumerate(envs):
        joint = actions[:, g * seeds : (g + 1) * seeds].reshape(-1, n)  # (M·S·B, N)
        out.append(env.payoffs(joint).view(m, seeds, b, n))
    return torch.cat(out, dim=1)


def run_study(
    n_agents: int,
    methods: list[Method],
    games: Sequence[str] = GAMES,
    seeds: int = 20,
    trials: int = 10_000,
    eval_trials: int = 1_000,
    batch: int = 10,
    lr: float = 0.01,
    width: int = 4,
    seed: int = 0,
    reward: str = "team",
    reduction: str = "sum",
    hyper_sizes: tuple[int | None, int | None] = (None, None),
) -> StudyResult:
    """Train every method on every game with `seeds` seeds, all at once, and score the final policies.

    `hyper_sizes` are the MLP hypernetwork's embedding size and generator width (None: the architecture's default).
    """
    replicas = [s for _ in games for s in range(seeds)]  # (G·S,): replica -> seed
    policies = [VectorisedPolicy(method, n_agents, width, replicas, seed, hyper_sizes) for method in methods]
    envs = [MatrixGameVecEnv(game, n_agents, 1, "cpu") for game in games]
    optimizer = torch.optim.SGD([p for pol in policies for p in pol.params.values()], lr=lr)
    noise = ActionNoise(methods, n_agents, seeds, games, seed)
    for uniforms in noise.training(trials, batch):
        logits = torch.stack([pol.logits() for pol in policies])  # (M, R, N, A)
        probs = torch.softmax(logits.detach(), -1)
        actions = sample_actions(probs, uniforms)  # (M, R, B, N)
        rewards = payoffs(envs, actions, seeds)  # (M, R, B, N)
        if reward == "team":
            rewards = rewards.mean(-1, keepdim=True).expand_as(rewards)
        chosen = torch.nn.functional.one_hot(actions, n_agents).to(probs.dtype)  # (M, R, B, N, A)
        # d(-Σ_b Σ_i R_bi log π_i(a_bi)) / d logits_i = -Σ_b R_bi (onehot(a_bi) - π_i)   (÷B for "mean")
        grad = -(rewards[..., None] * (chosen - probs.unsqueeze(2))).sum(2)  # (M, R, N, A)
        if reduction == "mean":
            grad = grad / batch
        optimizer.zero_grad()
        logits.backward(grad)
        optimizer.step()
    # (the final forward runs with autograd on: hypernetworks cache generated weights under no_grad, which
    # vmap's batched tensors do not support)
    probs = torch.softmax(torch.stack([pol.logits() for pol in policies]).detach(), -1)  # (M, R, N, A)
    with torch.no_grad():
        stochastic = payoffs(envs, sample_actions(probs, noise.draw(eval_trials, n_agents).unsqueeze(-1)), seeds).mean(
            (-2, -1)
        )
        greedy = payoffs(envs, probs.argmax(-1).unsqueeze(2), seeds).mean((-2, -1))
    shape = (len(methods), len(games), seeds)
    return StudyResult(
        n_agents,
        [m.label for m in methods],
        list(games),
        stochastic.view(shape),
        greedy.view(shape),
        {m.label: pol.parameter_count for m, pol in zip(methods, policies, strict=True)},
    )


# ------------------------------------------------------------------------------------------ report


def _cell(values: torch.Tensor) -> str:
    """mean ± std (population std over seeds), paper style (.9996 ± .0004)."""
    mean, std = float(values.mean()), float(values.std(unbiased=False)) if values.numel() > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}".replace("0.", ".")


def result_tables(results: list[StudyResult], greedy: bool = False) -> str:
    """Markdown: one table per game, methods × n (mean ± std over seeds)."""
    lines = []
    for g, game in enumerate(results[0].games):
        header = "| Method | " + " | ".join(f"n = {r.n_agents}" for r in results) + " |"
        lines += [f"**{game.capitalize()} game**", "", header, "|---|" + "---|" * len(results)]
        for m, label in enumerate(results[0].methods):
            scores = [(r.greedy if greedy else r.stochastic)[m, g] for r in results]
            lines.append(f"| {label} | " + " | ".join(_cell(s) for s in scores) + " |")
        lines.append("")
    return "\n".join(lines)


def parameter_table(results: list[StudyResult]) -> str:
    """A markdown table of every method's trainable parameters per number of agents."""
    lines = ["| Method | " + " | ".join(f"n = {r.n_agents}" for r in results) + " |", "|---|" + "---|" * len(results)]
    for label in results[0].methods:
        lines.append(f"| {label} | " + " | ".join(str(r.parameters[label]) for r in results) + " |")
    return "\n".join(lines) + "\n"


def paper_comparison(results: list[StudyResult], tolerance: float = 0.02) -> str:
    """Cells where our mean differs from the paper's Table 2 mean by more than `tolerance`."""
    lines = []
    for r in results:
        for g, game in enumerate(r.games):
            for m, label in enumerate(r.methods):
                paper = PAPER_TABLE2.get(game, {}).get(label, {}).get(r.n_agents)
                if paper is None:
                    continue
                ours = float(r.stochastic[m, g].mean())
                if abs(ours - paper[0]) > tolerance:
                    lines.append(
                        f"- {game}, {label}, n = {r.n_agents}: ours {ours:.4f}, paper {paper[0]:.4f} ± {paper[1]:.4f}"
                    )
    if not lines:
        return f"Every cell the paper reports is within {tolerance} of its Table 2 mean.\n"
    return f"Cells more than {tolerance} away from the paper's Table 2 mean:\n\n" + "\n".join(lines) + "\n"


def markdown_report(results: list[StudyResult], command: str, seconds: float, cpu_seconds: float, args) -> str:
    """The full report: settings, result and parameter tables, the comparison with the paper and the command."""
    n_list = ", ".join(str(r.n_agents) for r in results)
    embedding = "hypermarl's default (8)" if args.embedding_dim is None else args.embedding_dim
    width = "hypermarl's default (64)" if args.hypernet_hidden is None else args.hypernet_hidden
    return "\n".join(
        [
            "# Matrix games: Specialisation and Synchronisation (paper section 3.3, Table 2, with HyperMARL rows)",
            "",
            f"Produced by `{command}` in {seconds:.0f} s wall-clock, {cpu_seconds:.0f} s of CPU time on one thread "
            f"(torch {torch.__version__}).",
            "",
            f"REINFORCE (no baseline, {args.reward} reward, loss {args.reduction} over the batch), SGD lr {args.lr}, "
            f"batch {args.batch} plays per update, {args.trials} updates, {args.seeds} seeds "
            "(the same initial parameters "
            f"in both games), n ∈ {{{n_list}}}; hidden width {args.width} per agent (shared networks: {args.width}·n), "
            "ReLU, softmax output, orthogonal initialisation (output gain 0.01, zero biases; hypernetworks: each "
            f"architecture's own init; MLP hypernetworks: embedding {embedding}, generator width {width}). "
            "Scores: the mean payoff "
            f"over {args.eval_trials} plays with sampled actions after training; mean ± std (population) over seeds.",
            "",
            "## Mean reward, sampled actions (as the paper's Table 2)",
            "",
            result_tables(results),
            "## Mean reward, greedy actions (every agent takes its most likely action)",
            "",
            result_tables(results, greedy=True),
            "## Trainable parameters of the policy",
            "",
            parameter_table(results),
            "## Against the paper's Table 2",
            "",
            paper_comparison(results),
        ]
    )


def write_report(path: Path, report: str) -> None:
    """Write the report, keeping any hand-written analysis after ANALYSIS_MARKER in an existing file."""
    analysis = ""
    if path.exists():
        previous = path.read_text()
        if ANALYSIS_MARKER in previous:
            analysis = previous[previous.index(ANALYSIS_MARKER) + len(ANALYSIS_MARKER) :]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report + "\n" + ANALYSIS_MARKER + (analysis or "\n"))


def _method_list(text: str) -> list[Method]:
    by_key = {re.sub(r"[^a-z0-9]", "", m.label.lower()): m for m in METHODS}
    by_key.update({m.name: m for m in METHODS})
    chosen = []
    for name in text.split(","):
        key = name.strip()
        method = by_key.get(key) or by_key.get(re.sub(r"[^a-z0-9]", "", key.lower()))
        if method is None:
            raise UserError(f"unknown method {key!r}; valid: {', '.join(m.name for m in METHODS)}")
        chosen.append(method)
    return chosen


def main(argv: list[str]) -> int:
    """Run the study with the options in `argv` (see the module docstring), print and write its report."""
    parser = ArgParser(description="The matrix-game study (paper Table 2 with HyperMARL rows).")
    parser.add_argument("--agents", type=int_list, default=[2, 4, 8, 16], help="numbers of agents, e.g. 2,4,8,16")
    parser.add_argument("--games", default=",".join(GAMES), help="comma-separated games")
    parser.add_argument(
        "--methods",
        default=",".join(m.name for m in METHODS),
        help="comma-separated rows: " + ", ".join(m.name for m in METHODS),
    )
    parser.add_argument("--seeds", type=int, default=20, help="seeds per configuration (the paper's Table 2: 5)")
    parser.add_argument("--trials", type=int, default=10_000, help="training updates (each on --batch plays)")
    parser.add_argument("--eval_trials", type=int, default=1_000, help="plays scored after training")
    parser.add_argument("--batch", type=int, default=10, help="plays per update")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    parser.add_argument("--width", type=int, default=4, help="hidden units per agent")
    parser.add_argument("--seed", type=int, default=0, help="base random seed")
    parser.add_argument(
        "--reward",
        default="team",
        help="team: every agent learns from the team reward (the mean "
        "payoff, as the env gives it); agent: each agent from its own payoff",
    )
    parser.add_argument("--reduction", default="sum", help="sum or mean of the REINFORCE loss over the batch")
    parser.add_argument(
        "--embedding_dim", type=int, default=None, help="MLP hypernetwork embedding size (default: hypermarl's, 8)"
    )
    parser.add_argument(
        "--hypernet_hidden", type=int, default=None, help="MLP hypernetwork generator width (default: hypermarl's, 64)"
    )
    parser.add_argument("--out", default="docs/results/matrix_games.md", help="markdown report ('-': do not write)")
    args = parser.parse_args(argv)
    for name in ("seeds", "trials", "eval_trials", "batch", "width", "embedding_dim", "hypernet_hidden"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            raise UserError(f"--{name} must be positive")
    if min(args.agents) < 2:
        raise UserError("--agents must all be at least 2")
    if args.reward not in ("team", "agent"):
        raise UserError(f"unknown --reward {args.reward!r}; valid: team, agent")
    if args.reduction not in ("sum", "mean"):
        raise UserError(f"unknown --reduction {args.reduction!r}; valid: sum, mean")
    games = [g.strip() for g in args.games.split(",")]
    for game in games:
        if game not in GAMES:
            raise UserError(f"unknown game {game!r}; valid: {', '.join(GAMES)}")
    load_extensions()
    methods = []
    for method in _method_list(args.methods):
        if method.arch in ARCHITECTURES:
            methods.append(method)
        else:
            print(f"note: architecture {method.arch} is not registered; skipping {method.label}")
    if not methods:
        raise UserError("none of the requested architectures is registered")
    torch.set_num_threads(1)  # tiny tensors: extra threads only add overhead
    start, cpu_start = time.perf_counter(), time.process_time()
    results = []
    for n in args.agents:
        t0 = time.perf_counter()
        results.append(
            run_study(
                n,
                methods,
                games,
                args.seeds,
                args.trials,
                args.eval_trials,
                args.batch,
                args.lr,
                args.width,
                args.seed,
                args.reward,
                args.reduction,
                (args.embedding_dim, args.hypernet_hidden),
            )
        )
        print(f"n = {n}: {time.perf_counter() - t0:.1f} s", flush=True)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    print()
    print(result_tables(results))
    print("trainable parameters:")
    print(parameter_table(results))
    if args.out != "-":
        command = shlex.join(["python", "examples/matrix_games.py", *argv])
        write_report(Path(args.out), markdown_report(results, command, seconds, cpu_seconds, args))
        print(f"report: {args.out}")
    print(f"total: {seconds:.1f} s wall-clock, {cpu_seconds:.1f} s CPU")
    return 0


cli = guarded(main)

if __name__ == "__main__":
    sys.exit(cli())
