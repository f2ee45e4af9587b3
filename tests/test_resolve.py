"""resolve and size against the lab: exact results under faults, incompleteness, resume after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from test_lab_check import read_listkeys

from ringfsck import Settings, Store, analyze, ingest_listkeys, ingest_s3keys
from ringfsck.capacity import capacity_summary
from ringfsck.errors import ConfigError, RemoteError
from ringfsck.lab import LabServers
from ringfsck.remote.http import HttpPolicy
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import size_orphans

FAST_RETRIES = HttpPolicy(concurrency=16, timeout=2, retries=10, backoff_base=0.005, backoff_max=0.05)



def keys_of(store, query):
    return {row[0] for row in store.connect().execute(query).fetchall()}


def test_exact_orphans_and_sizes_with_ten_percent_failures(lab_world, ingested):
    truth = lab_world.truth
    with LabServers(lab_world.path, srebuildd_faults="error_rate=0.05,drop_rate=0.05") as lab:
        report = resolve_splits(ingested, base_url=lab.srebuildd_url, policy=FAST_RETRIES)
        assert report.errors == 0
        summary = analyze(ingested).summary
        assert summary["complete"], summary["incomplete_reasons"]
        assert keys_of(ingested, "SELECT ring_key FROM orphans") == set(truth["orphans"])
        assert summary["splits"]["split"] == len(truth["splits"])
        subkeys = {row[0]: sorted(row[1]) for row in ingested.connect().execute("SELECT input_key, subkeys FROM splits WHERE is_split").fetchall()}
        assert subkeys == {k: sorted(v) for k, v in truth["splits"].items()}
        size_orphans(ingested, base_url=lab.srebuildd_url, policy=FAST_RETRIES)
    sizes = dict(ingested.connect().execute("SELECT ring_key, size FROM orphan_sizes").fetchall())
    assert sizes == truth["orphan_sizes"]
    capacity = capacity_summary(ingested)
    assert capacity["totals"]["logical_bytes"] == sum(truth["orphan_sizes"].values())
    assert capacity["totals"]["unsized"] == 0
    # Per disk, only chunks that hold data: the orphans' tombstones (flag bit 0) take no room.
    orphans = set(truth["orphans"])
    live = Counter(disk for disk, chunk, main in {(d, c, m) for _, c, m, d, flag in read_listkeys(lab_world) if m in orphans and not int(flag) & 1})
    assert {row["disk"]: row["chunks"] for row in capacity["by_disk"]} == live


def test_split_indexes_that_always_fail_make_the_analysis_incomplete(lab_world, ingested):
    failing = sorted(lab_world.truth["splits"])[:2]
    with LabServers(lab_world.path, srebuildd_faults="fail_keys=" + ";".join(failing)) as lab:
        report = resolve_splits(ingested, base_url=lab.srebuildd_url, policy=HttpPolicy(concurrency=8, retries=2, backoff_base=0.001))
    assert report.errors == 2
    assert keys_of(ingested, "SELECT input_key FROM splits WHERE status = 'error'") == set(failing)
    summary = analyze(ingested).summary
    assert summary["complete"] is False
    assert any("split lookups failed" in reason for reason in summary["incomplete_reasons"])
    # The failed indexes' subkeys are unknown: their chunks show up as orphans, hence the refusal.
    from ringfsck.keys import input_key_digkey

    unknown = {input_key_digkey(subkey) for key in failing for subkey in lab_world.truth["splits"][key]}
    assert unknown <= keys_of(ingested, "SELECT digkey FROM orphans")


def test_unreachable_srebuildd_is_one_clear_error(ingested):
    with pytest.raises(RemoteError, match="cannot reach srebuildd at http://127.0.0.1:9"):
        resolve_splits(ingested, base_url="http://127.0.0.1:9", policy=FAST_RETRIES)


def test_no_srebuildd_configured(ingested):
    with pytest.raises(ConfigError, match="no srebuildd URL"):
        resolve_splits(ingested)


def exported_keys(world) -> set[str]:
    """The 40-hex keys a file export holds: a file cannot say which are other backends' keys, so they are asked too."""
    return set(world.truth["sproxyd_keys"]) | set(world.truth["other_backend_keys"])


def test_keys_below_the_split_threshold_need_no_request(lab_world, tmp_path):
    store = Store.open(Settings(store=str(tmp_path / "store"), split_threshold=1))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_s3keys(store, [str(lab_world.s3keys_dir)])
    # File exports carry no sizes, so every key still needs asking.
    with LabServers(lab_world.path) as lab:
        assert resolve_splits(store, base_url=lab.srebuildd_url, policy=FAST_RETRIES).requested == len(exported_keys(lab_world))


def test_killed_resolve_resumes_without_asking_final_keys_again(lab_world, ingested, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with LabServers(lab_world.path, srebuildd_faults="latency_ms=15") as lab:
        command = [sys.executable, "-m", "ringfsck", "resolve", "--store", str(ingested.root), "--srebuildd", lab.srebuildd_url, "--concurrency", "2"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not any(ingested.root.glob("tables/splits/*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        final_before = keys_of(ingested, "SELECT input_key FROM splits WHERE status IN ('ok', 'not_found')")
        assert 0 < len(final_before) < len(exported_keys(lab_world))
        rerun = resolve_splits(ingested, base_url=lab.srebuildd_url, policy=FAST_RETRIES)
        counts = lab.request_counts("srebuildd")
    assert rerun.requested == len(exported_keys(lab_world)) - len(final_before)
    for key in final_before:
        assert counts.get(f"HEAD /rebuild/arc-DATA/{key}") == 1, key
    assert keys_of(ingested, "SELECT input_key FROM splits WHERE status IN ('ok', 'not_found')") == exported_keys(lab_world)
    assert analyze(ingested).summary["complete"]
