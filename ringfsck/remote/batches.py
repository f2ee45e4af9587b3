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

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.errors import ConfigError, RemoteError
from ringfsck.progress import bar
from ringfsck.redact import redact
from ringfsck.remote.http import Endpoint, HttpPolicy, Result, run_batched
from ringfsck.store import Store

_FETCH = 50_000


@dataclass
class JobReport:
    """What one run asked and learned."""

    requested: int = 0
    outcomes: Counter = field(default_factory=Counter)  # status -> keys
    already_final: int = 0
    seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return self.outcomes.get("error", 0)

    @property
    def rate(self) -> float:
        return self.requested / self.seconds if self.seconds else 0.0


def require_srebuildd(store: Store, base_url: str | None) -> str:
    url = base_url or store.settings.srebuildd_base_url
    if not url:
        raise ConfigError("no srebuildd URL: pass --srebuildd URL or set srebuildd_url (or srebuildd_ip) in the config")
    return url.rstrip("/")


def preflight(base_url: str, policy: HttpPolicy, service: str = "srebuildd") -> None:
    """Fail at once, in one line, when the service cannot be reached at all.

    Any HTTP answer (even 404) proves it is there; without this, every key would
    spend all its retries before the run could say the endpoint is wrong.
    """
    last = ""
    for _ in range(3):
        try:
            httpx.head(f"{base_url}/", timeout=min(policy.timeout, 10))
            return
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        time.sleep(0.2)
    raise RemoteError(f"cannot reach {service} at {redact(base_url)}: {redact(last)}")


def _keys(store: Store, query: str) -> tuple[int, Iterator[str]]:
    con = store.connect()
    total = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
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
    base_url: str,
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
        preflight(base_url, policy)
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
        run_batched(keys, ask, policy=policy, base_url=base_url, on_batch=save)
    finally:
        progress.close()
        report.seconds = time.perf_counter() - started
    return report
