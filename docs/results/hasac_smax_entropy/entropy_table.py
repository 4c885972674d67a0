"""Print the collapse check's table: per arm, each seed's mean per-agent policy entropy (nats) at chosen update
counts, the temperature, and training/evaluation returns, read from the runs' progress.csv files.

    python docs/results/hasac_smax_entropy/entropy_table.py results/hasac_smax_alpha
"""

import csv
import statistics
import sys
from pathlib import Path

UPDATES = (50, 100, 250, 500, 750, 1000)


def seed_rows(progress: Path) -> dict[int, dict[str, str]]:
    """progress.csv's rows by update count (rows before the first update left out)."""
    rows = {}
    with progress.open() as f:
        for row in csv.DictReader(f):
            if row.get("charts/updates"):
                rows[int(float(row["charts/updates"]))] = row
    return rows


def mean_of(row: dict[str, str], prefix: str, suffix: str) -> float:
    values = [float(v) for k, v in row.items() if k.startswith(prefix) and k.endswith(suffix) and v]
    return statistics.mean(values) if values else float("nan")


def main(root: Path) -> None:
    for arm in sorted(p for p in root.glob("smacv2/smacv2_5_units/*/*") if p.is_dir()):
        seeds = [seed_rows(p) for p in sorted(arm.glob("seed-*/progress.csv"))]
        if not seeds or not all(seeds):
            continue
        print(f"\n{arm.name} ({len(seeds)} seeds)")
        print("| updates | entropy per seed | mean | α | training return per seed |")
        print("|---|---|---|---|---|")
        for u in UPDATES:
            rows = [s[u] for s in seeds if u in s]
            if not rows or len(rows) < len(seeds):
                continue
            ents = [mean_of(r, "losses/", "/entropy") for r in rows]
            alpha = mean_of(rows[0], "losses/ally", "/alpha")
            returns = " / ".join(f"{float(r['train/episode_return']):.2f}" for r in rows)
            per_seed = " / ".join(f"{e:.3f}" for e in ents)
            print(f"| {u} | {per_seed} | {statistics.mean(ents):.3f} | {alpha:.4f} | {returns} |")
        evals = []
        for progress in sorted(arm.glob("seed-*/progress.csv")):
            with progress.open() as f:
                done = [r for r in csv.DictReader(f) if r.get("eval/episode_return")]
            if done:
                last = done[-1]
                evals.append(
                    f"{float(last['eval/episode_return']):.2f} (win {float(last['eval/win_rate']):.2f}, "
                    f"{int(float(last['env_steps']))} steps)"
                )
        print("last evaluation per seed: " + "; ".join(evals))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
