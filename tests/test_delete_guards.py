"""The guards at the sweep itself (issue 15): a HEAD before each DELETE, canaries, a budget per run."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from test_delete import POLICY, deletes, prepared

from ringfsck import Settings, Store, analyze, ingest_listkeys
from ringfsck.config import CanarySettings, load_settings, parse_size
from ringfsck.deleter import AgeGuard, delete_from_manifest, journal_records, read_journal
from ringfsck.errors import RefusedError, RemoteError
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.lab import LabServers
from ringfsck.manifest import write_manifest
from ringfsck.remote.http import HttpPolicy
from ringfsck.remote.srebuildd import MainChunkHead, parse_scal_mtime
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import size_orphans

ROOT = Path(__file__).resolve().parents[1]
FAST_CANARIES = CanarySettings(wait_seconds=0.5)


def _manifest(lab_world, lab, tmp_path: Path, **settings) -> tuple[Store, list[str]]:
    store = prepared(lab_world, lab, tmp_path / "store", **settings)
    return store, write_manifest(store, tmp_path / "m.csv", force=["orphan-share"]).keys


def _delete(store: Store, tmp_path: Path, lab, **options):
    return delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab.srebuildd_url, policy=POLICY, **options)


def _events(report, name: str) -> list[dict]:
    return [r for r in journal_records(report.journal) if r.get("event") == name]


@pytest.mark.parametrize("mtime_format", ["http", "iso", "epoch"])
def test_an_in_flight_orphan_is_never_deleted(lab_world, lab_servers, tmp_path, mtime_format):
    store, orphans = _manifest(lab_world, lab_servers, tmp_path)
    in_flight = orphans[:3]
    lab_servers.set_faults("srebuildd", recent_keys=in_flight, mtime_format=mtime_format)
    report = _delete(store, tmp_path, lab_servers)
    assert not set(in_flight) & lab_servers.deleted()
    assert lab_servers.deleted() == set(orphans) - set(in_flight)
    assert report.outcomes["kept_too_recent"] == 3 and report.outcomes["deleted"] == len(orphans) - 3
    journal = read_journal(report.journal)
    assert {k for k, o in journal.items() if o == "kept_too_recent"} == set(in_flight)
    assert all(deletes(lab_servers).get(key, 0) == 0 for key in in_flight)
    # Kept is not final: the next run asks again, and keeps them again while they are young.
    again = _delete(store, tmp_path, lab_servers)
    assert again.outcomes["kept_too_recent"] == 3 and again.left_keys == 3


def test_a_share_of_recent_orphans_is_kept(lab_world, lab_servers, tmp_path):
    store, orphans = _manifest(lab_world, lab_servers, tmp_path)
    lab_servers.set_faults("srebuildd", recent_share=0.5)
    report = _delete(store, tmp_path, lab_servers)
    kept = {k for k, o in read_journal(report.journal).items() if o == "kept_too_recent"}
    assert 0 < len(kept) < len(orphans)
    assert lab_servers.deleted() == set(orphans) - kept


def test_no_mtime_keeps_every_key_unless_retention_is_forced(lab_world, lab_servers, tmp_path):
    store, orphans = _manifest(lab_world, lab_servers, tmp_path)
    lab_servers.set_faults("srebuildd", mtime_format="absent")
    lab_servers.reset_stats()
    report = _delete(store, tmp_path, lab_servers)
    assert report.outcomes["kept_no_mtime"] == len(orphans) and report.outcomes["deleted"] == 0
    assert deletes(lab_servers) == {} and lab_servers.deleted() == set()
    forced = _delete(store, tmp_path, lab_servers, force=["retention"])
    assert forced.outcomes["deleted"] == len(orphans) and lab_servers.deleted() == set(orphans)
    assert [r["forced"] for r in _events(forced, "run")] == [[], ["retention"]]


def test_a_listing_mtime_max_is_evidence_of_age(lab_world, lab_servers, tmp_path):
    """The hook for a native listing: a listkeys source's mtime_max older than the cutoff dates every key it lists."""
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    for source in store.sources():
        store.save_source(dataclasses.replace(source, mtime_max="2024-01-01T00:00:00Z"))
    ingest_bucketd(store, lab_servers.bucketd_url, raft_sessions=[1, 2], policy=POLICY)
    resolve_splits(store, base_url=lab_servers.srebuildd_url, policy=POLICY)
    analyze(store)
    size_orphans(store, base_url=lab_servers.srebuildd_url, policy=POLICY)
    orphans = write_manifest(store, tmp_path / "m.csv", force=["orphan-share"]).keys
    lab_servers.set_faults("srebuildd", mtime_format="absent")
    report = _delete(store, tmp_path, lab_servers)
    assert report.outcomes["deleted"] == len(orphans)


def test_age_guard_rules():
    summary = {"inputs": [{"kind": "listkeys", "captured_at": "2025-01-01T00:00:00Z"},
                          {"kind": "bucketd", "captured_at": "2025-02-10T00:00:00Z"}, {"kind": "s3keys", "captured_at": "2025-02-08T00:00:00Z"}]}
    guard = AgeGuard.of_run(summary, 7 * 86400)
    assert guard.cutoff == datetime(2025, 2, 1, tzinfo=timezone.utc)  # the earliest export start, minus retention
    old, young = (MainChunkHead(True, parse_scal_mtime(t), t) for t in ("2025-01-31T23:59:59Z", "2025-02-01T00:00:01Z"))
    assert guard.kept_because(old) is None
    assert guard.kept_because(young)[0] == "kept_too_recent"
    assert guard.kept_because(MainChunkHead(True, None, "yesterday"))[0] == "kept_no_mtime"
    # An S3 source without a start time: no key has evidence of age, whatever its mtime.
    blind = AgeGuard.of_run({"inputs": [*summary["inputs"], {"kind": "s3keys", "captured_at": None}]}, 7 * 86400)
    assert blind.cutoff is None and blind.kept_because(old)[0] == "kept_no_mtime"
    assert AgeGuard.of_run({"inputs": summary["inputs"]}, 7 * 86400, force_retention=True).kept_because(MainChunkHead(True)) is None


def test_already_gone_sends_no_delete_and_a_failed_check_deletes_nothing(lab_world, lab_servers, tmp_path):
    store, orphans = _manifest(lab_world, lab_servers, tmp_path)
    gone, stuck = orphans[:2], orphans[2:4]
    for key in gone:  # deleted by someone else since the analysis
        assert httpx.delete(f"{lab_servers.srebuildd_url}/rebuild/chord-DATA/{key}").status_code == 200
    lab_servers.reset_stats()
    lab_servers.set_faults("srebuildd", fail_keys=stuck)
    report = delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab_servers.srebuildd_url,
                                  policy=HttpPolicy(retries=1, backoff_base=0.001))
    journal = read_journal(report.journal)
    assert {k for k, o in journal.items() if o == "already_gone"} == set(gone)
    assert {k for k, o in journal.items() if o == "failed"} == set(stuck)
    counts = deletes(lab_servers)
    assert not any(counts.get(key) for key in [*gone, *stuck])  # HEAD said 404 or failed: no DELETE sent
    assert any("check before delete" in failure for failure in report.first_failures)


@pytest.fixture(scope="module")
def big_world(make_world):
    """Enough orphans for several canary rounds."""
    return make_world(objects=1500, orphans=0.2, seed=5)


def test_live_keys_vanishing_stop_the_run_within_100_deletions(big_world, tmp_path):
    with LabServers(big_world) as lab:
        store, orphans = _manifest(big_world, lab, tmp_path, canaries=FAST_CANARIES)
        assert len(orphans) > 200
        lab.set_faults("srebuildd", vanish_after_deletes=40)
        with pytest.raises(RefusedError, match=r"deletion stopped after 100 deletions: canary [0-9A-F]{40}"):
            _delete(store, tmp_path, lab)
        assert 40 <= len(lab.deleted()) <= 100
        journal = store.root / "journal"
        records = [r for segment in journal.iterdir() for r in journal_records(segment)]
        stopped = [r for r in records if r.get("event") == "stopped"]
        assert len(stopped) == 1 and stopped[0]["after_deletions"] == 100
        rounds = [r["after_deletions"] for r in records if r.get("event") == "canaries"]
        assert rounds == [0, 10, 100]  # before the first DELETE, after 10, after 100: when they were asked
        assert all(r["asked"] == 20 for r in records if r.get("event") == "canaries")


def test_the_rounds_between_canary_checks_reuse_their_connections(big_world, tmp_path):
    with LabServers(big_world) as lab:
        store, orphans = _manifest(big_world, lab, tmp_path, canaries=FAST_CANARIES)
        lab.reset_stats()
        report = _delete(store, tmp_path, lab)
        assert report.outcomes["deleted"] == len(orphans) > 200 and report.canary_rounds >= 4
        # The deletions' connections, the canaries' and the preflight's (and this admin call), whatever the rounds.
        assert lab.connection_count("srebuildd") <= POLICY.concurrency + 8 + 4


def test_the_vanish_fault_stops_the_command_with_exit_4(big_world, tmp_path):
    with LabServers(big_world) as lab:
        store, _ = _manifest(big_world, lab, tmp_path)
        lab.set_faults("srebuildd", vanish_after_deletes=0)  # live keys gone before anything is deleted: the wrong RING?
        refused = _run_cli(store, tmp_path, lab)
        assert refused.returncode == 4 and "20 of 20 canaries" in refused.stderr and "is this the srebuildd of the RING analysed" in refused.stderr
        assert lab.deleted() == set()
        lab.set_faults("srebuildd", vanish_after_deletes=1)  # gone as soon as deletion starts
        done = _run_cli(store, tmp_path, lab, "--max-keys", "50")
        assert done.returncode == 4, done.stderr
        assert "deletion stopped after 10 deletions: canary" in done.stderr
        assert len(lab.deleted()) == 10


def test_a_canary_that_cannot_be_asked_stops_the_run_with_exit_5(lab_world, lab_servers, tmp_path):
    store, orphans = _manifest(lab_world, lab_servers, tmp_path, canaries=FAST_CANARIES)
    live = list(lab_world.truth["sproxyd_keys"])
    lab_servers.set_faults("srebuildd", fail_keys=live)  # every referenced key answers 503
    lab_servers.reset_stats()
    with pytest.raises(RemoteError, match=r"canary [0-9A-F]{40} cannot be asked"):
        delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab_servers.srebuildd_url,
                             policy=HttpPolicy(retries=1, backoff_base=0.001))
    assert deletes(lab_servers) == {}
    records = list(journal_records(store.root / "journal" / os.listdir(store.root / "journal")[0]))
    assert any(r.get("event") == "canaries_unanswered" for r in records)
    lab_servers.set_faults("srebuildd", fail_keys=[])
    assert _delete(store, tmp_path, lab_servers).outcomes["deleted"] == len(orphans)


def _run_cli(store: Store, tmp_path: Path, lab, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "ringfsck", "delete", "--manifest", str(tmp_path / "m.csv"), "--execute", "--store", str(store.root),
               "--srebuildd", lab.srebuildd_url, *extra]
    return subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)


def test_max_keys_10_deletes_exactly_10_then_10_more(big_world, tmp_path):
    with LabServers(big_world) as lab:
        store, orphans = _manifest(big_world, lab, tmp_path)
        first = _run_cli(store, tmp_path, lab, "--max-keys", "10")
        assert first.returncode == 0, first.stderr
        assert len(lab.deleted()) == 10
        assert f"stopped at the budget (--max-keys 10 reached); left: {len(orphans) - 10:,} keys" in first.stdout
        second = _run_cli(store, tmp_path, lab, "--max-keys", "10")
        assert second.returncode == 0, second.stderr
        assert len(lab.deleted()) == 20 and lab.deleted() == set(sorted(orphans)[:20])
        assert f"left: {len(orphans) - 20:,} keys" in second.stdout


def test_max_bytes_stops_before_the_budget_is_exceeded(lab_world, lab_servers, tmp_path):
    store, orphans = _manifest(lab_world, lab_servers, tmp_path)
    sizes = lab_world.truth["orphan_sizes"]
    budget = sizes[orphans[0]] + sizes[orphans[1]] + sizes[orphans[2]]
    report = _delete(store, tmp_path, lab_servers, max_bytes=budget + sizes[orphans[3]] - 1)
    assert lab_servers.deleted() == set(orphans[:3]) and report.bytes_reclaimed == budget
    assert report.budget_reached.startswith("--max-bytes") and report.left_keys == len(orphans) - 3


def test_the_budget_comes_from_the_config(lab_world, lab_servers, tmp_path):
    config = tmp_path / "ringfsck.yml"
    config.write_text("delete_budget:\n  keys: 4\n  bytes: 1TiB\ncanaries:\n  sample: 5\n  every: 50\n")
    settings = load_settings(config, {"store": str(tmp_path / "store")}, env={})
    assert settings.delete_budget.keys == 4 and settings.delete_budget.bytes == 2**40
    assert settings.canaries.sample == 5 and settings.canaries.every == 50
    store, _ = _manifest(lab_world, lab_servers, tmp_path, delete_budget=settings.delete_budget, canaries=settings.canaries)
    report = _delete(store, tmp_path, lab_servers)
    assert report.outcomes["deleted"] == 4 and len(lab_servers.deleted()) == 4
    assert all(r["asked"] == 5 for r in _events(report, "canaries"))


@pytest.mark.parametrize(("text", "size"), [("10GiB", 10 * 2**30), ("500MB", 500 * 10**6), ("1.5 KiB", 1536), ("42", 42)])
def test_sizes_take_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["ten", "10XB", "-1GiB", ""])
def test_bad_sizes_are_refused(text):
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(text)


def _figures(html: str) -> dict[str, str]:
    import re

    return dict(re.findall(r'data-testid="([a-z-]+)">([^<]*)<', html))


def _deleted_then_reported(lab_world, lab, tmp_path: Path) -> tuple[Store, dict[str, str]]:
    """Three deletion runs of one manifest: budgeted with in-flight keys, a key gone meanwhile, then forced retention."""
    store, orphans = _manifest(lab_world, lab, tmp_path)
    lab.set_faults("srebuildd", recent_keys=orphans[-2:])
    _delete(store, tmp_path, lab, max_keys=5)
    assert httpx.delete(f"{lab.srebuildd_url}/rebuild/chord-DATA/{orphans[6]}").status_code == 200
    lab.set_faults("srebuildd", mtime_format="absent", recent_keys=[])
    _delete(store, tmp_path, lab, max_keys=3)  # every key of unknown age: kept
    lab.set_faults("srebuildd", mtime_format="http", recent_keys=orphans[-2:])
    _delete(store, tmp_path, lab, force=["retention"])
    return store, read_journal(next((store.root / "journal").iterdir()))


def test_the_report_has_a_deletion_section_with_the_journals_figures(lab_world, lab_servers, tmp_path):
    from ringfsck.capacity import human_bytes
    from ringfsck.report import render_report

    store, journal = _deleted_then_reported(lab_world, lab_servers, tmp_path)
    figures = _figures(render_report(store))
    outcomes = {o: sum(1 for v in journal.values() if v == o) for o in ("deleted", "already_gone", "kept_too_recent", "kept_no_mtime", "failed")}
    assert outcomes["deleted"] == len(lab_servers.deleted()) - 1 and outcomes["already_gone"] == 1 and outcomes["kept_too_recent"] == 2
    assert figures["deleted"] == f"{outcomes['deleted']:,}" and figures["already-gone"] == "1"
    assert figures["kept-too-recent"] == "2" and figures["kept-no-mtime"] == "0" and figures["delete-failed"] == "0"
    reclaimed = sum(lab_world.truth["orphan_sizes"][k] for k, o in journal.items() if o == "deleted")
    assert figures["reclaimed"] == human_bytes(reclaimed)
    assert figures["left"] == "2" and figures["not-reached"] == "0"
    assert "--force retention" in render_report(store)
    # 20 canaries asked before each run's first DELETE and after its last; the run that deleted nothing asked them once.
    assert figures["canaries-asked"] == str(20 * (2 + 1 + 2))


def test_a_report_before_any_deletion_says_so(lab_world, lab_servers, tmp_path):
    from ringfsck.report import render_report

    store, _ = _manifest(lab_world, lab_servers, tmp_path)
    assert "Nothing deleted from this analysis yet" in render_report(store)


@pytest.mark.browser
def test_the_deletion_section_renders_in_headless_chromium(lab_world, lab_servers, tmp_path):
    from test_report import CHROMIUM, CHROMIUM_FLAGS

    from ringfsck.report import write_report

    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed")
    store, journal = _deleted_then_reported(lab_world, lab_servers, tmp_path)
    page = Path(write_report(store, tmp_path / "report.html"))
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    figures = _figures(dom.stdout)
    assert figures["deleted"] == f"{sum(1 for o in journal.values() if o == 'deleted'):,}"
    assert figures["already-gone"] == "1" and figures["kept-too-recent"] == "2" and figures["left"] == "2"
    assert 'data-testid="canary-rounds"' in dom.stdout and 'data-testid="forced"' in dom.stdout
