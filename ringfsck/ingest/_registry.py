"""The ingest loop shared by every file format: idempotence, rejects, source records.

A source is identified by its kind and location. Re-ingesting an unchanged
source (same size and checksum) does nothing; a changed one replaces its table
parts; a different location with the same content as an ingested source is a
duplicate (e.g. a node dump copied twice) and is skipped with a warning, so
nothing is ever counted twice.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, MutableSequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.errors import InputError
from ringfsck.ingest.inputs import Input, OpenedInput
from ringfsck.progress import bar
from ringfsck.store import Source, Store, arrow_schema, iso, utc_now

REJECTS_SCHEMA = arrow_schema("rejects")
# A 40-hex run (not part of a longer one): in a rejected row it may be an sproxyd key ringfsck cannot place.
_HEX_TOKEN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{40}(?![0-9A-Fa-f])")
_REJECT_FLUSH = 50_000
MAX_RAW_CHARS = 4096  # a reject keeps the start of a very long line, enough to see what it was


def hex_tokens(text: str) -> list[str]:
    """Every 40-hex token of a text, uppercased, in order, without repeats."""
    return list(dict.fromkeys(token.upper() for token in _HEX_TOKEN.findall(text)))


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
        """Record a rejected row; every 40-hex token of its whole text is kept as a reference."""
        self._pending.append((line, reason, raw[:MAX_RAW_CHARS], hex_tokens(raw)))
        self.count += 1
        if len(self._pending) >= _REJECT_FLUSH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        lines, reasons, raws, tokens = zip(*self._pending)
        table = pa.table(
            {"source": [self._location] * len(lines), "line": list(lines), "reason": list(reasons), "raw": list(raws), "keys": list(tokens)},
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
    incomplete: list[str] = field(default_factory=list)  # why the references this file brings are incomplete


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
    # Where the S3 sources just stored repeat references other sources hold (ringfsck.ingest.overlap).
    overlaps: list[str] = field(default_factory=list)

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
    verify_unchanged: Callable[[], None]  # raises if the input changed since it was opened

    def before_publishing(self, rows: int) -> None:
        """Call inside the part-writing block, so an empty file, or one that changed while read, never replaces a good part."""
        self.verify_unchanged()
        if rows == 0 and self.rejects.count == 0 and not self.allow_empty:
            raise InputError(f"{self.location}: empty input (no key rows)")


Parser = Callable[[OpenedInput, ParseContext], ParseResult]


def source_id(kind: str, location: str) -> str:
    return hashlib.sha256(f"{kind}\0{location}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IngestJob:
    """Files of one kind, and how to parse them."""

    kind: str
    files: list[Input]
    parse: Parser
    tables: tuple[str, ...]
    allow_empty: bool = False


def ingest_jobs(store: Store, jobs: list[IngestJob], *, workers: int | None = None) -> list[IngestReport]:
    """Ingest the files of every job on one pool of workers: one report per job.

    What to do with each file (unchanged, duplicate, parse) is decided first, in
    order, so that two copies of the same content in one call are caught too;
    the parsing then runs on ``workers`` (default: one per core), biggest files
    first so the cores finish together, and sources are recorded here.
    """
    known = {s.id: s for s in store.sources()}
    outcomes: list[list[FileOutcome | None]] = []
    for job in jobs:
        settled = [_settled(job.kind, file, known) for file in job.files]
        _mark_duplicates_within(job.kind, job.files, settled, known)
        outcomes.append(settled)
    pending = sorted(
        ((j, i) for j, settled in enumerate(outcomes) for i, outcome in enumerate(settled) if outcome is None),
        key=lambda ji: -jobs[ji[0]].files[ji[1]].size,
    )
    sizes = [jobs[j].files[i].size for j, i in pending]
    workers = max(1, min(len(pending), workers or os.cpu_count() or 1))
    forking = _forking(store, jobs, pending, workers)
    work = _Work(store, jobs, known, pending, shared_counters(len(pending)) if forking else [0] * len(pending))
    failure: BaseException | None = None
    # The pool first: forked workers must not inherit the progress bar's thread.
    with forked_pool(work, workers) if forking else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        # A forked worker finds the work where it was when it forked: only positions are sent to it.
        futures = {pool.submit(_parse_pending, position, *(() if forking else (work,))): position for position in range(len(pending))}
        kinds = " + ".join(job.kind for job in jobs)
        progress = bar(total=sum(f.size for job in jobs for f in job.files), desc=f"ingest {kinds}", unit="B", unit_scale=True)
        progress.update(sum(f.size for job, settled in zip(jobs, outcomes) for f, outcome in zip(job.files, settled) if outcome is not None))
        shown = [0] * len(pending)  # stored bytes on the bar, per file: it moves as they are read
        running = set(futures)

        def show(position: int, read: int) -> None:
            progress.update(max(read - shown[position], 0))
            shown[position] = max(read, shown[position])

        def stop(exc: BaseException) -> None:
            """The first error (or an interrupt) is raised once the files being parsed are settled."""
            nonlocal failure
            if failure is None:
                failure = exc
                for other in running:
                    other.cancel()

        try:
            while running:
                try:
                    done, running = wait(running, timeout=_PROGRESS_SECONDS, return_when=FIRST_COMPLETED)
                except KeyboardInterrupt as interrupt:
                    # Files already parsed are recorded, so no published part lacks its source; the
                    # others are abandoned (forked workers got the same interrupt, threads finish theirs).
                    stop(interrupt)
                    continue
                for position in range(len(pending)):
                    show(position, work.bytes_read[position])
                for future in done:
                    position = futures[future]
                    j, i = pending[position]
                    try:
                        source, outcome = future.result()
                    except CancelledError:
                        continue
                    except BaseException as exc:  # the others finish and are recorded
                        if isinstance(exc, InputError) and jobs[j].kind != "listkeys":
                            store.save_source(_failed_source(jobs[j].kind, jobs[j].files[i], exc))
                        stop(exc)
                        continue
                    store.save_source(source)
                    outcomes[j][i] = outcome
                    show(position, sizes[position])  # what was known, not read (an S3 ETag)
        finally:
            progress.close()
    if failure is not None:
        raise failure
    return [IngestReport(job.kind, [outcome for outcome in settled if outcome is not None]) for job, settled in zip(jobs, outcomes)]


# Files are parsed in worker processes forked from this one when that is possible and worth
# it: threads share one interpreter, and the Python glue between numpy and Arrow calls holds
# its lock often enough to leave a fifth of two cores idle. Possible: a local store and local
# files (no S3 client crosses a fork), Linux (a safe fork), and polars not yet loaded here
# (its thread pool does not survive a fork: the workers load it themselves when a file needs
# it). Small inputs stay on threads, where a fork would cost more than it saves.
_FORK_MIN_BYTES = 32 * 1024 * 1024
_PROGRESS_SECONDS = 0.2


@dataclass
class _Work:
    """The files to parse; forked workers inherit it (nothing is pickled but a position)."""

    store: Store
    jobs: list[IngestJob]
    known: dict[str, Source]
    pending: list[tuple[int, int]]  # (job, file) of each file to parse, in order of submission
    bytes_read: MutableSequence[int]  # stored bytes read so far, per file: shared memory with forked workers


_inherited: Any = None  # what forked workers work on (set in the parent before they fork)


def inherited_work() -> Any:
    """In a worker of :func:`forked_pool`: the work it was given."""
    assert _inherited is not None, "not in a forked worker"
    return _inherited


def fork_is_safe(store: Store) -> bool:
    """Whether workers may be forked from this process (see above): the one rule for files and RING nodes."""
    return (
        not store.on_s3
        and sys.platform.startswith("linux")  # macOS has fork, but its system libraries do not survive one
        and "polars" not in sys.modules
    )


def _forking(store: Store, jobs: list[IngestJob], pending: list[tuple[int, int]], workers: int) -> bool:
    files = [jobs[j].files[i] for j, i in pending]
    return (
        workers > 1
        and len(files) > 1
        and sum(f.size for f in files) >= _FORK_MIN_BYTES
        and all(f.local_path is not None for f in files)
        and fork_is_safe(store)
    )


def shared_counters(count: int) -> MutableSequence[int]:
    return multiprocessing.get_context("fork").RawArray("q", max(count, 1))


@contextmanager
def forked_pool(work: Any, workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` processes forked from this one, each finding ``work`` with :func:`inherited_work`.

    Call it from the main thread with no other thread running (a fork copies one thread only).
    """
    global _inherited
    _inherited = work
    try:
        # With fork, every worker is started at the first submit (before the progress bar exists).
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_start_worker, initargs=(os.getpid(),)) as pool:
            yield pool
    finally:
        _inherited = None


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_busy = False  # in a forked worker: working on a file or node (an interrupt must stop it and clean up)


@contextmanager
def busy_worker() -> Iterator[None]:
    """In a forked worker, while inside: Ctrl-C stops the work (an idle worker ignores it, see below)."""
    global _busy
    _busy = True
    try:
        yield
    finally:
        _busy = False


def _start_worker(parent_pid: int) -> None:
    """In a forked worker: exit when the ingest process dies, even by ``kill -9``; stop quietly on an interrupt.

    Without this a worker blocked on its work queue waits forever for a parent that is gone.
    The kernel delivers SIGKILL when the forking thread exits (the pool forks from the main
    thread, which lives as long as the process); a worker killed mid-file publishes nothing
    (parts are written to a temporary name first; the next writer removes it).
    """
    import ctypes

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's SIGTERM handling is the parent's
    signal.signal(signal.SIGINT, _interrupted_worker)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _interrupted_worker(signum: int, frame: object) -> None:
    """Ctrl-C (or the parent's SIGTERM, forwarded) in a forked worker: a file being parsed is abandoned
    cleanly. An idle worker, blocked on its queue, has nothing to stop: the parent shuts the pool down
    (dying there would break the pool, and with it the recording of files other workers finished)."""
    if _busy:
        raise KeyboardInterrupt


def _parse_pending(position: int, work: _Work | None = None) -> tuple[Source, FileOutcome]:
    """Parse the pending file at ``position`` of ``work`` (in a forked worker: the inherited work)."""
    forked = work is None
    work = work or inherited_work()
    assert isinstance(work, _Work)
    j, i = work.pending[position]
    job, file, counters = work.jobs[j], work.jobs[j].files[i], work.bytes_read

    def on_read(size: int) -> None:
        counters[position] += size

    prior = work.known.get(source_id(job.kind, file.location))
    with busy_worker() if forked else nullcontext():
        return _parse_one(work.store, job.kind, file, job.parse, job.tables, prior, job.allow_empty, on_read)


def _failed_source(kind: str, file: Input, error: InputError) -> Source:
    """The record of an S3 export that could not be read: its references are unknown, so every analysis
    stays incomplete until the file is ingested whole (its checksum never matches: it is read again)."""
    sid = source_id(kind, file.location)
    return Source(id=sid, kind=kind, location=file.location, size=0, checksum="failed", format="unreadable",
                  captured_at=iso(utc_now()), ingested_at=iso(utc_now()),
                  incomplete=[f"{error} (the references of this export are unknown until it is ingested whole)"])


def _settled(kind: str, file: Input, known: dict[str, Source]) -> FileOutcome | None:
    """The outcome of a file that needs no parsing (unchanged, or a copy of an ingested one), else None."""
    sid = source_id(kind, file.location)
    prior = known.get(sid)
    checksum: str | None = None
    if prior is not None and prior.size == file.size:
        checksum = file.checksum()
        if checksum == prior.checksum:
            return FileOutcome(file.location, "unchanged", prior.rows, prior.rejected, prior.skipped, prior.format)
    for twin in known.values():
        if twin.kind == kind and twin.size == file.size and twin.id != sid:
            checksum = checksum or file.checksum()
            if twin.checksum == checksum:
                return _duplicate(file, twin.location)
    return None


def _mark_duplicates_within(kind: str, files: list[Input], outcomes: list[FileOutcome | None], known: dict[str, Source]) -> None:
    """Among the files still to parse, a later file with the same content as an earlier one is a duplicate."""
    by_size: dict[int, list[int]] = {}
    for index, outcome in enumerate(outcomes):
        if outcome is None:
            by_size.setdefault(files[index].size, []).append(index)
    for group in by_size.values():
        if len(group) < 2:
            continue
        first_of: dict[str, str] = {}
        for index in group:
            checksum = files[index].checksum()
            if checksum in first_of:
                outcomes[index] = _duplicate(files[index], first_of[checksum])
            else:
                first_of[checksum] = files[index].location


def _duplicate(file: Input, twin_location: str) -> FileOutcome:
    warning = f"{file.location}: same content as already ingested {twin_location}; skipped"
    return FileOutcome(file.location, "duplicate", warnings=[warning])


def _parse_one(
    store: Store,
    kind: str,
    file: Input,
    parse: Parser,
    tables: tuple[str, ...],
    prior: Source | None,
    allow_empty: bool,
    on_read: Callable[[int], object] | None = None,
) -> tuple[Source, FileOutcome]:
    """Parse one file into its table parts (published atomically); the caller records the source."""
    sid = source_id(kind, file.location)
    size = file.size
    captured_at = iso(file.modified_at)
    rejects = RejectWriter(store, sid, file.location)
    try:
        with OpenedInput(file, on_read=on_read) as opened:
            result = parse(opened, ParseContext(store, sid, file.location, rejects, allow_empty, opened.verify_unchanged))
            checksum = opened.finish_checksum()
            opened.verify_unchanged()
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
        incomplete=result.incomplete,
    )
    return source, FileOutcome(file.location, "ingested", result.rows, rejects.count, result.skipped, result.format, result.warnings)
