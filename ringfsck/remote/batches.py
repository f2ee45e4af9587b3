"""Resumable per-key HTTP jobs: ask only what is not final yet, persist answers in batches.

``resolve`` (split lookups) and ``size`` (orphan sizes) share this loop: the keys
still to ask come from a SQL query over the store, answers are appended to a
table as batch parts before they are counted, so a killed run loses at most the
requests in flight and a re-run never asks a final key again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.progress import bar
from ringfsck.remote.http import Endpoint, EndpointPool, HttpPolicy, Result, run_batched
from ringfsck.store import Store, scalar

_FETCH = 50_000


@dataclass
class JobReport:
    """What one run asked and learned."""

    requested: int = 0
    outcomes: Counter = field(default_factory=Counter)  # status -> keys
    already_final: int = 0
    seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)
    endpoints: list[dict[str, Any]] = field(default_factory=list)  # EndpointStats.to_json() of each endpoint asked

    @property
    def errors(self) -> int:
        return self.outcomes.get("error", 0)

    @property
    def rate(self) -> float:
        return self.requested / self.seconds if self.seconds else 0.0


def _keys(store: Store, query: str) -> tuple[int, Iterator[str]]:
    con = store.connect()
    total = scalar(con, f"SELECT count(*) FROM ({query})")
    cursor = con.execute(query)

    def stream() -> Iterator[str]:
        while rows := cursor.fetchmany(_FETCH):
            for (key,) in rows:
                yield key

    return total, stream()


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
) -> JobReport:
    """Ask ``ask`` for every key of ``todo_query``; append rows to ``table`` batch by batch."""
    report = JobReport()
    total, keys = _keys(store, todo_query)
    if total:
        endpoints.preflight()
    progress = bar(total=total, desc=description, unit="key")
    started = time.perf_counter()

    def save(batch: list[Result[str, Any]]) -> None:
        rows = []
        for result in batch:
            if result.failure is not None:
                row = failed_row(result.item, result.failure.reason)
                if len(report.first_errors) < 5:
                    report.first_errors.append(result.failure.reason)
            else:
                row = to_row(result.item, result.value)
            report.outcomes[row["status"]] += 1
            rows.append(row)
        with store.writing_part(table, store.new_batch_id()) as tmp:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp, compression="zstd")
        report.requested += len(batch)
        progress.update(len(batch))

    try:
        run_batched(keys, ask, policy=policy, base_url=endpoints, on_batch=save)
    finally:
        progress.close()
        report.seconds = time.perf_counter() - started
        report.endpoints = endpoints.to_json()
    return report
