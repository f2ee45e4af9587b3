"""Figures a customer sees: one reference counted once whatever the sources, the summary's context and history."""

from __future__ import annotations

import pytest

from ringfsck import AnalysisOptions, Settings, Store, analyze, ingest_listkeys, ingest_s3keys
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.lab import LabServers
from ringfsck.remote.http import HttpPolicy
from ringfsck.resolve import resolve_splits
from ringfsck.steps import step_sql

POLICY = HttpPolicy(concurrency=8, timeout=5, retries=10, backoff_base=0.005, backoff_max=0.05)
KEY_A, KEY_B, KEY_C = "A" * 38 + "10", "B" * 38 + "10", "C" * 38 + "10"


def store_at(path) -> Store:
    return Store.open(Settings(store=str(path)))


def rows(store: Store, query: str) -> list[tuple]:
    """Rows of a query over the store's views and ``s3_references`` (the analysis step, as the store holds it now)."""
    con = store.connect()
    con.execute(f"CREATE TEMP TABLE s3_references AS {step_sql('s3_references')}")
    return con.execute(query).fetchall()


@pytest.fixture(scope="module")
def lab_stores(lab_world, tmp_path_factory):
    """The same lab world analysed from one export, and from bucketd AND the CSV AND the JSON-lines exports."""
    stores = {}
    with LabServers(lab_world.path) as lab:
        for origin, s3 in (("bucketd", ("bucketd",)), ("all", ("bucketd", "csv", "jsonl")), ("csv", ("csv",))):
            store = store_at(tmp_path_factory.mktemp(origin) / "store")
            ingest_listkeys(store, [str(lab_world.listkeys_dir)])
            for kind in s3:
                if kind == "bucketd":
                    ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY)
                else:
                    ingest_s3keys(store, [str(lab_world.s3keys_dir if kind == "csv" else lab_world.jsonl_dir)])
            resolve_splits(store, base_url=lab.srebuildd_url, policy=POLICY)
            summary = analyze(store).summary
            assert summary["complete"], summary["incomplete_reasons"]
            stores[origin] = store
    return stores


def _figures(store: Store) -> dict:
    summary = store.run_summary()
    return {
        "duplicates": rows(store, "SELECT sproxyd_key, reference_count FROM duplicates ORDER BY 1"),
        "gaps": rows(store, "SELECT sproxyd_key, status FROM gaps ORDER BY 1, 2"),
        "counts": {name: summary["counts"][name] for name in ("duplicates", "gaps", "s3_references", "orphans", "debris")},
    }


def test_three_exports_of_one_world_count_each_reference_once(lab_world, lab_stores):
    truth = lab_world.truth
    one, three = _figures(lab_stores["bucketd"]), _figures(lab_stores["all"])
    assert three == one
    assert {key for key, _ in three["duplicates"]} == set(truth["duplicates"])
    assert three["gaps"] == sorted((key, status) for status, keys in truth["gaps"].items() for key in keys)
    assert three["counts"]["gaps"] == {status: len(keys) for status, keys in truth["gaps"].items()}


def test_dedup_never_drops_a_referenced_key(lab_stores):
    store = lab_stores["all"]
    ingested = {key for (key,) in rows(store, "SELECT DISTINCT sproxyd_key FROM s3keys")}
    referenced = {key for (key,) in rows(store, "SELECT DISTINCT sproxyd_key FROM s3_references")}
    assert ingested and ingested <= referenced


def test_csv_names_are_decoded_as_bucketd_names_them(lab_stores):
    # The reference's CSV keeps the percent-encoded listed key: "name%00versionId" is a version of "name".
    store = lab_stores["csv"]
    encoded = rows(store, "SELECT object_key FROM s3keys WHERE object_key LIKE '%\\%00%' ESCAPE '\\' LIMIT 1")
    assert encoded, "the lab's CSV holds versions"
    named = rows(store, "SELECT object_key, version_id FROM s3_objects WHERE version_id IS NOT NULL AND contains(object_key, chr(13))")
    assert named and all("%" not in name and version for name, version in named)


def test_a_master_entry_and_its_version_are_one_reference(tmp_path):
    # s3utils logs the current version under its bare name; bucketd under name + version id.
    (tmp_path / "b_keys.txt").write_text(f'"b","a%2Fkey","{KEY_A}"\n"b","a%2Fkey%00v1","{KEY_B}"\n"b","other","{KEY_A}"\n')
    (tmp_path / "b.log").write_text(
        '{"name":"s3utils:verifyBucketSproxydKeys","message":"sproxyd key","objectUrl":"s3://b/a%2Fkey%00v2","sproxydKey":"' + KEY_A + '"}\n'
        '{"name":"s3utils:verifyBucketSproxydKeys","message":"sproxyd key","objectUrl":"s3://b/a%2Fkey%00v1","sproxydKey":"' + KEY_B + '"}\n'
        '{"name":"s3utils:verifyBucketSproxydKeys","message":"completed scan","bucket":"b","scanned":2}\n'
    )
    store = store_at(tmp_path / "store")
    ingest_s3keys(store, [str(tmp_path / "b_keys.txt"), str(tmp_path / "b.log")])
    assert sorted(rows(store, "SELECT bucket, object_key, version_id, sproxyd_key FROM s3_references"), key=str) == [
        ("b", "a/key", "v1", KEY_B), ("b", "a/key", "v2", KEY_A), ("b", "other", None, KEY_A),
    ]


def test_cos_setting_is_checked_against_the_keys_replica_counts(lab_world, tmp_path):
    # The lab's COS data is COS 2; the reference's default setting is COS 3.
    store = store_at(tmp_path / "store")
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_s3keys(store, [str(lab_world.s3keys_dir)])
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    cos_main_chunks = rows(store, "SELECT count(*) FROM ring_main_chunks WHERE protection = 'cos' AND schema = '2'")[0][0]
    assert cos_main_chunks > 0
    assert {"protection": "cos", "schema": "2", "main_chunks": cos_main_chunks,
            "candidates": cos_main_chunks} in summary["counts"]["protections"]
    assert [w for w in summary["warnings"] if "configured COS 3" in w and f"COS 2 ({cos_main_chunks:,})" in w]
    summary = analyze(Store.open(Settings(store=str(tmp_path / "store"), cos_protection=2)), AnalysisOptions(assume_no_splits=True)).summary
    assert not [w for w in summary["warnings"] if "COS" in w]


def test_gaps_total_and_unrecoverable_first(lab_stores, lab_world):
    counts = lab_stores["bucketd"].run_summary()["counts"]
    assert list(counts["gaps"]) == ["unrecoverable", "missing", "degraded"]
    assert counts["gaps_total"] == sum(len(keys) for keys in lab_world.truth["gaps"].values())


def test_history_lists_every_run_oldest_first_with_its_figures(lab_stores):
    from ringfsck.history import run_history

    store = lab_stores["csv"]
    before = store.run_ids()
    analyze(store)
    history = run_history(store)
    assert [run["run_id"] for run in history] == store.run_ids() == sorted(store.run_ids()) and len(history) == len(before) + 1
    for run in history:
        summary = store.run_summary(run["run_id"])
        assert (run["orphans"], run["candidates"], run["gaps"]) == (
            summary["counts"]["orphans"], summary["counts"]["candidates"], summary["counts"]["gaps"])
        assert run["logical_bytes"] is None and run["deletion"] is None  # never sized, nothing deleted
    assert [run["run_id"] for run in run_history(store, limit=1)] == [store.latest_run_id()]


# --- overlapping sources: said at ingest, dropped with 'ringfsck forget' ------------------------

def _cli(*args: str):
    from click.testing import CliRunner

    from ringfsck.cli import main

    return CliRunner().invoke(main, list(args))


def _export(tmp_path, name: str, rows: list[tuple[str, str]]) -> str:
    path = tmp_path / name
    path.write_text("".join(f'"b","{obj}","{key}"\n' for obj, key in rows))
    return str(path)


def test_ingest_says_when_a_source_overlaps_another(tmp_path):
    store = str(tmp_path / "store")
    (tmp_path / "again").mkdir()
    first = _export(tmp_path, "b_keys.txt", [("x", KEY_A), ("y", KEY_B)])
    second = _export(tmp_path / "again", "b_keys.txt", [("x", KEY_A), ("z", KEY_C)])
    result = _cli("ingest", "s3keys", first, "--store", store)
    assert result.exit_code == 0 and "already in" not in result.output
    result = _cli("ingest", "s3keys", second, "--store", store)
    assert result.exit_code == 0, result.output
    assert f"Note: 1 of 2 references of {second} are already in {first}" in result.output
    assert "ringfsck forget SOURCE" in result.output


def test_forget_drops_a_source_and_refuses_to_drop_unique_references(tmp_path):
    store_dir = str(tmp_path / "store")
    (tmp_path / "again").mkdir()
    first = _export(tmp_path, "b_keys.txt", [("x", KEY_A), ("y", KEY_B)])
    copy = _export(tmp_path / "again", "b_keys.txt", [("x", KEY_A), ("y", KEY_B), ("z", KEY_C)])
    assert _cli("ingest", "s3keys", first, copy, "--store", store_dir).exit_code == 0
    store = store_at(store_dir)
    first_id = store.find_source(first).id
    # The copy alone names KEY_C: forgetting it would make that data look orphaned.
    refused = _cli("forget", copy, "--store", store_dir)
    assert refused.exit_code == 4 and "1 of its sproxyd keys are in no other source" in refused.output
    assert len(store.sources()) == 2
    result = _cli("forget", first_id, "--store", store_dir)
    assert result.exit_code == 0, result.output
    assert f"Forgot s3keys source {first_id}: {first}" in result.output and "The next analysis will not count it" in result.output
    assert [s.location for s in store.sources()] == [copy]
    assert {key for (key,) in rows(store, "SELECT sproxyd_key FROM s3keys")} == {KEY_A, KEY_B, KEY_C}
    assert not list((tmp_path / "store" / "tables").glob(f"*/{first_id}*"))
    assert _cli("forget", "nothing-like-it", "--store", store_dir).exit_code == 3
    assert _cli("forget", copy, "--store", str(tmp_path / "typo")).exit_code == 3 and not (tmp_path / "typo").exists()


def test_an_export_with_unknown_references_is_never_forgotten(tmp_path):
    """Forgetting an unreadable export, or one with rejected rows, would turn references nobody knows
    into orphans: refused whatever the options, the source kept, the analysis still incomplete."""
    import gzip

    from ringfsck.errors import InputError

    store_dir = str(tmp_path / "store")
    (tmp_path / "node.csv").write_text("A" * 40 + "," + "B" * 40 + ",d,0\n")
    good = _export(tmp_path, "b_keys.txt", [("x", KEY_A)])
    damaged = tmp_path / "c_keys.txt.gz"
    damaged.write_bytes(gzip.compress(f'"c","y","{KEY_B}"\n'.encode() * 1000)[:-40])
    bad_row = _export(tmp_path, "d_keys.txt", [("z", KEY_C), ("broken", "not-a-key-" + "0" * 30)])
    store = store_at(store_dir)
    ingest_listkeys(store, [str(tmp_path / "node.csv")])
    ingest_s3keys(store, [good, bad_row])
    with pytest.raises(InputError):
        ingest_s3keys(store, [str(damaged)])
    unreadable = store.find_source(str(damaged))
    assert unreadable.incomplete
    for source, options in ((unreadable.id, ()), (bad_row, ("--drop-unique-references",))):
        result = _cli("forget", source, "--store", store_dir, *options)
        assert result.exit_code == 4, result.output
        assert "its references are not all known" in result.output and "same location" in result.output
    assert len(store_at(store_dir).sources()) == 4
    summary = analyze(store_at(store_dir), AnalysisOptions(assume_no_splits=True)).summary
    assert not summary["complete"]
    # The complete export at the same location replaces the unreadable one: that is the way out.
    damaged.write_bytes(gzip.compress(f'"c","y","{KEY_B}"\n'.encode()))
    ingest_s3keys(store_at(store_dir), [str(damaged)])
    assert not store_at(store_dir).find_source(str(damaged)).incomplete


def test_help_says_what_arc_and_cos_change_and_what_they_do_not():
    text = " ".join(_cli("analyze", "--help").output.split())
    assert "missing gaps" in text and "judged by the schema its own key encodes" in text
    assert "Checked against the keys" in text and "each key is judged and sized by its own" in text
