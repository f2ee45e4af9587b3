"""Figures a customer sees: one reference counted once whatever the sources, the summary's context and history."""

from __future__ import annotations

import pytest

from ringfsck import AnalysisOptions, Settings, Store, analyze, ingest_listkeys, ingest_s3keys
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.lab import LabServers
from ringfsck.remote.http import HttpPolicy
from ringfsck.resolve import resolve_splits
from ringfsck.store import step_sql

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
    from ringfsck.analysis import run_history

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
