"""Generating a lab world: RING listings, S3 exports, bucketd metadata and the truth.

Every object is planted with a fate (healthy, orphaned, gap, debris, split, …)
and ``truth.json`` is written from those fates, never by re-running the
analysis, so tests compare ringfsck against what was planted.

Layout of a world directory::

    listkeys/node-NN.csv          ringsh listKeys format: chunk,main chunk,disk,flag
    s3-bucketd/<bucket>_keys.txt  "bucket","object key","sproxyd key" (QUOTE_ALL)
    s3-bucketd-jsonl/<bucket>.log the same keys as the export tool's JSON-lines log
    lab/arc.parquet               input key -> is_split, raw index body (srebuildd arc path)
    lab/arcdata.parquet           main chunk -> logical size (arcdata HEAD, chord DELETE)
    lab/bucketd.parquet           bucket, raft session, key, metadata JSON (bucketd)
    truth.json                    what was planted
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck import keys
from ringfsck.split_index import encode_split_index

MIN_CHUNKS = 4
_HEALTHY_BATCH = 50_000
SERVER_STATE_MAX_OBJECTS = 1_000_000
_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
ENCODE_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
WEIRD_NAMES = ["comma,name", 'quote"name', "new\nline", "crlf\r\nkey", "été/日本語/😀", "  spaced  ", "100% sure", "a/b/c", "tab\tkey", "plus+sign"]
MPU_SHADOW_PREFIX = "mpuShadowBucket"
SPLIT_SEP = "..|.."
REPLAY_PREFIX = "\x7fR"
DATA_STORE = "us-east-1"

# Fates of referenced objects, with their share of the objects (the rest are healthy ARC).
_REFERENCED_FATES = {
    "cos": 0.12,
    "service50": 0.03,
    "versioned": 0.04,
    "mpu": 0.04,
    "duplicate": 0.01,
    "empty": 0.01,
    "placeholder": 0.005,
    "delete_marker": 0.01,
    "foreign": 0.01,
}


@dataclass
class Truth:
    settings: dict[str, Any]
    orphans: set[str] = field(default_factory=set)
    orphan_sizes: dict[str, int] = field(default_factory=dict)
    gaps: dict[str, set[str]] = field(default_factory=lambda: {"missing": set(), "unrecoverable": set(), "degraded": set()})
    debris: set[str] = field(default_factory=set)
    duplicates: set[str] = field(default_factory=set)
    splits: dict[str, list[str]] = field(default_factory=dict)
    sproxyd_keys: set[str] = field(default_factory=set)
    subkey_main_chunks: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "orphans": sorted(self.orphans),
            "orphan_sizes": dict(sorted(self.orphan_sizes.items())),
            "gaps": {status: sorted(found) for status, found in self.gaps.items()},
            "debris": sorted(self.debris),
            "duplicates": sorted(self.duplicates),
            "splits": dict(sorted(self.splits.items())),
            "sproxyd_keys": sorted(self.sproxyd_keys),
            "subkey_main_chunks": sorted(self.subkey_main_chunks),
            "counts": self.counts,
        }


@dataclass
class _Object:
    """One S3 object version as bucketd holds it."""

    bucket: str
    name: str
    locations: list[str]  # sproxyd input keys on the RING
    sizes: list[int]
    version_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Generator:
    def __init__(self, out: Path, *, objects: int, seed: int, arc: keys.ArcSchema, cos: int, orphans: float, gaps: float,
                 splits: float, nodes: int, buckets: int, server_state: bool) -> None:
        self.out = out
        self.server_state = server_state
        self.rng = random.Random(seed)
        self.objects = objects
        self.arc = arc
        self.cos = cos
        self.orphan_share = orphans
        self.gap_share = gaps
        self.split_share = splits
        self.buckets = [f"bucket-{i:02d}" for i in range(max(1, buckets))]
        self.truth = Truth(settings={"arc": str(arc), "cos": cos, "min_chunks": MIN_CHUNKS, "seed": seed, "objects": objects})
        self.arc_suffix = [keys.arc_chunk_key("0" * 22, arc, s)[32:] for s in range(arc.stripes)]
        self.cos_suffix = [keys.cos_chunk_key("0" * 22, cos, r)[32:] for r in range(cos + 1)]
        self.base_time = datetime(2026, 1, 1, tzinfo=timezone.utc)
        (out / "listkeys").mkdir(parents=True, exist_ok=True)
        (out / "s3-bucketd").mkdir(parents=True, exist_ok=True)
        (out / "s3-bucketd-jsonl").mkdir(parents=True, exist_ok=True)
        (out / "lab").mkdir(parents=True, exist_ok=True)
        self.node_files = [open(out / "listkeys" / f"node-{n:02d}.csv", "w", encoding="ascii", newline="") for n in range(nodes)]
        for handle in self.node_files[::2]:
            handle.write(f"Use ring DATA node {handle.name[-6:-4]}\n")  # ringsh noise
        self.csv_files: dict[str, Any] = {}
        self.open_files: list[Any] = []
        self.jsonl_files: dict[str, Any] = {}
        self.arc_rows: dict[str, bytes | None] = {}  # input key -> split index body (None: not split)
        self.sizes: dict[str, int] = {}  # main chunk -> logical size
        # (bucket, key, listing value, full value for GET): big MPUs differ (no location when listed).
        self.bucketd: list[tuple[str, str, str, str]] = []
        self.chunk_rows = 0
        self._names = 0
        self._np = np.random.default_rng(seed)
        self._pending_healthy = 0
        self._exported_keys = 0

    # --- RING -------------------------------------------------------------
    def _rand_hex(self, nbytes: int) -> str:
        return self.rng.randbytes(nbytes).hex().upper()

    def input_key(self) -> str:
        """A fresh sproxyd input key; some have one or two leading zero bytes (19-/18-byte forms)."""
        roll = self.rng.random()
        zeros = 2 if roll < 0.03 else 1 if roll < 0.08 else 0
        body = bytearray(self.rng.randbytes(20 - zeros))
        body[0] = body[0] or 1
        return ("00" * zeros + body.hex()).upper()

    def _emit(self, main: str, chunk_keys: list[str]) -> None:
        n_nodes = len(self.node_files)
        first = self.rng.randrange(n_nodes)
        for i, chunk in enumerate(chunk_keys):
            node = (first + i) % n_nodes
            flag = 0 if self.rng.random() < 0.95 else self.rng.choice((16, 32, 48))
            line = f"{chunk},{main},g{node + 1}disk{i % 4 + 1},{flag}\n"
            self.node_files[node].write(line)
            self.chunk_rows += 1
            if self.rng.random() < 0.02:  # the same chunk listed by a second node
                self.node_files[(node + 1) % n_nodes].write(line)
                self.chunk_rows += 1

    def store_arc(self, prefix: str, stripes: int | None = None, *, service: str = "51", size: int | None = None) -> str:
        stripes = self.arc.stripes if stripes is None else stripes
        main = keys.arc_chunk_key(prefix, self.arc, 0, service=service)
        chosen = sorted(self.rng.sample(range(self.arc.stripes), stripes)) if stripes < self.arc.stripes else range(stripes)
        self._emit(main, [self._rand_hex(16) + self.arc_suffix[s] for s in chosen])
        self.sizes[main] = size or self.size()
        if stripes < MIN_CHUNKS:
            self.truth.debris.add(main)
        return main

    def store_cos(self, prefix: str, replicas: int | None = None, *, service: str = "51") -> str:
        replicas = self.cos + 1 if replicas is None else replicas
        main = keys.cos_chunk_key(prefix, self.cos, service=service)
        self._emit(main, [self._rand_hex(16) + self.cos_suffix[r] for r in range(replicas)])
        self.sizes[main] = self.size()
        return main

    def size(self) -> int:
        return int(2 ** self.rng.uniform(10, 28))

    # --- S3 ---------------------------------------------------------------
    def name(self) -> str:
        self._names += 1
        stem = WEIRD_NAMES[self._names % len(WEIRD_NAMES)] if self._names % 3 == 0 else f"photos/{self._names:07d}.jpg"
        return f"{stem}#{self._names}"

    def export(self, bucket: str, name: str, key: str) -> None:
        if bucket not in self.csv_files:
            handle = open(self.out / "s3-bucketd" / f"{bucket}_keys.txt", "w", encoding="utf-8", newline="")
            self.open_files.append(handle)
            self.csv_files[bucket] = csv.writer(handle, quoting=csv.QUOTE_ALL)
            self.jsonl_files[bucket] = open(self.out / "s3-bucketd-jsonl" / f"{bucket}.log", "w", encoding="utf-8")
            self._log(bucket, {"message": "listing bucket", "bucket": bucket})
        self.csv_files[bucket].writerow([bucket, name, key])
        self._log(bucket, {"message": "sproxyd key", "objectUrl": f"s3://{bucket}/{quote(name, safe=ENCODE_URI_SAFE)}", "sproxydKey": key})
        if self.rng.random() < 0.02:
            self._log(bucket, {"message": "progress", "bucket": bucket, "keys": self._names})
        if self.server_state:
            self.truth.sproxyd_keys.add(key)
        else:
            self._exported_keys += 1

    def _log(self, bucket: str, record: dict[str, Any]) -> None:
        record = {"name": "s3utils", "time": int(self.base_time.timestamp() * 1000), "level": "info", "hostname": "lab", "pid": 1, **record}
        self.jsonl_files[bucket].write(json.dumps(record, ensure_ascii=False) + "\n")

    def _location(self, key: str, size: int, start: int, part: int = 1) -> dict[str, Any]:
        etag = hashlib.md5(key.encode()).hexdigest()
        return {"key": key, "size": size, "start": start, "dataStoreName": DATA_STORE, "dataStoreType": "scality", "dataStoreETag": f"{part}:{etag}"}

    def _metadata(self, obj: _Object, *, omit_location: bool = False) -> dict[str, Any]:
        modified = self.base_time + timedelta(seconds=self.rng.randrange(10_000_000))
        locations, start = [], 0
        for part, (key, size) in enumerate(zip(obj.locations, obj.sizes), start=1):
            locations.append(self._location(key, size, start, part))
            start += size
        meta: dict[str, Any] = {
            "owner-display-name": "lab",
            "content-length": start,
            "content-md5": hashlib.md5(obj.name.encode()).hexdigest() + (f"-{len(locations)}" if len(locations) > 1 else ""),
            "last-modified": modified.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "dataStoreName": DATA_STORE,
            "location": locations or None,
            "isDeleteMarker": False,
        }
        if obj.version_id:
            meta["versionId"] = obj.version_id
        meta.update(obj.extra)
        if omit_location:
            meta.pop("location")
        return meta

    def put_object(self, obj: _Object, *, omit_location: bool = False, versions: list[_Object] | None = None) -> None:
        """Record an object (and its older versions) in bucketd and in the exports."""
        for version in [*(versions or []), obj]:
            for key in version.locations:
                self.export(version.bucket, version.name, key)
        if not self.server_state:
            return
        if versions:
            for version in [*versions, obj]:
                self._record(obj.bucket, f"{obj.name}\0{version.version_id}", self._metadata(version))
        full = self._metadata(obj)
        listed = {k: v for k, v in full.items() if k != "location"} if omit_location else full
        self._record(obj.bucket, obj.name, listed, full)

    def _record(self, bucket: str, key: str, listed: dict[str, Any], full: dict[str, Any] | None = None) -> None:
        if not self.server_state:
            return
        text = json.dumps(listed)
        self.bucketd.append((bucket, key, text, text if full is None or full is listed else json.dumps(full)))

    def _emit_healthy_batch(self, n: int) -> None:
        """Healthy ARC objects, the bulk of a big world: their rows are built with numpy.

        Each object gets a fresh input key, a main chunk from its md5 and all k+m
        stripes spread over consecutive nodes; exports and metadata follow per object.
        """
        raw = self._np.integers(0, 256, size=(n, 20), dtype=np.uint8)
        raw[:, 0] = np.maximum(raw[:, 0], 1)  # leading-zero keys are planted by the other fates
        input_keys = [row.tobytes().hex().upper() for row in raw]
        prefixes = np.frombuffer("".join(keys.input_key_md5_prefix(k) for k in input_keys).encode(), dtype=np.uint8).reshape(n, 22)
        main_tail = np.frombuffer(("00000000" + "51" + self.arc_suffix[0]).encode(), dtype=np.uint8)
        mains = np.concatenate([prefixes, np.broadcast_to(main_tail, (n, 18))], axis=1)
        first_node = self._np.integers(0, len(self.node_files), size=n)
        for stripe in range(self.arc.stripes):
            chunk = np.empty((n, 40), dtype=np.uint8)
            chunk[:, :32] = _HEX[self._np.integers(0, 16, size=(n, 32))]
            chunk[:, 32:] = np.frombuffer(self.arc_suffix[stripe].encode(), dtype=np.uint8)
            nodes = (first_node + stripe) % len(self.node_files)
            for node, handle in enumerate(self.node_files):
                mask = nodes == node
                count = int(mask.sum())
                if not count:
                    continue
                tail = np.frombuffer(f",g{node + 1}disk{stripe % 4 + 1},0\n".encode(), dtype=np.uint8)
                lines = np.concatenate([chunk[mask], np.full((count, 1), ord(","), dtype=np.uint8), mains[mask], np.broadcast_to(tail, (count, len(tail)))], axis=1)
                handle.write(lines.tobytes().decode("ascii"))
        self.chunk_rows += n * self.arc.stripes
        for i, key in enumerate(input_keys):
            if self.server_state:
                self.sizes[mains[i].tobytes().decode("ascii")] = self.size()
                self.arc_rows[key] = None
            self.put_object(_Object(self.rng.choice(self.buckets), self.name(), [key], [self.size()]))

    def _flush_healthy(self) -> None:
        if self._pending_healthy:
            self._emit_healthy_batch(self._pending_healthy)
            self._pending_healthy = 0

    # --- planting ---------------------------------------------------------
    def plant_referenced(self, fate: str) -> None:
        if fate == "healthy":  # batched: see _emit_healthy_batch
            self._pending_healthy += 1
            if self._pending_healthy >= _HEALTHY_BATCH:
                self._flush_healthy()
            return
        bucket = self.rng.choice(self.buckets)
        key = self.input_key()
        prefix = keys.input_key_md5_prefix(key)
        obj = _Object(bucket, self.name(), [key], [self.size()])
        if fate == "cos":
            self.store_cos(prefix)
        elif fate == "service50":
            self.store_arc(prefix, service="50")
        elif fate == "split":
            subkeys = [self.input_key() for _ in range(self.rng.randint(2, 4))]
            for subkey in subkeys:
                self.truth.subkey_main_chunks.add(self.store_arc(keys.input_key_md5_prefix(subkey)))
            self.store_arc(prefix)  # the index itself occupies a main chunk
            self.arc_rows[key] = encode_split_index(subkeys)
            self.truth.splits[key] = subkeys
        elif fate == "missing":
            self.truth.gaps["missing"].add(key)
        elif fate == "unrecoverable":
            self.store_arc(prefix, self.rng.randint(1, self.arc.k - 1))
            self.truth.gaps["unrecoverable"].add(key)
        elif fate == "degraded":
            if self.rng.random() < 0.7:
                self.store_arc(prefix, self.rng.randint(self.arc.k, self.arc.stripes - 1))
            else:
                self.store_cos(prefix, self.rng.randint(1, self.cos))
            self.truth.gaps["degraded"].add(key)
        elif fate == "versioned":
            versions = []
            for v in range(self.rng.randint(1, 2)):
                old_key = self.input_key()
                self.store_arc(keys.input_key_md5_prefix(old_key))
                self.arc_rows[old_key] = None
                versions.append(_Object(bucket, obj.name, [old_key], [self.size()], version_id=f"v{self._names:08d}{v}"))
            self.store_arc(prefix)
            obj.version_id = f"v{self._names:08d}9"
            self.arc_rows[key] = None
            self.put_object(obj, versions=versions)
            return
        elif fate == "mpu":
            parts = [self.input_key() for _ in range(self.rng.randint(2, 4))]
            for part in parts:
                self.store_arc(keys.input_key_md5_prefix(part))
                self.arc_rows[part] = None
            obj.locations, obj.sizes = parts, [self.size() for _ in parts]
            self.put_object(obj, omit_location=True)  # big MPUs come without location in listings
            return
        elif fate == "duplicate":
            self.store_arc(prefix)
            self.arc_rows[key] = None
            twin = _Object(self.rng.choice(self.buckets), self.name(), [key], obj.sizes)
            self.put_object(obj)
            self.put_object(twin)
            self.truth.duplicates.add(key)
            return
        elif fate in ("empty", "placeholder", "delete_marker", "foreign"):
            obj.locations, obj.sizes = [], []
            if fate == "placeholder":
                obj.extra = {"isPHD": True}
            elif fate == "delete_marker":
                obj.extra = {"isDeleteMarker": True}
                obj.version_id = f"v{self._names:08d}dm"
            meta = self._metadata(obj)
            if fate == "foreign":
                meta["location"] = [{"key": f"aws-{self._rand_hex(8)}", "size": 42, "start": 0, "dataStoreName": "aws-location", "dataStoreType": "aws_s3"}]
            self._record(bucket, obj.name if fate != "delete_marker" else f"{obj.name}\0{obj.version_id}", meta)
            return
        else:
            raise ValueError(f"unknown fate {fate}")
        if fate != "missing":
            self.arc_rows[key] = self.arc_rows.get(key)
        self.put_object(obj)

    def plant_orphan(self, i: int) -> None:
        prefix = keys.input_key_md5_prefix(self.input_key())
        kind = i % 6
        if kind == 0:
            main = self.store_arc(prefix)
        elif kind == 1:
            main = self.store_arc(prefix, service="50")
        elif kind == 2:
            main = self.store_arc(prefix, self.rng.randint(MIN_CHUNKS, self.arc.stripes - 1))
        elif kind == 3:
            main = self.store_cos(prefix)
        elif kind == 4:
            main = self.store_cos(prefix, 1)
        else:
            main = self.store_arc(prefix, self.arc.stripes, service="51")
        self.truth.orphans.add(main)
        self.truth.orphan_sizes[main] = self.sizes[main]

    def plant_noise(self, i: int) -> None:
        """RING keys that are never candidates: other services, volumes, and debris."""
        prefix = keys.input_key_md5_prefix(self.input_key())
        kind = i % 4
        if kind == 0:
            self.store_arc(prefix, self.rng.randint(1, MIN_CHUNKS - 1))  # debris (store_arc records it)
            return
        if kind == 1:
            main = prefix + "00000000" + "10" + "000000" + "20"  # another service
        elif kind == 2:
            main = prefix + "00000000" + "59" + self.arc_suffix[0]
        else:
            main = prefix + "00100000" + "51" + self.arc_suffix[0]  # non-zero volume id
        self._emit(main, [self._rand_hex(16) + main[32:] for _ in range(MIN_CHUNKS + 2)])

    def plant_unfinished_upload(self) -> None:
        bucket = self.buckets[0]
        shadow = MPU_SHADOW_PREFIX + bucket
        upload_id = self._rand_hex(16)
        name = f"uploads/unfinished-{self._rand_hex(4)}.bin"
        self._record(shadow, f"overview{SPLIT_SEP}{name}{SPLIT_SEP}{upload_id}", {"key": name, "uploadId": upload_id, "initiated": self.base_time.isoformat()})
        for part in (1, 2):
            key = self.input_key()
            self.store_arc(keys.input_key_md5_prefix(key))
            self.arc_rows[key] = None
            location = self._location(key, self.size(), 0, part)
            # Old metadata carried a single location object instead of an array.
            part_locations: Any = [location] if part == 1 else location
            entry = f"{upload_id}{SPLIT_SEP}{part:05d}"
            self._record(shadow, entry, {"partLocations": part_locations, "key": entry, "last-modified": self.base_time.isoformat()})
            self.export(shadow, entry, key)

    def plant_bucketd_noise(self) -> None:
        # A replay entry names a key that must never be read as live data.
        self._record(self.buckets[0], REPLAY_PREFIX + "replay-0001", {"location": [self._location(self.input_key(), 1, 0)]})
        self._record("users..bucket", "lab-owner..|..bucket-00", {"creationDate": self.base_time.isoformat()})

    # --- driving ----------------------------------------------------------
    def fates(self) -> list[str]:
        gap = self.gap_share / 3
        table = {"split": self.split_share, "missing": gap, "unrecoverable": gap, "degraded": gap, **_REFERENCED_FATES}
        names = [name for name, share in table.items() if share > 0]
        out = []
        for i in range(self.objects):
            if i < len(names):  # every feature at least once, even in a tiny world
                out.append(names[i])
                continue
            roll, acc, fate = self.rng.random(), 0.0, "healthy"
            for name in names:
                acc += table[name]
                if roll < acc:
                    fate = name
                    break
            out.append(fate)
        return out

    def run(self) -> Truth:
        for fate in self.fates():
            self.plant_referenced(fate)
        self._flush_healthy()
        for i in range(max(6, round(self.objects * self.orphan_share))):
            self.plant_orphan(i)
        for i in range(max(8, round(self.objects * 0.02))):
            self.plant_noise(i)
        self.plant_unfinished_upload()
        self.plant_bucketd_noise()
        self._finish()
        return self.truth

    def _finish(self) -> None:
        for handle in self.node_files:
            handle.close()
        for handle in [*self.jsonl_files.values(), *self.open_files]:
            handle.close()
        for bucket in self.buckets:  # an empty bucket still has an (empty) export
            if bucket not in self.csv_files:
                (self.out / "s3-bucketd" / f"{bucket}_keys.txt").write_text("")
        self._write_server_state()
        t = self.truth
        t.settings["server_state"] = self.server_state
        t.counts = {
            "listkeys_rows": self.chunk_rows,
            "objects": self.objects,
            "orphans": len(t.orphans),
            "gaps": sum(len(v) for v in t.gaps.values()),
            "debris": len(t.debris),
            "splits": len(t.splits),
            **({"sproxyd_keys": len(t.sproxyd_keys)} if self.server_state else {"export_rows": self._exported_keys}),
            "buckets": len(self.buckets),
        }
        (self.out / "truth.json").write_text(json.dumps(t.to_json(), indent=1, ensure_ascii=False) + "\n")

    def _write_server_state(self) -> None:
        if not self.server_state:
            return
        lab = self.out / "lab"
        input_keys = sorted(self.arc_rows)
        pq.write_table(
            pa.table({"input_key": input_keys, "is_split": [self.arc_rows[k] is not None for k in input_keys], "body": [self.arc_rows[k] for k in input_keys]},
                     schema=pa.schema([("input_key", pa.string()), ("is_split", pa.bool_()), ("body", pa.binary())])),
            lab / "arc.parquet",
        )
        mains = sorted(self.sizes)
        pq.write_table(pa.table({"main_chunk": mains, "size": [self.sizes[m] for m in mains]}), lab / "arcdata.parquet")
        rows = sorted(self.bucketd, key=lambda r: (r[0], r[1]))
        pq.write_table(
            pa.table({"bucket": [r[0] for r in rows], "key": [r[1] for r in rows], "value": [r[2] for r in rows], "full_value": [r[3] for r in rows]}),
            lab / "bucketd.parquet",
        )


@dataclass(frozen=True)
class World:
    """A generated world on disk."""

    path: Path

    @property
    def listkeys_dir(self) -> Path:
        return self.path / "listkeys"

    @property
    def s3keys_dir(self) -> Path:
        return self.path / "s3-bucketd"

    @property
    def jsonl_dir(self) -> Path:
        return self.path / "s3-bucketd-jsonl"

    @property
    def truth(self) -> dict[str, Any]:
        return json.loads((self.path / "truth.json").read_text())


def generate_world(
    out: str | Path,
    *,
    objects: int = 1000,
    seed: int = 0,
    arc: str = "8+4",
    cos: int = 2,
    orphans: float = 0.05,
    gaps: float = 0.03,
    splits: float = 0.05,
    nodes: int = 6,
    buckets: int = 4,
    server_state: bool | None = None,
) -> World:
    """Write a consistent world under ``out`` (deterministic for a seed) and return it.

    ``server_state`` (default: up to 1 M objects) also writes what the lab servers
    load and lists every sproxyd key in the truth; benchmark worlds skip both.
    """
    if objects < 1:
        raise ValueError("objects must be at least 1")
    for name, share in (("orphans", orphans), ("gaps", gaps), ("splits", splits)):
        if not 0 <= share <= 1:
            raise ValueError(f"{name} must be a share between 0 and 1")
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    _Generator(path, objects=objects, seed=seed, arc=keys.parse_arc(arc), cos=keys.parse_cos(cos), orphans=orphans, gaps=gaps,
               splits=splits, nodes=max(1, nodes), buckets=buckets,
               server_state=objects <= SERVER_STATE_MAX_OBJECTS if server_state is None else server_state).run()
    return World(path)
