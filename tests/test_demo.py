"""ringfsck demo: the README's main command, end to end."""

from __future__ import annotations

from click.testing import CliRunner

from ringfsck.cli import main
from ringfsck.demo import run_demo


def test_demo_matches_what_the_lab_planted(tmp_path):
    result = run_demo(tmp_path / "demo", objects=300, echo=lambda _line: None)
    assert result.matches_truth
    assert result.summary["counts"]["split_subkeys"] > 0
    assert result.capacity["totals"]["unsized"] == 0


def test_demo_command(tmp_path):
    outcome = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "demo"), "--objects", "200"])
    assert outcome.exit_code == 0, outcome.output
    assert "Everything matches what the lab planted." in outcome.output
    assert "orphans" in outcome.output and "raw" in outcome.output
