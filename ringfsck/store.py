"""The store: Parquet tables, the source registry and analysis runs under one directory.

Layout (one store per RING)::

    STORE/
      store.json                  format version
      sources.json                every ingested input: location, size, checksum, counts
      tables/listkeys/<source>.parquet    one part per input file (re-ingest replaces it)
      tables/s3keys/<source>.parquet
      tables/s3_other_locations/<source>.parquet
      tables/rejects/<source>.parquet
      tables/splits/<batch>.parquet       resolve results, appended in batches
      tables/sizes/<batch>.parquet        orphan sizes, appended in batches
      bucketd/<source>.json       bucketd export progress (resume marker)
      journal/<manifest>/<segment>.jsonl  deletion outcomes
      runs/<run-id>/{ring_main_chunks,orphans,gaps,debris,duplicates}.parquet, summary.json
      runs/<run-id>/size_reading.json, capacity.json   what X-Scal-Size measures, orphan capacity (``size``)
      runs/LATEST                 id of the newest analysis
      .lock                       the writer lock (Store.lock): one changing command at a time
      tmp/                        DuckDB spill space

The same layout serves a store on S3 (``s3://bucket/prefix``): it is worked on in
a local mirror and every file the store publishes is uploaded at once
(:mod:`ringfsck.store_mirror`). So files are written only through Store methods
(``writing_part``, ``write_json``, ``write_text``, ``publish``, ``remove``).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ringfsck.config import Settings
from ringfsck.errors import InputError, RefusedError, no_space_error
from ringfsck.steps import RUN_OUTPUTS, RUN_VIEWS, load_macros, step_query, step_sql, view_files

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from ringfsck.store_mirror import S3Mirror

# 2: listkeys keys packed as integers (ringfsck.packed_keys).
# 3: s3keys.on_ring (which references the gap check judges), rejects.keys (40-hex tokens of a
#    rejected row, still references), sources' incomplete reasons.
STORE_FORMAT = 3
# The format of a per-bucket CSV export (ringfsck.ingest.s3keys): its object names may be percent-encoded.
CSV_EXPORT_FORMAT = "s3keys-csv"
LOCK_FILE = ".lock"  # hidden: never mirrored to S3

# Column contracts of the ingested tables (DuckDB types): the types of the views, and
# (arrow_schema) the Parquet schemas every writer uses. Plain data, so that commands that
# only query (analyze, sql) need not import Arrow.
TABLE_SCHEMAS: dict[str, dict[str, str]] = {
    # RING keys packed as (hi, mid, lo) integers: see ringfsck.packed_keys; the listkeys view shows hex.
    "listkeys": {
        "chunk_key_hi": "UBIGINT",
        "chunk_key_mid": "UBIGINT",
        "chunk_key_lo": "UINTEGER",
        "main_chunk_hi": "UBIGINT",
        "main_chunk_mid": "UBIGINT",
        "main_chunk_lo": "UINTEGER",
        "disk": "VARCHAR",
        "flag": "INTEGER",
        "source": "VARCHAR",
    },
    "s3keys": {
        "bucket": "VARCHAR",
        "object_key": "VARCHAR",
        "version_id": "VARCHAR",
        "sproxyd_key": "VARCHAR",
        "size": "BIGINT",
        "last_modified": "TIMESTAMPTZ",
        "mpu_part": "BOOLEAN",
        "source": "VARCHAR",
        "line": "BIGINT",
        # true: a RING location (dataStoreType scality, or none); false: another backend's key that looks
        # like an sproxyd key (a reference for the orphan check only); NULL: unknown (file exports): judged as RING.
        "on_ring": "BOOLEAN",
    },
    "s3_other_locations": {
        "bucket": "VARCHAR",
        "object_key": "VARCHAR",
        "version_id": "VARCHAR",
        "data_store_name": "VARCHAR",
        "data_store_type": "VARCHAR",
        "location_key": "VARCHAR",
        "size": "BIGINT",
        "source": "VARCHAR",
    },
    # keys: every 40-hex token of the whole rejected text (raw is cut at MAX_RAW_CHARS): they stay references.
    "rejects": {"source": "VARCHAR", "line": "BIGINT", "reason": "VARCHAR", "raw": "VARCHAR", "keys": "VARCHAR[]"},
    "splits": {
        "input_key": "VARCHAR",
        "status": "VARCHAR",
        "is_split": "BOOLEAN",
        "subkeys": "VARCHAR[]",
        "error": "VARCHAR",
        "resolved_at": "TIMESTAMPTZ",
    },
    "sizes": {"ring_key": "VARCHAR", "size": "BIGINT", "status": "VARCHAR", "error": "VARCHAR", "sized_at": "TIMESTAMPTZ"},
}
# Columns stored dictionary-encoded (a handful of distinct values in millions of rows).
_DICTIONARY_COLUMNS = {"listkeys": ("disk", "source")}


@functools.cache
def arrow_schema(table: str) -> pa.Schema:
    """The Parquet schema of an ingested table."""
    import pyarrow as pa

    types = {
        "VARCHAR": pa.string(),
        "BIGINT": pa.int64(),
        "INTEGER": pa.int32(),
        "UBIGINT": pa.uint64(),
        "UINTEGER": pa.uint32(),
        "BOOLEAN": pa.bool_(),
        "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
        "VARCHAR[]": pa.list_(pa.string()),
    }
    dictionary = _DICTIONARY_COLUMNS.get(table, ())
    return pa.schema(
        [
            (name, pa.dictionary(pa.int32(), types[kind]) if name in dictionary else types[kind])
            for name, kind in TABLE_SCHEMAS[table].items()
        ]
    )


# What srebuildd's X-Scal-Size measures (docs/domain.md section 7), as ``size`` measured it for a run
# (ringfsck.sizing): an ARC main chunk's header is the object's size ("object") or one chunk's, about
# size / k ("chunk"). Without a decided measurement the capacity is computed with the assumed reading.
SIZE_READING_FILE = "size_reading.json"
ASSUMED_SIZE_READING = "object"
SIZE_READINGS = ("object", "chunk")


def applied_size_reading(measurement: dict[str, Any] | None) -> str:
    """The reading capacity is computed with: the measured decision, else the assumption."""
    decision = (measurement or {}).get("decision")
    return decision if decision in SIZE_READINGS else ASSUMED_SIZE_READING


@dataclass
class Source:
    """One ingested input (a file, an S3 object or a bucketd export)."""

    id: str
    kind: str  # listkeys | s3keys | bucketd
    location: str
    size: int
    checksum: str
    format: str
    captured_at: str  # when the data was taken (file mtime or export start), ISO UTC
    ingested_at: str
    rows: int = 0
    rejected: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Why this source leaves the reference set incomplete (an export that logged a lost object, an
    # interrupted scan…): each makes any analysis over it incomplete, with no override.
    incomplete: list[str] = field(default_factory=list)
    # What the kind of input adds (a RING node's listing: ring, node, address, listing window…).
    details: dict[str, Any] = field(default_factory=dict)
    # A native RING listing's ``mtime_max`` (ISO UTC): no chunk written after it is listed, which
    # is evidence of age for a key srebuildd gives no X-Scal-Mtime for (ringfsck.deleter).
    mtime_max: str | None = None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def one_row(con: duckdb.DuckDBPyConnection, query: str, parameters: list[Any] | None = None) -> tuple[Any, ...]:
    """The row of a query that always gives exactly one (an aggregate)."""
    row = con.execute(query, parameters or []).fetchone()
    if row is None:
        raise AssertionError(f"an aggregate gave no row: {query}")
    return row


def scalar(con: duckdb.DuckDBPyConnection, query: str, parameters: list[Any] | None = None) -> Any:
    """The value of a one-row, one-column query (a count, a sum)."""
    return one_row(con, query, parameters)[0]


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def empty_select(columns: dict[str, str]) -> str:
    """A typed, empty SELECT with the given columns (views of tables not written yet)."""
    cols = ", ".join(f"NULL::{ctype} AS {name}" for name, ctype in columns.items())
    return f"SELECT {cols} WHERE false"


class Store:
    """A ringfsck store: a local directory, or the local mirror of an S3 prefix."""

    def __init__(self, root: Path, settings: Settings | None = None, *, mirror: S3Mirror | None = None) -> None:
        self.root = root
        self.settings = settings or Settings(store=str(root))
        self._mirror = mirror
        self._lock: IO[str] | None = None

    # --- one writer at a time ---------------------------------------------
    def lock(self, holder: str) -> None:
        """Take the store's writer lock (held until ``unlock`` or the process ends); refuse if another holds it.

        Two commands changing one store at once (two ingests, an ingest beside a delete) would
        interleave their source records and journals. Readers need no lock: every file is
        published whole. A store on S3 is locked through its local mirror: against a second
        writer on this machine only.
        """
        import fcntl

        if self._lock is not None:
            return
        try:
            handle = open(self.root / LOCK_FILE, "a+", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{self.location}: cannot take the writer lock {LOCK_FILE}: {exc.strerror}") from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "another process"
            handle.close()
            raise RefusedError(f"{self.location}: in use by {other}; one ringfsck command at a time may change a store") from None
        handle.truncate(0)
        handle.write(f"{holder} (pid {os.getpid()}, since {iso(utc_now())})")
        handle.flush()
        self._lock = handle
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """What a writer killed outright (``kill -9``, a power cut) left half-written: never published, now removed.

        Only the lock holder writes, so with the lock taken no temporary part or unpublished run is in flight.
        """
        import shutil

        for tmp in self.root.glob("tables/*/.*.tmp"):
            tmp.unlink(missing_ok=True)
        latest = self.latest_run_id()
        for run in self.root.glob("runs/*/"):
            if run.name != latest and not (run / "summary.json").exists():
                shutil.rmtree(run, ignore_errors=True)

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    # --- opening ----------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings, *, create: bool = True) -> Store:
        """Open the configured store; ``create=False`` (commands that only read) never creates nor changes one."""
        location = settings.store_location
        mirror = None
        if location.startswith("s3://"):
            from ringfsck.store_mirror import S3Mirror

            mirror = S3Mirror.open(location, settings)
            root = mirror.root
        else:
            root = Path(location).expanduser()
        store = cls(root, settings, mirror=mirror)
        marker = root / "store.json"
        if not marker.exists():
            if not create:
                raise InputError(f"no store at {store.location} (check --store or the config's store; 'ringfsck ingest' creates one)")
            if root.exists() and not root.is_dir():
                raise InputError(f"{root}: exists and is not a directory")
            root.mkdir(parents=True, exist_ok=True)
            store.write_json(marker, {"format": STORE_FORMAT, "id": uuid.uuid4().hex, "created_at": iso(utc_now())})
        else:
            fmt = json.loads(marker.read_text()).get("format")
            if fmt != STORE_FORMAT:
                raise InputError(
                    f"{store.location}: store format {fmt} is not supported by this ringfsck (expects {STORE_FORMAT}); "
                    "ingest the inputs again into a new store"
                )
        return store

    @property
    def location(self) -> str:
        """Where the store lives, for messages: its directory or its ``s3://`` prefix."""
        return str(self._mirror) if self._mirror else str(self.root)

    @property
    def on_s3(self) -> bool:
        return self._mirror is not None

    def location_of(self, path: Path) -> str:
        """Where a file of the store lives (its S3 URL for a store on S3)."""
        return str(self._mirror.url_of(path)) if self._mirror else str(path)

    # --- publishing: every write under root goes through these -------------
    def publish(self, path: Path) -> None:
        """Make a file just written (atomically) under the root durable where the store lives."""
        if self._mirror is not None:
            self._mirror.publish(path)

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        if self._mirror is not None:
            self._mirror.remove(path)

    def write_text(self, path: Path, text: str) -> None:
        write_text_atomic(path, text)
        self.publish(path)

    def write_json(self, path: Path, data: Any) -> None:
        write_json_atomic(path, data)
        self.publish(path)

    @property
    def store_id(self) -> str:
        """A stable identity, so a manifest cannot be replayed against another store (written at creation)."""
        marker = self.root / "store.json"
        store_id = json.loads(marker.read_text()).get("id")
        if not store_id:
            raise InputError(f"{self.location_of(marker)}: no store id (the file was edited by hand?)")
        return str(store_id)

    # --- tables -----------------------------------------------------------
    def table_dir(self, table: str) -> Path:
        path = self.root / "tables" / table
        path.mkdir(parents=True, exist_ok=True)
        return path

    def part_path(self, table: str, part: str) -> Path:
        return self.table_dir(table) / f"{part}.parquet"

    def has_parts(self, table: str) -> bool:
        directory = self.root / "tables" / table
        return directory.is_dir() and any(directory.glob("*.parquet"))

    def parts_glob(self, table: str) -> str:
        return str(self.root / "tables" / table / "*.parquet")

    def remove_part(self, table: str, part: str) -> None:
        self.remove(self.part_path(table, part))

    def part_names(self, table: str, pattern: str = "*") -> list[str]:
        """Names of the table's parts matching a glob pattern (without ``.parquet``)."""
        directory = self.root / "tables" / table
        return sorted(p.stem for p in directory.glob(f"{pattern}.parquet")) if directory.is_dir() else []

    @contextmanager
    def writing_part(self, table: str, part: str) -> Iterator[Path]:
        """Yield a temporary path; on success it atomically becomes the table part."""
        final = self.part_path(table, part)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            with naming_a_full_disk(self.location_of(final)):
                yield tmp
                if tmp.exists():
                    _fsync_file(tmp)
                    os.replace(tmp, final)
                    self.publish(final)
        finally:
            tmp.unlink(missing_ok=True)

    def new_batch_id(self) -> str:
        """Sortable id for appended batches (later batches win)."""
        return f"{utc_now().strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"

    # --- sources ----------------------------------------------------------
    @property
    def _sources_file(self) -> Path:
        return self.root / "sources.json"

    def sources(self) -> list[Source]:
        if not self._sources_file.exists():
            return []
        return [Source(**item) for item in json.loads(self._sources_file.read_text())]

    def save_source(self, source: Source) -> None:
        self.save_sources([source])

    def save_sources(self, sources: list[Source]) -> None:
        """Record sources, each replacing the record of its id, in one write of the sources file."""
        replaced = {source.id for source in sources}
        others = [s for s in self.sources() if s.id not in replaced]
        self.write_json(self._sources_file, [asdict(s) for s in [*others, *sources]])

    def find_source(self, name: str) -> Source:
        """The source whose id or location is ``name`` (as ``ringfsck sql "select * from sources"`` shows them)."""
        for source in self.sources():
            if name in (source.id, source.location):
                return source
        raise InputError(f'{self.location}: no source {name!r} (list them with: ringfsck sql "select id, kind, location from sources")')

    def forget_source(self, source: Source) -> list[str]:
        """Remove a source from the store: every table part it brought, its bucketd progress marker, then its record.

        The record goes last: a forget interrupted halfway leaves the source recorded (and is simply
        run again), never parts of no source. Returns the files removed.
        """
        removed = []
        tables = self.root / "tables"
        for table in sorted(p.name for p in tables.iterdir() if p.is_dir()) if tables.is_dir() else []:
            # A file's parts are named by its source id; a bucketd export's pages by the id and the page.
            for part in self.part_names(table, source.id) + self.part_names(table, f"{source.id}-*"):
                self.remove_part(table, part)
                removed.append(f"tables/{table}/{part}.parquet")
        marker = self.bucketd_progress_file(source.id)
        if marker.exists():
            self.remove(marker)
            removed.append(f"bucketd/{marker.name}")
        self.write_json(self._sources_file, [asdict(s) for s in self.sources() if s.id != source.id])
        return removed

    # --- bucketd export progress --------------------------------------------
    def bucketd_progress_file(self, source_id: str) -> Path:
        """The progress marker of one bucket's bucketd export (ringfsck.ingest.bucketd), to resume it."""
        return self.root / "bucketd" / f"{source_id}.json"

    def bucketd_progress(self) -> dict[str, dict[str, Any]]:
        """Every bucketd export's progress marker, by source id (``complete`` says whether it finished)."""
        directory = self.root / "bucketd"
        markers = sorted(directory.glob("*.json")) if directory.is_dir() else []
        return {marker.stem: json.loads(marker.read_text()) for marker in markers}

    # --- runs -------------------------------------------------------------
    @property
    def runs_dir(self) -> Path:
        path = self.root / "runs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_run_dir(self) -> tuple[str, Path]:
        run_id = f"{utc_now().strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"
        path = self.runs_dir / run_id
        path.mkdir(parents=True)
        return run_id, path

    def discard_run(self, run_id: str) -> None:
        """Remove the folder of a run that failed before it was published (a full disk, an interrupt)."""
        import shutil

        if self.latest_run_id() != run_id:  # never the latest: LATEST names published runs only
            shutil.rmtree(self.root / "runs" / run_id, ignore_errors=True)

    def set_latest_run(self, run_id: str) -> None:
        """Publish the run's files, then point LATEST at it (so LATEST never names a half-uploaded run)."""
        if self._mirror is not None:
            self._mirror.publish_tree(self.runs_dir / run_id)
            self._mirror.mark_run_pulled(run_id)
        self.write_text(self.runs_dir / "LATEST", run_id + "\n")

    def run_ids(self) -> list[str]:
        """Every analysis run of the store, oldest first (run ids begin with their UTC start time)."""
        directory = self.root / "runs"
        return sorted(p.parent.name for p in directory.glob("*/summary.json")) if directory.is_dir() else []

    def latest_run_id(self) -> str | None:
        marker = self.root / "runs" / "LATEST"
        return marker.read_text().strip() if marker.exists() else None

    def run_dir(self, run_id: str) -> Path:
        path = self.root / "runs" / run_id
        if not (path / "summary.json").is_file():
            raise InputError(f"{self.location}: no analysis run {run_id!r}")
        if self._mirror is not None:
            self._mirror.pull_run(run_id)
        return path

    def size_reading(self, run_id: str) -> dict[str, Any] | None:
        """The X-Scal-Size measurement ``size`` saved for a run (ringfsck.sizing), None if never measured."""
        path = self.run_dir(run_id) / SIZE_READING_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def save_size_reading(self, run_id: str, measurement: dict[str, Any]) -> None:
        self.write_json(self.run_dir(run_id) / SIZE_READING_FILE, measurement)

    def run_summary(self, run_id: str | None = None) -> dict[str, Any]:
        run_id = run_id or self.latest_run_id()
        if run_id is None:
            raise InputError(f"{self.location}: no analysis yet (run 'ringfsck analyze' first)")
        return json.loads((self.run_dir(run_id) / "summary.json").read_text())

    # --- DuckDB -----------------------------------------------------------
    @property
    def temp_dir(self) -> Path:
        """DuckDB's spill space (DuckDB creates it when it first spills)."""
        configured = self.settings.duckdb.temp_directory
        return Path(configured) if configured else self.root / "tmp"

    def connect(self, *, run_id: str | None = None, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the store's views (the ``ringfsck sql`` contract).

        ``read_only``: files are reachable under the store only, and the configuration is locked (a
        query cannot lift that). DuckDB still lets a ``COPY`` write there: ``ringfsck sql`` runs
        only statements that read.
        """
        import duckdb  # ingesting needs no DuckDB: imported by the commands that query

        con = duckdb.connect(":memory:")
        db = self.settings.duckdb
        con.execute(f"SET temp_directory = {sql_literal(str(self.temp_dir))}")
        if db.memory_limit:
            con.execute(f"SET memory_limit = {sql_literal(db.memory_limit)}")
        if db.threads:
            con.execute(f"SET threads = {int(db.threads)}")
        con.execute("SET preserve_insertion_order = false")
        # DuckDB's own progress bar writes to stdout, which must stay clean for --json and --format.
        con.execute("SET enable_progress_bar = false")
        load_macros(con)
        self.create_views(con, run_id=run_id)
        if read_only:
            con.execute(f"SET allowed_directories = [{sql_literal(str(self.root.resolve()) + os.sep)}]")
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        return con

    def table_select(self, table: str) -> str:
        columns = TABLE_SCHEMAS[table]
        if not self.has_parts(table):
            return empty_select(columns)
        cols = ", ".join(columns)
        return f"SELECT {cols} FROM read_parquet({sql_literal(self.parts_glob(table))}, union_by_name = true)"

    def create_views(self, con: duckdb.DuckDBPyConnection, *, run_id: str | None = None) -> None:
        """The tables as stored, the run's outputs, then the views of ``sql/views/`` over them."""
        # listkeys_packed is the table as stored (keys as integers); the listkeys view shows them in hex.
        con.execute(f"CREATE OR REPLACE VIEW listkeys_packed AS {self.table_select('listkeys')}")
        for table in ("s3keys", "s3_other_locations", "rejects"):
            con.execute(f"CREATE OR REPLACE VIEW {table} AS {self.table_select(table)}")
        # splits and sizes are appended in batches: the splits and sizes views keep the newest per key.
        con.execute(f"CREATE OR REPLACE VIEW splits_log AS {self.table_select('splits')}")
        con.execute(f"CREATE OR REPLACE VIEW sizes_log AS {self.table_select('sizes')}")
        sources = [asdict(s) for s in self.sources()]
        con.execute(
            "CREATE OR REPLACE TABLE sources (id VARCHAR, kind VARCHAR, location VARCHAR, size BIGINT, checksum VARCHAR, "
            "format VARCHAR, captured_at TIMESTAMPTZ, ingested_at TIMESTAMPTZ, rows BIGINT, rejected BIGINT)"
        )
        if sources:
            con.executemany(
                "INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        s["id"],
                        s["kind"],
                        s["location"],
                        s["size"],
                        s["checksum"],
                        s["format"],
                        s["captured_at"],
                        s["ingested_at"],
                        s["rows"],
                        s["rejected"],
                    ]
                    for s in sources
                ],
            )
        run_id = run_id or self.latest_run_id()
        run_path = self.run_dir(run_id) if run_id else None
        for output, columns in RUN_OUTPUTS.items():
            file = run_path / f"{output}.parquet" if run_path else None
            if file and file.exists():  # runs before candidates became a view have the file
                select = f"SELECT * FROM read_parquet({sql_literal(str(file))})"
            elif output in RUN_VIEWS and run_path and (run_path / "ring_main_chunks.parquet").exists():
                select = step_sql(output)
            else:
                select = empty_select(columns)
            con.execute(f"CREATE OR REPLACE VIEW {output} AS {select}")
        # What the views of sql/views/ take from the settings and the run.
        threshold = self.settings.split_threshold
        con.execute(f"SET VARIABLE split_threshold = {int(threshold) if threshold else 'NULL'}::BIGINT")
        con.execute(f"SET VARIABLE csv_export_format = {sql_literal(CSV_EXPORT_FORMAT)}")
        reading = applied_size_reading(self.size_reading(run_id) if run_id else None)
        con.execute(f"SET VARIABLE size_reading = {sql_literal(reading)}")
        for name, path in view_files():
            con.execute(f"CREATE OR REPLACE VIEW {name} AS {step_query(path)}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextmanager
def naming_a_full_disk(path: str) -> Iterator[None]:
    """A full disk while writing ``path`` is one line naming it (Arrow's and Python's errors name no file)."""
    try:
        yield
    except Exception as exc:
        full = no_space_error(exc, path)
        if full is None:
            raise
        raise full from None


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with naming_a_full_disk(str(path)), os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
