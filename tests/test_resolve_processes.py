"""resolve over several client processes: each key asked once, a worker lost mid-run, ceilings kept together.

Run through the CLI: a fresh process, as an operator's, from which workers can be forked (the test
process may have loaded polars, which keeps everything in one process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_endpoints import busiest_second, splits_of, three_labs, truth_splits

from ringfsck.lab import LabServers
from ringfsck.remote.batches import key_range_bounds

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--timeout", "2", "--retries", "3"]


def resolve(store, urls, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "ringfsck", "resolve", "--store", str(store.root), *FAST, *extra]
    for url in urls:
        command += ["--srebuildd", url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return out


def rows_per_key(store) -> dict[str, int]:
    return dict(store.connect().execute("SELECT input_key, count(*) FROM splits_log GROUP BY ALL").fetchall())


def asked_keys(store) -> set[str]:
    return {row[0] for row in store.connect().execute("SELECT sproxyd_key FROM s3_input_keys").fetchall()}


def test_key_ranges_cover_every_key_once():
    assert key_range_bounds(1) == []
    assert key_range_bounds(2) == ["8000"]
    assert key_range_bounds(3) == ["5555", "AAAA"]
    bounds = key_range_bounds(7)
    assert bounds == sorted(bounds) and len(set(bounds)) == 6


def test_keys_split_over_processes_are_each_asked_and_stored_once(lab_world, ingested):
    with three_labs(lab_world) as labs:
        out = finished(resolve(ingested, [lab.srebuildd_url for lab in labs], "--processes", "2", "--concurrency", "8"))
        heads = [lab.request_counts("srebuildd") for lab in labs]
    assert "by 2 processes" in out and ", 0 error" not in out
    rows = rows_per_key(ingested)
    assert set(rows) == asked_keys(ingested) and set(rows.values()) == {1}  # no key lost, none twice
    for key in rows:  # and each asked once, by one process, on one endpoint
        assert sum(counts.get(f"HEAD /rebuild/arc-DATA/{key}", 0) for counts in heads) == 1, key
    found = splits_of(ingested)
    assert {k: v for k, v in found.items() if v[1]} == truth_splits(lab_world, ingested)
    assert {v[0] for v in found.values()} <= {"ok", "not_found"}


def worker_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_a_worker_killed_mid_run_leaves_its_keys_to_the_parent_never_an_answer(lab_world, ingested):
    with LabServers(lab_world.path, srebuildd_faults="latency_ms=20") as lab:
        process = resolve(ingested, [lab.srebuildd_url], "--processes", "2", "--concurrency", "4")
        deadline = time.monotonic() + 60
        while not (any(ingested.root.glob("tables/splits/*.parquet")) and len(worker_pids(process.pid)) == 2):
            assert time.monotonic() < deadline and process.poll() is None, "no worker saved anything"
            time.sleep(0.02)
        os.kill(worker_pids(process.pid)[0], signal.SIGKILL)
        out = finished(process)
    assert " error" not in out
    found = splits_of(ingested)
    assert set(found) == asked_keys(ingested)
    assert {v[0] for v in found.values()} <= {"ok", "not_found"}  # every key answered, none from a failure
    assert {k: v for k, v in found.items() if v[1]} == truth_splits(lab_world, ingested)


def test_rate_ceilings_hold_at_the_servers_with_two_processes(lab_world, ingested):
    per_endpoint, total = 40.0, 100.0
    with three_labs(lab_world) as labs:
        ceilings = ["--max-rps", str(per_endpoint), "--max-rps-total", str(total), "--processes", "2", "--concurrency", "8"]
        out = finished(resolve(ingested, [lab.srebuildd_url for lab in labs], *ceilings))
        logs = [lab.request_times("srebuildd")[1:] for lab in labs]  # the first is the preflight, before the job
    assert "by 2 processes" in out
    assert sum(map(len, logs)) > 3 * total  # long enough for the ceilings to bind
    # Each process's limiter may let one more through in a window, and a request may arrive a little late.
    slack = 2 + 1
    assert all(busiest_second(log) <= per_endpoint + slack for log in logs), [busiest_second(log) for log in logs]
    merged = [t for log in logs for t in log]
    assert total * 0.8 <= busiest_second(merged) <= total + slack


def test_sigterm_stops_every_worker_with_its_answers_saved(lab_world, ingested):
    with LabServers(lab_world.path, srebuildd_faults="latency_ms=50") as lab:
        process = resolve(ingested, [lab.srebuildd_url], "--processes", "2", "--concurrency", "4")
        deadline = time.monotonic() + 60
        while sum(lab.request_counts("srebuildd").values()) < 40 or len(worker_pids(process.pid)) < 2:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        workers = worker_pids(process.pid)
        process.send_signal(signal.SIGTERM)  # the parent only, as a service manager does
        _, err = process.communicate(timeout=60)
        assert process.returncode == 143, err
        assert "Traceback" not in err and "answers received are saved" in err, err
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
        saved = rows_per_key(ingested)
        # Both workers saved what they had (each asked its own range of keys).
        assert any(key < key_range_bounds(2)[0] for key in saved) and any(key >= key_range_bounds(2)[0] for key in saved)
        lab.set_faults("srebuildd", latency_ms=0)
        finished(resolve(ingested, [lab.srebuildd_url], "--processes", "2"))
    assert set(rows_per_key(ingested)) == asked_keys(ingested)
    assert {v[0] for v in splits_of(ingested).values()} <= {"ok", "not_found"}


def test_an_endpoint_killed_mid_run_leaves_its_keys_to_the_others_in_every_process(lab_world, ingested):
    with three_labs(lab_world) as labs:
        victim = labs[1]
        # A ceiling per endpoint makes the run last long enough to lose one in the middle.
        process = resolve(ingested, [lab.srebuildd_url for lab in labs], "--processes", "2", "--concurrency", "8", "--max-rps", "100")
        deadline = time.monotonic() + 60
        while sum(victim.request_counts("srebuildd").values()) < 30:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        victim.stop()
        out = finished(process)
    assert "set aside" in out and " error" not in out
    found = splits_of(ingested)
    assert set(found) == asked_keys(ingested) and set(rows_per_key(ingested).values()) == {1}
    assert {v[0] for v in found.values()} <= {"ok", "not_found"}  # nothing answered from a failure, nothing left unknown
    assert {k: v for k, v in found.items() if v[1]} == truth_splits(lab_world, ingested)


def test_size_over_two_processes_sizes_every_orphan_once(lab_world, ingested):
    from ringfsck import analyze
    from ringfsck.remote.http import HttpPolicy
    from ringfsck.resolve import resolve_splits

    with LabServers(lab_world.path) as lab:
        resolve_splits(ingested, base_url=lab.srebuildd_url, policy=HttpPolicy(concurrency=8))
        analyze(ingested)
        command = [sys.executable, "-m", "ringfsck", "size", "--store", str(ingested.root), "--srebuildd", lab.srebuildd_url, "--processes", "2"]
        done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "by 2 processes" in done.stdout
    rows = dict(ingested.connect().execute("SELECT ring_key, count(*) FROM sizes_log GROUP BY ALL").fetchall())
    assert set(rows) == set(lab_world.truth["orphans"]) and set(rows.values()) == {1}
    sizes = dict(ingested.connect().execute("SELECT ring_key, size FROM orphan_sizes").fetchall())
    assert sizes == lab_world.truth["orphan_sizes"]
