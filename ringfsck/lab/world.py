"""Generating a lab world: RING listings, S3 exports, server state and the truth.

Every object is planted with a *fate* (healthy, orphaned, gap, split, version…)
and ``truth.json`` is written from those fates, never by re-running the
analysis, so tests compare ringfsck against what was planted.

Generation streams: objects are planted in batches, listkeys rows are built
with numpy, and everything that must end up sorted (server state, truth lists)
goes through Parquet parts sorted out of core by DuckDB. Memory stays flat
whatever ``objects`` is. Layout of a world directory::

    listkeys/node-NN.csv           ringsh listKeys: chunk,main chunk,disk,flag (a few "Use …" lines)
    lab/ring/node-NN.recent.csv    rows the nodes serve beyond the dumps: in-flight chunks (see _Ring)
    s3-bucketd/<bucket>_keys.txt   "bucket","encoded object key","sproxyd key" (QUOTE_ALL): jq over the log
    s3-bucketd-jsonl/<bucket>.log  s3utils verifyBucketSproxydKeys.js's JSON-lines log (see _Exports)
    lab/                           what the servers serve (see ringfsck.lab._state)
    truth.json                     what was planted
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import IO, Any, TextIO
from urllib.parse import quote

import duckdb
import numpy as np
import pyarrow as pa

from ringfsck import keys
from ringfsck.lab._state import (
    DEFAULT_SIZES,
    LISTING_TRIM_CHARS,
    RING_STATE_DIR,
    NodeListing,
    ParquetParts,
    StateWriter,
    duckdb_connection,
    iso_time,
    logical_size,
    object_metadata,
    scality_location,
    sorted_batches,
)
from ringfsck.split_index import encode_split_index

MIN_CHUNKS = 4  # ARC main chunks need more than 3 distinct chunks to be candidates (docs/domain.md section 6)
BATCH_OBJECTS = 50_000
ENCODE_URI_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
USERS_BUCKET = "users..bucket"
SPLITTER = "..|.."
# Metadata of the models before multiple backends (md-model-version 1: location a plain string; 2: no dataStoreType).
_MODEL_VERSION_1: dict[str, Any] = {"md-model-version": 1}
_MODEL_VERSION_2: dict[str, Any] = {"md-model-version": 2}
OLD_SPLITTER = "splitterfornow"  # what old shadow buckets join an upload's key parts with
REPLAY_PREFIX = "\x7fR"
GAP_STATUSES = ("missing", "unrecoverable", "degraded")

# Object names that break naive CSV, JSON, URL and path handling; {n} keeps them unique.
WEIRD_NAMES = (
    "comma,{n},name",
    'quote"{n}"name',
    "new\nline {n}",
    "crlf\r\nkey {n}",
    "été/日本語/😀/{n}",
    "  spaced {n}  ",
    "100% sure {n}",
    "%41%2F{n}",
    "a/b/{n}/c",
    "/leading-slash/{n}",
    "trailing-slash/{n}/",
    "tab\t{n}",
    "plus+{n}",
    "question?{n}#hash",
    "back\\slash{n}",
    "ünïcödé Ωmega {n}.txt",
)

_BASE_MS = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
_SPAN_MS = 180 * 86_400_000
_FLAG_SHARE = 0.05  # rows with a non-zero flag (16, 32 or 48)
_LIVE_FLAGS = np.array([16, 32, 48])
# Tombstones: flag bit 0 set (docs/domain.md section 5), the chunk deleted and awaiting purge.
_TOMBSTONE_FLAGS = np.array([1, 17, 33, 49])
_TOMBSTONE_SHARE = 0.02  # live chunks with a tombstone row beside them (re-written stripes)
_ABSENT, _LIVE, _TOMBSTONE = 0, 1, 2  # what the listing holds at a chunk position of a main chunk
_TWICE_SHARE = 0.02  # chunks listed by a second node as well
HEX_DIGITS = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_URI_PLAIN = re.compile(r"[A-Za-z0-9\-_.!~*'()/]*")

# Fates and their share of --objects; "arc" (healthy ARC) takes what is left.
# Gaps and splits come from generate_world's arguments.
_FIXED_SHARES = {
    "cos": 0.12,
    "service50": 0.03,
    "versioned": 0.03,
    "mpu": 0.03,
    "duplicate": 0.01,
    "empty": 0.01,
    "placeholder": 0.005,
    "delete_marker": 0.005,
    "foreign": 0.005,
    "legacy": 0.005,
    "plain_location": 0.003,
    "null_version": 0.003,
    # Each of these entries holds >= 10,000 chars of metadata: few, so that the served state stays small.
    "big_versions": 0.0005,
}
_SIMPLE = ("arc", "cos", "service50")  # one key, every chunk, one plain object: planted vectorised
# Chunk mtimes (epoch seconds, as the nodes report them): every main chunk's chunks are written
# together, at the time of the batch that plants them, one batch an hour from the world's start,
# so each node's dump is in mtime order and the lab's nodes select an mtime range as a byte range.
CHUNK_BASE_S = _BASE_MS // 1000
FLUSH_SECONDS = 3600
# In-flight chunks: written this long before the lab's nodes are asked (seconds), within the default
# retention (7 days), unreferenced: orphans if a listing took them. Only the lab's nodes serve them.
IN_FLIGHT_AGES = (3 * 86_400, 3600)


# Each byte's two uppercase hex digits, as the little-endian uint16 whose bytes they are.
_HEX_PAIRS = np.array([int.from_bytes(f"{b:02X}".encode(), "little") for b in range(256)], dtype="<u2")


def hex_digits(raw: np.ndarray) -> np.ndarray:
    """(n, 2w) uppercase hex digits (ASCII) of (n, w) bytes: one table lookup per byte."""
    return np.take(_HEX_PAIRS, raw).view(np.uint8)


@dataclass(frozen=True)
class _Layout:
    """How one kind of main chunk and its chunks look on the RING."""

    main_tail: str  # chars 22-39 of the main chunk
    chunk_tails: tuple[str, ...]  # chars 32-39 of each chunk
    candidate_arc: bool  # ARC, service 50/51, volume 0: fewer than MIN_CHUNKS chunks is debris

    @property
    def holds_s3_data(self) -> bool:
        """Service 50 or 51 with volume-id chars 22-27 zero (docs/domain.md section 6)."""
        return self.main_tail[8:10] in keys.S3_SERVICE_IDS and self.main_tail[:6] == "000000"


def ring_layouts(arc: keys.ArcSchema, cos: int) -> dict[str, _Layout]:
    zero = "0" * keys.MD5_PREFIX_LEN

    def arc_layout(service: str, volume: str = "00000000") -> _Layout:
        chunks = [
            keys.ring_key(zero, volume=volume, service=service, app_specific=keys.arc_app_specific(arc, s), klass=keys.ARC_CLASS, index=s)
            for s in range(arc.stripes)
        ]
        return _Layout(chunks[0][22:], tuple(c[32:] for c in chunks), service in keys.S3_SERVICE_IDS and volume[:6] == "000000")

    def cos_layout(service: str) -> _Layout:
        chunks = [keys.cos_chunk_key(zero, cos, r, service=service) for r in range(cos + 1)]
        return _Layout(chunks[0][22:], tuple(c[32:] for c in chunks), False)

    return {
        "arc": arc_layout("51"),
        "arc50": arc_layout("50"),
        "cos": cos_layout("51"),
        # Never candidates: other services, and service 51 with a non-zero volume id.
        "service10": cos_layout("10"),
        "service59": arc_layout("59"),
        "volume": arc_layout("51", "00100000"),
    }


class _Ring:
    """The RING listing: main chunks are buffered per layout and written as listkeys rows with numpy."""

    def __init__(
        self,
        directory: Path,
        nodes: int,
        rng: np.random.Generator,
        layouts: dict[str, _Layout],
        on_main_chunks: Callable[[np.ndarray, int], None],
        recent_dir: Path | None,
    ) -> None:
        directory.mkdir(parents=True)
        self.dumps: list[IO[bytes]] = [open(directory / f"node-{n:02d}.csv", "wb") for n in range(nodes)]
        for n, handle in enumerate(self.dumps[::2]):  # ringsh noise at the top of some files
            handle.write(f"Use ring DATA\nUse node {2 * n} to list keys\n".encode())
        # What each node serves: its dump's rows (after the noise) in mtime runs, then in-flight runs
        # in a file of their own (a world without server state discards them: nothing serves them).
        if recent_dir is not None:
            recent_dir.mkdir(parents=True)
        self.recent: list[IO[bytes]] = [
            open(recent_dir / f"node-{n:02d}.recent.csv", "wb") if recent_dir else io.BytesIO() for n in range(nodes)
        ]
        self.listings = [
            NodeListing(f"node-{n:02d}", f"listkeys/node-{n:02d}.csv", f"{RING_STATE_DIR}/node-{n:02d}.recent.csv") for n in range(nodes)
        ]
        self.files: list[IO[bytes]] = self.dumps
        self._age: int | None = None  # seconds before the nodes' clock of the batch being flushed; None: a dated batch
        self._batches = 0
        self.in_flight_rows = 0
        self.rng = rng
        self.layouts = layouts
        self.rows = 0
        self.main_chunks = 0
        self.tombstone_rows = 0
        self.tombstoned_main_chunks = 0  # S3 main chunks listed with only tombstones
        self._on_main_chunks = on_main_chunks
        self._scalar: dict[str, list[tuple[str, tuple[int, ...], tuple[int, ...]]]] = defaultdict(list)
        self._vector: dict[str, list[np.ndarray]] = defaultdict(list)
        self._pending = 0
        self._forced = False

    def add(self, prefix: str, layout: str, positions: Iterable[int] | None = None, tombstones: Iterable[int] = ()) -> str:
        """One main chunk with the chunks at ``positions`` (default all) and tombstones only at ``tombstones``; returns its key."""
        spec = self.layouts[layout]
        chosen = tuple(range(len(spec.chunk_tails))) if positions is None else tuple(sorted(positions))
        self._scalar[layout].append((prefix, chosen, tuple(tombstones)))
        self._count(1)
        return prefix + spec.main_tail

    def add_many(self, prefixes: np.ndarray, layout: str) -> None:
        """Main chunks with every chunk, from an (n, 22) array of md5-prefix hex bytes."""
        if len(prefixes):
            self._vector[layout].append(prefixes)
            self._count(len(prefixes))

    def _count(self, n: int) -> None:
        self._pending += n
        if self._pending >= 4 * BATCH_OBJECTS:
            self.flush()

    def flush_in_flight(self, age: int) -> None:
        """Flush what was added since the last flush as in-flight chunks written ``age`` seconds before the nodes are asked."""
        self._age, self.files = age, self.recent
        counted = (self.rows, self.main_chunks, self.tombstone_rows, self.tombstoned_main_chunks)
        try:
            self.flush()
        finally:
            self._age, self.files = None, self.dumps
        self.in_flight_rows += self.rows - counted[0]
        # The counts describe the dumps: in-flight chunks are in none.
        self.rows, self.main_chunks, self.tombstone_rows, self.tombstoned_main_chunks = counted

    def flush(self) -> None:
        self._batches += 1
        self._mtime = CHUNK_BASE_S + self._batches * FLUSH_SECONDS if self._age is None else -self._age
        out: list[list[bytes]] = [[] for _ in self.files]
        for name, spec in self.layouts.items():
            width = len(spec.chunk_tails)
            parts, present = list(self._vector.pop(name, [])), []
            for array in parts:
                present.append(np.full((len(array), width), _LIVE, dtype=np.uint8))
            scalar = self._scalar.pop(name, [])
            if scalar:
                parts.append(
                    np.frombuffer("".join(p for p, _, _ in scalar).encode("ascii"), dtype=np.uint8).reshape(-1, keys.MD5_PREFIX_LEN)
                )
                states = np.full((len(scalar), width), _ABSENT, dtype=np.uint8)
                for row, (_, positions, tombstones) in enumerate(scalar):
                    states[row, list(tombstones)] = _TOMBSTONE
                    states[row, list(positions)] = _LIVE
                present.append(states)
            if parts:
                self._emit(spec, np.concatenate(parts), np.concatenate(present), out)
        for handle, chunks, listing in zip(self.files, out, self.listings):
            start = handle.tell()
            handle.write(b"".join(chunks))
            if handle.tell() > start:
                runs = listing.runs if self._age is None else listing.recent_runs
                time = self._mtime if self._age is None else self._age
                runs.append((time, start, handle.tell()))
        self._pending = 0

    def _emit(self, spec: _Layout, prefixes: np.ndarray, present: np.ndarray, out: list[list[bytes]]) -> None:
        n, nodes, rng = len(prefixes), len(self.files), self.rng
        mains = np.empty((n, 40), dtype=np.uint8)
        mains[:, :22] = prefixes
        mains[:, 22:] = np.frombuffer(spec.main_tail.encode(), dtype=np.uint8)
        self.main_chunks += n
        has_data = (present == _LIVE).any(axis=1)
        if spec.holds_s3_data:
            self.tombstoned_main_chunks += int((~has_data & (present == _TOMBSTONE).any(axis=1)).sum())
        self._on_main_chunks(mains[has_data], self._mtime)  # only tombstones: no data for srebuildd to serve
        first_node = rng.integers(0, nodes, size=n)
        for position, tail in enumerate(spec.chunk_tails):
            rows = np.flatnonzero(present[:, position] != _ABSENT)
            if not len(rows):
                continue
            m = len(rows)
            lines = np.empty((m, 81), dtype=np.uint8)  # "chunk,main" before the per-node tail
            lines[:, :32] = HEX_DIGITS[rng.integers(0, 16, size=(m, 32))]
            lines[:, 32:40] = np.frombuffer(tail.encode(), dtype=np.uint8)
            lines[:, 40] = ord(",")
            lines[:, 41:] = mains[rows]
            node = (first_node[rows] + position) % nodes
            dead = present[rows, position] == _TOMBSTONE
            flag = np.where(
                dead, rng.choice(_TOMBSTONE_FLAGS, size=m), np.where(rng.random(m) < _FLAG_SHARE, rng.choice(_LIVE_FLAGS, size=m), 0)
            )
            twice = rng.random(m) < _TWICE_SHARE
            # Tombstones beside live chunks (a stripe re-written): half under the live chunk's key on
            # another node, half under another key.
            beside = ~dead & (rng.random(m) < _TOMBSTONE_SHARE)
            live = np.flatnonzero(~dead)
            if not self._forced and len(live) >= 3:  # so that even a tiny world has each
                flag[live[0]], twice[live[0]], beside[live[1:3]], self._forced = 16, True, True, True
            self._write(out, lines, node, flag, twice, position)
            extra = lines[beside]
            other_key = np.arange(len(extra)) % 2 == 1
            extra[other_key, :32] = HEX_DIGITS[rng.integers(0, 16, size=(int(other_key.sum()), 32))]
            self._write(
                out,
                extra,
                (node[beside] + 1) % nodes,
                rng.choice(_TOMBSTONE_FLAGS, size=len(extra)),
                np.zeros(len(extra), dtype=bool),
                position,
            )

    def _write(
        self, out: list[list[bytes]], lines: np.ndarray, node: np.ndarray, flag: np.ndarray, twice: np.ndarray, position: int
    ) -> None:
        """Rows to their node's file, grouped by flag; ``twice``: also listed by the next node."""
        nodes = len(self.files)
        group = node * 64 + flag  # flags are below 64
        order = np.argsort(group, kind="stable")
        for rows in np.split(order, np.flatnonzero(np.diff(group[order])) + 1):
            if not len(rows):
                continue
            n_, f = divmod(int(group[rows[0]]), 64)
            out[n_].append(self._lines(lines[rows], n_, position, f))
            self.listings[n_].rows += len(rows)
            again = rows[twice[rows]]
            if len(again):  # the same chunk and main chunk, listed by the next node too
                out[(n_ + 1) % nodes].append(self._lines(lines[again], (n_ + 1) % nodes, position, f))
                self.listings[(n_ + 1) % nodes].rows += len(again)
        deleted = (flag & 1) == 1
        self.rows += len(lines) + int(twice.sum())
        self.tombstone_rows += int(deleted.sum() + (deleted & twice).sum())

    @staticmethod
    def _lines(body: np.ndarray, node: int, position: int, flag: int) -> bytes:
        tail = np.frombuffer(f",g{node + 1}disk{position % 4 + 1},{flag}\n".encode(), dtype=np.uint8)
        return np.concatenate([body, np.broadcast_to(tail, (len(body), len(tail)))], axis=1).tobytes()

    def close(self) -> None:
        self.flush()
        for handle in (*self.dumps, *self.recent):
            handle.close()


class _Exports:
    """Per-bucket S3 key exports as the reference makes them.

    The JSON-lines log is what s3utils' verifyBucketSproxydKeys.js writes when run per bucket
    (``BUCKETS=<bucket> NO_MISSING_KEY_CHECK=1 VERBOSE=1``): a "sproxyd key" record per location of
    every logged entry, whatever its backend, under ``s3://bucket/<encodeURIComponent(listed key)>``
    (a version's listed key is ``name\\0versionId``), a "duplicate sproxyd key found" error when a key
    comes back, progress records and a final "completed scan". The CSV is the reference's jq output
    over that log: ``"bucket","<objectUrl's last segment, still encoded>","<sproxydKey>"``, QUOTE_ALL.
    Records are in planting order, not listing order.
    """

    NAME = "s3utils:verifyBucketSproxydKeys"

    def __init__(self, out: Path, buckets: list[str], *, lost_object: bool = False) -> None:
        self.csv_dir, self.jsonl_dir = out / "s3-bucketd", out / "s3-bucketd-jsonl"
        self.csv_dir.mkdir(parents=True)
        self.jsonl_dir.mkdir(parents=True)
        self._files: dict[str, tuple[TextIO, Any, TextIO]] = {}
        self._pending: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._records: dict[str, int] = defaultdict(int)
        self._scanned: dict[str, int] = defaultdict(int)
        self._seen: dict[str, dict[str, str]] = defaultdict(dict)  # per bucket: sproxyd key -> first objectUrl
        self._duplicates: dict[str, int] = defaultdict(int)
        self._lost_object = lost_object
        self.rows = 0
        for bucket in buckets:  # an empty bucket still has its (empty) export
            self._open(bucket)

    def add(self, bucket: str, listed_key: str, key: str) -> None:
        """One location of an entry, under the key bucketd lists it by (``name\\0versionId`` for a version)."""
        self._pending[bucket].append((listed_key, key))

    def _open(self, bucket: str) -> tuple[TextIO, Any, TextIO]:
        if bucket not in self._files:
            handle = open(self.csv_dir / f"{bucket}_keys.txt", "w", encoding="utf-8", newline="")
            log = open(self.jsonl_dir / f"{bucket}.log", "w", encoding="utf-8")
            log.write(self._record(bucket, "info", "start scanning bucket", {"bucket": bucket}))
            if self._lost_object and not self._files:  # the first bucket: one object whose locations could not be read
                log.write(
                    self._record(
                        bucket,
                        "error",
                        "error fetching object locations array",
                        {"objectUrl": f"s3://{bucket}/lost-object", "error": {"code": 500, "message": "InternalError"}},
                    )
                )
            self._files[bucket] = (handle, csv.writer(handle, quoting=csv.QUOTE_ALL), log)
        return self._files[bucket]

    def _record(self, bucket: str, level: str, message: str, fields: dict[str, Any]) -> str:
        self._records[bucket] += 1
        head = {"name": self.NAME, "time": _BASE_MS + _SPAN_MS + self._records[bucket], "level": level, "message": message}
        return json.dumps(head | fields | {"hostname": "lab", "pid": 4242}, ensure_ascii=False, separators=(",", ":")) + "\n"

    def flush(self) -> None:
        for bucket, rows in self._pending.items():
            _, writer, log = self._open(bucket)
            lines, csv_rows, seen = [], [], self._seen[bucket]
            for listed_key, key in rows:
                # encodeURIComponent output is plain ASCII with no quote or backslash: JSON-safe as is.
                encoded = _encode_uri_component(listed_key)
                url = f"s3://{bucket}/{encoded}"
                self._scanned[bucket] += 1
                lines.append(self._record(bucket, "info", "sproxyd key", {"objectUrl": url, "sproxydKey": key}))
                csv_rows.append((bucket, encoded, key))
                if key in seen:
                    self._duplicates[bucket] += 1
                    lines.append(
                        self._record(
                            bucket, "error", "duplicate sproxyd key found", {"objectUrl": url, "objectUrl2": seen[key], "sproxydKey": key}
                        )
                    )
                else:
                    seen[key] = url
                if self._scanned[bucket] % 997 == 0:  # progress records between the keys
                    lines.append(self._record(bucket, "info", "progress update", {"bucket": bucket, "scanned": self._scanned[bucket]}))
            writer.writerows(csv_rows)
            log.write("".join(lines))
            self.rows += len(rows)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        for bucket, (handle, _, log) in self._files.items():
            log.write(
                self._record(
                    bucket,
                    "info",
                    "completed scan",
                    {"bucket": bucket, "scanned": self._scanned[bucket], "haveMissingKeys": False, "duplicates": self._duplicates[bucket]},
                )
            )
            handle.close()
            log.close()


def _encode_uri_component(name: str) -> str:
    """JavaScript's encodeURIComponent; most names need only their slashes escaped (and quote is slow)."""
    return name.replace("/", "%2F") if _URI_PLAIN.fullmatch(name) else quote(name, safe=ENCODE_URI_SAFE)


class _Truth:
    """What was planted, as (kind, key, aux, pos) rows; assembled into truth.json at the end."""

    SCHEMA = pa.schema([("kind", pa.string()), ("key", pa.string()), ("aux", pa.string()), ("pos", pa.int32())])

    def __init__(self, tmp: Path) -> None:
        self.parts = ParquetParts(tmp / "truth.parquet", self.SCHEMA)
        self._rows: dict[str, list[Any]] = {name: [] for name in self.SCHEMA.names}

    def add(self, kind: str, key: str, aux: str | None = None, pos: int = 0) -> None:
        for name, value in zip(self.SCHEMA.names, (kind, key, aux, pos)):
            self._rows[name].append(value)

    def add_keys(self, kind: str, values: list[str]) -> None:
        self._rows["kind"].extend([kind] * len(values))
        self._rows["key"].extend(values)
        self._rows["aux"].extend([None] * len(values))
        self._rows["pos"].extend([0] * len(values))

    def flush(self) -> None:
        self.parts.write(self._rows)
        self._rows = {name: [] for name in self.SCHEMA.names}


class _Generator:
    def __init__(
        self,
        out: Path,
        *,
        objects: int,
        seed: int,
        arc: keys.ArcSchema,
        cos: int,
        orphans: float,
        gaps: float,
        splits: float,
        nodes: int,
        buckets: int,
        sizes: tuple[int, int],
        server_state: bool,
        export_error: bool,
    ) -> None:
        self.out = out
        self.sizes = sizes
        self.objects = objects
        self.arc = arc
        self.cos = cos
        self.orphan_share = orphans
        self.rng = random.Random(seed)
        self.np = np.random.default_rng(seed)
        self.settings = {
            "arc": str(arc),
            "cos": cos,
            "min_chunks": MIN_CHUNKS,
            "seed": seed,
            "objects": objects,
            "nodes": nodes,
            "buckets": buckets,
            "sizes": list(sizes),
            "orphans": orphans,
            "gaps": gaps,
            "splits": splits,
            "server_state": server_state,
            "export_error": export_error,
        }
        self.buckets = [f"bucket-{i:02d}" for i in range(buckets)]
        self.sessions = {bucket: 1 + i % 2 for i, bucket in enumerate(self.buckets)} | {USERS_BUCKET: 1}
        self.tmp = out / ".generating"
        self.tmp.mkdir(parents=True)
        self.state = StateWriter(out, self.tmp) if server_state else None
        self.truth = _Truth(self.tmp)
        self.layouts = ring_layouts(arc, cos)
        self.ring = _Ring(out / "listkeys", nodes, self.np, self.layouts, self._main_chunks, self.state.ring_dir if self.state else None)
        self.exports = _Exports(out, self.buckets, lost_object=export_error)
        self.shares = self._shares(gaps, splits)
        self._names = 0
        self._arc_rows: dict[str, list[Any]] = {"input_key": [], "body": []}
        self._bucketd_rows: dict[str, list[Any]] = defaultdict(list)
        self._input_keys = 0

    def _shares(self, gaps: float, splits: float) -> dict[str, float]:
        shares = {
            "split": splits,
            "missing": gaps / 4,
            "deleted": gaps / 12,
            "unrecoverable": gaps / 3 if self.arc.k > 1 else 0.0,
            "degraded_arc": gaps / 6,
            "degraded_cos": gaps / 6 if self.cos > 0 else 0.0,
            **_FIXED_SHARES,
        }
        if sum(shares.values()) > 1:
            raise ValueError(
                f"--gaps and --splits leave no room for healthy objects (at most {1 - sum(_FIXED_SHARES.values()):.2f} together)"
            )
        return {fate: share for fate, share in shares.items() if share > 0}

    # --- the pieces every fate is made of -------------------------------------
    def _key(self, zeros: int | None = None) -> str:
        """A fresh sproxyd input key; some have one or two leading zero bytes (19- and 18-byte forms)."""
        if zeros is None:
            roll = self.rng.random()
            zeros = 2 if roll < 0.02 else 1 if roll < 0.05 else 0
        body = bytearray(self.rng.randbytes(20 - zeros))
        body[0] = body[0] or 1
        return ("00" * zeros + body.hex()).upper()

    def _store(self, key: str, layout: str = "arc", count: int | None = None) -> str:
        """Put an input key's main chunk on the RING with ``count`` of its chunks (default all)."""
        spec = self.layouts[layout]
        width = len(spec.chunk_tails)
        positions = None if count is None or count >= width else self.rng.sample(range(width), count)
        main = self.ring.add(keys.input_key_md5_prefix(key), layout, positions)
        if spec.candidate_arc and (width if count is None else count) < MIN_CHUNKS:
            self.truth.add("debris", main)
        return main

    def _known(self, key: str, index: bytes | None = None) -> None:
        """srebuildd answers for this input key (a split index when ``index`` is given)."""
        self._arc_rows["input_key"].append(key)
        self._arc_rows["body"].append(index)

    def _main_chunks(self, mains: np.ndarray, mtime: int) -> None:
        if self.state is not None:
            self.state.mains.write(
                {"main_chunk": pa.array(mains.view("S40").ravel()).cast(pa.string()), "mtime": np.full(len(mains), mtime, dtype=np.int64)}
            )

    def _name(self) -> str:
        self._names += 1
        if self._names % 2:
            return WEIRD_NAMES[(self._names // 2) % len(WEIRD_NAMES)].format(n=self._names)
        return f"docs/{self._names:09d}.txt"

    def _size(self, key: str) -> int:
        return logical_size(key, self.sizes)

    def _mtime(self) -> int:
        return _BASE_MS + self.rng.randrange(_SPAN_MS)

    def _version_id(self, mtime_ms: int) -> str:
        # Like bucketd's: newer versions sort first.
        # Like bucketd's: newer versions sort first; 20 digits, then the replication group padded to 7 with spaces.
        return f"{99_999_999_999_999 - mtime_ms:015d}{self.rng.randrange(10**5):05d}RG001  "

    def _referenced(self, bucket: str, listed_key: str, key: str) -> None:
        """One RING location of an object version: exported (under the key it is listed by) and counted as an S3 reference."""
        self.exports.add(bucket, listed_key, key)
        self.truth.add("sproxyd", key)

    def _put(self, bucket: str, key: str, meta: dict[str, Any], full: dict[str, Any] | None = None) -> None:
        """A bucketd entry holding its metadata literally (``full``: what a GET returns, when it differs)."""
        rows = self._bucketd_rows
        rows["bucket"].append(bucket)
        rows["key"].append(key)
        rows["value"].append(json.dumps(meta))
        rows["full_value"].append(None if full is None else json.dumps(full))
        rows["location_key"].append(None)
        rows["size"].append(None)
        rows["mtime_ms"].append(None)

    def _put_compact(self, buckets: list[str], names: list[str], input_keys: list[str], sizes: list[int], mtimes: list[int]) -> None:
        """Plain one-location objects, rendered by the server (see ``_state.object_metadata``)."""
        rows = self._bucketd_rows
        rows["bucket"].extend(buckets)
        rows["key"].extend(names)
        rows["value"].extend([None] * len(names))
        rows["full_value"].extend([None] * len(names))
        rows["location_key"].extend(input_keys)
        rows["size"].extend(sizes)
        rows["mtime_ms"].extend(mtimes)

    def _plain_object(self, bucket: str, name: str, key: str) -> None:
        self._referenced(bucket, name, key)
        self._put_compact([bucket], [name], [key], [self._size(keys.input_key_md5_prefix(key))], [self._mtime()])

    # --- fates --------------------------------------------------------------
    def _plant_simple(self, codes: list[str], first_batch: bool) -> None:
        """Healthy single-key objects (ARC, COS, service 50), the bulk of a world, built with numpy."""
        m = len(codes)
        if not m:
            return
        raw = self.np.integers(0, 256, size=(m, 20), dtype=np.uint8)
        roll = self.np.random(m)
        if first_batch:  # 19- and 18-byte keys even in a tiny world
            roll[:2] = (0.04, 0.01)
        zeros = np.where(roll < 0.02, 2, np.where(roll < 0.05, 1, 0))
        for z in (0, 1, 2):
            rows = zeros == z
            raw[rows, :z] = 0
            raw[rows, z] = np.maximum(raw[rows, z], 1)
        hexed = hex_digits(raw)
        text = hexed.tobytes().decode("ascii")
        input_keys = [text[i : i + 40] for i in range(0, 40 * m, 40)]
        prefixes = [keys.input_key_md5_prefix(k) for k in input_keys]
        prefix_array = np.frombuffer("".join(prefixes).encode("ascii"), dtype=np.uint8).reshape(m, keys.MD5_PREFIX_LEN)
        code_array = np.array(codes)
        for code, layout in (("arc", "arc"), ("cos", "cos"), ("service50", "arc50")):
            self.ring.add_many(prefix_array[code_array == code], layout)
            if self.layouts[layout].candidate_arc and self.arc.stripes < MIN_CHUNKS:  # tiny schemas: every such object is debris
                self.truth.add_keys("debris", [p + self.layouts[layout].main_tail for p in np.array(prefixes)[code_array == code]])
        first = self._names + 1
        self._names += m
        names = [f"photos/{n:09d}.jpg" for n in range(first, first + m)]
        buckets = [self.buckets[i] for i in self.np.integers(0, len(self.buckets), size=m)]
        mtimes = (_BASE_MS + self.np.integers(0, _SPAN_MS, size=m)).tolist()
        for bucket, name, key in zip(buckets, names, input_keys):
            self.exports.add(bucket, name, key)
        self.truth.add_keys("sproxyd", input_keys)
        self._arc_rows["input_key"].extend(input_keys)
        self._arc_rows["body"].extend([None] * m)
        self._put_compact(buckets, names, input_keys, [self._size(p) for p in prefixes], mtimes)

    def _plant_special(self, fate: str, first: bool) -> None:
        bucket = self.rng.choice(self.buckets)
        name = self._name()
        getattr(self, f"_fate_{fate}")(bucket, name, first)

    def _fate_split(self, bucket: str, name: str, first: bool) -> None:
        key = self._key()
        # The index cycles through the three marker families: with these leading zero bytes the
        # first split serves every family with 20-, 19- and 18-byte keys, then a degraded subkey.
        zeros = [0, 1, 2, 1, 2, 0, 2, 0, 1, 0] if first else [None] * self.rng.randint(2, 4)
        subkeys = [self._key(z) for z in zeros]
        degraded = len(subkeys) - 1 if first or self.rng.random() < 0.1 else None
        low = max(self.arc.k, MIN_CHUNKS)
        for i, subkey in enumerate(subkeys):
            count = self.rng.randint(low, self.arc.stripes - 1) if i == degraded and low < self.arc.stripes else None
            self.truth.add("subkey_main", self._store(subkey, "arc", count))
            self.truth.add("split", key, subkey, i)
            if count is not None:
                self.truth.add("degraded", subkey)
            self._known(subkey)
        self._store(key)  # the index occupies a main chunk of its own
        self._known(key, encode_split_index(subkeys))
        self._plain_object(bucket, name, key)

    def _fate_missing(self, bucket: str, name: str, first: bool) -> None:
        key = self._key()
        self.truth.add("missing", key)
        self._plain_object(bucket, name, key)

    def _fate_deleted(self, bucket: str, name: str, first: bool) -> None:
        """An object whose data was deleted on the RING: every chunk listed as a tombstone, a missing gap."""
        key = self._key()
        self.ring.add(keys.input_key_md5_prefix(key), "arc", positions=(), tombstones=range(self.arc.stripes))
        self.truth.add("missing", key)  # srebuildd does not know its input key any more
        self._plain_object(bucket, name, key)

    def _fate_unrecoverable(self, bucket: str, name: str, first: bool) -> None:
        key = self._key()
        self._store(key, "arc", self.rng.randint(1, self.arc.k - 1))
        self._known(key)
        self.truth.add("unrecoverable", key)
        self._plain_object(bucket, name, key)

    def _fate_degraded_arc(self, bucket: str, name: str, first: bool) -> None:
        key = self._key()
        self._store(key, "arc", self.rng.randint(self.arc.k, self.arc.stripes - 1))
        self._known(key)
        self.truth.add("degraded", key)
        self._plain_object(bucket, name, key)

    def _fate_degraded_cos(self, bucket: str, name: str, first: bool) -> None:
        key = self._key()
        self._store(key, "cos", self.rng.randint(1, self.cos))
        self._known(key)
        self.truth.add("degraded", key)
        self._plain_object(bucket, name, key)

    def _stored_keys(self, n: int) -> list[tuple[str, int]]:
        """``n`` fresh input keys, each fully on the RING: (key, size)."""
        located = []
        for _ in range(n):
            key = self._key()
            located.append((key, self._size(self._store(key))))
            self._known(key)
        return located

    def _plant_versions(self, bucket: str, name: str, count: int, big: bool = False) -> None:
        """Versions each with its own data; the master entry repeats the latest (which the export tool logs as the master)."""
        times = sorted(self._mtime() for _ in range(count))
        for i, mtime in enumerate(times):
            [(key, size)] = self._stored_keys(1)
            version_id = self._version_id(mtime)
            meta = object_metadata(name, [(key, size)], mtime, version_id=version_id, **(_big_metadata(i) if big else {}))
            self._put(bucket, f"{name}\0{version_id}", meta)
            self._referenced(bucket, name if i == len(times) - 1 else f"{name}\0{version_id}", key)
        self._put(bucket, name, meta)

    def _fate_versioned(self, bucket: str, name: str, first: bool) -> None:
        """Several versions, each with its own data; the master entry repeats the latest."""
        self._plant_versions(bucket, name, self.rng.randint(2, 3))

    def _fate_big_versions(self, bucket: str, name: str, first: bool) -> None:
        """Versions (and so their master) whose big user metadata or ACL makes the listing drop their location."""
        self._plant_versions(bucket, name, self.rng.randint(2, 3), big=True)

    def _fate_null_version(self, bucket: str, name: str, first: bool) -> None:
        """A null version (``name\\0``, written before versioning was enabled) under a newer version."""
        [(old_key, old_size)] = self._stored_keys(1)
        old = self._mtime()
        self._put(bucket, f"{name}\0", object_metadata(name, [(old_key, old_size)], old, version_id=self._version_id(old), isNull=True))
        self._referenced(bucket, f"{name}\0", old_key)
        self._plant_versions(bucket, name, 1)

    def _fate_legacy(self, bucket: str, name: str, first: bool) -> None:
        """Metadata written before multiple backends: locations without dataStoreType, on the RING."""
        located = self._stored_keys(self.rng.randint(1, 2))
        meta = object_metadata(name, located, self._mtime(), **_MODEL_VERSION_2)
        meta["location"] = [
            {"key": loc["key"], "size": loc["size"], "start": loc["start"], "dataStoreName": "sproxyd"} for loc in meta["location"]
        ]
        meta["dataStoreName"] = "sproxyd"
        self._put(bucket, name, meta)
        for key, _ in located:
            self._referenced(bucket, name, key)

    def _fate_plain_location(self, bucket: str, name: str, first: bool) -> None:
        """The oldest metadata model: ``location`` is the sproxyd key itself."""
        [(key, size)] = self._stored_keys(1)
        meta = object_metadata(name, [(key, size)], self._mtime(), **_MODEL_VERSION_1)
        meta["location"] = key
        self._put(bucket, name, meta)
        self._referenced(bucket, name, key)

    def _fate_mpu(self, bucket: str, name: str, first: bool) -> None:
        """A big multipart object: listed without location, the full metadata has every part."""
        parts = self._stored_keys(self.rng.randint(2, 4))
        meta = object_metadata(name, parts, self._mtime())
        self._put(bucket, name, {k: v for k, v in meta.items() if k != "location"}, meta)
        for key, _ in parts:
            self._referenced(bucket, name, key)

    def _fate_duplicate(self, bucket: str, name: str, first: bool) -> None:
        """Two objects pointing at the same sproxyd key (deleting one through S3 would hurt the other)."""
        [(key, size)] = self._stored_keys(1)
        twin_bucket, twin = self.rng.choice(self.buckets), self._name()
        self._put_compact([bucket, twin_bucket], [name, twin], [key, key], [size, size], [self._mtime(), self._mtime()])
        self.exports.add(bucket, name, key)
        self.exports.add(twin_bucket, twin, key)
        self.truth.add("sproxyd", key)
        self.truth.add("duplicate", key)

    def _fate_empty(self, bucket: str, name: str, first: bool) -> None:
        self._put(bucket, name, object_metadata(name, [], self._mtime()))

    def _fate_placeholder(self, bucket: str, name: str, first: bool) -> None:
        """A placeholder master (isPHD) over older versions that hold the data.

        As in bucketd, the placeholder names a fresh version id listed nowhere (the latest
        version, deleted, awaiting repair from the older ones): every listed version counts.
        """
        times = sorted(self._mtime() for _ in range(2 if first else self.rng.randint(1, 2)))
        for mtime in times:
            [(key, size)] = self._stored_keys(1)
            version_id = self._version_id(mtime)
            self._put(bucket, f"{name}\0{version_id}", object_metadata(name, [(key, size)], mtime, version_id=version_id))
            self._referenced(bucket, f"{name}\0{version_id}", key)
        self._put(bucket, name, {"isPHD": True, "versionId": self._version_id(max(times) + 1)})

    def _fate_delete_marker(self, bucket: str, name: str, first: bool) -> None:
        """An older version with data under a newer delete marker (the master is the marker)."""
        [(key, size)] = self._stored_keys(1)
        old, new = sorted((self._mtime(), self._mtime()))
        old_id, marker_id = self._version_id(old), self._version_id(new)
        self._put(bucket, f"{name}\0{old_id}", object_metadata(name, [(key, size)], old, version_id=old_id))
        marker = object_metadata(name, [], new, version_id=marker_id, isDeleteMarker=True)
        self._put(bucket, f"{name}\0{marker_id}", marker)
        self._put(bucket, name, marker)
        self._referenced(bucket, f"{name}\0{old_id}", key)

    def _fate_foreign(self, bucket: str, name: str, first: bool) -> None:
        """Data on another backend; half of the keys (and the first) even look like sproxyd keys."""
        meta = object_metadata(name, [], self._mtime())
        location_key = self._key() if first or self.rng.random() < 0.5 else f"{bucket}/{name}"
        meta["location"] = [
            {
                "key": location_key,
                "size": 4096,
                "start": 0,
                "dataStoreName": "aws-location",
                "dataStoreType": "aws_s3",
                "dataStoreVersionId": self._key()[:32].lower(),
            }
        ]
        meta["content-length"] = 4096
        meta["dataStoreName"] = "aws-location"
        self._put(bucket, name, meta)
        self.exports.add(bucket, name, location_key)  # the export tool logs every location, whatever its backend
        if keys.is_valid_key(location_key):
            self.truth.add("other_backend", location_key)

    def _plant_unfinished_upload(self, bucket: str, splitter: str) -> None:
        """An upload in progress: its parts live in the shadow bucket and are live data.

        The first part carries one location object (old metadata), the second was copied from
        another object and carries several. ``splitter``: "..|..", or what old shadow buckets used.
        """
        name = self._name()
        shadow = keys.MPU_SHADOW_PREFIX + bucket
        self.sessions[shadow] = self.sessions[bucket]
        upload_id = self._key()[:32].lower()
        started = iso_time(self._mtime())
        self._put(
            shadow,
            f"overview{splitter}{name}{splitter}{upload_id}",
            {"key": name, "uploadId": upload_id, "initiated": started, "owner-display-name": "lab", "splitter": splitter},
        )
        for number in (1, 2):
            locations, start = [], 0
            for key, size in self._stored_keys(number):
                locations.append(scality_location(key, size, start, number))
                start += size
            entry = f"{upload_id}{splitter}{number:05d}"
            self._put(
                shadow,
                entry,
                {
                    "key": entry,
                    "uploadId": upload_id,
                    "partNumber": number,
                    "last-modified": started,
                    "content-length": start,
                    "content-md5": locations[0]["dataStoreETag"].split(":")[1],
                    "partLocations": locations[0] if number == 1 else locations,
                },
            )
            for location in locations:
                self._referenced(shadow, entry, location["key"])

    def _plant_orphans(self) -> None:
        """Main chunks no S3 key references: ARC (all or at least MIN_CHUNKS stripes) and COS, services 51 and 50."""
        count = max(6, round(self.objects * self.orphan_share)) if self.orphan_share > 0 else 0
        arc_ok = self.arc.stripes >= MIN_CHUNKS
        for i in range(count):
            key = self._key()
            kind = i % 6 if arc_ok else 3 + i % 2
            if kind == 0:
                main = self._store(key, "arc")
            elif kind == 1:
                main = self._store(key, "arc50")
            elif kind == 2:
                main = self._store(key, "arc", self.rng.randint(MIN_CHUNKS, max(MIN_CHUNKS, self.arc.stripes - 1)))
            elif kind == 3:
                main = self._store(key, "cos")
            elif kind == 4:
                main = self._store(key, "cos", 1)
            else:
                main = self._store(key, "arc50", self.rng.randint(MIN_CHUNKS, max(MIN_CHUNKS, self.arc.stripes - 1)))
            self.truth.add("orphan", main, key)  # the input key that wrote it: what a reverse lookup finds
            self._flush_if_full(i)

    def _plant_noise(self) -> None:
        """RING keys that are never S3 orphans: debris (1-3 chunks) and other services or volumes."""
        for i in range(max(10, round(self.objects * 0.02))):
            key = self._key()
            kind = i % 5
            if kind < 2:
                self._store(key, "arc" if kind == 0 else "arc50", self.rng.randint(1, min(MIN_CHUNKS - 1, self.arc.stripes)))
            else:
                self._store(key, ("service10", "service59", "volume")[kind - 2])
            self._flush_if_full(i)

    def _plant_tombstones(self) -> None:
        """Main chunks whose tombstones (docs/domain.md section 5) would change a verdict if they counted as chunks."""
        stripes = self.arc.stripes
        for i in range(max(5, round(self.objects * 0.005))):
            key = self._key()
            prefix = keys.input_key_md5_prefix(key)
            kind = i % 5
            if kind < 3:  # unreferenced, only tombstones: neither orphan nor debris (S3 ones counted apart)
                layout = ("arc50", "cos", "service10")[kind]
                self.ring.add(prefix, layout, positions=(), tombstones=range(len(self.layouts[layout].chunk_tails)))
            elif kind == 3 and stripes >= MIN_CHUNKS:  # unreferenced, too few live chunks beside tombstones: debris
                live = self.rng.randint(1, MIN_CHUNKS - 1)
                self.truth.add("debris", self.ring.add(prefix, "arc", positions=range(live), tombstones=range(live, stripes)))
            elif kind == 4 and "degraded_arc" in self.shares and max(self.arc.k, MIN_CHUNKS) < stripes:
                # Referenced, its missing stripes listed as tombstones: degraded.
                listed = self.rng.sample(range(stripes), self.rng.randint(max(self.arc.k, MIN_CHUNKS), stripes - 1))
                self.ring.add(prefix, "arc", positions=listed, tombstones=set(range(stripes)) - set(listed))
                self._known(key)
                self.truth.add("degraded", key)
                self._plain_object(self.rng.choice(self.buckets), self._name(), key)
            self._flush_if_full(i)

    def _plant_in_flight(self) -> None:
        """Main chunks written within the retention window, unreferenced: only the nodes list them (lab/ring/)."""
        count = max(len(IN_FLIGHT_AGES) * 2, round(self.objects * 0.005))
        for age_index, age in enumerate(IN_FLIGHT_AGES):
            for i in range(age_index, count, len(IN_FLIGHT_AGES)):
                self.truth.add("in_flight", self._store(self._key(), ("arc", "cos")[i % 2]))
            self.ring.flush_in_flight(age)
        self.truth.flush()

    def _plant_bucketd_noise(self) -> None:
        for bucket in self.buckets:
            # Replay entries name data that must never be read as live (the key is on no RING).
            key = self._key()
            self._put(bucket, f"{REPLAY_PREFIX}{self._key()[:12]}", object_metadata("replayed", [(key, 1024)], self._mtime()))
            self._put(USERS_BUCKET, f"lab-owner{SPLITTER}{bucket}", {"creationDate": iso_time(_BASE_MS)})

    # --- driving ------------------------------------------------------------
    def _fate_batches(self) -> Iterator[list[str]]:
        """Fates per batch; the first objects get every fate once, so even a tiny world has them all."""
        names = list(self.shares)
        cumulative = np.cumsum([self.shares[n] for n in names])
        prologue = [*names, *_SIMPLE]
        for start in range(0, self.objects, BATCH_OBJECTS):
            n = min(BATCH_OBJECTS, self.objects - start)
            picks = np.searchsorted(cumulative, self.np.random(n), side="right")
            batch = [names[p] if p < len(names) else "arc" for p in picks]
            if start == 0:
                forced = prologue[:n]
                batch[: len(forced)] = forced
            yield batch

    def _flush_if_full(self, i: int) -> None:
        if i % BATCH_OBJECTS == BATCH_OBJECTS - 1:
            self._flush()

    def _flush(self) -> None:
        self.ring.flush()
        self.exports.flush()
        self.truth.flush()
        self._input_keys += len(self._arc_rows["input_key"])
        if self.state is not None:
            self.state.arc.write(self._arc_rows)
            self.state.bucketd.write(self._bucketd_rows)
        self._arc_rows = {"input_key": [], "body": []}
        self._bucketd_rows = defaultdict(list)

    def run(self) -> None:
        seen: set[str] = set()
        for batch_number, fates in enumerate(self._fate_batches()):
            self._plant_simple([f for f in fates if f in _SIMPLE], first_batch=batch_number == 0)
            for fate in fates:
                if fate not in _SIMPLE:
                    self._plant_special(fate, fate not in seen)
                    seen.add(fate)
            self._flush()
        self._plant_unfinished_upload(self.buckets[0], SPLITTER)
        self._plant_unfinished_upload(self.buckets[-1], OLD_SPLITTER)
        self._plant_orphans()
        self._plant_noise()
        self._plant_tombstones()
        self._plant_bucketd_noise()
        self._flush()
        self._plant_in_flight()
        self.ring.close()
        self.exports.close()
        self.truth.parts.close()
        con = duckdb_connection(self.tmp)
        try:
            if self.state is not None:
                self.state.finish(con, self.sessions, self.sizes, self.ring.listings)
            self._write_truth(con)
        finally:
            con.close()
        shutil.rmtree(self.tmp)

    def _write_truth(self, con: duckdb.DuckDBPyConnection) -> None:
        source = f"read_parquet('{self.truth.parts.path}')"

        def keys_of(kind: str) -> Iterator[str]:
            for batch in sorted_batches(con, f"SELECT DISTINCT key FROM {source} WHERE kind = '{kind}' ORDER BY key"):
                yield from batch.column("key").to_pylist()

        counts: dict[str, int] = {
            "listkeys_rows": self.ring.rows,
            "in_flight_rows": self.ring.in_flight_rows,
            "main_chunks": self.ring.main_chunks,
            "objects": self.objects,
            "tombstone_rows": self.ring.tombstone_rows,
            "tombstoned_main_chunks": self.ring.tombstoned_main_chunks,
            "export_rows": self.exports.rows,
            "input_keys": self._input_keys,
            "buckets": len(self.buckets),
        }
        with open(self.out / "truth.json", "w", encoding="utf-8") as out:
            out.write('{\n"settings": ' + json.dumps(self.settings) + ",\n")
            counts["orphans"] = _write_list(out, "orphans", keys_of("orphan"))
            out.write(',\n"orphan_sizes": {')
            for i, key in enumerate(keys_of("orphan")):
                out.write(f'{"," if i else ""}\n "{key}": {self._size(key)}')
            out.write("\n},\n")
            out.write('"orphan_input_keys": {')
            query = f"SELECT key, any_value(aux) FROM {source} WHERE kind = 'orphan' GROUP BY key ORDER BY key"
            for i, (main, input_key) in enumerate(con.execute(query).fetchall()):
                out.write(f'{"," if i else ""}\n "{main}": "{input_key}"')
            out.write("\n},\n")
            out.write('"gaps": {\n')
            for i, status in enumerate(GAP_STATUSES):
                counts[f"gaps_{status}"] = _write_list(out, status, keys_of(status))
                out.write(",\n" if i < len(GAP_STATUSES) - 1 else "\n")
            out.write("},\n")
            counts["gaps"] = sum(counts[f"gaps_{status}"] for status in GAP_STATUSES)
            for name, kind in (("debris", "debris"), ("duplicates", "duplicate")):
                counts[name] = _write_list(out, name, keys_of(kind))
                out.write(",\n")
            out.write('"splits": {')
            query = f"SELECT key, list(aux ORDER BY pos) AS subkeys FROM {source} WHERE kind = 'split' GROUP BY key ORDER BY key"
            splits = subkeys = 0
            for batch in sorted_batches(con, query):
                for key, listed in zip(batch.column("key").to_pylist(), batch.column("subkeys").to_pylist()):
                    out.write(f'{"," if splits else ""}\n "{key}": {json.dumps(listed)}')
                    splits, subkeys = splits + 1, subkeys + len(listed)
            out.write("\n},\n")
            counts["splits"], counts["subkeys"] = splits, subkeys
            counts["sproxyd_keys"] = _write_list(out, "sproxyd_keys", keys_of("sproxyd"))
            out.write(",\n")
            # 40-hex keys of other backends: references for orphans, never gaps.
            counts["other_backend_keys"] = _write_list(out, "other_backend_keys", keys_of("other_backend"))
            out.write(",\n")
            counts["subkey_main_chunks"] = _write_list(out, "subkey_main_chunks", keys_of("subkey_main"))
            out.write(",\n")
            # Unreferenced main chunks written within the retention window: never orphans of a native listing.
            counts["in_flight"] = _write_list(out, "in_flight", keys_of("in_flight"))
            out.write(',\n"counts": ' + json.dumps(counts) + "\n}\n")


def _big_metadata(variant: int) -> dict[str, Any]:
    """Fields that take an entry's metadata past LISTING_TRIM_CHARS: large user metadata, or a long ACL."""
    if variant % 2 == 0:
        return {"x-amz-meta-notes": "lab notes " * (LISTING_TRIM_CHARS // 10)}
    grantees = [hashlib.sha256(f"grantee {n}".encode()).hexdigest() for n in range(LISTING_TRIM_CHARS // 60)]
    return {"acl": {"Canned": "", "FULL_CONTROL": [], "WRITE_ACP": [], "READ": grantees, "READ_ACP": grantees[:4]}}


def _write_list(out: TextIO, name: str, values: Iterable[str]) -> int:
    """Write ``"name": [...]`` one item per line; return how many items."""
    out.write(f'"{name}": [')
    count = 0
    for value in values:
        out.write(f'{"," if count else ""}\n "{value}"')
        count += 1
    out.write("\n]" if count else "]")
    return count


@dataclass(frozen=True)
class World:
    """A generated world on disk. ``truth`` is read on first use and cached: treat it as read-only."""

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
    def state_dir(self) -> Path:
        return self.path / "lab"

    @cached_property
    def truth(self) -> dict[str, Any]:
        return json.loads((self.path / "truth.json").read_text(encoding="utf-8"))


_OUTPUTS = ("listkeys", "s3-bucketd", "s3-bucketd-jsonl", "lab", ".generating", "truth.json")


def generate_world(
    out: str | Path,
    *,
    objects: int = 1000,
    seed: int = 0,
    arc: str | keys.ArcSchema = "8+4",
    cos: int = 2,
    orphans: float = 0.05,
    gaps: float = 0.02,
    splits: float = 0.05,
    nodes: int = 6,
    buckets: int = 4,
    sizes: tuple[int, int] = DEFAULT_SIZES,
    server_state: bool = True,
    export_error: bool = False,
) -> World:
    """Write a world under ``out`` (deterministic for a seed) and return it.

    ``objects`` S3 objects are planted (about 12 listkeys rows each with 8+4); ``orphans``
    is the number of orphan main chunks as a share of ``objects``, ``gaps`` and ``splits``
    the shares of objects with missing or under-protected data and of split objects.
    Main chunk sizes are log-uniform between ``sizes`` (bytes, default 1 KiB to 256 MiB).
    ``server_state=False`` skips what the lab servers need (``lab/``), for
    benchmark worlds that are only ingested. ``export_error`` plants, in the first bucket's JSON-lines
    export, one "error fetching object locations array" record (that export is then incomplete).
    A previous world in ``out`` is replaced.
    """
    if objects < 1:
        raise ValueError("objects must be at least 1")
    if nodes < 1 or buckets < 1:
        raise ValueError("nodes and buckets must be at least 1")
    if not 1 <= sizes[0] <= sizes[1]:
        raise ValueError(f"sizes must be 1 <= smallest <= largest bytes, got {sizes}")
    for name, share in (("orphans", orphans), ("gaps", gaps), ("splits", splits)):
        if not 0 <= share <= 1:
            raise ValueError(f"{name} must be a share between 0 and 1, got {share}")
    path = Path(out)
    for name in _OUTPUTS:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    path.mkdir(parents=True, exist_ok=True)
    _Generator(
        path,
        objects=objects,
        seed=seed,
        arc=keys.parse_arc(arc),
        cos=keys.parse_cos(cos),
        orphans=orphans,
        gaps=gaps,
        splits=splits,
        nodes=nodes,
        buckets=buckets,
        sizes=(int(sizes[0]), int(sizes[1])),
        server_state=server_state,
        export_error=export_error,
    ).run()
    return World(path)
