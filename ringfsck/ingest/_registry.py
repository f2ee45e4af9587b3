"""The ingest loop shared by every file format: idempotence, rejects, source records.

A source is identified by its kind and location. Re-ingesting an unchanged
source (same size and checksum) does nothing; a changed one replaces its table
parts; a different location with the same content as an ingested source is a
duplicate (e.g. a node dump copied twice) and is skipped with a warning, so
nothing is ever counted twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.errors import InputError
from ringfsck.ingest.inputs import Input, OpenedInput
from ringfsck.progress import bar
from ringfsck.store import TABLES, Source, Store, iso, utc_now

REJECTS_SCHEMA = TABLES["rejects"]
_REJECT_FLUSH = 50_000
MAX_RAW_CHARS = 4096  # a reject keeps the start of a very long line, enough to see what it was


class RejectWriter:
    """Streams rejected rows of one source into its ``rejects`` table part."""

    def __init__(self, store: Store, source_id: str, location: str) -> None:
        self._store = store
        self._source_id = source_id
        self._location = location
        self._pending: list[tuple[int, str, str]] = []
        self._writer: pq.ParquetWriter | None = None
        self._context = store.writing_part("rejects", source_id)
        self._tmp = self._context.__enter__()
        self.count = 0

    def add(self, line: int, reason: str, raw: str) -> None:
        self._pending.append((line, reason, raw[:MAX_RAW_CHARS]))
        self.count += 1
        if len(self._pending) >= _REJECT_FLUSH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        lines, reasons, raws = zip(*self._pending)
        table = pa.table(
            {"source": [self._location] * len(lines), "line": list(lines), "reason": list(reasons), "raw": list(raws)},
            schema=REJECTS_SCHEMA,
        )
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, REJECTS_SCHEMA, compression="zstd")
        self._writer.write_table(table)
        self._pending.clear()

    def commit(self) -> None:
        """Publish the rejects part (or remove a stale one when there are none)."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._context.__exit__(None, None, None)
        else:
            self._context.__exit__(None, None, None)
            self._store.remove_part("rejects", self._source_id)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)
        self._context.__exit__(None, None, None)


@dataclass
class ParseResult:
    format: str
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class FileOutcome:
    location: str
    status: str  # ingested | unchanged | duplicate
    rows: int = 0
    rejected: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    format: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    kind: str
    files: list[FileOutcome] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def rejected(self) -> int:
        return sum(f.rejected for f in self.files)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def warnings(self) -> list[str]:
        return [w for f in self.files for w in f.warnings]


@dataclass
class ParseContext:
    """What a format parser needs to write one source."""

    store: Store
    source_id: str
    location: str
    rejects: RejectWriter
    allow_empty: bool

    def ensure_not_empty(self, rows: int) -> None:
        """Call inside the part-writing block, so an empty file never replaces a good part."""
        if rows == 0 and self.rejects.count == 0 and not self.allow_empty:
            raise InputError(f"{self.location}: empty input (no key rows)")


Parser = Callable[[OpenedInput, ParseContext], ParseResult]


def source_id(kind: str, location: str) -> str:
    return hashlib.sha256(f"{kind}\0{location}".encode()).hexdigest()[:16]


def ingest_files(
    store: Store,
    kind: str,
    files: list[Input],
    parse: Parser,
    tables: tuple[str, ...],
    *,
    allow_empty: bool = False,
) -> IngestReport:
    """Ingest each file with ``parse``; each file is published atomically, one at a time."""
    report = IngestReport(kind)
    known = {s.id: s for s in store.sources()}
    progress = bar(total=sum(f.size for f in files), desc=f"ingest {kind}", unit="B", unit_scale=True)
    try:
        for file in files:
            report.files.append(_ingest_one(store, kind, file, parse, tables, known, allow_empty))
            progress.update(file.size)
    finally:
        progress.close()
    return report


def _ingest_one(
    store: Store,
    kind: str,
    file: Input,
    parse: Parser,
    tables: tuple[str, ...],
    known: dict[str, Source],
    allow_empty: bool,
) -> FileOutcome:
    sid = source_id(kind, file.location)
    size = file.size
    checksum: str | None = None
    prior = known.get(sid)
    if prior is not None and prior.size == size:
        checksum = file.checksum()
        if checksum == prior.checksum:
            return FileOutcome(file.location, "unchanged", prior.rows, prior.rejected, prior.skipped, prior.format)
    twins = [s for s in known.values() if s.kind == kind and s.size == size and s.id != sid]
    if twins:
        checksum = checksum or file.checksum()
        for twin in twins:
            if twin.checksum == checksum:
                warning = f"{file.location}: same content as already ingested {twin.location}; skipped"
                return FileOutcome(file.location, "duplicate", warnings=[warning])
    captured_at = iso(file.modified_at)
    rejects = RejectWriter(store, sid, file.location)
    try:
        with OpenedInput(file) as opened:
            result = parse(opened, ParseContext(store, sid, file.location, rejects, allow_empty))
            checksum = opened.finish_checksum()
    except BaseException:
        rejects.abort()
        # parse published nothing or a complete part; an error must not leave a half source.
        for table in tables:
            if prior is None:
                store.remove_part(table, sid)
        raise
    rejects.commit()
    if rejects.count and rejects.count >= result.rows:
        result.warnings.append(f"{file.location}: {rejects.count} of {rejects.count + result.rows} rows rejected: is this the right kind of file?")
    source = Source(
        id=sid,
        kind=kind,
        location=file.location,
        size=size,
        checksum=checksum,
        format=result.format,
        captured_at=captured_at,
        ingested_at=iso(utc_now()),
        rows=result.rows,
        rejected=rejects.count,
        skipped=result.skipped,
        warnings=result.warnings,
    )
    store.save_source(source)
    known[sid] = source
    return FileOutcome(file.location, "ingested", result.rows, rejects.count, result.skipped, result.format, result.warnings)
