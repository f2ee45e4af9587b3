"""The lab: its world is consistent, its servers speak the DOMAIN.md protocols, faults work.

The independent check re-derives the orphans, gaps and debris from the files and
the servers with plain Python and httpx, never from the lab's truth or ringfsck.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import quote, unquote

import httpx
import pytest

from ringfsck import keys
from ringfsck.lab import LabServers, generate_world
from ringfsck.split_index import parse_split_index


def read_listkeys(world) -> list[tuple[str, str]]:
    rows = []
    for path in sorted(world.listkeys_dir.glob("*.csv")):
        for line in path.read_text().splitlines():
            if line and not line.startswith("Use"):
                chunk, main, _disk, _flag = line.split(",")[:4]
                rows.append((chunk, main))
    return rows


def read_exports(directory: Path) -> Counter:
    rows: Counter = Counter()
    for path in sorted(directory.glob("*_keys.txt")):
        with open(path, newline="", encoding="utf-8") as handle:
            rows.update(tuple(row) for row in csv.reader(handle))
    return rows


def read_jsonl(directory: Path) -> Counter:
    rows: Counter = Counter()
    for path in sorted(directory.glob("*.log")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("message") == "sproxyd key":
                bucket, _, name = record["objectUrl"][len("s3://"):].partition("/")
                rows[(bucket, unquote(name), record["sproxydKey"])] += 1
    return rows


def test_generation_is_deterministic(tmp_path):
    a = generate_world(tmp_path / "a", objects=120, seed=5)
    b = generate_world(tmp_path / "b", objects=120, seed=5)
    for sub in ("listkeys", "s3-bucketd", "s3-bucketd-jsonl"):
        files = sorted(p.relative_to(a.path) for p in (a.path / sub).iterdir())
        assert files == sorted(p.relative_to(b.path) for p in (b.path / sub).iterdir())
        for name in files:
            assert (a.path / name).read_bytes() == (b.path / name).read_bytes()
    assert a.truth == b.truth
    assert generate_world(tmp_path / "c", objects=120, seed=6).truth != a.truth


def test_every_feature_is_planted_in_a_small_world(lab_world):
    truth = lab_world.truth
    rows = read_listkeys(lab_world)
    mains = {main for _, main in rows}
    assert truth["orphans"] and truth["debris"] and truth["duplicates"] and truth["splits"]
    assert all(truth["gaps"][status] for status in ("missing", "unrecoverable", "degraded"))
    assert any(m.endswith("70") for m in mains) and any(m[38] == str(truth["settings"]["cos"]) for m in mains)
    assert any(m[30:32] == "50" for m in mains), "service 50 keys"
    assert any(m[30:32] not in ("50", "51") for m in mains), "other services"
    assert any(m[22:28] != "000000" for m in mains), "non-zero volume ids"
    assert len(rows) > len(set(rows)), "a chunk listed by two nodes"
    subkeys = [k for ks in truth["splits"].values() for k in ks]
    all_keys = truth["sproxyd_keys"] + subkeys
    assert any(k.startswith("00") and not k.startswith("0000") for k in all_keys), "19-byte keys"
    assert any(k.startswith("0000") for k in all_keys), "18-byte keys"
    exports = read_exports(lab_world.s3keys_dir)
    names = {name for _, name, _ in exports}
    assert any("\n" in n for n in names) and any("," in n for n in names) and any('"' in n for n in names)
    assert any(b.startswith("mpuShadowBucket") for b, _, _ in exports)
    listkeys_text = "".join(p.read_text() for p in lab_world.listkeys_dir.glob("*.csv"))
    assert "Use " in listkeys_text and ",16\n" in listkeys_text


def test_jsonl_exports_hold_the_same_keys_as_the_csv_exports(lab_world):
    assert read_jsonl(lab_world.jsonl_dir) == read_exports(lab_world.s3keys_dir)


def _independent_analysis(world, srebuildd_url: str) -> tuple[set[str], dict[str, set[str]], set[str]]:
    """DOMAIN.md sections 3, 4, 6 and 7 in plain Python over the files and the srebuildd."""
    arc = keys.parse_arc(world.truth["settings"]["arc"])
    input_keys = {key for (_, _, key) in read_exports(world.s3keys_dir)}
    referenced: set[str] = set()
    with httpx.Client(base_url=srebuildd_url, timeout=10) as client:
        for key in sorted(input_keys):
            referenced.add(keys.input_key_digkey(key))
            head = client.head(f"/rebuild/arc-DATA/{key}")
            assert head.status_code in (200, 404)
            if head.status_code == 200 and head.headers.get("X-Scal-Attr-Is-Split", "").lower() == "true":
                body = client.get(f"/rebuild/arc-DATA/{key}", headers={"x-scal-split-policy": "raw"}).content
                for subkey in parse_split_index(body):
                    referenced.add(keys.input_key_digkey(subkey))
                    assert keys.is_valid_key(subkey)
    chunks: dict[str, set[str]] = defaultdict(set)
    for chunk, main in read_listkeys(world):
        key = keys.RingKey.parse(main)
        if key.is_s3_candidate_service and key.is_main_chunk:
            chunks[main].add(chunk)
    orphans = {
        main for main, found in chunks.items()
        if (keys.RingKey.parse(main).is_cos or len(found) > 3) and main[:26] not in referenced
    }
    debris = {main for main, found in chunks.items() if keys.RingKey.parse(main).is_arc and len(found) <= 3}
    best: dict[str, tuple[int, str]] = {}
    for main, found in chunks.items():
        if len(found) > best.get(main[:26], (0, ""))[0]:
            best[main[:26]] = (len(found), main)
    gaps: dict[str, set[str]] = {"missing": set(), "unrecoverable": set(), "degraded": set()}
    for key in input_keys:
        found, main = best.get(keys.input_key_digkey(key), (0, ""))
        if not found:
            gaps["missing"].add(key)
            continue
        parsed = keys.RingKey.parse(main)
        need, full = (arc.k, arc.stripes) if parsed.is_arc else (1, parsed.klass + 1)
        if found < need:
            gaps["unrecoverable"].add(key)
        elif found < full:
            gaps["degraded"].add(key)
    return orphans, gaps, debris


def test_independent_check_agrees_with_the_truth(lab_world, lab_servers):
    orphans, gaps, debris = _independent_analysis(lab_world, lab_servers.srebuildd_url)
    truth = lab_world.truth
    assert orphans == set(truth["orphans"])
    assert {s: sorted(k) for s, k in gaps.items()} == truth["gaps"]
    assert debris == set(truth["debris"])


def _walk_bucketd(url: str, page: int = 7) -> set[str]:
    """A bucketd client written from DOMAIN.md section 5, for the check only."""
    found: set[str] = set()
    with httpx.Client(base_url=url, timeout=10) as client:
        buckets = set()
        for session in (1, 2):
            buckets.update(client.get(f"/_/raft_sessions/{session}/bucket").json())
        assert "users..bucket" in buckets
        for bucket in sorted(buckets - {"users..bucket"}):
            marker = ""
            while True:
                params = {"maxKeys": page, **({"marker": marker} if marker else {})}
                listing = client.get(f"/default/bucket/{bucket}", params=params).json()
                for entry in listing["Contents"]:
                    name = entry["key"]
                    if name.startswith("\x7fR") or name.startswith("overview..|.."):
                        continue
                    meta = json.loads(entry["value"])
                    if meta.get("isPHD") or meta.get("isDeleteMarker"):
                        continue
                    if bucket.startswith("mpuShadowBucket"):
                        parts = meta.get("partLocations") or []
                        locations = parts if isinstance(parts, list) else [parts]
                    else:
                        if "location" not in meta:
                            meta = client.get(f"/default/bucket/{bucket}/{quote(name, safe='')}").json()
                        locations = meta.get("location") or []
                    for location in locations:
                        if location.get("dataStoreType") == "scality" and keys.is_valid_key(location["key"]):
                            found.add(location["key"].upper())
                if not listing["IsTruncated"]:
                    break
                marker = listing["Contents"][-1]["key"]
    return found


def test_bucketd_walk_finds_every_sproxyd_key(lab_world, lab_servers):
    assert _walk_bucketd(lab_servers.bucketd_url) == set(lab_world.truth["sproxyd_keys"])


def test_bucketd_serves_full_metadata_of_listed_keys(lab_world, lab_servers):
    listing = httpx.get(f"{lab_servers.bucketd_url}/default/bucket/bucket-00", params={"maxKeys": 1000}).json()
    for entry in listing["Contents"][:50]:
        response = httpx.get(f"{lab_servers.bucketd_url}/default/bucket/bucket-00/{quote(entry['key'], safe='')}")
        assert response.status_code == 200, entry["key"]
    assert httpx.get(f"{lab_servers.bucketd_url}/default/bucket/bucket-00/no-such-key").status_code == 404
    assert httpx.get(f"{lab_servers.bucketd_url}/default/bucket/no-such-bucket").status_code == 404


def test_delete_and_admin_endpoints(lab_world, lab_servers):
    orphan = lab_world.truth["orphans"][0]
    url = lab_servers.srebuildd_url
    assert httpx.head(f"{url}/rebuild/arcdata-DATA/{orphan}").headers["X-Scal-Size"] == str(lab_world.truth["orphan_sizes"][orphan])
    assert httpx.delete(f"{url}/rebuild/chord-DATA/{orphan.lower()}").status_code == 200
    assert httpx.delete(f"{url}/rebuild/chord-DATA/{orphan}").status_code == 404
    assert httpx.head(f"{url}/rebuild/arcdata-DATA/{orphan}").status_code == 404
    assert lab_servers.deleted() == [orphan]
    counts = lab_servers.request_counts("srebuildd")
    assert counts[f"DELETE /rebuild/chord-DATA/{orphan}"] == 1
    lab_servers.reset_stats()
    assert lab_servers.request_counts("srebuildd") == {}


def test_faults(lab_world, lab_servers):
    url = lab_servers.srebuildd_url
    key = lab_world.truth["sproxyd_keys"][0]
    lab_servers.set_faults("srebuildd", error_rate=1)
    assert {httpx.head(f"{url}/rebuild/arc-DATA/{key}").status_code for _ in range(10)} <= {500, 503}
    assert httpx.get(f"{url}/_lab/health").status_code == 200  # admin is never faulted
    lab_servers.set_faults("srebuildd", error_rate=0, drop_rate=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.head(f"{url}/rebuild/arc-DATA/{key}")
    lab_servers.set_faults("srebuildd", drop_rate=0, hang_rate=1, hang_seconds=5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.head(f"{url}/rebuild/arc-DATA/{key}", timeout=0.5)
    lab_servers.set_faults("srebuildd", hang_rate=0, fail_keys=[key])
    assert httpx.head(f"{url}/rebuild/arc-DATA/{key}").status_code == 503
    assert httpx.head(f"{url}/rebuild/arc-DATA/{lab_world.truth['sproxyd_keys'][1]}").status_code == 200
    lab_servers.set_faults("srebuildd", fail_keys=[])
    assert httpx.head(f"{url}/rebuild/arc-DATA/{key}").status_code == 200


def test_faults_given_at_start(lab_world):
    with LabServers(lab_world.path, bucketd_faults="error_rate=1") as servers:
        assert httpx.get(f"{servers.bucketd_url}/_/raft_sessions/1/bucket").status_code in (500, 503)


def test_hundreds_of_concurrent_requests(lab_world, lab_servers):
    keys_ = lab_world.truth["sproxyd_keys"]

    context = httpx.create_ssl_context()  # shared: building one per client is slow

    async def connection(i: int) -> list[int]:
        # One client per connection: 500 connections open and in flight at once.
        async with httpx.AsyncClient(base_url=lab_servers.srebuildd_url, timeout=30, verify=context) as client:
            return [(await client.head(f"/rebuild/arc-DATA/{keys_[(i + j) % len(keys_)]}")).status_code for j in range(2)]

    async def hammer() -> Counter:
        results = await asyncio.gather(*(connection(i) for i in range(500)))
        return Counter(status for statuses in results for status in statuses)

    statuses = asyncio.run(hammer())
    assert set(statuses) <= {200, 404} and sum(statuses.values()) == 1000


def test_bad_world_directory_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="lab servers did not start"):
        LabServers(tmp_path).start()
