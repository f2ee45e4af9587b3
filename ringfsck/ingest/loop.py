"""The ingest loop shared by every file format: which files to parse, parsing them on a pool, recording their sources.

What to do with each file (unchanged, duplicate: ``ringfsck.ingest.identity``) is decided
first; the others are parsed on forked workers (``ringfsck.ingest.workers``) or threads, each
into its table parts and its rejects (``ringfsck.ingest.rejects``), and their sources are
recorded here, one at a time, as they finish.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableSequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

from ringfsck.errors import InputError
from ringfsck.ingest.identity import FileOutcome, failed_source, mark_duplicates_within, settled_outcome, source_id
from ringfsck.ingest.inputs import Input, OpenedInput
from ringfsck.ingest.parsing import ParseContext, Parser
from ringfsck.ingest.rejects import writing_rejects
from ringfsck.ingest.workers import busy_worker, fork_is_safe, forked_pool, inherited_work, settle_all, shared_counters
from ringfsck.progress import bar
from ringfsck.store import Source, Store, iso, utc_now


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
        settled = [settled_outcome(job.kind, file, known) for file in job.files]
        mark_duplicates_within(job.files, settled)
        outcomes.append(settled)
    pending = sorted(
        ((j, i) for j, settled in enumerate(outcomes) for i, outcome in enumerate(settled) if outcome is None),
        key=lambda ji: -jobs[ji[0]].files[ji[1]].size,
    )
    sizes = [jobs[j].files[i].size for j, i in pending]
    workers = max(1, min(len(pending), workers or os.cpu_count() or 1))
    forking = _forking(store, jobs, pending, workers)
    work = _Work(store, jobs, known, pending, shared_counters(len(pending)) if forking else [0] * len(pending))
    # The pool first: forked workers must not inherit the progress bar's thread.
    with forked_pool(work, workers) if forking else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest") as pool:
        # A forked worker finds the work where it was when it forked: only positions are sent to it.
        futures = {pool.submit(_parse_pending, position, *(() if forking else (work,))): position for position in range(len(pending))}
        kinds = " + ".join(job.kind for job in jobs)
        progress = bar(total=sum(f.size for job in jobs for f in job.files), desc=f"ingest {kinds}", unit="B", unit_scale=True)
        progress.update(
            sum(f.size for job, settled in zip(jobs, outcomes) for f, outcome in zip(job.files, settled) if outcome is not None)
        )
        shown = [0] * len(pending)  # stored bytes on the bar, per file: it moves as they are read

        def show(position: int, read: int) -> None:
            progress.update(max(read - shown[position], 0))
            shown[position] = max(read, shown[position])

        def show_all() -> None:
            for position in range(len(pending)):
                show(position, work.bytes_read[position])

        def record(position: int, parsed: tuple[Source, FileOutcome]) -> None:
            j, i = pending[position]
            source, outcome = parsed
            store.save_source(source)
            outcomes[j][i] = outcome
            show(position, sizes[position])  # what was known, not read (an S3 ETag)

        def record_failure(position: int, exc: BaseException) -> None:
            j, i = pending[position]
            if isinstance(exc, InputError) and jobs[j].kind != "listkeys":
                store.save_source(failed_source(jobs[j].kind, jobs[j].files[i], exc))

        try:
            # Files already parsed are recorded, so no published part lacks its source.
            settle_all(futures, on_result=record, on_error=record_failure, on_tick=show_all)
        finally:
            progress.close()
    return [IngestReport(job.kind, [outcome for outcome in settled if outcome is not None]) for job, settled in zip(jobs, outcomes)]


# Files are parsed on forked workers when that is possible (``fork_is_safe``, and local files:
# no S3 client crosses a fork) and worth it: small inputs stay on threads, where a fork would
# cost more than it saves.
_FORK_MIN_BYTES = 32 * 1024 * 1024


@dataclass
class _Work:
    """The files to parse; forked workers inherit it (nothing is pickled but a position)."""

    store: Store
    jobs: list[IngestJob]
    known: dict[str, Source]
    pending: list[tuple[int, int]]  # (job, file) of each file to parse, in order of submission
    bytes_read: MutableSequence[int]  # stored bytes read so far, per file: shared memory with forked workers


def _forking(store: Store, jobs: list[IngestJob], pending: list[tuple[int, int]], workers: int) -> bool:
    files = [jobs[j].files[i] for j, i in pending]
    return (
        workers > 1
        and len(files) > 1
        and sum(f.size for f in files) >= _FORK_MIN_BYTES
        and all(f.local_path is not None for f in files)
        and fork_is_safe(store)
    )


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
    with writing_rejects(store, sid, file.location) as rejects:
        try:
            with OpenedInput(file, on_read=on_read) as opened:
                result = parse(opened, ParseContext(store, sid, file.location, rejects, allow_empty, opened.verify_unchanged))
                checksum = opened.finish_checksum()
                opened.verify_unchanged()
        except BaseException:
            # parse published nothing or a complete part; an error must not leave a half source.
            for table in tables:
                if prior is None:
                    store.remove_part(table, sid)
            raise
    if rejects.count and rejects.count >= result.rows:
        result.warnings.append(
            f"{file.location}: {rejects.count} of {rejects.count + result.rows} rows rejected: is this the right kind of file?"
        )
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
