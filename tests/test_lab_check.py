"""The independent check: the lab's truth re-derived without the lab or ringfsck's analysis.

Plain Python over the generated files, and a small httpx client written here
against the lab servers, apply docs/domain.md sections 3 to 7 (only the key
translation and the split index parser come from ringfsck, as the brief allows)
and must find exactly what the lab says it planted.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import quote, unquote

import httpx

from ringfsck.keys import input_key_digkey
from ringfsck.split_index import parse_split_index

# --- readers, shared with the other lab tests ---------------------------------


def read_listkeys(world) -> list[tuple[str, str, str, str, str]]:
    """(file, chunk key, main chunk, disk, flag) of every listkeys row, ringsh noise skipped."""
    rows = []
    for path in sorted(world.listkeys_dir.glob("*.csv")):
        for line in path.read_text(encoding="ascii").splitlines():
            if line and not line.startswith("Use "):
                chunk, main, disk, flag = line.split(",")[:4]
                rows.append((path.name, chunk, main, disk, flag))
    return rows


def read_csv_exports(directory: Path) -> Counter:
    """(bucket, encoded object key, sproxyd key) rows of the per-bucket CSV exports, as a multiset."""
    rows: Counter = Counter()
    for path in sorted(directory.glob("*_keys.txt")):
        with open(path, newline="", encoding="utf-8") as handle:
            rows.update(tuple(row) for row in csv.reader(handle))
    return rows


def read_jsonl_exports(directory: Path) -> Counter:
    """(bucket, encoded object key, sproxyd key) of the "sproxyd key" records of the JSON-lines exports, as a multiset."""
    rows: Counter = Counter()
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("message") == "sproxyd key":
                bucket, _, name = record["objectUrl"].removeprefix("s3://").partition("/")
                rows[(bucket, name, record["sproxydKey"])] += 1
    return rows


def bucketd_entries(url: str, *, page: int = 7) -> dict[str, list[tuple[str, dict]]]:
    """Every (key, metadata) of every bucket of raft sessions 1 and 2, paged with a small maxKeys."""
    found: dict[str, list[tuple[str, dict]]] = {}
    with httpx.Client(base_url=url, timeout=10) as client:
        buckets = [b for session in (1, 2) for b in client.get(f"/_/raft_sessions/{session}/bucket").json()]
        assert len(buckets) == len(set(buckets)), "a bucket is in one raft session"
        for bucket in buckets:
            entries, marker = [], None
            while True:
                params = {"maxKeys": page} | ({"marker": marker} if marker is not None else {})
                listing = client.get(f"/default/bucket/{quote(bucket, safe='')}", params=params).json()
                entries += [(item["key"], json.loads(item["value"])) for item in listing["Contents"]]
                if not listing["IsTruncated"]:
                    break
                marker = listing["Contents"][-1]["key"]
            found[bucket] = entries
    return found


# --- the check ------------------------------------------------------------------

HEX = set("0123456789ABCDEF")


def _is_hex_key(key: object) -> bool:
    return isinstance(key, str) and len(key) == 40 and set(key.upper()) <= HEX


def _location_items(value) -> list[dict]:
    """docs/domain.md section 5's location shapes as location objects (a plain string is the key, on the RING)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"key": value}]
    return value if isinstance(value, list) else [value]


def _bucketd_sproxyd_keys(url: str) -> tuple[set[str], set[str]]:
    """docs/domain.md section 5, written for this check: the 40-hex keys bucketd references, (on the RING, elsewhere)."""
    found: set[str] = set()
    elsewhere: set[str] = set()
    with httpx.Client(base_url=url, timeout=10) as client:
        for bucket, entries in bucketd_entries(url).items():
            if bucket == "users..bucket":
                continue
            for key, meta in entries:
                if key.startswith("\x7fR") or meta.get("isPHD") or meta.get("isDeleteMarker"):
                    continue
                if bucket.startswith("mpuShadowBucket"):
                    if key.startswith(("overview..|..", "overviewsplitterfornow")):
                        continue
                    locations = _location_items(meta.get("partLocations"))
                else:
                    if "location" not in meta:  # big metadata: the listing leaves the location out
                        response = client.get(f"/default/bucket/{quote(bucket, safe='')}/{quote(key, safe='')}")
                        assert response.status_code == 200, key
                        meta = response.json()
                    locations = _location_items(meta.get("location"))
                for loc in locations:
                    if _is_hex_key(loc["key"]):
                        on_ring = loc.get("dataStoreType", "scality") == "scality"
                        (found if on_ring else elsewhere).add(loc["key"].upper())
    return found, elsewhere


def _independent_analysis(world, srebuildd_url: str, bucketd_url: str) -> dict:
    settings = world.truth["settings"]
    k, m = (int(x) for x in settings["arc"].split("+"))
    # The exports log every backend's keys and cannot tell which are on the RING: bucketd can.
    exported = {key for (_, _, key) in read_csv_exports(world.s3keys_dir) if _is_hex_key(key)}
    input_keys, elsewhere = _bucketd_sproxyd_keys(bucketd_url)
    assert input_keys | elsewhere == exported

    # Section 4: which input keys are split, and their subkeys, asked of srebuildd.
    not_found, subkeys = set(), {}
    with httpx.Client(base_url=srebuildd_url, timeout=10) as client:
        for key in sorted(input_keys):
            head = client.head(f"/rebuild/arc-DATA/{key}")
            assert head.status_code in (200, 404), (key, head.status_code)
            if head.status_code == 404:
                not_found.add(key)
            elif head.headers.get("X-Scal-Attr-Is-Split") == "true":  # absent for a plain key
                raw = client.get(f"/rebuild/arc-DATA/{key}", headers={"x-scal-split-policy": "raw"})
                subkeys[key] = parse_split_index(raw.content)
    references = input_keys | {s for found in subkeys.values() for s in found}
    referenced = {input_key_digkey(key) for key in references | elsewhere}

    # Section 6: candidates, counting distinct chunk keys per main chunk; tombstones (flag bit 0) are no chunks.
    chunks: dict[str, set[str]] = defaultdict(set)
    for _, chunk, main, _, flag in read_listkeys(world):
        if main[30:32] in ("50", "51") and main[22:28] == "000000" and not int(flag) & 1:
            chunks[main].add(chunk)
    arc_mains = {main for main in chunks if main.endswith("70")}
    cos_mains = {main for main in chunks if main[38] in "012345" and main[39] == "0"}
    candidates = {main for main in arc_mains if len(chunks[main]) > 3} | cos_mains
    debris = arc_mains - candidates

    # Section 7: orphans with their sizes, and gaps judged on the best main chunk of each digkey.
    orphans = {main for main in candidates if main[:26] not in referenced}
    with httpx.Client(base_url=srebuildd_url, timeout=10) as client:
        sizes = {main: int(client.head(f"/rebuild/arcdata-DATA/{main}").headers["X-Scal-Size"]) for main in orphans}
    best: dict[str, str] = {}
    for main in chunks:
        if len(chunks[main]) > len(chunks.get(best.get(main[:26], ""), ())):
            best[main[:26]] = main
    gaps: dict[str, set[str]] = {"missing": set(), "unrecoverable": set(), "degraded": set()}
    for key in references:
        main = best.get(input_key_digkey(key))
        if main is None:
            gaps["missing"].add(key)
            continue
        found = len(chunks[main])
        need, full = (k, k + m) if main.endswith("70") else (1, int(main[38]) + 1)
        if found < need:
            gaps["unrecoverable"].add(key)
        elif found < full:
            gaps["degraded"].add(key)
    return {"orphans": orphans, "sizes": sizes, "gaps": gaps, "debris": debris, "splits": subkeys, "not_found": not_found,
            "duplicates": {key for (key, n) in Counter(key for (_, _, key) in read_csv_exports(world.s3keys_dir)).items() if n > 1},
            "elsewhere": elsewhere}


def test_independent_check_finds_exactly_the_truth(lab_world, lab_servers):
    truth = lab_world.truth
    found = _independent_analysis(lab_world, lab_servers.srebuildd_url, lab_servers.bucketd_url)
    assert found["orphans"] == set(truth["orphans"])
    assert found["sizes"] == truth["orphan_sizes"]
    assert {status: sorted(keys) for status, keys in found["gaps"].items()} == truth["gaps"]
    assert found["debris"] == set(truth["debris"])
    assert found["splits"] == truth["splits"]
    assert found["duplicates"] == set(truth["duplicates"])
    # srebuildd does not know the input keys of objects whose data never reached the RING.
    assert found["not_found"] == set(truth["gaps"]["missing"])


def test_independent_check_on_another_schema(make_world):
    from ringfsck.lab import LabServers

    world = make_world(objects=150, seed=3, arc="4+2", cos=1, nodes=2, buckets=3, orphans=0.1, gaps=0.1, sizes=(4096, 8192))
    with LabServers(world.path) as lab:
        found = _independent_analysis(world, lab.srebuildd_url, lab.bucketd_url)
    assert found["orphans"] == set(world.truth["orphans"])
    assert found["sizes"] == world.truth["orphan_sizes"] and all(4096 <= s <= 8192 for s in found["sizes"].values())
    assert {status: sorted(keys) for status, keys in found["gaps"].items()} == world.truth["gaps"]
    assert found["debris"] == set(world.truth["debris"])


def test_json_lines_exports_hold_the_csv_exports(lab_world):
    csv_rows = read_csv_exports(lab_world.s3keys_dir)
    assert read_jsonl_exports(lab_world.jsonl_dir) == csv_rows
    truth = lab_world.truth
    hex_keys = {key for (_, _, key) in csv_rows if len(key) == 40 and set(key) <= HEX}
    assert hex_keys == set(truth["sproxyd_keys"]) | set(truth["other_backend_keys"])
    assert {key for (_, _, key) in csv_rows} - hex_keys, "other backends' keys are logged whatever they look like"
    assert not any("\n" in name or "\0" in name for (_, name, _) in csv_rows), "names stay percent-encoded"


def test_bucketd_walk_finds_every_sproxyd_key(lab_world, lab_servers):
    assert _bucketd_sproxyd_keys(lab_servers.bucketd_url) == (set(lab_world.truth["sproxyd_keys"]), set(lab_world.truth["other_backend_keys"]))


def test_orphans_are_never_referenced(lab_world):
    truth = lab_world.truth
    referenced = {input_key_digkey(k) for k in truth["sproxyd_keys"]}
    referenced |= {input_key_digkey(s) for subkeys in truth["splits"].values() for s in subkeys}
    assert not {orphan[:26] for orphan in truth["orphans"]} & referenced
