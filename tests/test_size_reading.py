"""What X-Scal-Size measures, measured on referenced keys against their S3 sizes (docs/domain.md section 7).

The lab's srebuildd answers X-Scal-Size as the object's size (``object``) or as one ARC
chunk's, ceil(size / k) (``chunk``); ``size`` must find out which, and the capacity
figures must follow, or state the assumption they were computed with.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from markupsafe import escape

from ringfsck import Settings, Store, analyze, ingest_listkeys, ingest_s3keys
from ringfsck.capacity import MIN_ANSWERED, capacity_summary
from ringfsck.cli import main
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.lab import LabServers
from ringfsck.remote.http import HttpPolicy
from ringfsck.report import render_report
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import sample_query, size_orphans

FAST = HttpPolicy(concurrency=16, timeout=2, retries=2, backoff_base=0.001, backoff_max=0.01)
ASSUMED = "assumed: X-Scal-Size read as the object's size (not measured: no S3 sizes)"


def expected_capacity(orphan_sizes: dict[str, int], *, served: str, applied: str) -> tuple[int, float]:
    """Logical and raw bytes of the planted orphans: what the lab answers under ``served``, read the ``applied`` way."""
    logical, raw = 0, 0.0
    for key, size in orphan_sizes.items():
        if key[38] == "7":  # ARC: chars 32-34 hold k<<6|m
            k, m = int(key[32:35], 16) >> 6, int(key[32:35], 16) & 63
            header = -(-size // k) if served == "chunk" else size
            key_logical = header * k if applied == "chunk" else header
            logical, raw = logical + key_logical, raw + key_logical * (k + m) / k
        else:  # COS n: the header is the whole object either way, kept n + 1 times
            logical, raw = logical + size, raw + size * (int(key[38]) + 1)
    return logical, raw


def bucketd_store(tmp_path, world, lab, **settings) -> Store:
    """A store with the listing and a bucketd export (S3 sizes known), splits resolved and analyzed."""
    store = Store.open(Settings(store=str(tmp_path / "store"), **settings))
    ingest_listkeys(store, [str(world.listkeys_dir)])
    ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=FAST)
    assert resolve_splits(store, base_url=lab.srebuildd_url, policy=FAST).errors == 0
    summary = analyze(store).summary
    assert summary["complete"], summary["incomplete_reasons"]
    return store


@pytest.mark.parametrize("reading", ["object", "chunk"])
def test_size_measures_the_reading_the_server_uses_and_capacity_follows(lab_world, tmp_path, reading):
    with LabServers(lab_world.path, size_reading=reading) as lab:
        store = bucketd_store(tmp_path, lab_world, lab)
        report = size_orphans(store, base_url=lab.srebuildd_url, policy=FAST)
    assert report.errors == 0
    measured = report.size_reading
    assert measured.decision == reading
    assert measured.sampled >= MIN_ANSWERED and measured.answered == measured.sampled
    agreeing = measured.chunk_matches if reading == "chunk" else measured.object_matches
    other = measured.object_matches if reading == "chunk" else measured.chunk_matches
    assert agreeing == measured.answered and other == 0

    capacity = capacity_summary(store)
    logical, raw = expected_capacity(lab_world.truth["orphan_sizes"], served=reading, applied=reading)
    assert capacity["totals"]["sized"] == len(lab_world.truth["orphans"])
    assert capacity["totals"]["logical_bytes"] == logical
    assert abs(capacity["totals"]["raw_bytes"] - raw) <= 1
    assert capacity["size_reading"]["applied"] == reading and capacity["size_reading"]["measured"]
    assert capacity["size_reading"]["statement"].startswith(f"measured on {measured.answered} referenced keys: {agreeing} agree with the {reading} reading")
    arc = next(row for row in capacity["by_protection"] if row["protection"] == "arc")
    k, m = (int(n) for n in arc["schema"].split("+"))
    assert (arc["x_scal_size_to_logical"], arc["x_scal_size_to_raw"]) == ((k, k + m) if reading == "chunk" else (1, pytest.approx((k + m) / k, abs=1e-4)))

    # The run's capacity summary JSON says the same.
    saved = json.loads((store.run_dir(store.latest_run_id()) / "capacity.json").read_text())
    assert saved["size_reading"]["statement"] == capacity["size_reading"]["statement"]
    assert saved["totals"]["logical_bytes"] == logical


def test_a_measured_reading_is_kept_and_not_asked_again(lab_world, tmp_path):
    with LabServers(lab_world.path, size_reading="chunk") as lab:
        store = bucketd_store(tmp_path, lab_world, lab)
        size_orphans(store, base_url=lab.srebuildd_url, policy=FAST)
        lab.reset_stats()
        again = size_orphans(store, base_url=lab.srebuildd_url, policy=FAST)
        asked = lab.request_counts("srebuildd")
    assert again.size_reading.decision == "chunk" and asked == {}


def test_without_s3_sizes_the_reading_is_assumed_and_said_everywhere(lab_world, tmp_path):
    store_dir = tmp_path / "store"
    store = Store.open(Settings(store=str(store_dir)))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_s3keys(store, [str(lab_world.s3keys_dir)])  # file exports carry no sizes
    with LabServers(lab_world.path, size_reading="chunk") as lab:
        resolve_splits(store, base_url=lab.srebuildd_url, policy=FAST)
        analyze(store)
        store.unlock()
        result = CliRunner().invoke(main, ["size", "--store", str(store_dir), "--srebuildd", lab.srebuildd_url, "--retries", "2"])
    assert result.exit_code == 0, result.output
    assert ASSUMED in result.output
    assert "ARC 8+4" in result.output and "logical = X-Scal-Size x1, raw = X-Scal-Size x1.5" in result.output

    capacity = capacity_summary(store)
    assert capacity["size_reading"]["decision"] == "not_measured" and capacity["size_reading"]["applied"] == "object"
    assert capacity["size_reading"]["statement"] == ASSUMED
    # The assumption is today's reading, whatever the server does: the header is the logical size.
    logical, raw = expected_capacity(lab_world.truth["orphan_sizes"], served="chunk", applied="object")
    assert capacity["totals"]["logical_bytes"] == logical and abs(capacity["totals"]["raw_bytes"] - raw) <= 1
    saved = json.loads((store.run_dir(store.latest_run_id()) / "capacity.json").read_text())
    assert saved["size_reading"]["statement"] == ASSUMED
    html = render_report(store)
    assert str(escape(ASSUMED)) in html


def test_sampled_keys_that_fail_are_not_agreement_and_too_few_answers_is_undecided(lab_world, tmp_path):
    with LabServers(lab_world.path, size_reading="chunk") as lab:
        store = bucketd_store(tmp_path, lab_world, lab)
        sample = [row[1] for row in store.connect().execute(sample_query(200)).fetchall()]
        assert len(sample) > MIN_ANSWERED + 5
        # Five sampled keys fail: the rest still decide, and the five count for no reading.
        lab.set_faults("srebuildd", fail_keys=sample[:5])
        measured = size_orphans(store, base_url=lab.srebuildd_url, policy=FAST).size_reading
        assert measured.decision == "chunk"
        assert (measured.sampled, measured.answered, measured.failed) == (len(sample), len(sample) - 5, 5)
        assert measured.chunk_matches == len(sample) - 5 and measured.object_matches == 0

    with LabServers(lab_world.path, size_reading="chunk") as lab:
        store = bucketd_store(tmp_path / "second", lab_world, lab)
        # All but a handful fail: every answer agrees, but too few answered to decide.
        lab.set_faults("srebuildd", fail_keys=sample[MIN_ANSWERED - 1:])
        measured = size_orphans(store, base_url=lab.srebuildd_url, policy=FAST).size_reading
    assert measured.answered == MIN_ANSWERED - 1 and measured.chunk_matches == MIN_ANSWERED - 1
    assert measured.decision == "undecided"
    capacity = capacity_summary(store)
    assert capacity["size_reading"]["applied"] == "object"
    assert capacity["size_reading"]["statement"].startswith("assumed: X-Scal-Size read as the object's size (undecided:")


def test_lab_srebuildd_answers_either_reading(lab_world):
    orphan = next(key for key in lab_world.truth["orphans"] if key[38] == "7")
    cos_orphan = next(key for key in lab_world.truth["orphans"] if key[38] != "7")
    size, cos_size = lab_world.truth["orphan_sizes"][orphan], lab_world.truth["orphan_sizes"][cos_orphan]
    k = int(orphan[32:35], 16) >> 6
    import httpx

    for reading, expected in (("object", size), ("chunk", -(-size // k))):
        with LabServers(lab_world.path, size_reading=reading) as lab:
            assert httpx.head(f"{lab.srebuildd_url}/rebuild/arcdata-DATA/{orphan}").headers["X-Scal-Size"] == str(expected)
            assert httpx.head(f"{lab.srebuildd_url}/rebuild/arcdata-DATA/{cos_orphan}").headers["X-Scal-Size"] == str(cos_size)
