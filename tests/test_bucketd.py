"""ingest bucketd against the lab bucketd: every RING key, versions and MPU parts, under faults; resume."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringfsck import (
    AnalysisOptions,
    Settings,
    Store,
    analyze,
    ingest_listkeys,
    ingest_s3keys,
)
from ringfsck.errors import ConfigError, RemoteError
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.lab import LabServers
from ringfsck.remote.bucketd import parse_entry
from ringfsck.remote.http import HttpPolicy
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import sample_query

POLICY = HttpPolicy(concurrency=8, timeout=5, retries=10, backoff_base=0.005, backoff_max=0.05)


def store_at(path):
    return Store.open(Settings(store=str(path)))


def column(store, query):
    return {row[0] for row in store.connect().execute(query).fetchall()}


def test_export_yields_every_ring_key_under_faults(lab_world, tmp_path):
    store = store_at(tmp_path / "store")
    with LabServers(lab_world.path, bucketd_faults="error_rate=0.05") as lab:
        report = ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=9)
    truth = lab_world.truth
    # Every 40-hex key of every location counts; on_ring says which the gap check judges.
    assert column(store, "SELECT sproxyd_key FROM s3keys WHERE on_ring") == set(truth["sproxyd_keys"])
    assert column(store, "SELECT sproxyd_key FROM s3keys WHERE NOT on_ring") == set(truth["other_backend_keys"])
    assert column(store, "SELECT count(*) FROM s3keys WHERE on_ring IS NULL") == {0}
    assert "users..bucket" not in {b.bucket for b in report.buckets}
    con = store.connect()
    # No version is counted twice (a master entry repeats its latest version).
    assert con.execute("SELECT count(*) = count(DISTINCT (bucket, object_key, version_id, sproxyd_key)) FROM s3keys").fetchone()[0]
    # Two unfinished uploads (separators "..|.." and "splitterfornow"), each a one-location part and a copied two-location part.
    assert con.execute("SELECT count(*) FROM s3keys WHERE mpu_part").fetchone()[0] == 6
    assert con.execute("SELECT count(*) FROM s3keys WHERE version_id IS NOT NULL").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM s3_other_locations WHERE data_store_type <> 'scality'").fetchone()[0] > 0
    # Only the oldest metadata model (a plain-string location) gives no size.
    assert con.execute("SELECT count(*) FROM s3keys WHERE last_modified IS NULL").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM s3keys WHERE size IS NULL").fetchone()[0] > 0
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0


def test_analysis_from_bucketd_equals_analysis_from_exports(lab_world, tmp_path):
    truth = lab_world.truth
    results = {}
    with LabServers(lab_world.path) as lab:
        for origin in ("bucketd", "files"):
            store = store_at(tmp_path / origin)
            ingest_listkeys(store, [str(lab_world.listkeys_dir)])
            if origin == "bucketd":
                ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY)
            else:
                ingest_s3keys(store, [str(lab_world.s3keys_dir)])
            resolve_splits(store, base_url=lab.srebuildd_url, policy=POLICY)
            summary = analyze(store, AnalysisOptions()).summary
            assert summary["complete"], summary["incomplete_reasons"]
            results[origin] = (column(store, "SELECT ring_key FROM orphans"), column(store, "SELECT sproxyd_key || status FROM gaps"),
                               column(store, "SELECT sproxyd_key FROM duplicates"))
    assert results["bucketd"][0::2] == results["files"][0::2]
    # A file export cannot say which keys are on other backends: those can only show up as gaps there.
    assert results["bucketd"][1] <= results["files"][1]
    assert results["files"][1] - results["bucketd"][1] <= {key + "missing" for key in truth["other_backend_keys"]}
    assert results["bucketd"][0] == set(truth["orphans"])
    assert results["bucketd"][2] == set(truth["duplicates"])


def test_failed_bucket_is_reported_and_finished_by_a_rerun(lab_world, tmp_path):
    store = store_at(tmp_path / "store")
    with LabServers(lab_world.path) as lab:
        lab.set_faults("bucketd", fail_keys=["bucket-02"])  # every listing of bucket-02 fails
        with pytest.raises(RemoteError, match="bucket-02.*--skip-complete"):
            ingest_bucketd(store, lab.bucketd_url, buckets=["bucket-00", "bucket-02"], policy=HttpPolicy(retries=1, backoff_base=0.001))
        assert column(store, "SELECT DISTINCT bucket FROM s3keys") == {"bucket-00"}
        lab.set_faults("bucketd", fail_keys=[])
        lab.reset_stats()
        report = ingest_bucketd(store, lab.bucketd_url, buckets=["bucket-00", "bucket-02"], policy=POLICY, skip_complete=True)
        counts = lab.request_counts("bucketd")
    assert {b.bucket: b.resumed for b in report.buckets} == {"bucket-00": True, "bucket-02": False}
    assert "GET /default/bucket/bucket-00" not in counts
    before = store.connect().execute("SELECT count(*) FROM s3keys").fetchone()[0]
    with LabServers(lab_world.path) as lab:  # a plain rerun replaces, never doubles
        ingest_bucketd(store, lab.bucketd_url, buckets=["bucket-00", "bucket-02"], policy=POLICY)
    assert store.connect().execute("SELECT count(*) FROM s3keys").fetchone()[0] == before


def test_interrupted_bucket_resumes_after_its_last_page(lab_world, tmp_path):
    clean = store_at(tmp_path / "clean")
    with LabServers(lab_world.path) as lab:
        total_pages = ingest_bucketd(clean, lab.bucketd_url, buckets=["bucket-01"], policy=POLICY, page_size=5).buckets[0].pages
        requests = sum(lab.request_counts("bucketd").values())
    store = store_at(tmp_path / "store")
    # A deterministic outage half way through the bucket's requests.
    with LabServers(lab_world.path, bucketd_faults={"fail_after": requests // 2}) as lab:
        with pytest.raises(RemoteError):
            ingest_bucketd(store, lab.bucketd_url, buckets=["bucket-01"], policy=HttpPolicy(retries=1, backoff_base=0.001), page_size=5)
        state = json.loads(next((store.root / "bucketd").glob("*.json")).read_text())
        assert 0 < state["pages"] < total_pages and not state["complete"]
        summary = analyze(store).summary  # half a bucket must never look like orphans
        assert not summary["complete"]
        assert any("bucket-01 is unfinished" in reason for reason in summary["incomplete_reasons"])
        lab.set_faults("bucketd", fail_after=None)
        lab.reset_stats()
        report = ingest_bucketd(store, lab.bucketd_url, buckets=["bucket-01"], policy=POLICY, page_size=5)
        listings = lab.request_counts("bucketd").get("GET /default/bucket/bucket-01", 0)
    assert report.buckets[0].resumed
    assert listings == total_pages - state["pages"]
    query = "SELECT sproxyd_key, object_key, version_id FROM s3keys ORDER BY ALL"
    assert store.connect().execute(query).fetchall() == clean.connect().execute(query).fetchall()


def test_objects_below_the_split_threshold_need_no_lookup(lab_world, tmp_path):
    # sproxyd splits only objects above its threshold: with bucketd sizes, smaller keys need no request.
    store = Store.open(Settings(store=str(tmp_path / "store"), split_threshold=1 << 40))
    with LabServers(lab_world.path) as lab:
        ingest_listkeys(store, [str(lab_world.listkeys_dir)])
        ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY)
        unsized = column(store, "SELECT sproxyd_key FROM s3keys GROUP BY ALL HAVING bool_and(size IS NULL)")
        assert unsized  # plain-string locations say no size: those keys must be asked
        lab.reset_stats()
        report = resolve_splits(store, base_url=lab.srebuildd_url, policy=POLICY)
        assert report.requested == len(unsized)
    summary = analyze(store).summary
    assert summary["splits"]["below_split_threshold"] == len(column(store, "SELECT DISTINCT sproxyd_key FROM s3keys")) - len(unsized)
    assert summary["splits"]["unresolved"] == 0


def test_a_key_with_sized_and_unsized_rows_needs_a_lookup_everywhere(lab_world, tmp_path):
    # The file export names every key without a size, bucketd with one below the threshold: one rule
    # (sql/00_macros.sql) says such a key needs a split lookup, for resolve, analyze and size's sample alike.
    store = Store.open(Settings(store=str(tmp_path / "store"), split_threshold=1 << 40))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_s3keys(store, [str(lab_world.s3keys_dir)])
    with LabServers(lab_world.path) as lab:
        ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY)
        mixed = column(store, "SELECT sproxyd_key FROM s3keys GROUP BY ALL HAVING bool_or(size IS NULL) AND bool_or(size < 1::BIGINT << 40)")
        assert mixed  # the keys this test is about
        summary = analyze(store).summary
        assert summary["splits"]["unresolved"] == len(column(store, "SELECT sproxyd_key FROM s3keys GROUP BY ALL HAVING bool_or(size IS NULL)"))
        # Not known unsplit: never sampled as a plain object's main chunk before resolve answers.
        sampled = column(store, sample_query(10_000))
        assert not sampled & {key.upper() for key in mixed}
        lab.reset_stats()
        report = resolve_splits(store, base_url=lab.srebuildd_url, policy=POLICY)
    assert mixed <= column(store, "SELECT input_key FROM splits WHERE lookup_is_final(status)")
    assert report.errors == 0
    summary = analyze(store).summary
    assert summary["complete"], summary["incomplete_reasons"]
    assert summary["splits"]["unresolved"] == 0


def test_parse_entry_rules():
    assert parse_entry("b", "\x7fRreplay", '{"location": []}').skipped == "replay entries"
    assert parse_entry("b", "k", '{"isPHD": true}').skipped == "placeholders"
    assert parse_entry("b", "k\x00v1", '{"isDeleteMarker": true}').skipped == "delete markers"
    assert parse_entry("b", "k", '{"location": null}').skipped == "empty objects"
    assert parse_entry("b", "k", '{"content-length": 10}').needs_full_metadata
    part = parse_entry("mpuShadowBucketb", "up..|..00001", '{"partLocations": {"key": "' + "A" * 40 + '", "dataStoreType": "scality"}}')
    assert part.mpu_part and part.locations[0].on_ring
    assert parse_entry("mpuShadowBucketb", "overview..|..k..|..up", "{}").skipped == "upload overviews"
    foreign = parse_entry("b", "k", '{"location": [{"key": "xyz", "dataStoreType": "aws_s3"}]}')
    assert not foreign.locations[0].on_ring
    versioned = parse_entry("b", "k\x00v9", '{"location": []}')
    assert (versioned.object_key, versioned.version_id) == ("k", "v9")


def test_needs_a_bucket_or_raft_session(tmp_path):
    with pytest.raises(ConfigError, match="--raft-session"):
        ingest_bucketd(store_at(tmp_path / "s"), "http://127.0.0.1:9")


def test_unreachable_bucketd(tmp_path):
    with pytest.raises(RemoteError, match="cannot reach bucketd"):
        ingest_bucketd(store_at(tmp_path / "s"), "http://127.0.0.1:9", raft_sessions=[1], policy=POLICY)


class _Pages:
    """A bucketd listing served from memory, to pin down the master/version rules."""

    def __init__(self, items):
        self.items = items

    async def page(self, bucket, marker, size):
        start = 0 if marker is None else [k for k, _ in self.items].index(marker) + 1
        return self.items[start:start + size], start + size < len(self.items)

    async def metadata(self, bucket, key):
        raise AssertionError("no metadata lookups expected")


def _export(api, store, page_size):
    """Export bucket "bkt" from a scripted API, its completion recorded."""
    from ringfsck.ingest.bucketd import _BucketExport, _Completions, _export_bucket

    class _Bar:
        def update(self, n):
            pass

    async def main():
        completions = _Completions(store)
        await _export_bucket(api, _BucketExport(store, "http://bucketd", "bkt"), completions, page_size, _Bar(), _Bar())
        await completions.record()

    asyncio.run(main())


def test_a_version_under_a_placeholder_master_is_kept(tmp_path):
    def located(key, vid):
        return json.dumps({"versionId": vid, "content-length": 1, "last-modified": "2026-01-01T00:00:00Z",
                           "location": [{"key": key, "dataStoreName": "ring", "dataStoreType": "scality"}]})

    a, b = "A" * 38 + "70", "B" * 38 + "70"
    api = _Pages([
        ("obj", json.dumps({"isPHD": True, "versionId": "v2"})),  # exports nothing...
        ("obj\x00v2", located(a, "v2")),                           # ...so this version must be kept
        ("two", located(b, "v9")),                                 # a kept master...
        ("two\x00v9", located(b, "v9")),                           # ...whose repeat is not counted twice
    ])
    store = store_at(tmp_path / "store")

    _export(api, store, page_size=2)
    rows = store.connect().execute("SELECT sproxyd_key, object_key, version_id FROM s3keys ORDER BY ALL").fetchall()
    assert rows == [(a, "obj", "v2"), (b, "two", "v9")]


# --- every metadata shape bucketd holds (docs/domain.md section 5) ---------------------

KEY_A, KEY_B = "A" * 38 + "01", "B" * 38 + "02"


def test_every_location_shape_is_read():
    legacy = parse_entry("b", "k", json.dumps({"location": [{"key": KEY_A.lower(), "dataStoreName": "sproxyd"}]}))
    assert [(loc.key, loc.on_ring) for loc in legacy.locations] == [(KEY_A, True)], "no dataStoreType: RING data"
    plain = parse_entry("b", "k", json.dumps({"location": KEY_B}))
    assert [(loc.key, loc.on_ring) for loc in plain.locations] == [(KEY_B, True)], "the oldest model: the key itself"
    foreign = parse_entry("b", "k", json.dumps({"location": [{"key": KEY_A, "dataStoreName": "aws", "dataStoreType": "aws_s3"}]}))
    assert [(loc.key, loc.on_ring) for loc in foreign.locations] == [(KEY_A, False)]
    assert not (legacy.rejected or plain.rejected or foreign.rejected)


@pytest.mark.parametrize("value", [
    "not json {", "[1, 2]", json.dumps({"location": 42}), json.dumps({"location": [7]}), json.dumps({"location": [{"size": 1}]}),
    json.dumps({"location": [[{"key": KEY_A}]]}), json.dumps({"location": [{"key": "short", "dataStoreType": "scality"}]}),
    json.dumps({"location": "not-a-key"}), json.dumps({"location": [{"key": KEY_B, "dataStoreType": "scality"}, {"key": 12}]}),
])
def test_metadata_not_understood_is_rejected(value):
    entry = parse_entry("b", "k", value)
    assert entry.rejected and not entry.skipped
    assert entry.raw == value


def test_listing_without_location_is_always_fetched_with_the_full_key():
    for meta in ({"content-length": 0}, {"content-length": 5, "versionId": "v"}, {}):
        entry = parse_entry("b", "k\x0098296833183455999999RG001  ", json.dumps(meta))
        assert entry.needs_full_metadata and entry.listed_key == "k\x0098296833183455999999RG001  "
        assert entry.version_id == "98296833183455999999RG001  "
    assert not parse_entry("b", "k", json.dumps({"isPHD": True})).needs_full_metadata


def test_null_version_and_old_shadow_buckets():
    null = parse_entry("b", "k\x00", json.dumps({"versionId": "X", "isNull": True, "location": KEY_A}))
    assert (null.object_key, null.version_id) == ("k", "")
    assert parse_entry("mpuShadowBucketb", "overviewsplitterfornowkeysplitterfornowup", "{}").skipped == "upload overviews"
    part = parse_entry("mpuShadowBucketb", "upsplitterfornow00002", json.dumps({"partLocations": [
        {"key": KEY_A, "dataStoreType": "scality"}, {"key": KEY_B, "dataStoreType": "scality"}]}))
    assert part.mpu_part and [loc.key for loc in part.locations] == [KEY_A, KEY_B]


# --- the real shapes, through the lab's bucketd -------------------------------------

def _entries(world):
    """The lab's literal bucketd entries: (bucket, key, metadata)."""
    from ringfsck.lab._state import WorldState

    return [(bucket, row["key"], json.loads(row["full_value"] or row["value"]))
            for bucket, b in WorldState(world.path).buckets.items() if b.table is not None
            for row in b.table.to_pylist() if row["value"] is not None]


@pytest.fixture(scope="module")
def exported(lab_world, tmp_path_factory):
    """The lab world exported once from its bucketd: (store, rows as (bucket, object_key, version_id, sproxyd_key, on_ring, mpu_part))."""
    store = store_at(tmp_path_factory.mktemp("bucketd-shapes"))
    with LabServers(lab_world.path) as lab:
        ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=50)
    rows = store.connect().execute("SELECT bucket, object_key, version_id, sproxyd_key, on_ring, mpu_part FROM s3keys").fetchall()
    return store, rows


def test_bucketd_keys_equal_the_truth(lab_world, exported):
    _, rows = exported
    truth = lab_world.truth
    assert {key for *_, key, _, _ in rows} == set(truth["sproxyd_keys"]) | set(truth["other_backend_keys"])
    assert not set(truth["sproxyd_keys"]) & set(truth["other_backend_keys"])


def test_legacy_and_plain_string_locations_are_ring_keys(lab_world, exported):
    _, rows = exported
    on_ring = {(b, o, k) for b, o, _, k, ring, _ in rows if ring}
    legacy = [(b, k, loc["key"]) for b, k, m in _entries(lab_world) if isinstance(m.get("location"), list)
              for loc in m["location"] if "dataStoreType" not in loc]
    plain = [(b, k, m["location"]) for b, k, m in _entries(lab_world) if isinstance(m.get("location"), str)]
    assert legacy and plain
    for bucket, name, key in legacy + plain:
        assert (bucket, name.split("\0")[0], key) in on_ring


def test_big_metadata_versions_are_exported_with_their_own_keys(lab_world, exported):
    _, rows = exported
    found = {(b, o, v, k) for b, o, v, k, _, _ in rows}
    big = [(b, k, m) for b, k, m in _entries(lab_world) if "\0" in k and len(json.dumps(m)) >= 10_000]
    assert big
    for bucket, key, meta in big:
        name, _, version = key.partition("\0")
        assert (bucket, name, version, meta["location"][0]["key"]) in found, key


def test_versions_null_versions_and_placeholders(lab_world, exported):
    _, rows = exported
    found = {(b, o, v, k) for b, o, v, k, _, _ in rows}
    entries = _entries(lab_world)
    masters = {(b, k): m for b, k, m in entries if "\0" not in k}
    null = [(b, k, m) for b, k, m in entries if k.endswith("\0") and m.get("location")]
    spaced = [(b, k, m) for b, k, m in entries if "\0" in k and k.endswith("  ") and m.get("location")]
    under_placeholders = [(b, k, m) for b, k, m in entries if "\0" in k and masters.get((b, k.split("\0")[0]), {}).get("isPHD")]
    assert null and spaced and len(under_placeholders) >= 2
    for bucket, key, meta in null + spaced + under_placeholders:
        name, _, version = key.partition("\0")
        assert (bucket, name, version, meta["location"][0]["key"]) in found, key
    assert all(v != "" or (b, o + "\0") in {(bb, kk) for bb, kk, _ in null} for b, o, v, _ in found if v == "")


def test_shadow_buckets_of_both_separators(lab_world, exported):
    _, rows = exported
    parts = {(b, o): set() for b, o, _, _, _, mpu in rows if mpu}
    for b, o, _, k, _, mpu in rows:
        if mpu:
            parts[(b, o)].add(k)
    assert not any(o.startswith("overview") for _, o in parts)
    assert any("splitterfornow" in o for _, o in parts) and any("..|.." in o for _, o in parts)
    assert sorted(len(keys) for keys in parts.values()) == [1, 1, 2, 2], "copied parts keep every location"


def test_foreign_hex_keys_are_references_not_ring_data(lab_world, exported):
    store, rows = exported
    assert {k for *_, k, ring, _ in rows if ring is False} == set(lab_world.truth["other_backend_keys"]) != set()
    others = column(store, "SELECT location_key FROM s3_other_locations")
    assert others and not any(len(k) == 40 for k in others)


def test_common_prefixes_fail_the_bucket(lab_world, tmp_path):
    store = store_at(tmp_path / "store")
    with LabServers(lab_world.path, bucketd_faults={"common_prefixes": "bucket-01"}) as lab:
        with pytest.raises(RemoteError, match="bucket-01.*CommonPrefixes"):
            ingest_bucketd(store, lab.bucketd_url, buckets=["bucket-00", "bucket-01"], policy=POLICY)
    assert column(store, "SELECT DISTINCT bucket FROM s3keys") == {"bucket-00"}
    summary = analyze(store).summary
    assert not summary["complete"] and any("bucket-01 is unfinished" in r for r in summary["incomplete_reasons"])


def test_malformed_location_is_a_reject_with_its_keys(tmp_path):
    bad = json.dumps({"last-modified": "2026-01-01T00:00:00Z", "location": [{"key": KEY_A, "dataStoreType": "scality"}, {"size": 3, "note": KEY_B}]})
    api = _Pages([("bad", bad), ("junk", "{not json " + KEY_B.lower())])
    store = store_at(tmp_path / "store")

    _export(api, store, page_size=10)
    con = store.connect()
    assert con.execute("SELECT sproxyd_key FROM s3keys").fetchall() == [(KEY_A,)]  # the understood location still counts
    rejects = con.execute("SELECT source, line, reason, keys FROM rejects ORDER BY line").fetchall()
    assert [(source, line, keys) for source, line, _, keys in rejects] == [
        ("http://bucketd/default/bucket/bkt", 1, [KEY_A, KEY_B]), ("http://bucketd/default/bucket/bkt", 2, [KEY_B])]
    assert "bkt" in rejects[0][2] and "'bad'" in rejects[0][2] and "without a key" in rejects[0][2]
    assert [s.rejected for s in store.sources()] == [2]


# --- several buckets at once (issue 18) ---

@pytest.mark.parametrize("bucket_concurrency", [1, 3])
def test_buckets_are_listed_at_once_up_to_the_bound(lab_world, tmp_path, monkeypatch, bucket_concurrency):
    from ringfsck.remote.bucketd import BucketdClient

    listing: set[str] = set()  # buckets with a listing request in flight
    seen: list[int] = []
    original = BucketdClient.page

    async def page(self, bucket, marker, max_keys):
        listing.add(bucket)
        seen.append(len(listing))
        try:
            return await original(self, bucket, marker, max_keys)
        finally:
            listing.discard(bucket)

    monkeypatch.setattr(BucketdClient, "page", page)
    store = store_at(tmp_path / "store")
    with LabServers(lab_world.path, bucketd_faults="latency_ms=20") as lab:
        report = ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=9,
                                bucket_concurrency=bucket_concurrency)
    assert len(report.buckets) > 3 and not report.failed
    assert max(seen) == bucket_concurrency  # overlapping listings, never more buckets than the bound
    assert column(store, "SELECT sproxyd_key FROM s3keys WHERE on_ring") == set(lab_world.truth["sproxyd_keys"])


def test_a_bucket_failing_among_concurrent_ones_is_named_and_keeps_the_analysis_incomplete(lab_world, tmp_path):
    store = store_at(tmp_path / "store")
    clean = store_at(tmp_path / "clean")
    with LabServers(lab_world.path, bucketd_faults="latency_ms=5") as lab:
        ingest_bucketd(clean, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=9)
        lab.set_faults("bucketd", fail_keys=["bucket-01"])
        with pytest.raises(RemoteError, match=r"1 bucket\(s\) not exported \(bucket-01: "):
            ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=HttpPolicy(retries=1, backoff_base=0.001),
                           page_size=9, bucket_concurrency=8)
    # Every other bucket finished, row for row as a clean export; bucket-01 has nothing.
    query = "SELECT bucket, object_key, version_id, sproxyd_key FROM s3keys WHERE bucket <> 'bucket-01' ORDER BY ALL"
    assert store.connect().execute(query).fetchall() == clean.connect().execute(query).fetchall()
    assert column(store, "SELECT count(*) FROM s3keys WHERE bucket = 'bucket-01'") == {0}
    summary = analyze(store).summary
    assert not summary["complete"]
    assert [reason for reason in summary["incomplete_reasons"] if "unfinished" in reason] == [
        "the bucketd export of bucket bucket-01 is unfinished (rerun 'ringfsck ingest bucketd' to resume it)"]


def test_an_export_killed_mid_run_resumes_each_bucket_where_it_stopped(lab_world, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    clean = store_at(tmp_path / "clean")
    with LabServers(lab_world.path, bucketd_faults="latency_ms=20") as lab:
        ingest_bucketd(clean, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=3)
        store_dir = tmp_path / "store"
        root = Path(__file__).resolve().parents[1]
        # Pages written two at a time: a kill finds some listed and buffered, not on disk yet (listed again, never skipped).
        command = "import ringfsck.ingest.bucketd as b; b.FLUSH_ENTRIES = 6; b.FLUSH_SECONDS = 60; from ringfsck.cli import main; main()"
        proc = subprocess.Popen([sys.executable, "-c", command, "ingest", "bucketd", "--url", lab.bucketd_url, "--raft-session", "1",
                                 "--raft-session", "2", "--page-size", "3", "--store", str(store_dir), "--bucket-concurrency", "4"],
                                env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            def saved_pages():
                return [json.loads(f.read_text()).get("pages", 0) for f in (store_dir / "bucketd").glob("*.json")]
            deadline = time.monotonic() + 60
            while sum(1 for pages in saved_pages() if pages > 0) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)  # no chance to tidy up
            proc.wait(10)
        finally:
            proc.kill()
        store = store_at(store_dir)
        states = [json.loads(f.read_text()) for f in (store_dir / "bucketd").glob("*.json")]
        unfinished = {s["bucket"]: s["pages"] for s in states if not s["complete"]}
        assert any(pages > 0 for pages in unfinished.values()), "killed before a bucket was half exported"
        assert not analyze(store).summary["complete"]
        lab.reset_stats()
        report = ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=3, skip_complete=True)
        counts = lab.request_counts("bucketd")
    outcomes = {b.bucket: b for b in report.buckets}
    for bucket, pages in unfinished.items():
        # A bucket resumes after its last saved page: the pages before it are not listed again.
        listed = counts.get(f"GET /default/bucket/{bucket}", 0)
        assert listed == outcomes[bucket].pages - pages, bucket
        assert outcomes[bucket].resumed == (pages > 0)
    query = "SELECT bucket, object_key, version_id, sproxyd_key, on_ring, mpu_part FROM s3keys ORDER BY ALL"
    assert store.connect().execute(query).fetchall() == clean.connect().execute(query).fetchall()
    assert not [reason for reason in analyze(store).summary["incomplete_reasons"] if "bucketd" in reason]


# --- batched pages and the fast JSON reading (issue 18: the export at 20,000 keys/s) ---

def _tables(store):
    con = store.connect()
    return {table: sorted(map(repr, con.execute(f"SELECT * FROM {table}").fetchall())) for table in ("s3keys", "s3_other_locations", "rejects")}


def test_batched_pages_give_the_rows_and_checksums_of_a_part_per_page(lab_world, tmp_path, monkeypatch):
    import ringfsck.ingest.bucketd as bucketd

    results = {}
    with LabServers(lab_world.path, bucketd_faults={"unknown_shape": "bucket-01"}) as lab:  # rejects too
        for flush_entries in (1, bucketd.FLUSH_ENTRIES):
            monkeypatch.setattr(bucketd, "FLUSH_ENTRIES", flush_entries)
            store = store_at(tmp_path / f"flush-{flush_entries}")
            report = ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=4)
            parts = len(store.part_names("s3keys"))
            results[flush_entries] = (_tables(store), sorted((s.id, s.checksum, s.rows, s.rejected, str(s.skipped)) for s in store.sources()))
    pages = sum(b.pages for b in report.buckets)
    assert results[1] == results[bucketd.FLUSH_ENTRIES]
    assert results[1][0]["rejects"] and results[1][0]["s3_other_locations"]
    assert parts == len(report.buckets) < pages  # one part per bucket here, not one per page


def test_a_crash_between_a_batch_and_its_marker_lists_the_batch_again(lab_world, tmp_path, monkeypatch):
    import ringfsck.ingest.bucketd as bucketd

    clean = store_at(tmp_path / "clean")
    store = store_at(tmp_path / "store")
    original = Store.write_json
    markers: list[str] = []

    def crash_at_the_third_marker(self, path, data):
        if path.parent.name == "bucketd":
            markers.append(path.name)
            if len(markers) == 3:  # the first: the bucket started; the second: its first batch
                raise OSError("killed after the batch's parts, before its marker")
        return original(self, path, data)

    with LabServers(lab_world.path) as lab:
        ingest_bucketd(clean, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=2)
        monkeypatch.setattr(bucketd, "FLUSH_ENTRIES", 6)  # three pages a part
        monkeypatch.setattr(Store, "write_json", crash_at_the_third_marker)
        with pytest.raises(OSError, match="killed"):
            ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=2, bucket_concurrency=1)
        monkeypatch.setattr(Store, "write_json", original)
        sid = bucketd.source_id("bucketd", "bucket-00")
        state = json.loads(store.bucketd_progress_file(sid).read_text())
        assert state["pages"] == 3 and not state["complete"]
        assert store.part_names("s3keys", f"{sid}-p000003"), "the lost batch's part is on disk"
        bucketd._BucketExport(store, lab.bucketd_url, "bucket-00")  # resuming removes it: its pages are listed again
        assert not [table for table in ("s3keys", "s3_other_locations", "rejects") if store.part_names(table, f"{sid}-p000003")]
        monkeypatch.setattr(bucketd, "FLUSH_ENTRIES", 2)  # other batches this time: the stale parts must go, not stay beside them
        lab.reset_stats()
        report = ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=2, skip_complete=True)
        listed = lab.request_counts("bucketd").get("GET /default/bucket/bucket-00", 0)
    outcome = next(b for b in report.buckets if b.bucket == "bucket-00")
    assert outcome.resumed and listed == outcome.pages - 3  # the pages of the lost batch listed again, those before not
    assert _tables(store) == _tables(clean)


JSON_TEXTS = [
    '{"size": NaN}', '{"size": Infinity}', '{"size": 1e400}', '{"size": 123456789012345678901234567890}', '[18446744073709551616]',
    '{"versionId": -9223372036854775809}', '{"a": "\\ud800"}', '{"a": 1, "a": 2}', '{"Contents": [{"key": "k", "value": 1e30}]}',
    '{"location": [{"key": "k", "size": 99999999999999999999999}]}', '{"a": 1.5}', '"\\u0000"', "[1,]", "{", "\ufeff{}",
]


@pytest.mark.parametrize("text", JSON_TEXTS)
def test_load_json_reads_what_json_reads(text):
    from ringfsck.remote.bucketd import load_json

    def read(loads, value):
        try:
            return repr(loads(value))  # repr: NaN equals itself, 1 and 1.0 differ
        except ValueError as exc:
            return type(exc).__name__

    for value in (text, text.encode("utf-8", "surrogatepass")):
        assert read(load_json, value) == read(json.loads, value)


_KEY_TEXT = st.sampled_from([KEY_A, KEY_B.lower(), "short", ""])
_NUMBER = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none())
_LOCATION_ITEM = st.one_of(
    st.fixed_dictionaries({"key": st.one_of(_KEY_TEXT, _NUMBER)}, optional={
        "size": _NUMBER, "dataStoreType": st.one_of(st.sampled_from(["scality", "aws_s3", ""]), _NUMBER),
        "dataStoreName": st.one_of(st.text(max_size=3), _NUMBER)}),
    _NUMBER, _KEY_TEXT,
)
_METADATA = st.fixed_dictionaries({}, optional={
    "location": st.one_of(st.lists(_LOCATION_ITEM, max_size=3), _LOCATION_ITEM),
    "partLocations": st.lists(_LOCATION_ITEM, max_size=2),
    "versionId": st.one_of(st.text(max_size=5), _NUMBER), "isNull": _NUMBER, "isPHD": _NUMBER, "isDeleteMarker": _NUMBER,
    "last-modified": st.one_of(st.just("2024-01-01T00:00:00.000Z"), _NUMBER), "content-length": _NUMBER,
})


@given(meta=_METADATA, bucket=st.sampled_from(["b", "mpuShadowBucketb"]), key=st.sampled_from(["k", "k\x00v1", "u..|..1"]))
def test_a_listed_value_is_parsed_as_json_would_parse_it(meta, bucket, key):
    """orjson reads the listing's values faster; an entry must come out as if json had read them (big integers included)."""
    text = json.dumps(meta)
    fast = parse_entry(bucket, key, text)
    exact = parse_entry(bucket, key, json.loads(text))  # a parsed value: json's reading, no orjson involved
    assert (fast.raw, replace(exact, raw=text)) == (text, replace(fast, raw=text))


def test_finished_buckets_are_recorded_together_and_a_crash_before_their_markers_resumes_them(lab_world, tmp_path, monkeypatch):
    import ringfsck.ingest.bucketd as bucketd

    clean = store_at(tmp_path / "clean")
    store = store_at(tmp_path / "store")
    monkeypatch.setattr(bucketd, "FLUSH_SECONDS", 60)
    writes: list[int] = []
    original_save, original_mark = Store.save_sources, bucketd._BucketExport.mark_complete

    def counted(self, sources):
        writes.append(len(sources))
        return original_save(self, sources)

    def crash_after_one(self):
        if sum(json.loads(f.read_text())["complete"] for f in (self.store.root / "bucketd").glob("*.json")):
            raise OSError("killed between the sources and the markers")
        return original_mark(self)

    monkeypatch.setattr(Store, "save_sources", counted)
    with LabServers(lab_world.path) as lab:
        report = ingest_bucketd(clean, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=7)
        assert writes == [len(report.buckets)] and len(report.buckets) > 3  # one write of the sources file, not one per bucket
        monkeypatch.setattr(bucketd._BucketExport, "mark_complete", crash_after_one)
        with pytest.raises(OSError, match="killed"):
            ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=7)
        monkeypatch.setattr(bucketd._BucketExport, "mark_complete", original_mark)
        assert len(store.sources()) == len(report.buckets)  # every source recorded, one bucket marked complete
        summary = analyze(store).summary
        assert not summary["complete"] and sum("unfinished" in reason for reason in summary["incomplete_reasons"]) == len(report.buckets) - 1
        lab.reset_stats()
        rerun = ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY, page_size=7, skip_complete=True)
        counts = lab.request_counts("bucketd")
    resumed = [b.bucket for b in rerun.buckets if b.resumed]
    assert len(resumed) == len(report.buckets)
    # Each listed to its end before: one (empty) listing says so, nothing is listed again.
    assert sum(n for path, n in counts.items() if path.startswith("GET /default/bucket/")) == len(report.buckets) - 1
    assert _tables(store) == _tables(clean)
    assert sorted(s.id for s in store.sources()) == sorted(s.id for s in clean.sources())
    assert not [reason for reason in analyze(store).summary["incomplete_reasons"] if "bucketd" in reason]
