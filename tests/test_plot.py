"""harl-plot (`harl.research.plotting`) on hand-written run folders (known IQMs, optional statistics) and on
real tiny matrix runs."""

from __future__ import annotations

import sys

import pytest

from harl.cli import guarded
from harl.research import plotting as plot

from .conftest import run_train

HEADER = "env_steps,train/episode_return,eval/episode_return,diversity/snd,grad/param_variance,grad/noise\n"


def fake_run(root, method: str, seed: int, rows: list[str]) -> None:
    folder = root / "matrix" / "specialisation-4" / method / "default" / f"seed-{seed}-20250101-000000"
    folder.mkdir(parents=True)
    (folder / "progress.csv").write_text(HEADER + "".join(f"{row}\n" for row in rows))


def test_fake_runs_give_known_iqms_and_every_figure(tmp_path, capsys):
    results = tmp_path / "results"
    # eval rows at 0 and 100; gradient statistics logged on every training row
    fake_run(results, "mappo-nops", 1, ["0,,0.2,,,", "50,0.3,,,2.0,0.5", "100,0.5,0.8,0.9,4.0,1.5"])
    fake_run(results, "mappo-nops", 2, ["0,,0.4,,,", "50,0.5,,,1.0,0.5", "100,0.7,1.0,0.7,3.0,0.5"])
    fake_run(results, "mappo-fups", 1, ["0,,0.5,,,", "100,0.5,0.6,0.1,1.0,"])
    out = tmp_path / "plots"
    assert guarded(plot.main)([str(results), "--out", str(out), "--reps", "200"]) == 0
    summary = (out / "summary.md").read_text()
    # two runs: the IQM is their mean (0.8 and 1.0 -> 0.9); one run: its value, a zero-width interval
    assert "| mappo-nops | 2 | 100 | 0.9 [0.8, 1] | 0.8 ± 0.1 | 2.5 ± 0.5 | 0.75 ± 0.25 |" in summary
    assert "| mappo-fups | 1 | 100 | 0.6 [0.6, 0.6] | 0.1 | 1 | – |" in summary
    for name in ("curves", "final", "diversity", "gradients"):
        assert (out / f"{name}_matrix_specialisation-4.png").stat().st_size > 1000


def test_max_steps_compares_runs_at_one_budget(tmp_path, capsys):
    results = tmp_path / "results"
    fake_run(results, "mappo-nops", 1, ["0,,0.2,,,", "100,0.5,0.8,0.9,,", "200,0.5,0.1,0.3,,"])
    fake_run(results, "mappo-nops", 2, ["0,,0.4,,,", "100,0.7,1.0,0.7,,"])
    out = tmp_path / "plots"
    assert guarded(plot.main)([str(results), "--out", str(out), "--reps", "200", "--max_steps", "150"]) == 0
    summary = (out / "summary.md").read_text()
    assert "| mappo-nops | 2 | 100 | 0.9 [0.8, 1] | 0.8 ± 0.1 |" in summary  # the 200-step row is left out
    assert "last logged value at or before 150 env steps" in summary
    assert guarded(plot.main)([str(results), "--max_steps", "0"]) == 2


def test_real_tiny_matrix_runs(tmp_path, capsys):
    tiny = [
        "--env",
        "matrix",
        "--n_agents",
        "2",
        "--num_env_steps",
        "200",
        "--n_rollout_threads",
        "10",
        "--eval_interval",
        "100",
        "--eval_episodes",
        "4",
        "--n_eval_rollout_threads",
        "4",
        "--progress_bar",
        "false",
    ]
    for arch in ("nops", "fups"):
        run_train(tmp_path, "--algo", "mappo", "--arch", arch, *tiny)
    assert guarded(plot.main)([str(tmp_path / "results"), "--reps", "100"]) == 0
    summary = (tmp_path / "results" / "plots" / "summary.md").read_text()
    assert "## matrix / specialisation-2" in summary
    assert "| mappo-nops | 1 | 200 |" in summary and "| mappo-fups | 1 | 200 |" in summary
    assert (tmp_path / "results" / "plots" / "curves_matrix_specialisation-2.png").is_file()


@pytest.mark.parametrize("make", [False, True])
def test_missing_or_empty_results_dir_is_exit_2(make, tmp_path, capsys):
    target = tmp_path / "nothing"
    if make:
        (target / "matrix").mkdir(parents=True)
    assert guarded(plot.main)([str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ("no runs" in err if make else "not found" in err)


@pytest.mark.parametrize("package", ["pandas", "rliable"])
def test_without_the_research_extra_is_one_line_naming_it(package, tmp_path, capsys, monkeypatch):
    fake_run(tmp_path / "results", "mappo-nops", 1, ["0,,0.2,,,"])
    monkeypatch.setitem(sys.modules, package, None)  # `import package` raises ImportError
    assert plot.cli([str(tmp_path / "results")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        f"error: harl-plot needs {package} (the research extra): pip install 'harl-hypermarl[research]' "
        "(in a clone of the repository: pip install -e '.[research]')\n"
    )
    assert not (tmp_path / "results" / "plots").exists()
