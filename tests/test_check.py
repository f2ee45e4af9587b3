"""``ringfsck check``: both ingests and the analysis in one call, the same results as the three steps."""

from __future__ import annotations

import json

from click.testing import CliRunner

import _planted
from ringfsck.analysis import AnalysisOptions
from ringfsck.check import check
from ringfsck.cli import main
from ringfsck.config import Settings
from ringfsck.errors import EXIT_USAGE
from ringfsck.ingest import ingest_s3keys
from ringfsck.store import Store


def _outputs(store: Store) -> dict[str, list]:
    con = store.connect()
    return {name: sorted(con.execute(f"SELECT * FROM {name}").fetchall()) for name in ("orphans", "gaps", "debris", "candidates")}


def test_check_finds_what_the_three_steps_find(tmp_path):
    world, stepwise, _ = _planted.analyzed(tmp_path / "steps")
    listkeys, exports = world.write(tmp_path / "inputs")
    store = Store.open(Settings(store=str(tmp_path / "store")))
    result = check(store, [str(listkeys)], [str(exports)], AnalysisOptions(assume_no_splits=True))
    assert {row[0] for row in store.connect().execute("SELECT ring_key FROM orphans").fetchall()} == world.orphans
    assert _outputs(store) == _outputs(stepwise)
    assert result.listkeys.count("ingested") == len(result.listkeys.files) > 0
    assert result.s3keys.rows == stepwise.connect().execute("SELECT count(*) FROM s3keys").fetchone()[0]
    # Run again: nothing changed, nothing is parsed again, the same answer.
    again = check(store, [str(listkeys)], [str(exports)], AnalysisOptions(assume_no_splits=True))
    assert {f.status for f in again.listkeys.files + again.s3keys.files} == {"unchanged"}
    assert again.analysis.summary["counts"] == result.analysis.summary["counts"]


def test_check_command(tmp_path):
    world = _planted.build()
    listkeys, exports = world.write(tmp_path)
    store = str(tmp_path / "store")
    runner = CliRunner()
    result = runner.invoke(main, ["check", "--listkeys", str(listkeys), "--s3keys", str(exports), "--assume-no-splits", "--store", store])
    assert result.exit_code == 0, result.output
    assert "listkeys:" in result.output and "s3keys:" in result.output and "Analysis complete." in result.output
    as_json = runner.invoke(main, ["check", "--listkeys", str(listkeys), "--s3keys", str(exports), "--assume-no-splits", "--store", store, "--json"])
    report = json.loads(as_json.stdout)
    assert report["analysis"]["counts"]["orphans"] == len(world.orphans)
    assert {f["status"] for f in report["ingest"]["listkeys"]["files"]} == {"unchanged"}


def test_check_keeps_what_the_store_holds_for_an_input_left_out(tmp_path):
    world = _planted.build()
    listkeys, exports = world.write(tmp_path)
    store_dir = str(tmp_path / "store")
    ingest_s3keys(Store.open(Settings(store=store_dir)), [str(exports)])  # as 'ringfsck ingest bucketd' would
    result = CliRunner().invoke(main, ["check", "--listkeys", str(listkeys), "--assume-no-splits", "--store", store_dir, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["analysis"]["counts"]["orphans"] == len(world.orphans)
    assert report["ingest"]["s3keys"]["files"] == []


def test_check_with_nothing_to_ingest_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["check", "--store", str(tmp_path / "store")])
    assert result.exit_code == EXIT_USAGE
    assert "nothing to ingest" in result.output
