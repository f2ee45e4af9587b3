"""Lab worlds: deterministic, self-consistent, and holding every planted feature even when small."""

from __future__ import annotations

import json
from collections import defaultdict
from urllib.parse import unquote

import pytest

from ringfsck import keys
from ringfsck.lab import generate_world
from ringfsck.lab._state import WorldState
from ringfsck.split_index import MARKER_FAMILIES
from test_lab_check import read_csv_exports, read_listkeys

ARC = keys.ArcSchema(8, 4)


def _files(world) -> dict[str, bytes]:
    return {str(p.relative_to(world.path)): p.read_bytes() for p in sorted(world.path.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(tmp_path):
    a = generate_world(tmp_path / "a", objects=150, seed=5)
    b = generate_world(tmp_path / "b", objects=150, seed=5)
    assert _files(a) == _files(b)  # every byte, server state included
    assert generate_world(tmp_path / "c", objects=150, seed=6).truth != a.truth


def test_server_state_is_optional_and_changes_nothing_else(tmp_path):
    full = generate_world(tmp_path / "full", objects=150, seed=5)
    bare = generate_world(tmp_path / "bare", objects=150, seed=5, server_state=False)
    assert not bare.state_dir.exists()
    assert {n: v for n, v in _files(full).items() if not n.startswith("lab/")} == {
        n: v for n, v in _files(bare).items() if n != "truth.json"} | {"truth.json": _files(full)["truth.json"]}
    assert bare.truth == full.truth | {"settings": full.truth["settings"] | {"server_state": False}}


def test_generating_again_replaces_the_previous_world(tmp_path):
    generate_world(tmp_path, objects=100, seed=1, nodes=8)
    world = generate_world(tmp_path, objects=100, seed=1, nodes=2)
    assert sorted(p.name for p in world.listkeys_dir.iterdir()) == ["node-00.csv", "node-01.csv"]


@pytest.mark.parametrize("bad", [{"objects": 0}, {"orphans": 1.5}, {"gaps": -0.1}, {"arc": "8-4"}, {"cos": 9}, {"nodes": 0},
                                 {"gaps": 0.6, "splits": 0.5}])
def test_bad_settings_are_refused(tmp_path, bad):
    with pytest.raises(ValueError):
        generate_world(tmp_path, **bad)


def test_truth_is_self_consistent(lab_world):
    truth = lab_world.truth
    rows = read_listkeys(lab_world)
    listed = {main for _, _, main, _, _ in rows}
    subkeys = {s for found in truth["splits"].values() for s in found}
    for name in ("orphans", "debris", "duplicates", "sproxyd_keys", "subkey_main_chunks"):
        assert truth[name] == sorted(set(truth[name])), f"{name} sorted and distinct"
    assert set(truth["orphans"]) <= listed and set(truth["debris"]) <= listed
    assert not set(truth["orphans"]) & set(truth["debris"])
    assert set(truth["orphan_sizes"]) == set(truth["orphans"]) and all(s > 0 for s in truth["orphan_sizes"].values())
    gap_keys = [key for status in ("missing", "unrecoverable", "degraded") for key in truth["gaps"][status]]
    assert len(gap_keys) == len(set(gap_keys)) and set(gap_keys) <= set(truth["sproxyd_keys"]) | subkeys
    assert set(truth["duplicates"]) <= set(truth["sproxyd_keys"]) and set(truth["splits"]) <= set(truth["sproxyd_keys"])
    assert not subkeys & set(truth["sproxyd_keys"])
    assert {m[:26] for m in truth["subkey_main_chunks"]} == {keys.input_key_digkey(s) for s in subkeys}
    assert set(truth["subkey_main_chunks"]) <= listed
    counts = truth["counts"]
    assert counts["listkeys_rows"] == len(rows)
    assert counts["orphans"] == len(truth["orphans"]) and counts["splits"] == len(truth["splits"])
    assert counts["sproxyd_keys"] == len(truth["sproxyd_keys"]) and counts["subkeys"] == len(subkeys)
    assert counts["export_rows"] == sum(read_csv_exports(lab_world.s3keys_dir).values())
    assert truth["settings"].items() >= {"arc": "8+4", "cos": 2, "min_chunks": 4}.items() and isinstance(truth["settings"]["seed"], int)


def _is_tombstone(flag: str) -> bool:
    return bool(int(flag) & 1)  # docs/domain.md section 5: flag bit 0, deleted


def _chunks_by_main(rows, *, tombstones: bool = False) -> dict[str, set[str]]:
    """Distinct chunk keys per main chunk: live ones only, or tombstones included."""
    chunks: dict[str, set[str]] = defaultdict(set)
    for _, chunk, main, _, flag in rows:
        if tombstones or not _is_tombstone(flag):
            chunks[main].add(chunk)
    return chunks


def test_ring_listing_features(lab_world):
    truth = lab_world.truth
    rows = read_listkeys(lab_world)
    chunks = _chunks_by_main(rows)
    cos = truth["settings"]["cos"]
    sproxyd_digkeys = {keys.input_key_digkey(k) for k in truth["sproxyd_keys"]}

    # Every chunk key carries its main chunk's chars 32-37 (ARC: schema and stripe high nibble) and its index.
    full_arc = [m for m, found in chunks.items() if m.endswith("70") and len(found) == ARC.stripes]
    assert full_arc
    for main in full_arc:
        assert sorted(c[32:] for c in chunks[main]) == sorted(keys.arc_chunk_key("0" * 22, ARC, s)[32:] for s in range(ARC.stripes))
    full_cos = [m for m, found in chunks.items() if m.endswith(f"{cos}0") and m[32:38] == "000000" and len(found) == cos + 1]
    assert full_cos and all(sorted(c[38:] for c in chunks[m]) == [f"{cos}{r}" for r in range(cos + 1)] for m in full_cos)

    files_of = defaultdict(set)
    for name, chunk, main, _, _ in rows:
        files_of[(chunk, main)].add(name)
    assert any(len(names) == 2 for names in files_of.values()), "a chunk listed by two nodes"
    assert {flag for *_, flag in rows} == {"0", "16", "32", "48", "1", "17", "33", "49"}
    assert all(disk.startswith("g") and "disk" in disk for *_, disk, _ in rows)
    assert any(p.read_text().startswith("Use ") for p in lab_world.listkeys_dir.iterdir()), "ringsh noise"

    assert {"10", "59"} <= {m[30:32] for m in chunks}, "other services"
    assert any(m[30:32] == "51" and m[22:28] != "000000" for m in chunks), "service 51 with a volume id"
    service50 = [m for m in chunks if m[30:32] == "50" and m[22:28] == "000000"]
    assert any(m[:26] in sproxyd_digkeys for m in service50), "referenced service 50 data"
    assert any(m in truth["orphans"] for m in service50), "orphaned service 50 data"
    assert all(1 <= len(chunks[m]) <= 3 for m in truth["debris"])
    assert any(m[:26] not in sproxyd_digkeys for m in truth["debris"]), "unreferenced debris"

    orphan_sizes = {len(chunks[m]) for m in truth["orphans"] if m.endswith("70")}
    assert ARC.stripes in orphan_sizes and any(4 <= n < ARC.stripes for n in orphan_sizes), "ARC orphans, all and some stripes"
    assert any(m.endswith(f"{cos}0") for m in truth["orphans"]), "COS orphans"


def test_tombstones_are_planted_and_counted(lab_world):
    truth, counts = lab_world.truth, lab_world.truth["counts"]
    rows = read_listkeys(lab_world)
    tombstones = [row for row in rows if _is_tombstone(row[4])]
    assert {flag for *_, flag in tombstones} == {"1", "17", "33", "49"}
    assert counts["tombstone_rows"] == len(tombstones)
    live, listed = _chunks_by_main(rows), _chunks_by_main(rows, tombstones=True)
    live_rows = {(chunk, main): name for name, chunk, main, _, flag in rows if not _is_tombstone(flag)}
    sproxyd_digkeys = {keys.input_key_digkey(k) for k in truth["sproxyd_keys"]}

    # (a) Beside the live chunks of healthy referenced keys: the same chunk key on another node, and another key.
    healthy = {m for m, found in live.items() if m.endswith("70") and len(found) == ARC.stripes and m[:26] in sproxyd_digkeys}
    beside = [(name, chunk, main) for name, chunk, main, _, _ in tombstones if main in healthy]
    assert any((chunk, main) in live_rows and live_rows[(chunk, main)] != name for name, chunk, main in beside), "same key, other node"
    assert any((chunk, main) not in live_rows for _, chunk, main in beside), "another chunk key"
    # (b) Referenced keys whose every chunk is a tombstone: missing gaps.
    only_tombstones = set(listed) - set(live)
    missing_digkeys = {keys.input_key_digkey(k) for k in truth["gaps"]["missing"]}
    assert any(m[:26] in missing_digkeys and len(listed[m]) == ARC.stripes for m in only_tombstones), "data deleted"
    # (c) Unreferenced main chunks with only tombstones: counted, in no truth list.
    s3_only_tombstones = {m for m in only_tombstones if m[30:32] in ("50", "51") and m[22:28] == "000000"}
    assert counts["tombstoned_main_chunks"] == len(s3_only_tombstones)
    assert any(m[:26] not in sproxyd_digkeys for m in s3_only_tombstones)
    assert any(m.endswith("70") for m in s3_only_tombstones) and any(not m.endswith("70") for m in s3_only_tombstones)
    assert not s3_only_tombstones & (set(truth["orphans"]) | set(truth["debris"]))
    assert only_tombstones - s3_only_tombstones, "tombstones of other services too"
    # (d) Debris with MIN_CHUNKS or more chunk keys listed, but fewer live ones.
    assert any(len(listed[m]) >= 4 > len(live[m]) and m[:26] not in sproxyd_digkeys for m in truth["debris"])
    # (e) A degraded key whose missing stripes are listed as tombstones.
    by_digkey = {m[:26]: m for m in live if m.endswith("70")}
    degraded = [by_digkey[keys.input_key_digkey(k)] for k in truth["gaps"]["degraded"] if keys.input_key_digkey(k) in by_digkey]
    assert any(len(live[m]) < ARC.stripes and {c[32:] for c in listed[m]} == {keys.arc_chunk_key("0" * 22, ARC, s)[32:] for s in range(ARC.stripes)}
               for m in degraded)


def test_s3_features(lab_world):
    truth = lab_world.truth
    exports = read_csv_exports(lab_world.s3keys_dir)
    names = {unquote(name) for _, name, _ in exports}
    for weird in (",", '"', "\n", "é", "日本語", "😀", "%", "/"):
        assert any(weird in n for n in names), repr(weird)
    assert any(n != n.strip() and n.startswith(" ") and n.endswith(" ") for n in names), "leading and trailing spaces"
    assert all(truth["gaps"][status] for status in ("missing", "unrecoverable", "degraded"))
    subkeys = [s for found in truth["splits"].values() for s in found]
    assert set(truth["gaps"]["degraded"]) & set(subkeys), "a degraded subkey"
    for population in (truth["sproxyd_keys"], subkeys):
        assert any(k.startswith("00") and not k.startswith("0000") for k in population), "19-byte keys"
        assert any(k.startswith("0000") and not k.startswith("000000") for k in population), "18-byte keys"
    assert truth["duplicates"]
    assert {bucket for bucket, _, _ in exports if bucket.startswith("mpuShadowBucket")}, "parts of an unfinished upload"


def test_split_indexes_use_every_marker_family(lab_world):
    state = WorldState(lab_world.path)
    bodies = [state.split_body(key).hex().upper() for key in lab_world.truth["splits"]]
    for family in MARKER_FAMILIES:
        for suffix in ("14", "13", "12"):
            assert any((family + suffix).upper() in body for body in bodies), family + suffix


def test_bucketd_features(lab_world):
    buckets = WorldState(lab_world.path).buckets
    assert {b.raft_session for b in buckets.values()} == {1, 2}
    assert "users..bucket" in buckets and any(name.startswith("mpuShadowBucket") for name in buckets)
    entries = [(bucket, row["key"], json.loads(row["value"]) if row["value"] else None)
               for bucket, b in buckets.items() if b.table is not None for row in b.table.to_pylist()]
    literal = [(bucket, key, meta) for bucket, key, meta in entries if meta is not None]
    versions = defaultdict(int)
    for _, key, meta in literal:
        if "\0" in key and meta.get("location"):
            versions[key.split("\0")[0]] += 1
    assert max(versions.values()) >= 2, "several versions of one key, each with data"
    assert any(meta.get("isPHD") for _, _, meta in literal)
    assert any(meta.get("isDeleteMarker") for _, _, meta in literal)
    assert any(meta.get("location") is None and not meta.get("isDeleteMarker") and "content-length" in meta for _, _, meta in literal), "empty object"
    located = [loc for _, _, meta in literal if isinstance(meta.get("location"), list) for loc in meta["location"]]
    foreign = [loc for loc in located if loc.get("dataStoreType", "scality") != "scality"]
    assert foreign and any(keys.is_valid_key(loc["key"]) for loc in foreign), "other backends, some with hex-looking keys"
    assert any("location" not in meta and meta.get("content-md5", "").endswith(("-2", "-3", "-4")) for _, _, meta in literal), "big MPU listed without location"
    assert any(key.startswith("\x7fR") for _, key, _ in literal), "replay entries"
    parts = [meta["partLocations"] for bucket, key, meta in literal if bucket.startswith("mpuShadowBucket") and "partLocations" in meta]
    assert any(isinstance(p, dict) for p in parts) and any(isinstance(p, list) for p in parts), "old and new partLocations"
    assert any(key.startswith("overview..|..") for bucket, key, _ in literal if bucket.startswith("mpuShadowBucket"))
    assert any(key.startswith("overviewsplitterfornow") for bucket, key, _ in literal if bucket.startswith("mpuShadowBucket")), "old separator"
    assert any(isinstance(p, list) and len(p) > 1 for p in parts), "a copied part with several locations"
    assert any("dataStoreType" not in loc and loc["dataStoreName"] == "sproxyd" for loc in located), "pre-multiple-backend locations"
    assert any(isinstance(meta.get("location"), str) and keys.is_valid_key(meta["location"]) for _, _, meta in literal), "plain-string location"
    assert any(key.endswith("\0") and meta.get("location") for _, key, meta in literal), "a null version with data"
    version_ids = [key.split("\0")[1] for _, key, _ in literal if "\0" in key and not key.endswith("\0")]
    assert version_ids and all(len(v) == 27 and v[:20].isdigit() and v.endswith("RG001  ") for v in version_ids), "real version ids"
    placeholders = [(bucket, key, meta) for bucket, key, meta in literal if meta.get("isPHD")]
    assert any(f"{key}\0{meta['versionId']}" not in buckets[bucket].keys for bucket, key, meta in placeholders), "a fresh placeholder version id"
    assert any(len(json.dumps(meta)) >= 10_000 and "\0" in key and ("x-amz-meta-notes" in meta or "acl" in meta) for _, key, meta in literal)
    assert set(lab_world.truth["other_backend_keys"]) == {loc["key"] for loc in foreign if keys.is_valid_key(loc["key"])}


@pytest.mark.parametrize("settings", [{"arc": "4+2", "cos": 1}, {"arc": "2+1", "cos": 0, "nodes": 1}, {"arc": "10+4", "cos": 3, "splits": 0, "gaps": 0}])
def test_other_schemas(make_world, settings):
    world = make_world(objects=120, seed=2, **settings)
    truth = world.truth
    arc = keys.parse_arc(settings["arc"])
    mains = {main for _, _, main, _, _ in read_listkeys(world)}
    assert any(m[32:38] == keys.arc_app_specific(arc) for m in mains)
    assert all(m.endswith("70") or m[38] in "012345" for m in truth["orphans"]) and truth["orphans"]
    if arc.stripes < 4:  # every ARC main chunk is debris: orphans can only be COS
        assert all(not m.endswith("70") for m in truth["orphans"])
    if settings.get("splits") == 0:
        assert not truth["splits"] and not any(truth["gaps"].values())


def _log_records(world) -> dict[str, list[dict]]:
    return {p.stem: [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()] for p in sorted(world.jsonl_dir.glob("*.log"))}


def test_json_lines_exports_are_shaped_like_s3utils(lab_world):
    truth = lab_world.truth
    logs = _log_records(lab_world)
    for bucket, records in logs.items():
        assert all(r["name"] == "s3utils:verifyBucketSproxydKeys" and r["hostname"] == "lab" and r["pid"] == 4242 for r in records)
        assert records[0]["message"] == "start scanning bucket" and records[-1]["message"] == "completed scan", bucket
        assert records[-1]["scanned"] == sum(r["message"] == "sproxyd key" for r in records)
        assert all(r["objectUrl"].startswith(f"s3://{bucket}/") for r in records if r["message"] == "sproxyd key")
    records = [r for rs in logs.values() for r in rs]
    urls = [r["objectUrl"] for r in records if r["message"] == "sproxyd key"]
    assert any(u.endswith("%00") for u in urls), "a null version"
    assert any(u.endswith("RG001%20%20") and "%00" in u for u in urls), "versions by their real ids"
    assert not {r["level"] for r in records} - {"info", "error"}
    duplicates = [r for r in records if r["message"] == "duplicate sproxyd key found"]
    assert all(r["level"] == "error" and r["objectUrl2"] != r["objectUrl"] and r["sproxydKey"] in truth["duplicates"] for r in duplicates)
    assert not any(r["message"] == "error fetching object locations array" for r in records)
    # The version the master repeats is logged once, as the master; isPHD masters log nothing.
    assert len(urls) == len(set(zip(urls, (r["sproxydKey"] for r in records if r["message"] == "sproxyd key"))))


def test_export_error_knob(tmp_path):
    world = generate_world(tmp_path, objects=60, seed=4, export_error=True)
    errors = [(bucket, r) for bucket, rs in _log_records(world).items() for r in rs if r["message"] == "error fetching object locations array"]
    assert [(bucket, r["level"]) for bucket, r in errors] == [("bucket-00", "error")]
    assert world.truth["settings"]["export_error"] is True
