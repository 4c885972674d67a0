"""The HyperMARL-vs-sequential-updates experiment runs end to end on a tiny budget."""

from __future__ import annotations

from harl.research import compare_sequential

from .conftest import TINY_MAMUJOCO


def test_tiny_comparison_writes_table_and_plots(tmp_path):
    out = tmp_path / "out"
    argv = [
        "--seeds",
        "1",
        "--num_env_steps",
        "60",
        "--log_dir",
        str(tmp_path / "runs"),
        "--out",
        str(out),
        "--reps",
        "100",
        *TINY_MAMUJOCO,
        "--warmup_steps",
        "20",
        "--batch_size",
        "8",
        "--train_interval",
        "5",
    ]
    # --warmup_steps etc. exist only for off-policy learners: run the groups separately
    on = [a for a in argv if a not in ("--warmup_steps", "20", "--batch_size", "8", "--train_interval", "5")]
    assert compare_sequential.main([*on, "--groups", "on", "--episode_length", "10"]) == 0
    assert compare_sequential.main([*argv, "--groups", "off"]) == 0
    summary = (out / "summary.md").read_text()
    for method in ("mappo-hypermarl", "happo-nops", "mappo-fups_id", "masac-hypermarl", "hasac-nops"):
        assert method in summary
    assert "compare_sequential.py" in (out / "command.md").read_text()
    assert list(out.glob("curves_*.png")) and list(out.glob("final_*.png"))
