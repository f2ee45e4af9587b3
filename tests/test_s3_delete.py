"""The deletion journal of a store on S3: a kill -9 at any point loses no confirmed deletion."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ringfsck import Store, analyze, ingest_listkeys, load_settings
from ringfsck.deleter import delete_from_manifest, read_journal
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.manifest import write_manifest
from ringfsck.remote.http import HttpPolicy
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import size_orphans

POLICY = HttpPolicy(concurrency=8, timeout=5, retries=10, backoff_base=0.005, backoff_max=0.05)
CONFIRMED = ("deleted", "already_gone")


def test_sigkill_mid_run_on_an_s3_store_loses_no_confirmed_deletion(lab_world, lab_servers, s3, tmp_path):
    cache = tmp_path / "cache"

    def open_store(cache_dir: Path) -> Store:
        return Store.open(load_settings(None, {"store": s3.url("DATA"), "cache_dir": str(cache_dir)}, env={}))

    store = open_store(cache)
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_bucketd(store, lab_servers.bucketd_url, raft_sessions=[1, 2], policy=POLICY)
    resolve_splits(store, base_url=lab_servers.srebuildd_url, policy=POLICY)
    analyze(store)
    size_orphans(store, base_url=lab_servers.srebuildd_url, policy=POLICY)
    manifest_url = s3.url("DATA/orphans.csv")
    manifest = write_manifest(store, manifest_url)
    journal_prefix = f"DATA/journal/{manifest.header['keys_sha256'][:32]}/"

    def journal_on_s3() -> dict[str, str]:
        outcomes: dict[str, str] = {}
        for key in sorted(s3.keys(journal_prefix)):
            for line in s3.client.get_object(Bucket=s3.bucket, Key=key)["Body"].read().decode().splitlines():
                record = json.loads(line)
                if "ring_key" in record:  # not the run's or the canaries' records
                    outcomes[record["ring_key"]] = record["outcome"]
        return outcomes

    lab_servers.reset_stats()
    lab_servers.set_faults("srebuildd", latency_ms=150)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "ringfsck", "delete", "--manifest", manifest_url, "--execute", "--store", s3.url("DATA"),
               "--cache-dir", str(cache), "--srebuildd", lab_servers.srebuildd_url, "--concurrency", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not journal_on_s3():
        time.sleep(0.05)
    time.sleep(0.3)  # into the next batch: answers in the local segment, not on S3 yet
    process.send_signal(signal.SIGKILL)
    process.wait()

    on_s3 = {k for k, o in journal_on_s3().items() if o in CONFIRMED}
    journaled = {k for k, o in read_journal(cache / "journal" / journal_prefix.split("/")[2]).items() if o in CONFIRMED}
    assert 0 < len(on_s3) and on_s3 <= journaled < set(manifest.keys)

    # Another machine (an empty cache) knows every deletion S3 confirmed.
    elsewhere = delete_from_manifest(open_store(tmp_path / "elsewhere"), manifest_url)
    assert not elsewhere.executed and elsewhere.already_confirmed == len(on_s3)

    # The same machine resumes: the segment the kill left behind is uploaded first, then the rest is deleted.
    lab_servers.set_faults("srebuildd", latency_ms=0)
    report = delete_from_manifest(open_store(cache), manifest_url, execute=True, base_url=lab_servers.srebuildd_url, policy=POLICY)
    assert report.failed == 0 and report.already_confirmed == len(journaled)
    assert sorted(lab_servers.deleted()) == sorted(manifest.keys)
    counts = {path.rsplit("/", 1)[1]: n for path, n in lab_servers.request_counts("srebuildd").items() if path.startswith("DELETE")}
    for key in journaled:
        assert counts[key] == 1, key  # never asked again once journaled
    assert sum(1 for key in manifest.keys if counts.get(key, 0) > 1) <= 2  # only what was in flight (--concurrency 2)
    final = journal_on_s3()
    assert set(final) == set(manifest.keys) and all(o in CONFIRMED for o in final.values())
