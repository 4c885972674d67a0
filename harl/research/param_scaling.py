"""Trainable parameters of each architecture as the number of agents grows (HyperMARL paper, Fig. 9).

    python examples/param_scaling.py                       # nops, fups_id, hypermarl, hypermarl_linear at 4..1024
    python examples/param_scaling.py --archs nops,fups,hypermarl_coupled --agents 4,16,64 --out scaling.png

Each architecture's actor and critic are built through its registered builder
(`harl.registry.get_architecture(name).build_net`), exactly as training runs build them, so any
registered architecture can be listed; unregistered ones are skipped with a note. The default sizes
are the paper's IPPO set-up on Dispersion (Tables 5 and 6): actor and critic [64, 64] ReLU, 5 discrete
actions, an IPPO critic V(o_i) on the agent's own observation, hypernetwork embedding 4 and hidden 64.
Prints a markdown table and writes a log-log plot.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path

import torch

from harl.cli import guarded
from harl.config import ModelConfig
from harl.errors import UserError
from harl.models.net_spec import NetSpec
from harl.registry import ARCHITECTURES, get_architecture, load_extensions
from harl.utils.cli_args import ArgParser, int_list

DEFAULT_ARCHS = ("nops", "fups_id", "hypermarl", "hypermarl_linear")


def trainable(module: torch.nn.Module) -> int:
    """Number of trainable parameters of `module`."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def arch_config(name: str, options: dict[str, object]):
    """The architecture's default config with those `options` it has (others are ignored)."""
    cfg = get_architecture(name).config_cls()
    fields = {f.name for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in options.items() if k in fields})


def count(
    name: str, n_agents: int, obs_dim: int, act_dim: int, critic_in: int, model: ModelConfig, options: dict[str, object]
) -> tuple[int, int]:
    """(actor, critic) trainable parameters of architecture `name` for `n_agents` agents."""
    entry = get_architecture(name)
    cfg = arch_config(name, options)
    actor_spec = NetSpec.full_input(
        n_agents=n_agents,
        in_dim=obs_dim,
        out_dim=act_dim,
        hidden_sizes=model.hidden_sizes,
        out_gain=model.gain,
        role="actor",
        model=model,
    )
    critic_spec = NetSpec.full_input(
        n_agents=n_agents,
        in_dim=critic_in,
        out_dim=1,
        hidden_sizes=model.critic_sizes,
        out_gain=1.0,
        role="critic",
        model=model,
    )
    actor, critic = entry.build_net(spec=actor_spec, arch_cfg=cfg), entry.build_net(spec=critic_spec, arch_cfg=cfg)
    return trainable(actor), trainable(critic)


def markdown(counts: dict[str, dict[int, tuple[int, int]]], agents: list[int]) -> str:
    """A markdown table: actor + critic parameters per architecture (columns) and number of agents (rows)."""
    lines = ["| agents | " + " | ".join(counts) + " |", "|---:|" + "---:|" * len(counts)]
    for n in agents:
        lines.append(f"| {n} | " + " | ".join(f"{sum(counts[a][n]):,}" for a in counts) + " |")
    return "\n".join(lines)


def plot(counts: dict[str, dict[int, tuple[int, int]]], agents: list[int], out: Path) -> None:
    """Write the log-log plot of parameters against agents to `out` (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, by_n in counts.items():
        ax.plot(agents, [sum(by_n[n]) for n in agents], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of agents")
    ax.set_ylabel("trainable parameters (actor + critic)")
    ax.set_title("Parameter scaling")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    """Count the parameters for the options in `argv`, print the table and write the plot."""
    parser = ArgParser(description="Trainable parameters per architecture vs number of agents (paper Fig. 9).")
    parser.add_argument("--archs", default=",".join(DEFAULT_ARCHS), help="comma-separated architectures")
    parser.add_argument("--agents", type=int_list, default=[4, 8, 16, 32, 64, 128, 256, 512, 1024])
    parser.add_argument("--obs_dim", type=int, default=18, help="observation size per agent")
    parser.add_argument("--act_dim", type=int, default=5, help="actions per agent (policy outputs)")
    parser.add_argument("--critic_in", type=int, default=None, help="critic input size (default: obs_dim, IPPO)")
    parser.add_argument("--hidden", type=int_list, default=[64, 64], help="actor and critic hidden sizes")
    parser.add_argument("--embedding_dim", type=int, default=4, help="hypernetwork agent-embedding size")
    parser.add_argument("--hypernet_hidden", type=int_list, default=[64], help="hypernetwork hidden sizes")
    parser.add_argument("--out", default="docs/results/param_scaling.png", help="log-log plot (PNG)")
    parser.add_argument("--md", default=None, help="also write the table, with the command, to this markdown file")
    args = parser.parse_args(argv)
    if min(args.agents) < 1 or min(args.obs_dim, args.act_dim, *args.hidden) < 1:
        raise UserError("--agents, --obs_dim, --act_dim and --hidden must be positive")
    load_extensions()
    names = [a.strip() for a in args.archs.split(",") if a.strip()]
    registered = [a for a in names if a in ARCHITECTURES]
    for missing in sorted(set(names) - set(registered)):
        print(f"note: architecture {missing} is not registered; skipped")
    if not registered:
        raise UserError(f"none of {', '.join(names)} is registered; valid: {', '.join(sorted(ARCHITECTURES))}")
    model = ModelConfig(hidden_sizes=args.hidden, layer_norm=False, feature_norm=False)
    options = {"embedding_dim": args.embedding_dim, "hypernet_hidden_dims": args.hypernet_hidden}
    critic_in = args.critic_in or args.obs_dim
    agents = sorted(set(args.agents))
    counts = {
        name: {n: count(name, n, args.obs_dim, args.act_dim, critic_in, model, options) for n in agents}
        for name in registered
    }
    setting = (
        f"trainable parameters (actor + critic): obs {args.obs_dim}, {args.act_dim} actions, hidden "
        f"{args.hidden}, critic input {critic_in}, hypernetwork embedding {args.embedding_dim} and hidden "
        f"{args.hypernet_hidden}"
    )
    table = markdown(counts, agents)
    print(setting)
    print(table)
    plot(counts, agents, Path(args.out))
    print(f"plot: {args.out}")
    if args.md:
        command = shlex.join(["python", "examples/param_scaling.py", *argv])
        image = os.path.relpath(args.out, Path(args.md).parent)
        Path(args.md).parent.mkdir(parents=True, exist_ok=True)
        Path(args.md).write_text(
            f"# Parameter scaling (paper Fig. 9)\n\nProduced by `{command}`.\n\n"
            f"{setting[0].upper()}{setting[1:]}.\n\n{table}\n\n![parameter scaling]({image})\n"
        )
        print(f"table: {args.md}")
    return 0


cli = guarded(main)

if __name__ == "__main__":
    sys.exit(cli())
