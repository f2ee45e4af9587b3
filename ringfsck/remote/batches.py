"""Resumable per-key HTTP jobs: ask only what is not final yet, persist answers in batches.

``resolve`` (split lookups) and ``size`` (orphan sizes) share this loop: the keys
still to ask come from a SQL query over the store, answers are appended to a
table as batch parts before they are counted, so a killed run loses at most the
requests in flight and a re-run never asks a final key again.

On a machine with several cores the keys are split by key range (their leading
hex digits) over forked worker processes: one event loop saturates a core long
before the servers do. Each worker has its own connections to every endpoint,
its share of the concurrency and of the ``max_rps`` ceilings (so that together
they keep them), sets endpoints aside on its own evidence and writes its own
parts. A worker that dies breaks the pool: the keys no worker answered are then
asked by this process, as a single-process run would.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableSequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.ingest.workers import busy_worker, fork_is_safe, forked_pool, inherited_work, settle_all, shared_counters
from ringfsck.progress import bar
from ringfsck.remote.http import Endpoint, EndpointPool, EndpointStats, HttpPolicy, Result, run_batched
from ringfsck.store import Store, scalar, sql_literal

_FETCH = 50_000
# Below this many keys a run stays in one process unless told otherwise: a worker's start (its
# fork, the pages it copies) costs ~0.1-0.2 s of CPU, ~15 us per key of a 22,000-key run, measured here.
_FORK_MIN_KEYS = 100_000
_RANGE_DIGITS = 4  # leading hex digits that place a key in a worker's range


@dataclass
class JobReport:
    """What one run asked and learned."""

    requested: int = 0
    outcomes: Counter = field(default_factory=Counter)  # status -> keys
    already_final: int = 0
    seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)  # EndpointStats.to_json() of each endpoint asked
    processes: int = 1  # client processes that asked the keys

    @property
    def errors(self) -> int:
        return self.outcomes.get("error", 0)

    @property
    def rate(self) -> float:
        return self.requested / self.seconds if self.seconds else 0.0

    def add(self, other: JobReport) -> None:
        """Count a worker's figures in (its endpoints are merged by the pool, not here)."""
        self.requested += other.requested
        self.outcomes.update(other.outcomes)
        self.first_errors.extend(other.first_errors[: 5 - len(self.first_errors)])


def _keys(store: Store, query: str) -> Iterator[str]:
    cursor = store.connect().execute(query)
    while rows := cursor.fetchmany(_FETCH):
        for (key,) in rows:
            yield key


def key_range_bounds(processes: int) -> list[str]:
    """Where each worker's key range starts, past the first: ``processes`` ranges of leading hex digits.

    Compared as text, so that every key falls in exactly one range whatever it holds.
    """
    return [f"{i * 16**_RANGE_DIGITS // processes:0{_RANGE_DIGITS}X}" for i in range(1, processes)]


@dataclass
class _Job:
    """One job's table, questions and rows: what the single process and each forked worker run."""

    store: Store
    table: str
    schema: pa.Schema
    ask: Callable[[Endpoint, str], Awaitable[Any]]
    to_row: Callable[[str, Any], dict[str, Any]]
    failed_row: Callable[[str, str], dict[str, Any]]

    def run(
        self, keys: Iterator[str], endpoints: EndpointPool, policy: HttpPolicy, report: JobReport, advance: Callable[[int], Any]
    ) -> None:
        def save(batch: list[Result[str, Any]]) -> None:
            rows = []
            for result in batch:
                if result.failure is not None:
                    row = self.failed_row(result.item, result.failure.reason)
                    if len(report.first_errors) < 5:
                        report.first_errors.append(result.failure.reason)
                else:
                    row = self.to_row(result.item, result.value)
                report.outcomes[row["status"]] += 1
                rows.append(row)
            with self.store.writing_part(self.table, self.store.new_batch_id()) as tmp:
                pq.write_table(pa.Table.from_pylist(rows, schema=self.schema), tmp, compression="zstd")
            report.requested += len(batch)
            advance(len(batch))

        run_batched(keys, self.ask, policy=policy, base_url=endpoints, on_batch=save)


@dataclass
class _Forked:
    """What forked workers inherit: the job, each worker's keys, its share of the policy, and how far each got."""

    job: _Job
    endpoints: EndpointPool
    policy: HttpPolicy  # each worker's share
    parts: list[Path]  # per worker: the directory of its keys
    done: MutableSequence[int]  # per worker: keys answered and saved


def _run_range(position: int) -> tuple[JobReport, list[EndpointStats]]:
    """In a forked worker: ask the keys of its range; its figures go back to the parent."""
    forked: _Forked = inherited_work()
    with busy_worker():
        endpoints = forked.endpoints.for_process(forked.policy)
        report = JobReport()

        def advance(count: int) -> None:
            forked.done[position] += count

        def keys() -> Iterator[str]:
            for file in sorted(forked.parts[position].glob("*.parquet")):
                for batch in pq.ParquetFile(file).iter_batches(batch_size=_FETCH, columns=["key"]):
                    yield from batch.column(0).to_pylist()

        forked.job.run(keys(), endpoints, forked.policy, report, advance)
        return report, endpoints.stats


def _split_keys(store: Store, query: str, processes: int, directory: Path) -> list[Path]:
    """Write the keys to ask, by key range, under ``directory``: one directory of Parquet per worker (DuckDB does it in one pass)."""
    part = " + ".join(f"(key >= {sql_literal(bound)})::INTEGER" for bound in key_range_bounds(processes))
    store.connect().execute(
        f"COPY (SELECT key, {part} AS part FROM ({query}) AS todo(key)) TO {sql_literal(str(directory))} (FORMAT parquet, PARTITION_BY (part))"
    )
    return [directory / f"part={position}" for position in range(processes)]


def _run_forked(
    job: _Job, query: str, endpoints: EndpointPool, policy: HttpPolicy, processes: int, report: JobReport, total: int, description: str
) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="todo-", dir=_scratch_root(job.store)))
    try:
        parts = _split_keys(job.store, query, processes, scratch / "keys")
        forked = _Forked(job, endpoints, policy.share(processes), parts, shared_counters(processes))

        def record(position: int, result: tuple[JobReport, list[EndpointStats]]) -> None:
            worker_report, stats = result
            report.add(worker_report)
            endpoints.absorb(stats)

        with forked_pool(forked, processes) as pool:
            futures = {pool.submit(_run_range, position): position for position, part in enumerate(parts) if part.exists()}
            # The workers first: they must not inherit the progress bar's thread.
            progress = bar(total=total, desc=description, unit="key")
            shown = 0

            def show() -> None:
                nonlocal shown
                done = sum(forked.done)
                progress.update(done - shown)
                shown = done

            try:
                settle_all(futures, on_result=record, on_tick=show)
            finally:
                show()
                progress.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_here(
    job: _Job,
    store: Store,
    query: str,
    endpoints: EndpointPool,
    policy: HttpPolicy,
    report: JobReport,
    description: str,
    total: int | None = None,
) -> None:
    """Ask the keys of ``query`` in this process."""
    if total is None:
        total = scalar(store.connect(), f"SELECT count(*) FROM ({query})")
    progress = bar(total=total, desc=description, unit="key")
    try:
        job.run(_keys(store, query), endpoints, policy, report, progress.update)
    finally:
        progress.close()


def _scratch_root(store: Store) -> Path:
    root = store.temp_dir
    root.mkdir(parents=True, exist_ok=True)
    return root


def worker_processes(store: Store, total: int, processes: int | None) -> int:
    """How many processes ask ``total`` keys: ``processes`` (default one per core, for big runs), when a fork is safe."""
    if processes is None:
        processes = (os.cpu_count() or 1) if total >= _FORK_MIN_KEYS else 1
    if processes <= 1 or total < 2 or not fork_is_safe(store):
        return 1
    return min(processes, total)


def run_job(
    store: Store,
    *,
    table: str,
    schema: pa.Schema,
    todo_query: str,
    endpoints: EndpointPool,
    policy: HttpPolicy,
    ask: Callable[[Endpoint, str], Awaitable[Any]],
    to_row: Callable[[str, Any], dict[str, Any]],
    failed_row: Callable[[str, str], dict[str, Any]],
    description: str,
    processes: int | None = None,
) -> JobReport:
    """Ask ``ask`` for every key of ``todo_query``; append rows to ``table`` batch by batch.

    ``processes``: client processes (see the module's docstring); default one per core when
    there are enough keys, 1 for one process.
    """
    report = JobReport()
    job = _Job(store, table, schema, ask, to_row, failed_row)
    total = scalar(store.connect(), f"SELECT count(*) FROM ({todo_query})")
    if total:
        endpoints.preflight()
    report.processes = worker_processes(store, total, processes)
    started = time.perf_counter()
    try:
        if report.processes > 1:
            try:
                _run_forked(job, todo_query, endpoints, policy, report.processes, report, total, description)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): what no worker saved is asked here.
                _run_here(job, store, todo_query, endpoints, policy, report, description)
        else:
            _run_here(job, store, todo_query, endpoints, policy, report, description, total)
    finally:
        report.seconds = time.perf_counter() - started
        report.endpoints = endpoints.to_json()
    return report
