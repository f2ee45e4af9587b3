"""What the lab servers serve: the ``lab/`` directory of a world, written and read.

The state scales with the world by staying on disk: sorted key arrays (``.npy``)
and per-bucket Arrow IPC files, all memory-mapped by the servers and searched by
bisection, so a server over a 100 M-row world starts in a second and holds only
what the requests touch. Layout::

    lab/state.json            manifest: counts, buckets with their raft session and file
    lab/arc_keys.npy          S40, sorted: every input key srebuildd knows (split indexes, subkeys)
    lab/split_keys.npy        S40, sorted: the split indexes among them
    lab/split_bodies.arrow    raw index bodies, in split_keys order
    lab/main_chunks.npy       S40, sorted: every main chunk on the RING (arcdata HEAD, chord DELETE)
    lab/main_chunk_mtimes.npy int64, in main_chunks order: its chunks' mtime (epoch s; -age: in flight)
    lab/ring/                 what the nodes serve beyond the world's dumps (in-flight chunks)
    lab/bucketd-NNNN.arrow    one bucket, sorted by key: literal metadata, or compact rows

Most objects are stored as *compact* bucketd rows (location key, size, time) and
rendered by :func:`object_metadata` on request; the unusual ones (versions, MPUs,
placeholders, shadow buckets…) carry their metadata JSON literally. Both go
through :func:`object_metadata`, so a listing is the same whichever way a row was
stored.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

STATE_DIR = "lab"
RING_STATE_DIR = f"{STATE_DIR}/ring"
MANIFEST = "state.json"
FORMAT_VERSION = 3  # 3: chunk mtimes and the nodes' listings
DATA_STORE = "us-east-1"
KEY_DTYPE = "S40"  # uppercase ASCII hex: byte order is key order
LISTING_TRIM_CHARS = 10_000  # Arsenal's listing drops `location` from metadata this long or longer
_SORT_BATCH = 200_000

_ARC_SCHEMA = pa.schema([("input_key", pa.string()), ("body", pa.binary())])
_MAIN_SCHEMA = pa.schema([("main_chunk", pa.string()), ("mtime", pa.int64())])
_BUCKETD_SCHEMA = pa.schema(
    [
        ("bucket", pa.string()),
        ("key", pa.string()),
        ("value", pa.string()),  # literal listing metadata; null for a compact row
        ("full_value", pa.string()),  # literal GET metadata when it differs from the listing (a many-part MPU, in short)
        ("location_key", pa.string()),  # compact row: the one sproxyd key
        ("size", pa.int64()),
        ("mtime_ms", pa.int64()),
    ]
)


DEFAULT_SIZES = (1 << 10, 1 << 28)  # logical sizes of main chunks: 1 KiB to 256 MiB


def logical_size(key: str, sizes: tuple[int, int] = DEFAULT_SIZES) -> int:
    """The logical size of a main chunk (or of its 22-char md5 prefix): log-uniform within ``sizes``.

    A function of the key's md5 chars rather than stored data: the generator (for
    the truth and the S3 metadata) and the srebuildd (for ``X-Scal-Size``) agree
    without a join.
    """
    low, high = sizes
    fraction = int(key[8:20], 16) / float(1 << 48)
    return min(high, int(low * (high / low) ** fraction))


def iso_time(mtime_ms: int) -> str:
    return datetime.fromtimestamp(mtime_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def scality_location(key: str, size: int, start: int, part: int) -> dict[str, Any]:
    etag = hashlib.md5(key.encode()).hexdigest()
    return {
        "key": key,
        "size": size,
        "start": start,
        "dataStoreName": DATA_STORE,
        "dataStoreType": "scality",
        "dataStoreETag": f"{part}:{etag}",
    }


def object_metadata(
    name: str, locations: Sequence[tuple[str, int]], mtime_ms: int, *, version_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    """bucketd object metadata (docs/domain.md section 5) for data at ``locations`` (sproxyd key, size)."""
    located, start = [], 0
    for part, (key, size) in enumerate(locations, start=1):
        located.append(scality_location(key, size, start, part))
        start += size
    md5 = hashlib.md5(name.encode()).hexdigest()
    meta: dict[str, Any] = {
        "md-model-version": 5,
        "owner-display-name": "lab",
        "owner-id": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be",
        "content-length": start,
        "content-type": "application/octet-stream",
        "content-md5": md5 + (f"-{len(located)}" if len(located) > 1 else ""),
        "last-modified": iso_time(mtime_ms),
        "dataStoreName": DATA_STORE,
        "location": located or None,
        "isDeleteMarker": False,
    }
    if version_id is not None:
        meta["versionId"] = version_id
    meta.update(extra)
    return meta


class ParquetParts:
    """One Parquet file of rows appended batch by batch (sorted later by DuckDB)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.rows = 0
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")
        self._schema = schema

    def write(self, columns: dict[str, Any]) -> None:
        table = pa.table(columns, schema=self._schema)
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()


def duckdb_connection(tmp: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB that sorts out of core within a fixed memory budget."""
    con = duckdb.connect()
    con.execute(f"SET temp_directory = '{tmp / 'duckdb'}'")
    con.execute("SET memory_limit = '512MB'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    return con


def sorted_batches(con: duckdb.DuckDBPyConnection, query: str) -> Iterator[pa.RecordBatch]:
    """A query's result as Arrow batches, streamed (DuckDB 2 renamed ``fetch_arrow_reader``)."""
    relation = con.sql(query)
    reader = relation.to_arrow_reader if hasattr(relation, "to_arrow_reader") else relation.fetch_arrow_reader
    yield from reader(_SORT_BATCH)


class _KeyArray:
    """A sorted ``.npy`` array of keys, filled batch by batch through a memory map."""

    def __init__(self, path: Path, count: int) -> None:
        self.path = path
        self._array = np.lib.format.open_memmap(path, mode="w+", dtype=KEY_DTYPE, shape=(count,))
        self._at = 0

    def extend(self, column: pa.Array) -> None:
        values = column.to_numpy(zero_copy_only=False).astype(KEY_DTYPE)
        self._array[self._at : self._at + len(values)] = values
        self._at += len(values)

    def close(self) -> None:
        if self._at != len(self._array):
            raise RuntimeError(f"{self.path.name}: wrote {self._at} keys, expected {len(self._array)}")
        self._array.flush()
        del self._array


def _sorted_keys(path: Path, count: int, batches: Iterator[pa.RecordBatch]) -> None:
    keys = _KeyArray(path, count)
    for batch in batches:
        keys.extend(batch.column("key"))
    keys.close()


def _bucket_runs(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[str, pa.RecordBatch]]:
    """(bucket, rows) runs of rows sorted by bucket."""
    for batch in batches:
        start = 0
        for bucket, run in itertools.groupby(batch.column("bucket").to_pylist()):
            length = sum(1 for _ in run)
            yield bucket, batch.slice(start, length)
            start += length


def _zero_under_nulls(column: pa.Array) -> pa.Array:
    """The column with zeros in the value slots of its nulls: DuckDB leaves whatever was in memory
    there, and the served files must be the same bytes for the same seed."""
    if column.null_count == 0 or not pa.types.is_integer(column.type):
        return column
    filled, valid = pc.fill_null(column, 0), pc.is_valid(column)  # both new arrays: offset 0, like the result
    return pa.Array.from_buffers(column.type, len(column), [valid.buffers()[1], filled.buffers()[1]], column.null_count)


@dataclass
class NodeListing:
    """What one lab node serves, as byte ranges of files under the world, each of one chunk mtime.

    ``runs``: (mtime, start, end) in ``dump`` (the node's ringsh dump), in mtime order;
    ``recent_runs``: (age, start, end) in ``recent``, in-flight chunks whose mtime is ``age``
    seconds before the serving clock (so they stay in flight whenever the world is served).
    """

    name: str
    dump: str
    recent: str
    rows: int = 0
    runs: list[tuple[int, int, int]] = field(default_factory=list)
    recent_runs: list[tuple[int, int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dump": self.dump,
            "recent": self.recent,
            "rows": self.rows,
            "runs": [list(r) for r in self.runs],
            "recent_runs": [list(r) for r in self.recent_runs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeListing:
        return cls(
            data["name"],
            data["dump"],
            data["recent"],
            data["rows"],
            [tuple(r) for r in data["runs"]],
            [tuple(r) for r in data["recent_runs"]],
        )


class StateWriter:
    """Collects what the servers need while the generator streams, then sorts it into ``lab/``."""

    def __init__(self, world: Path, tmp: Path) -> None:
        self.dir = world / STATE_DIR
        self.dir.mkdir(parents=True)
        self.ring_dir = world / RING_STATE_DIR
        self.arc = ParquetParts(tmp / "arc.parquet", _ARC_SCHEMA)
        self.mains = ParquetParts(tmp / "mains.parquet", _MAIN_SCHEMA)
        self.bucketd = ParquetParts(tmp / "bucketd.parquet", _BUCKETD_SCHEMA)

    def finish(self, con: duckdb.DuckDBPyConnection, sessions: dict[str, int], sizes: tuple[int, int], nodes: list[NodeListing]) -> None:
        """Sort the parts into the served files; ``sessions`` maps every bucket to its raft session."""
        for parts in (self.arc, self.mains, self.bucketd):
            parts.close()
        arc, mains, rows = (f"read_parquet('{p.path}')" for p in (self.arc, self.mains, self.bucketd))
        _sorted_keys(self.dir / "arc_keys.npy", self.arc.rows, sorted_batches(con, f"SELECT input_key AS key FROM {arc} ORDER BY key"))
        main_keys = _KeyArray(self.dir / "main_chunks.npy", self.mains.rows)
        mtimes = np.lib.format.open_memmap(self.dir / "main_chunk_mtimes.npy", mode="w+", dtype=np.int64, shape=(self.mains.rows,))
        at = 0
        for batch in sorted_batches(con, f"SELECT main_chunk AS key, mtime FROM {mains} ORDER BY key"):
            main_keys.extend(batch.column("key"))
            mtimes[at : at + batch.num_rows] = batch.column("mtime").to_numpy()
            at += batch.num_rows
        main_keys.close()
        mtimes.flush()
        del mtimes
        splits = con.sql(f"SELECT count(*) FROM {arc} WHERE body IS NOT NULL").fetchall()[0][0]
        split_keys = _KeyArray(self.dir / "split_keys.npy", splits)
        bodies_schema = pa.schema([("body", pa.binary())])
        with pa.OSFile(str(self.dir / "split_bodies.arrow"), "wb") as sink, pa.ipc.new_file(sink, bodies_schema) as bodies:
            for batch in sorted_batches(con, f"SELECT input_key AS key, body FROM {arc} WHERE body IS NOT NULL ORDER BY key"):
                split_keys.extend(batch.column("key"))
                bodies.write_batch(pa.record_batch([batch.column("body").cast(pa.binary())], schema=bodies_schema))
        split_keys.close()
        buckets = self._write_buckets(sorted_batches(con, f"SELECT * FROM {rows} ORDER BY bucket, key"), sessions)
        manifest = {
            "format": FORMAT_VERSION,
            "sizes": list(sizes),
            "input_keys": self.arc.rows,
            "split_indexes": splits,
            "main_chunks": self.mains.rows,
            "buckets": buckets,
            "nodes": [node.to_json() for node in nodes],
        }
        (self.dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")

    def _write_buckets(self, batches: Iterator[pa.RecordBatch], sessions: dict[str, int]) -> dict[str, dict[str, Any]]:
        """One Arrow file per bucket, from rows sorted by (bucket, key)."""
        schema = pa.schema([f for f in _BUCKETD_SCHEMA if f.name != "bucket"])
        buckets: dict[str, dict[str, Any]] = {}
        for bucket, runs in itertools.groupby(_bucket_runs(batches), key=lambda run: run[0]):
            file, count = f"bucketd-{len(buckets):04d}.arrow", 0
            with pa.OSFile(str(self.dir / file), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
                for _, run in runs:
                    writer.write_batch(pa.record_batch([_zero_under_nulls(run.column(f.name).cast(f.type)) for f in schema], schema=schema))
                    count += run.num_rows
            buckets[bucket] = {"file": file, "rows": count, "raft_session": sessions[bucket]}
        for bucket, session in sessions.items():  # a bucket with no entries is still listed
            buckets.setdefault(bucket, {"file": None, "rows": 0, "raft_session": session})
        return buckets


class _Column(Sequence[str]):
    """A memory-mapped string column as a read-only sequence, for :mod:`bisect`."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._column = column

    def __len__(self) -> int:
        return len(self._column)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]  # a sequence of keys for bisect, ints only
        return self._column[index].as_py()


class Bucket:
    """One bucket's entries, sorted by key (``table`` is None for a bucket without entries)."""

    def __init__(self, name: str, raft_session: int, table: pa.Table | None) -> None:
        self.name = name
        self.raft_session = raft_session
        self.table = table
        self.keys = _Column(table.column("key") if table is not None else pa.chunked_array([], pa.string()))

    def page(self, marker: str, prefix: str, max_keys: int) -> tuple[list[dict[str, str]], bool]:
        """Entries after ``marker`` (exclusive) starting with ``prefix``, and whether more follow."""
        keys = self.keys
        start = bisect.bisect_right(keys, marker) if marker else 0
        if prefix:
            start = max(start, bisect.bisect_left(keys, prefix))
        if self.table is None or start >= len(keys):
            return [], False
        rows = self.table.slice(start, max_keys + 1).to_pylist()
        contents: list[dict[str, Any]] = []
        for row in rows[:max_keys]:
            if not row["key"].startswith(prefix):
                return contents, False  # matching keys are contiguous in sorted order
            contents.append({"key": row["key"], "value": _listed(self._render(row, full=False))})
        more = len(rows) > max_keys and rows[max_keys]["key"].startswith(prefix)
        return contents, more

    def get(self, key: str) -> str | None:
        """The full metadata of one entry, None if the bucket has no such key."""
        i = bisect.bisect_left(self.keys, key)
        if self.table is None or i >= len(self.keys) or self.keys[i] != key:
            return None
        return self._render(self.table.slice(i, 1).to_pylist()[0], full=True)

    @staticmethod
    def _render(row: dict[str, Any], *, full: bool) -> str:
        if row["value"] is not None:
            return row["full_value"] if full and row["full_value"] is not None else row["value"]
        return json.dumps(object_metadata(row["key"], [(row["location_key"], row["size"])], row["mtime_ms"]))


def _listed(value: str) -> str:
    """An entry as a listing shows it: Arsenal drops `location` from metadata of LISTING_TRIM_CHARS or more."""
    if len(value) < LISTING_TRIM_CHARS:
        return value
    meta = json.loads(value)
    meta.pop("location", None)
    return json.dumps(meta)


class WorldState:
    """The ``lab/`` directory of a world, memory-mapped for the servers.

    ``clock`` (epoch seconds, when the state was opened) is the "now" of in-flight chunks.
    """

    def __init__(self, world: Path, *, clock: int | None = None) -> None:
        self.world = Path(world)
        self.clock = int(time.time()) if clock is None else clock
        directory = Path(world) / STATE_DIR
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{world}: no lab state ({STATE_DIR}/{MANIFEST}); write one with 'ringfsck lab generate'")
        manifest = json.loads(manifest_path.read_text())
        self.sizes = tuple(manifest.get("sizes", DEFAULT_SIZES))
        if manifest.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{manifest_path}: lab state format {manifest.get('format')}, expected {FORMAT_VERSION}: generate the world again"
            )
        self.arc_keys = np.load(directory / "arc_keys.npy", mmap_mode="r")
        self.split_keys = np.load(directory / "split_keys.npy", mmap_mode="r")
        self.split_bodies = pa.ipc.open_file(pa.memory_map(str(directory / "split_bodies.arrow"))).read_all().column("body")
        self.main_chunks = np.load(directory / "main_chunks.npy", mmap_mode="r")
        self.main_chunk_mtimes = np.load(directory / "main_chunk_mtimes.npy", mmap_mode="r")
        self.nodes = [NodeListing.from_json(node) for node in manifest["nodes"]]
        self.buckets: dict[str, Bucket] = {}
        for name, info in manifest["buckets"].items():
            table = pa.ipc.open_file(pa.memory_map(str(directory / info["file"]))).read_all() if info["file"] else None
            self.buckets[name] = Bucket(name, info["raft_session"], table)

    @staticmethod
    def _find(keys: np.ndarray, key: str) -> int | None:
        wanted = key.encode("ascii", "replace")
        i = int(np.searchsorted(keys, wanted))
        return i if i < len(keys) and keys[i] == wanted else None

    def split_body(self, input_key: str) -> bytes | None:
        """The raw index of a split input key, None if it is not a split index."""
        i = self._find(self.split_keys, input_key)
        return None if i is None else self.split_bodies[i].as_py()

    def knows_input_key(self, input_key: str) -> bool:
        return self._find(self.arc_keys, input_key) is not None

    def has_main_chunk(self, main_chunk: str) -> bool:
        return self._find(self.main_chunks, main_chunk) is not None

    def size_of(self, main_chunk: str) -> int:
        return logical_size(main_chunk, self.sizes)

    def chunk_mtime(self, main_chunk: str) -> int | None:
        """When the main chunk's chunks were written (epoch seconds), as the nodes report it; None if not on the RING."""
        i = self._find(self.main_chunks, main_chunk.upper())
        if i is None:
            return None
        stored = int(self.main_chunk_mtimes[i])
        return stored if stored >= 0 else self.clock + stored  # in flight: -age
