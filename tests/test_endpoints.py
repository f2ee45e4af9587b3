"""Several srebuildd endpoints: keys spread, an endpoint lost mid-run, rate ceilings measured by the servers."""

from __future__ import annotations

import bisect
import contextlib
import threading
import time

from ringfsck import Settings, Store, analyze, ingest_listkeys, ingest_s3keys
from ringfsck.config import load_settings
from ringfsck.deleter import delete_from_manifest
from ringfsck.lab import LabServers
from ringfsck.manifest import write_manifest
from ringfsck.remote.http import HttpPolicy
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import size_orphans

FAST = HttpPolicy(concurrency=8, timeout=2, retries=3, backoff_base=0.005, backoff_max=0.05)



@contextlib.contextmanager
def three_labs(world, **faults):
    with LabServers(world.path, srebuildd_faults=faults or None) as a, LabServers(world.path, srebuildd_faults=faults or None) as b, \
            LabServers(world.path, srebuildd_faults=faults or None) as c:
        yield [a, b, c]


def requests_of(lab) -> int:
    return sum(lab.request_counts("srebuildd").values())


def splits_of(store) -> dict[str, tuple]:
    rows = store.connect().execute("SELECT input_key, status, is_split, subkeys FROM splits").fetchall()
    return {key: (status, is_split, sorted(subkeys)) for key, status, is_split, subkeys in rows}


def truth_splits(world, store) -> dict[str, tuple]:
    """What one healthy endpoint answers: the split indexes of the truth, every other input key plain or absent."""
    asked = {row[0] for row in store.connect().execute("SELECT sproxyd_key FROM s3_input_keys").fetchall()}
    splits = world.truth["splits"]
    return {key: ("ok", True, sorted(splits[key])) for key in asked if key in splits}


def busiest_second(times: list[float]) -> int:
    """The most requests any one-second window (sliding) of the log holds."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def test_keys_spread_over_three_endpoints_with_the_answers_of_one(lab_world, ingested):
    with three_labs(lab_world) as labs:
        report = resolve_splits(ingested, base_url=[lab.srebuildd_url for lab in labs], policy=FAST)
        counts = [requests_of(lab) for lab in labs]
    assert report.errors == 0
    total = sum(counts)
    assert all(count >= total / 6 for count in counts), counts  # each got a share (an even one is a third)
    assert [e["requests"] for e in report.endpoints] == counts  # the client's figures are the servers'
    assert [e["url"] for e in report.endpoints] == [lab.srebuildd_url for lab in labs]
    found = splits_of(ingested)
    assert {k: v for k, v in found.items() if v[1]} == truth_splits(lab_world, ingested)
    assert {v[0] for v in found.values()} <= {"ok", "not_found"}
    assert analyze(ingested).summary["complete"]


def test_an_endpoint_killed_mid_run_leaves_its_keys_to_the_others(lab_world, ingested, tmp_path):
    with three_labs(lab_world) as labs:
        victim = labs[1]
        killed = threading.Event()

        def kill_after_some_requests() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if requests_of(victim) >= 30:
                    victim.stop()
                    killed.set()
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=kill_after_some_requests, daemon=True)
        watcher.start()
        # A ceiling per endpoint makes the run last long enough to lose one in the middle.
        policy = HttpPolicy(concurrency=8, timeout=2, retries=3, backoff_base=0.005, backoff_max=0.05, max_rps=100)
        report = resolve_splits(ingested, base_url=[lab.srebuildd_url for lab in labs], policy=policy)
        watcher.join()
        assert killed.is_set()
    assert report.errors == 0  # nothing answered from a failure, nothing left unknown
    lost = report.endpoints[1]
    assert lost["set_aside"] and lost["failures"] >= 3
    assert report.endpoints[0]["set_aside"] is None and report.endpoints[2]["set_aside"] is None
    multi = splits_of(ingested)

    one = Store.open(Settings(store=str(tmp_path / "one")))
    ingest_listkeys(one, [str(lab_world.listkeys_dir)])
    ingest_s3keys(one, [str(lab_world.s3keys_dir)])
    with LabServers(lab_world.path) as lab:
        resolve_splits(one, base_url=lab.srebuildd_url, policy=FAST)
    assert multi == splits_of(one)


def test_an_endpoint_that_keeps_failing_is_set_aside_and_never_answers(lab_world, ingested):
    with three_labs(lab_world) as labs:
        labs[2].set_faults("srebuildd", fail_after=10)  # answers, then 503 for good
        report = resolve_splits(ingested, base_url=[lab.srebuildd_url for lab in labs], policy=FAST)
        after_aside = requests_of(labs[2])
    assert report.errors == 0
    assert report.endpoints[2]["set_aside"] == f"{FAST.set_aside_after} keys failed in a row"
    assert after_aside < 10 + (FAST.retries + 1) * FAST.concurrency * 2  # not asked for long once set aside
    assert {k: v for k, v in splits_of(ingested).items() if v[1]} == truth_splits(lab_world, ingested)


def test_a_key_every_endpoint_fails_stays_unknown(lab_world, ingested):
    failing = sorted(lab_world.truth["splits"])[:1]
    with three_labs(lab_world, fail_keys=failing) as labs:
        report = resolve_splits(ingested, base_url=[lab.srebuildd_url for lab in labs], policy=FAST)
        asked = [lab.request_counts("srebuildd").get(f"HEAD /rebuild/arc-DATA/{failing[0]}", 0) for lab in labs]
    assert report.errors == 1
    assert asked == [FAST.retries + 1] * 3  # every endpoint was tried before the key was called a failure
    status = ingested.connect().execute("SELECT status, is_split FROM splits WHERE input_key = ?", failing).fetchone()
    assert status == ("error", None)


def test_an_unreachable_endpoint_is_set_aside_at_preflight(lab_world, ingested):
    with LabServers(lab_world.path) as lab:
        report = resolve_splits(ingested, base_url=["http://127.0.0.1:9", lab.srebuildd_url], policy=FAST)
    assert report.errors == 0
    assert report.endpoints[0]["set_aside"].startswith("preflight: cannot reach srebuildd at http://127.0.0.1:9")
    assert report.endpoints[0]["requests"] == 0


def test_rate_ceilings_per_endpoint_and_in_total_hold_at_the_servers(lab_world, ingested):
    per_endpoint, total = 40.0, 100.0
    policy = HttpPolicy(concurrency=8, timeout=2, retries=3, backoff_base=0.005, backoff_max=0.05, max_rps=per_endpoint, max_rps_total=total)
    with three_labs(lab_world) as labs:
        report = resolve_splits(ingested, base_url=[lab.srebuildd_url for lab in labs], policy=policy)
        logs = [lab.request_times("srebuildd")[1:] for lab in labs]  # the first is the preflight, before the job
    assert report.errors == 0 and sum(map(len, logs)) > 3 * total  # long enough for the ceilings to bind
    # Starts are spaced by the client; a request may reach the server a little late, so one more fits a window.
    slack = 2
    assert all(busiest_second(log) <= per_endpoint + slack for log in logs), [busiest_second(log) for log in logs]
    assert busiest_second([t for log in logs for t in log]) <= total + slack
    assert busiest_second([t for log in logs for t in log]) >= total * 0.8  # and the total ceiling is what bound


def test_a_single_endpoint_without_ceilings_goes_faster_than_the_ceiling(lab_world, ingested):
    """The measure above can fail: without ceilings one endpoint alone takes far more than 40 requests in a second."""
    with LabServers(lab_world.path) as lab:
        resolve_splits(ingested, base_url=lab.srebuildd_url, policy=FAST)
        assert busiest_second(lab.request_times("srebuildd")) > 40 + 2


def test_sizes_and_deletions_spread_and_keep_their_guards(lab_world, tmp_path):
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_s3keys(store, [str(lab_world.s3keys_dir)])
    with three_labs(lab_world) as labs:
        urls = [lab.srebuildd_url for lab in labs]
        resolve_splits(store, base_url=urls, policy=FAST)
        analyze(store)
        sized = size_orphans(store, base_url=urls, policy=FAST)
        assert sized.errors == 0 and len(sized.endpoints) == 3
        sizes = dict(store.connect().execute("SELECT ring_key, size FROM orphan_sizes").fetchall())
        assert sizes == lab_world.truth["orphan_sizes"]
        for lab in labs:
            lab.reset_stats()
        write_manifest(store, tmp_path / "m.csv", force=["listing-order"])
        report = delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=urls, policy=FAST, force=["retention"])
        deleted = [lab.deleted() for lab in labs]
        counts = [lab.request_counts("srebuildd") for lab in labs]
    orphans = set(lab_world.truth["orphans"])
    assert report.failed == 0 and report.outcomes["deleted"] == len(orphans)
    assert set().union(*deleted) == orphans and sum(map(len, deleted)) == len(orphans)  # each key deleted once, somewhere
    for lab_deleted, lab_counts in zip(deleted, counts):
        for key in lab_deleted:  # the HEAD before each DELETE went to the endpoint that deleted it
            assert lab_counts.get(f"HEAD /rebuild/arcdata-DATA/{key}", 0) >= 1
    assert all(lab_deleted for lab_deleted in deleted)  # all three took a share


def test_srebuildd_urls_from_config_and_command_line(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("srebuildd_urls: [10.0.0.5:81, 'http://10.0.0.6:81/', 10.0.0.5:81]\nmax_rps_total: 300\n")
    settings = load_settings(config, {}, env={}, cwd=None)
    assert settings.srebuildd_base_urls == ["http://10.0.0.5:81", "http://10.0.0.6:81"]
    assert HttpPolicy.from_settings(settings).max_rps_total == 300
    overridden = load_settings(config, {"srebuildd_urls": ("10.0.0.7:81",)}, env={}, cwd=None)
    assert overridden.srebuildd_base_urls == ["http://10.0.0.7:81"]
    single = load_settings(None, {"srebuildd_ip": "10.0.0.8"}, env={}, cwd=None)
    assert single.srebuildd_base_urls == ["http://10.0.0.8:81"]

