"""The matrix-game study on a reduced configuration: who can specialise, and the report it writes."""

from __future__ import annotations

import pytest
import torch

from harl.cli import guarded
from harl.registry import ARCHITECTURES, load_extensions
from harl.research import matrix_study as mg

load_extensions()
METHODS = {m.name: m for m in mg.METHODS}


def test_nops_specialises_where_fups_cannot():
    torch.set_num_threads(1)
    methods = [METHODS["nops"], METHODS["fups"]]
    result = mg.run_study(2, methods, games=["specialisation"], seeds=1, trials=300, eval_trials=500, lr=0.05)
    nops, fups = result.stochastic[0, 0, 0].item(), result.stochastic[1, 0, 0].item()
    assert nops > 0.95  # the two agents pick different items
    assert fups < 0.8  # a shared policy without ids: at best 0.75 in expectation (paper, section 3.2)
    assert result.greedy[1, 0, 0].item() == 0.5  # both agents' most likely item is the same one
    assert result.parameters == {"NoPS": 36, "FuPS": 34}  # the paper's Table 4 counts for n = 2


def test_a_row_is_the_same_alone_or_beside_other_methods():
    """Every (method, n, seed, game) has its own generators: other rows or games never change a row's scores."""
    torch.set_num_threads(1)
    names = ["hypermarl", "hypermarl_shared"] if "hypermarl" in ARCHITECTURES else ["nops", "fups"]
    settings = {"seeds": 3, "trials": 40, "eval_trials": 200, "lr": 0.05}
    alone = mg.run_study(4, [METHODS[names[0]]], **settings)
    beside = mg.run_study(4, [METHODS["fups_id"], METHODS[names[1]], METHODS[names[0]]], **settings)
    assert torch.equal(alone.stochastic[0], beside.stochastic[2]) and torch.equal(alone.greedy[0], beside.greedy[2])
    one_game = mg.run_study(4, [METHODS[names[0]]], games=["specialisation"], **settings)  # nor the other game
    assert torch.equal(one_game.stochastic[0, 0], beside.stochastic[2, 0])
    assert not torch.equal(beside.stochastic[1], beside.stochastic[2])  # rows do differ from each other
    assert len(set(alone.stochastic[0, 0].tolist())) > 1  # and seeds from each other


def test_cli_writes_the_report_and_keeps_the_analysis(tmp_path, capsys):
    out = tmp_path / "matrix_games.md"
    methods = "nops,fups_id" + (",hypermarl_linear" if "hypermarl_linear" in ARCHITECTURES else "")
    argv = [
        "--agents",
        "2",
        "--seeds",
        "2",
        "--trials",
        "20",
        "--eval_trials",
        "50",
        "--methods",
        methods,
        "--out",
        str(out),
    ]
    assert guarded(mg.main)(argv) == 0
    text = out.read_text()
    assert f"python examples/matrix_games.py {' '.join(argv)}" in text
    assert "| NoPS |" in text and "| FuPS+ID |" in text and "Specialisation game" in text
    out.write_text(text + "hand-written analysis\n")
    assert guarded(mg.main)(argv) == 0
    assert out.read_text().endswith(mg.ANALYSIS_MARKER + "\nhand-written analysis\n")


def test_bad_input_is_one_line_exit_2(capsys):
    for argv, message in (
        (["--methods", "nops,qmix"], "unknown method 'qmix'"),
        (["--games", "chess"], "unknown game 'chess'"),
        (["--agents", "1"], "at least 2"),
        (["--reward", "selfish"], "unknown --reward"),
    ):
        assert guarded(mg.main)([*argv, "--out", "-"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_hypermarl_specialises_on_the_4_agent_game():
    """The study's defaults (20 seeds, 10 000 updates): the authors' HyperMARL specialises like NoPS."""
    torch.set_num_threads(1)
    result = mg.run_study(4, [METHODS["hypermarl"]], games=["specialisation"])
    sampled, greedy = result.stochastic[0, 0].mean().item(), result.greedy[0, 0].mean().item()
    assert sampled >= 0.97 and greedy >= 0.95, (sampled, greedy)
