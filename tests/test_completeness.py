"""The reference set is complete, or nothing is deleted (issue 13, docs/domain.md section 8).

Whatever ringfsck cannot parse in an S3 export is a reference it does not know: the
analysis is incomplete (no manifest, whatever is forced) and every 40-hex token of the
rejected text still keeps its main chunk out of the orphans.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _planted
from ringfsck import Settings, Store, analyze, ingest_listkeys, ingest_s3keys, keys
from ringfsck.analysis import AnalysisOptions
from ringfsck.errors import RefusedError, RingfsckError
from ringfsck.manifest import CHECKS, write_manifest


def _world_with_extra_object(root: Path) -> tuple[_planted.Planted, str, str, Path, Path]:
    """The planted world plus one live object whose export row the test will damage: (world, key, main chunk, listkeys, exports)."""
    world = _planted.build()
    key = world.new_input_key()
    main = world.store_arc(keys.input_key_md5_prefix(key), _planted.ARC.stripes)
    listkeys, exports = world.write(root)
    return world, key, main, listkeys, exports


def _analysed(root: Path, listkeys: Path, exports: Path):  # noqa: ANN202
    store = Store.open(Settings(store=str(root / "store")))
    ingest_listkeys(store, [str(listkeys)])
    ingest_s3keys(store, [str(exports)])
    return store, analyze(store, AnalysisOptions(assume_no_splits=True)).summary


@pytest.mark.parametrize("row", [
    b'"bucket-a","bad \xff byte","{key}"\n',  # invalid UTF-8 in the object key
    b'"bucket-a","name","{key}","extra"\n',  # a fourth field
    b'"bucket-a","name" ,"{key}"\n',  # a space after a closing quote
    b'"bucket-a","unclosed,"no key"\n"bucket-a","next row","{key}"\n',  # an unclosed quote swallows the next row
])
def test_a_rejected_export_row_keeps_its_key_and_refuses_deletion(tmp_path, row):
    world, key, main, listkeys, exports = _world_with_extra_object(tmp_path)
    damaged = exports / "bucket-a_keys.txt"
    damaged.write_bytes(damaged.read_bytes() + row.replace(b"{key}", key.encode()))
    store, summary = _analysed(tmp_path, listkeys, exports)
    assert not summary["complete"] and not summary["reclaimable"]
    assert any("could not be parsed" in reason and str(damaged.resolve()) in reason for reason in summary["incomplete_reasons"])
    con = store.connect()
    assert con.execute("SELECT count(*) FROM orphans WHERE ring_key = ?", [main]).fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM orphans WHERE reclaimable").fetchone()[0] == 0
    for force in ([], list(CHECKS)):
        with pytest.raises(RefusedError, match="no option overrides"):
            write_manifest(store, tmp_path / "m.csv", force=force)


def test_an_export_error_record_makes_the_analysis_incomplete(tmp_path):
    world, key, main, listkeys, exports = _world_with_extra_object(tmp_path)
    (exports / "bucket-c.log").write_text(
        '{"name":"s3utils:verifyBucketSproxydKeys","time":1,"level":"error","message":"error fetching object locations array",'
        '"objectUrl":"s3://bucket-c/big","error":{"message":"socket hang up"},"hostname":"h","pid":1}\n'
        '{"name":"s3utils:verifyBucketSproxydKeys","time":2,"level":"info","message":"completed scan","scanned":1,"hostname":"h","pid":1}\n'
    )
    _, summary = _analysed(tmp_path, listkeys, exports)
    assert not summary["complete"]
    assert any("bucket-c.log" in reason for reason in summary["incomplete_reasons"])


# --- random damage -----------------------------------------------------------
# Bytes a mutation writes: anything but hex digits. Turning one hex digit of a key into another
# makes a valid row naming another key, which no parser can tell from the truth (that shows as a
# missing gap); every other damage must be caught.
_NOT_HEX = st.integers(0, 255).filter(lambda b: chr(b) not in "0123456789abcdefABCDEF")
_MUTATION = st.tuples(st.sampled_from(("overwrite", "insert", "delete")), st.floats(0, 1, exclude_max=True), _NOT_HEX)


def _mutate(data: bytes, mutations: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in mutations:
        at = int(where * len(out))
        if kind == "overwrite" and out:
            out[at] = value
        elif kind == "insert":
            out.insert(at, value)
        elif out:
            del out[at]
    return bytes(out)


@pytest.fixture(scope="module")
def clean_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mutations")
    world = _planted.build()
    listkeys, exports = world.write(root)
    live = {keys.input_key_digkey(key) for rows in world.exports.values() for _, _, key in rows}
    return listkeys, exports, live


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file_index=st.integers(0, 10), mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_damaged_exports_never_make_live_data_an_orphan(clean_world, tmp_path_factory, file_index, mutations):
    listkeys, clean_exports, live = clean_world
    root = tmp_path_factory.mktemp("mutated")
    exports = root / "exports"
    shutil.copytree(clean_exports, exports)
    files = sorted(exports.iterdir())
    target = files[file_index % len(files)]
    target.write_bytes(_mutate(target.read_bytes(), mutations))
    store = Store.open(Settings(store=str(root / "store")))
    ingest_listkeys(store, [str(listkeys)])
    try:
        ingest_s3keys(store, [str(exports)])
    except RingfsckError as exc:  # refused loudly, naming the file: nothing to analyse from it
        assert target.name in str(exc)
        return
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    if summary["complete"]:
        orphaned = {row[0] for row in store.connect().execute("SELECT digkey FROM orphans").fetchall()}
        assert not orphaned & live, f"live data reported as orphans after {mutations} on {target.name}"


# --- the lab with every real-world shape: three ways in, one reference set ------------------


def test_bucketd_csv_and_json_lines_give_one_reference_set_and_the_truth(lab_world, tmp_path):
    """Issue 13's end state: legacy and plain-string locations, big-metadata versions, null versions,
    real version ids, placeholders, old shadow buckets, other backends' keys and tombstones."""
    from ringfsck.ingest.bucketd import ingest_bucketd
    from ringfsck.lab import LabServers
    from ringfsck.remote.http import HttpPolicy
    from ringfsck.resolve import resolve_splits

    policy = HttpPolicy(concurrency=8, timeout=5, retries=10, backoff_base=0.005, backoff_max=0.05)
    truth = lab_world.truth
    found = {}
    with LabServers(lab_world.path) as lab:
        for origin in ("bucketd", "csv", "jsonl"):
            store = Store.open(Settings(store=str(tmp_path / origin)))
            ingest_listkeys(store, [str(lab_world.listkeys_dir)])
            if origin == "bucketd":
                ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=policy)
            else:
                ingest_s3keys(store, [str(lab_world.s3keys_dir if origin == "csv" else lab_world.jsonl_dir)])
            resolve_splits(store, base_url=lab.srebuildd_url, policy=policy)
            summary = analyze(store).summary
            assert summary["complete"] and summary["reclaimable"], (origin, summary["incomplete_reasons"])
            con = store.connect()
            found[origin] = {
                "references": {row[0] for row in con.execute("SELECT DISTINCT sproxyd_key FROM s3keys").fetchall()},
                "orphans": {row[0] for row in con.execute("SELECT ring_key FROM orphans").fetchall()},
                "gaps": {(row[0], row[1]) for row in con.execute("SELECT sproxyd_key, status FROM gaps").fetchall()},
                "debris": {row[0] for row in con.execute("SELECT ring_key FROM debris").fetchall()},
            }
            assert summary["counts"]["tombstones"] == truth["counts"]["tombstone_rows"]
    every_key = set(truth["sproxyd_keys"]) | set(truth["other_backend_keys"])
    assert truth["other_backend_keys"] and truth["counts"]["tombstone_rows"]  # the shapes are planted
    planted_gaps = {(key, status) for status, listed in truth["gaps"].items() for key in listed}
    for origin, result in found.items():
        assert result["references"] == every_key, origin
        assert result["orphans"] == set(truth["orphans"]), origin
        assert result["debris"] == set(truth["debris"]), origin
    assert found["bucketd"]["gaps"] == planted_gaps
    # A file export cannot say which 40-hex keys are on other backends: there they are missing RING data.
    for origin in ("csv", "jsonl"):
        assert found[origin]["gaps"] == planted_gaps | {(key, "missing") for key in truth["other_backend_keys"]}, origin


def test_an_export_that_logged_a_lost_object_refuses_deletion(make_world, tmp_path):
    world = make_world(objects=200, seed=5, splits=0.0, export_error=True)
    for exports in (world.jsonl_dir,):
        store = Store.open(Settings(store=str(tmp_path / exports.name)))
        ingest_listkeys(store, [str(world.listkeys_dir)])
        ingest_s3keys(store, [str(exports)])
        summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
        assert not summary["complete"]
        assert any("error fetching object locations array" in reason for reason in summary["incomplete_reasons"])
        with pytest.raises(RefusedError, match="no option overrides"):
            write_manifest(store, tmp_path / "m.csv", force=list(CHECKS))


def test_metadata_of_an_unknown_shape_from_the_real_server_refuses_deletion(lab_world, lab_servers, tmp_path):
    """bucketd serves one bucket's locations in a shape ringfsck does not know: every such entry is a
    reject whose keys stay references, the analysis is incomplete, and no live key becomes an orphan."""
    from ringfsck.ingest.bucketd import ingest_bucketd
    from ringfsck.remote.http import HttpPolicy
    from ringfsck.resolve import resolve_splits

    policy = HttpPolicy(concurrency=8, timeout=5, retries=10, backoff_base=0.005, backoff_max=0.05)
    clean = Store.open(Settings(store=str(tmp_path / "clean")))
    ingest_bucketd(clean, lab_servers.bucketd_url, buckets=["bucket-01"], policy=policy)
    in_lists = {row[0] for row in clean.connect().execute("SELECT sproxyd_key FROM s3keys WHERE size IS NOT NULL").fetchall()}
    assert in_lists  # keys that stood in location arrays (a plain-string location carries no size)

    lab_servers.set_faults("bucketd", unknown_shape="bucket-01")
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_bucketd(store, lab_servers.bucketd_url, raft_sessions=[1, 2], policy=policy)
    resolve_splits(store, base_url=lab_servers.srebuildd_url, policy=policy)
    summary = analyze(store).summary
    assert not summary["complete"]
    assert any("could not be parsed" in reason and "bucket-01" in reason for reason in summary["incomplete_reasons"])
    con = store.connect()
    rejected = {row[0] for row in con.execute("SELECT unnest(keys) FROM s3_rejects").fetchall()}
    assert in_lists <= rejected
    orphans = {row[0] for row in con.execute("SELECT ring_key FROM orphans").fetchall()}
    assert orphans <= set(lab_world.truth["orphans"])  # nothing live among them
    assert con.execute("SELECT count(*) FROM orphans WHERE reclaimable").fetchone()[0] == 0
    with pytest.raises(RefusedError, match="no option overrides"):
        write_manifest(store, tmp_path / "m.csv", force=list(CHECKS))


def test_an_export_that_cannot_be_read_keeps_the_analysis_incomplete_until_read_whole(tmp_path):
    """Ingest exits with an error naming the file; an analysis run anyway must not call its objects' data orphaned."""
    world, key, main, listkeys, exports = _world_with_extra_object(tmp_path)
    broken = exports / "bucket-c_keys.txt"
    good = f'"bucket-c","only object","{key}"\n'.encode()
    broken.write_bytes(b"\x1f\x8b" + b"not gzip at all")  # gzip magic, then garbage: unreadable
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(listkeys)])
    with pytest.raises(RingfsckError, match="bucket-c_keys.txt"):
        ingest_s3keys(store, [str(exports)])
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    assert not summary["complete"]
    assert any("bucket-c_keys.txt" in reason for reason in summary["incomplete_reasons"])
    with pytest.raises(RefusedError, match="no option overrides"):
        write_manifest(store, tmp_path / "m.csv", force=list(CHECKS))
    broken.write_bytes(good)
    ingest_s3keys(store, [str(exports)])
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    assert summary["complete"], summary["incomplete_reasons"]
    assert store.connect().execute("SELECT count(*) FROM orphans WHERE ring_key = ?", [main]).fetchone()[0] == 0
