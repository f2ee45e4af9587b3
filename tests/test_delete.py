"""Manifests and deletion: guards, dry run, exact deletion under faults, journal and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import _planted

from ringfsck import Settings, Store, analyze, ingest_listkeys, ingest_s3keys, keys
from ringfsck.analysis import AnalysisOptions
from ringfsck.deleter import delete_from_manifest, read_journal
from ringfsck.errors import ConfigError, RefusedError
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.manifest import CHECKS, HEADER_PREFIX, keys_checksum, write_manifest
from ringfsck.remote.http import HttpPolicy
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import size_orphans
from ringfsck.store import arrow_schema

POLICY = HttpPolicy(concurrency=8, timeout=5, retries=10, backoff_base=0.005, backoff_max=0.05)


def prepared(lab_world, lab, root: Path, *, resolve: bool = True, **settings) -> Store:
    store = Store.open(Settings(store=str(root), **settings))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=POLICY)
    if resolve:
        resolve_splits(store, base_url=lab.srebuildd_url, policy=POLICY)
    analyze(store)
    size_orphans(store, base_url=lab.srebuildd_url, policy=POLICY)
    return store


def deletes(lab) -> dict[str, int]:
    return {path.rsplit("/", 1)[1]: n for path, n in lab.request_counts("srebuildd").items() if path.startswith("DELETE")}


def test_manifest_refuses_an_incomplete_analysis_whatever_is_forced(lab_world, lab_servers, tmp_path):
    store = prepared(lab_world, lab_servers, tmp_path / "store", resolve=False)
    with pytest.raises(RefusedError, match="incomplete, and no option overrides that"):
        write_manifest(store, tmp_path / "m.csv")
    with pytest.raises(RefusedError, match="incomplete, and no option overrides that"):
        write_manifest(store, tmp_path / "m.csv", force=list(CHECKS))
    with pytest.raises(ConfigError, match="--force incomplete no longer exists"):
        write_manifest(store, tmp_path / "m.csv", force=["incomplete", "orphan-share"])
    assert not (tmp_path / "m.csv").exists()
    orphans = store.connect().execute("SELECT count(*), bool_or(reclaimable) FROM orphans").fetchone()
    assert orphans[0] > 0 and orphans[1] is False  # shown, never as reclaimable


def test_failed_split_lookups_keep_every_subkey_alive(lab_world, lab_servers, tmp_path):
    """Issue 13 point 5: a failed split lookup's subkeys are unknown, so no candidate is deletable."""
    splits = sorted(lab_world.truth["splits"])
    lab_servers.set_faults("srebuildd", fail_keys=splits)
    try:
        store = prepared(lab_world, lab_servers, tmp_path / "store", resolve=False)
        resolve_splits(store, base_url=lab_servers.srebuildd_url, policy=HttpPolicy(retries=1, backoff_base=0.001))
    finally:
        lab_servers.set_faults("srebuildd", fail_keys=[])
    summary = analyze(store).summary
    assert not summary["complete"] and not summary["reclaimable"]
    assert any("split lookups failed" in reason for reason in summary["incomplete_reasons"])
    for force in ([], list(CHECKS)):
        with pytest.raises(RefusedError, match="no option overrides"):
            write_manifest(store, tmp_path / "m.csv", force=force)
    live_subkeys = {k for subkeys in lab_world.truth["splits"].values() for k in subkeys}
    assert live_subkeys  # the lab plants splits
    assert store.connect().execute("SELECT count(*) FROM orphans WHERE reclaimable").fetchone()[0] == 0


def _rewritten(manifest_path: Path, out: Path, extra_rows: list[str]) -> Path:
    """The manifest with rows appended and its header's key count and checksum recomputed (as an attacker would)."""
    lines = manifest_path.read_text().splitlines()
    header = json.loads(lines[0][len(HEADER_PREFIX):])
    rows = [*lines[2:], *extra_rows]
    keys = [row.split(",")[0] for row in rows]
    header.update(key_count=len(keys), keys_sha256=keys_checksum(keys))
    out.write_text("\n".join([HEADER_PREFIX + json.dumps(header, sort_keys=True), lines[1], *rows]) + "\n")
    return out


def test_a_manifest_with_a_recomputed_checksum_cannot_delete_live_data(lab_world, lab_servers, tmp_path):
    """Issue 13 point 4: the store decides, not the manifest's own checksum."""
    store = prepared(lab_world, lab_servers, tmp_path / "store")
    write_manifest(store, tmp_path / "m.csv")
    live = store.connect().execute(
        "SELECT c.ring_key FROM candidates AS c ANTI JOIN orphans AS o USING (ring_key) ORDER BY 1 LIMIT 1"
    ).fetchone()[0]
    forged = _rewritten(tmp_path / "m.csv", tmp_path / "forged.csv", [f"{live},arc,8+4,12,"])
    lab_servers.reset_stats()
    with pytest.raises(RefusedError, match=f"{live} is not a reclaimable orphan"):
        delete_from_manifest(store, forged, execute=True, base_url=lab_servers.srebuildd_url, policy=POLICY)
    assert deletes(lab_servers) == {}


def test_a_reference_found_after_the_analysis_stops_the_deletion(tmp_path):
    """A split index resolved after the run lists a subkey: its main chunk is referenced now, whatever the run said."""
    world = _planted.build()
    subkey = world.new_input_key()
    victim = world.store_arc(keys.input_key_md5_prefix(subkey), _planted.ARC.stripes)  # unreferenced: an orphan, for now
    listkeys, exports = world.write(tmp_path)
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(listkeys)])
    ingest_s3keys(store, [str(exports)])
    analyze(store, AnalysisOptions(assume_no_splits=True))
    assert victim in write_manifest(store, tmp_path / "m.csv", force=["orphan-share"]).keys
    [(index_key,)] = store.connect().execute("SELECT sproxyd_key FROM s3keys ORDER BY 1 LIMIT 1").fetchall()
    table = pa.table({"input_key": [index_key], "status": ["ok"], "is_split": [True], "subkeys": [[subkey]], "error": [None],
                      "resolved_at": [datetime.now(timezone.utc)]}, schema=arrow_schema("splits"))
    with store.writing_part("splits", store.new_batch_id()) as tmp:
        pq.write_table(table, tmp)
    with pytest.raises(RefusedError, match=f"{victim} is the main chunk of S3 reference {subkey}"):
        delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url="http://127.0.0.1:9", policy=POLICY)


def test_manifest_refuses_a_large_orphan_share(lab_world, lab_servers, tmp_path):
    store = prepared(lab_world, lab_servers, tmp_path / "store", max_orphan_share=0.001)
    with pytest.raises(RefusedError, match="orphan-share"):
        write_manifest(store, tmp_path / "m.csv")
    assert write_manifest(store, tmp_path / "m.csv", force=["orphan-share"]).header["key_count"] == len(lab_world.truth["orphans"])


def test_manifest_refuses_a_listing_newer_than_the_export(lab_world, lab_servers, tmp_path):
    listing = tmp_path / "listing"
    listing.mkdir()
    future = time.time() + 3600
    for path in lab_world.listkeys_dir.iterdir():
        target = listing / path.name
        target.write_bytes(path.read_bytes())
        os.utime(target, (future, future))
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(listing)])
    ingest_bucketd(store, lab_servers.bucketd_url, raft_sessions=[1, 2], policy=POLICY)
    resolve_splits(store, base_url=lab_servers.srebuildd_url, policy=POLICY)
    analyze(store)
    with pytest.raises(RefusedError, match="listing-order"):
        write_manifest(store, tmp_path / "m.csv")


def test_dry_run_then_exact_deletion_under_faults_then_nothing_new(lab_world, lab_servers, tmp_path):
    store = prepared(lab_world, lab_servers, tmp_path / "store")
    manifest = write_manifest(store, tmp_path / "m.csv")
    orphans = set(lab_world.truth["orphans"])
    assert set(manifest.keys) == orphans
    lab_servers.reset_stats()
    dry = delete_from_manifest(store, tmp_path / "m.csv", base_url=lab_servers.srebuildd_url)
    assert not dry.executed and dry.selected == len(orphans)
    assert lab_servers.request_counts("srebuildd") == {}
    lab_servers.set_faults("srebuildd", error_rate=0.1, drop_rate=0.1)
    report = delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab_servers.srebuildd_url, policy=POLICY)
    assert report.failed == 0 and report.outcomes["deleted"] == len(orphans)
    assert sorted(lab_servers.deleted()) == sorted(orphans)
    assert report.bytes_reclaimed == sum(lab_world.truth["orphan_sizes"].values())
    assert {k for k, o in read_journal(report.journal).items() if o == "deleted"} == orphans
    lab_servers.set_faults("srebuildd", error_rate=0, drop_rate=0)
    lab_servers.reset_stats()
    again = delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab_servers.srebuildd_url, policy=POLICY)
    assert again.already_confirmed == len(orphans) and not again.executed
    assert deletes(lab_servers) == {}


def test_failures_are_journaled_and_retried(lab_world, lab_servers, tmp_path):
    store = prepared(lab_world, lab_servers, tmp_path / "store")
    write_manifest(store, tmp_path / "m.csv")
    stuck = sorted(lab_world.truth["orphans"])[:3]
    lab_servers.set_faults("srebuildd", fail_keys=stuck)
    first = delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab_servers.srebuildd_url, policy=HttpPolicy(retries=1, backoff_base=0.001))
    assert first.failed == 3
    assert {k for k, o in read_journal(first.journal).items() if o == "failed"} == set(stuck)
    lab_servers.set_faults("srebuildd", fail_keys=[])
    second = delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab_servers.srebuildd_url, policy=POLICY)
    assert second.outcomes["deleted"] == 3 and second.failed == 0


def test_tampered_or_foreign_manifests_are_refused(lab_world, lab_servers, tmp_path):
    store = prepared(lab_world, lab_servers, tmp_path / "store")
    write_manifest(store, tmp_path / "m.csv")
    text = (tmp_path / "m.csv").read_text().splitlines()
    tampered = tmp_path / "tampered.csv"
    tampered.write_text("\n".join([*text, "ABCDEF" * 6 + "0070,arc,8+4,12,1"]) + "\n")
    with pytest.raises(RefusedError, match="modified after ringfsck wrote it"):
        delete_from_manifest(store, tampered)
    other = Store.open(Settings(store=str(tmp_path / "other")))
    with pytest.raises(RefusedError, match="another store"):
        delete_from_manifest(other, tmp_path / "m.csv")
    with pytest.raises(RefusedError, match="not a ringfsck manifest"):
        delete_from_manifest(store, tmp_path / "m.csv.parquet")


def test_only_keys_deletes_a_subset_and_nothing_outside(lab_world, lab_servers, tmp_path):
    store = prepared(lab_world, lab_servers, tmp_path / "store")
    manifest = write_manifest(store, tmp_path / "m.csv")
    subset = manifest.keys[:4]
    (tmp_path / "some.txt").write_text("\n".join(k.lower() for k in subset) + "\n")
    report = delete_from_manifest(store, tmp_path / "m.csv", execute=True, only_keys=tmp_path / "some.txt", base_url=lab_servers.srebuildd_url, policy=POLICY)
    assert report.outcomes["deleted"] == 4
    assert sorted(lab_servers.deleted()) == sorted(subset)
    (tmp_path / "outside.txt").write_text("F" * 40 + "\n")
    with pytest.raises(RefusedError, match="not in the manifest"):
        delete_from_manifest(store, tmp_path / "m.csv", execute=True, only_keys=tmp_path / "outside.txt")


def test_sigkill_mid_run_resumes_with_every_key_deleted_once(lab_world, lab_servers, tmp_path):
    store = prepared(lab_world, lab_servers, tmp_path / "store")
    manifest = write_manifest(store, tmp_path / "m.csv")
    lab_servers.reset_stats()
    lab_servers.set_faults("srebuildd", latency_ms=150)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "ringfsck", "delete", "--manifest", str(tmp_path / "m.csv"), "--execute", "--store", str(store.root),
               "--srebuildd", lab_servers.srebuildd_url, "--concurrency", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = store.root / "journal"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        files = list(journal.rglob("*.jsonl")) if journal.exists() else []
        if files and read_journal(files[0].parent):  # a key's outcome, not only the run's and the canaries' records
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    segments = files[0].parent  # journal/<manifest>/: one segment per run on a local store
    confirmed_before = {k for k, o in read_journal(segments).items() if o in ("deleted", "already_gone")}
    assert 0 < len(confirmed_before) < len(manifest.keys)
    lab_servers.set_faults("srebuildd", latency_ms=0)
    report = delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab_servers.srebuildd_url, policy=POLICY)
    assert report.failed == 0
    assert sorted(lab_servers.deleted()) == sorted(manifest.keys)  # each key deleted exactly once
    journal_outcomes = read_journal(segments)
    assert set(journal_outcomes) == set(manifest.keys)
    assert all(o in ("deleted", "already_gone") for o in journal_outcomes.values())
    counts = deletes(lab_servers)
    for key in confirmed_before:
        assert counts[key] == 1, key  # never asked again once journaled
    # Only requests in flight at the kill (concurrency 2) may have been repeated.
    assert sum(1 for key in manifest.keys if counts.get(key, 0) > 1) <= 2  # --concurrency 2
