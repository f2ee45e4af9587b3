"""``ingest bucketd``: export S3 keys straight from bucketd into the ``s3keys`` table.

Every 40-hex key of every location of every version is kept (``on_ring`` says
whether the gap check judges it: false for another backend's key), entries the
listing shows without ``location`` (big metadata) are read in full by their
listed key, parts of unfinished uploads in ``mpuShadowBucket…`` count as live
(flagged ``mpu_part``), other backends' keys that are not sproxyd keys go to
``s3_other_locations``, and metadata not understood is a reject (its 40-hex
tokens stay references, and the analysis is incomplete). Listed pages are written together as
one table part per batch and a marker records the last page written, so an interrupted export
resumes there; a new export of a finished bucket replaces the old one.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hashlib
import json
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.errors import ConfigError, RemoteError
from ringfsck.ingest.identity import source_id
from ringfsck.ingest.rejects import writing_rejects
from ringfsck.ingest.s3keys import S3KEYS_SCHEMA
from ringfsck.progress import bar
from ringfsck.redact import redact
from ringfsck.remote.bucketd import USERS_BUCKET, VERSION_SEPARATOR, BucketdClient, ConnectionPool, Entry, parse_entry
from ringfsck.remote.http import HttpPolicy, RateLimiter, RequestFailed, preflight
from ringfsck.store import Source, Store, arrow_schema, iso, utc_now

OTHER_SCHEMA = arrow_schema("s3_other_locations")
BUCKET_CONCURRENCY = 8  # buckets listed at once; their requests share the policy's connections
PAGES_AHEAD = 4  # listed pages of one bucket whose trimmed entries are being read, before the oldest is saved
# A bucket's listed pages are written together once they hold this many entries, or are this old: fewer,
# bigger parts (a part and a marker per page cost more CPU than the page's parsing), and at most that much
# listing lost, and listed again, after a crash.
FLUSH_ENTRIES = 20_000
FLUSH_SECONDS = 5.0
_TABLES = ("s3keys", "s3_other_locations", "rejects")  # the tables a bucket's export writes parts of
# Allocations between two collections of the youngest objects while exporting (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000
# The s3keys columns that vary by row; bucket, source and line are the same for a whole part.
_VARYING_COLUMNS = ("object_key", "version_id", "sproxyd_key", "size", "last_modified", "mpu_part", "on_ring")


@dataclass
class BucketOutcome:
    bucket: str
    status: str  # complete | failed
    rows: int = 0
    pages: int = 0
    resumed: bool = False
    skipped: dict[str, int] = field(default_factory=dict)
    other_locations: int = 0
    rejected: int = 0
    error: str | None = None


@dataclass
class BucketdReport:
    url: str
    buckets: list[BucketOutcome] = field(default_factory=list)
    # Where the buckets just exported repeat references other sources hold (ringfsck.ingest.overlap).
    overlaps: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(b.rows for b in self.buckets)

    @property
    def failed(self) -> list[BucketOutcome]:
        return [b for b in self.buckets if b.status != "complete"]


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _chained(chain: str, page_digest: str) -> str:
    return hashlib.sha256((chain + page_digest).encode()).hexdigest()


def bucket_location(url: str, bucket: str) -> str:
    """Where a bucket's export comes from: its rows' source and its source record's location."""
    return f"{redact(url)}/default/bucket/{bucket}"  # never a credential in the store


@dataclass
class _Batch:
    """Listed pages not on disk yet, in listing order: written together as one table part."""

    first_page: int  # the part is named by it: what a resume from the marker before it would name it too
    started: float = field(default_factory=time.monotonic)
    pages: int = 0
    entries: int = 0  # listed, kept or not
    rows: dict[str, list[Any]] = field(default_factory=lambda: {name: [] for name in _VARYING_COLUMNS})
    others: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (ordinal, reason, raw)
    skipped: Counter[str] = field(default_factory=Counter)
    page_digests: list[str] = field(default_factory=list)
    marker: str | None = None  # the last listed key: where the next listing starts
    master: list[Any] | None = None


class _BucketExport:
    """One bucket's export: listed pages in, batched into table parts, and a progress marker out.

    Pages are buffered and written together (a part per FLUSH_ENTRIES entries or FLUSH_SECONDS): a part
    per 1,000-key page cost more than parsing it. The marker moves only once a batch's parts are on
    disk, so a crash loses at most the buffered pages, which a resume lists again, never skips.
    """

    def __init__(self, store: Store, url: str, bucket: str, *, skip_complete: bool = False) -> None:
        self.store = store
        self.bucket = bucket
        self.location = bucket_location(url, bucket)
        # Identity is the bucket, not the URL: the same bucketd reached by another
        # address (hostname or IP, another connector) must replace, never add.
        self.sid = source_id("bucketd", bucket)
        self.marker_file = store.bucketd_progress_file(self.sid)
        self.state = self._load_state(skip_complete)
        self._batch = _Batch(self.state["pages"])
        self._entries_listed = self.state.get("entries", 0)

    def _parts(self, table: str) -> list[str]:
        return self.store.part_names(table, f"{self.sid}-*")

    def _load_state(self, skip_complete: bool) -> dict[str, Any]:
        if self.marker_file.exists():
            state = json.loads(self.marker_file.read_text())
            if "page_digests" in state:  # a marker written before the digests were chained
                state["digest"] = functools.reduce(_chained, state.pop("page_digests"), "")
            if not state.get("complete"):
                # Parts written after the marker (killed before it moved) hold pages listed again now.
                for table in _TABLES:
                    for part in self._parts(table):
                        if int(part.rpartition("-p")[2]) >= state["pages"]:
                            self.store.remove_part(table, part)
                return state | {"resumed": state["pages"] > 0}
            if skip_complete:
                return state | {"resumed": True}
        # A fresh export replaces whatever an earlier one of this bucket left.
        for table in _TABLES:
            for part in self._parts(table):
                self.store.remove_part(table, part)
        state = {
            "bucket": self.bucket,
            "marker": None,
            "pages": 0,
            "rows": 0,
            "digest": "",
            "started_at": iso(utc_now()),
            "complete": False,
            "skipped": {},
            "other_locations": 0,
            "entries": 0,
            "rejected": 0,
            "last_master": None,
            "resumed": False,
        }
        # On disk before the first page: a bucket whose first listing fails is unfinished, not unknown.
        self.store.write_json(self.marker_file, state)
        return state

    def add_page(self, entries: list[Entry], listed: int, last_key: str, master: list[Any] | None) -> None:
        """Buffer a listed page (its entries as kept, ``listed`` as listed) in the batch being built."""
        batch, rows = self._batch, self._batch.rows
        start = len(rows["sproxyd_key"])
        for ordinal, entry in enumerate(entries, start=self._entries_listed + 1):
            if entry.rejected:  # the listing ordinal stands for the line of a file export
                batch.rejects.append((ordinal, f"bucket {self.bucket}, key {entry.listed_key!r}: {entry.rejected}", entry.raw))
            if entry.skipped:
                batch.skipped[entry.skipped] += 1
            if not entry.locations:
                continue
            modified = _timestamp(entry.last_modified)
            for location in entry.locations:
                if location.is_sproxyd_key:  # whatever the backend: a reference for the orphan check
                    rows["object_key"].append(entry.object_key)
                    rows["version_id"].append(entry.version_id)
                    rows["sproxyd_key"].append(location.key)
                    rows["size"].append(location.size)
                    rows["last_modified"].append(modified)
                    rows["mpu_part"].append(entry.mpu_part)
                    rows["on_ring"].append(location.on_ring)
                else:
                    batch.others.append(
                        {
                            "bucket": self.bucket,
                            "object_key": entry.object_key,
                            "version_id": entry.version_id,
                            "data_store_name": location.data_store_name,
                            "data_store_type": location.data_store_type,
                            "location_key": location.key,
                            "size": location.size,
                            "source": self.location,
                        }
                    )
        page_rows = zip(rows["object_key"][start:], rows["version_id"][start:], rows["sproxyd_key"][start:])
        batch.page_digests.append(hashlib.sha256("\n".join(f"{o}\0{v}\0{k}" for o, v, k in page_rows).encode()).hexdigest())
        batch.pages += 1
        batch.entries += listed
        batch.marker, batch.master = last_key, master
        self._entries_listed += listed

    @property
    def due(self) -> bool:
        """Whether the batch being built is big or old enough to be written."""
        batch = self._batch
        return batch.pages > 0 and (batch.entries >= FLUSH_ENTRIES or time.monotonic() - batch.started >= FLUSH_SECONDS)

    @property
    def buffered(self) -> bool:
        return self._batch.pages > 0

    def take_batch(self) -> _Batch:
        """The batch built so far, to be written; the pages listed next go to a new one."""
        batch = self._batch
        self._batch = _Batch(batch.first_page + batch.pages)
        return batch

    def write(self, batch: _Batch) -> None:
        """Write a batch's parts, then move the marker past its pages (batches in listing order, one at a time)."""
        if not batch.pages:
            return
        if batch.first_page != self.state["pages"]:  # a batch lost before it: writing this one would skip pages
            raise RuntimeError(f"bucket {self.bucket}: batch from page {batch.first_page} written after page {self.state['pages']}")
        part = f"{self.sid}-p{batch.first_page:06d}"
        with writing_rejects(self.store, part, self.location) as rejects:
            for ordinal, reason, raw in batch.rejects:
                rejects.add(ordinal, reason, raw)
        count = len(batch.rows["sproxyd_key"])
        columns = batch.rows | {"bucket": [self.bucket] * count, "source": [self.location] * count, "line": [None] * count}
        with self.store.writing_part("s3keys", part) as tmp:
            pq.write_table(pa.Table.from_pydict(columns, schema=S3KEYS_SCHEMA), tmp, compression="zstd")
        if batch.others:
            with self.store.writing_part("s3_other_locations", part) as tmp:
                pq.write_table(pa.Table.from_pylist(batch.others, schema=OTHER_SCHEMA), tmp, compression="zstd")
        skipped = Counter(self.state["skipped"])
        skipped.update(batch.skipped)
        self.state.update(
            marker=batch.marker,
            pages=self.state["pages"] + batch.pages,
            rows=self.state["rows"] + count,
            other_locations=self.state["other_locations"] + len(batch.others),
            last_master=batch.master,
            entries=self.state.get("entries", 0) + batch.entries,
            rejected=self.state.get("rejected", 0) + len(batch.rejects),
            skipped=dict(skipped),
        )
        # A chain of page digests, not a list: the marker stays small; and the same whatever the batches.
        self.state["digest"] = functools.reduce(_chained, batch.page_digests, self.state["digest"])
        self.store.write_json(self.marker_file, self.state)  # the pages count only once this is on disk

    def source(self) -> Source:
        """The source record of the bucket listed to its end."""
        return Source(
            id=self.sid,
            kind="bucketd",
            location=self.location,
            size=self.state["rows"],
            checksum=self.state["digest"],
            format="bucketd",
            captured_at=self.state["started_at"],
            ingested_at=iso(utc_now()),
            rows=self.state["rows"],
            rejected=self.state.get("rejected", 0),
            skipped=self.state["skipped"] | ({"other backends": self.state["other_locations"]} if self.state["other_locations"] else {}),
        )

    def mark_complete(self) -> None:
        self.state["complete"] = True
        self.store.write_json(self.marker_file, self.state)


class _Completions:
    """Buckets listed to their end, recorded together: their sources in one write, then their markers.

    The sources file is rewritten whole: once per bucket, 200 buckets spent more CPU on it than
    on their listings. Sources go first: a crash before the markers leaves those buckets
    unfinished (a rerun resumes them after their last page: an empty listing), never marked
    complete without a source. Recorded at most FLUSH_SECONDS apart, and when the run ends.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: list[_BucketExport] = []
        self._recorded_at = time.monotonic()
        self._recording = asyncio.Lock()  # one write at a time, in a thread: its fsyncs would stall every bucket

    async def add(self, export: _BucketExport) -> None:
        self._pending.append(export)
        if time.monotonic() - self._recorded_at >= FLUSH_SECONDS:
            await self.record()

    async def record(self) -> None:
        async with self._recording:
            finished, self._pending = self._pending, []
            if finished:
                await asyncio.to_thread(self._write, finished)
            self._recorded_at = time.monotonic()

    def _write(self, finished: list[_BucketExport]) -> None:
        self._store.save_sources([export.source() for export in finished])
        for export in finished:
            export.mark_complete()


def _master_of(entry: Entry) -> list[Any] | None:
    """What a master entry says of the latest version: [object key, version id, its keys]."""
    if entry.version_id is None or entry.skipped or entry.rejected or not entry.locations:
        return None
    return [entry.object_key, entry.version_id, sorted(location.key for location in entry.locations)]


def _repeats(master: list[Any] | None, entry: Entry) -> bool:
    """A version is a repeat of the master listed before it only if it names the same data: then it
    adds nothing. Anything else is exported (a placeholder master exports nothing: its versions must)."""
    return (
        master is not None
        and len(master) == 3
        and not entry.rejected
        and master == [entry.object_key, entry.version_id, sorted(location.key for location in entry.locations)]
    )


async def _read_page(api: BucketdClient, bucket: str, items: list[tuple[str, Any]]) -> list[Entry]:
    """A listed page's entries, those the listing trimmed read in full."""
    parsed = [parse_entry(bucket, key, value) for key, value in items]
    missing = [e for e in parsed if e.needs_full_metadata]
    if missing:
        # By the full listed key: a bare name would return the newest version's metadata instead.
        metas = await asyncio.gather(*(api.metadata(bucket, e.listed_key) for e in missing))
        full = {e.listed_key: parse_entry(bucket, e.listed_key, meta) for e, meta in zip(missing, metas)}
        parsed = [full.get(e.listed_key, e) if e.needs_full_metadata else e for e in parsed]
    return parsed


async def _export_bucket(
    api: BucketdClient, export: _BucketExport, completions: _Completions, page_size: int, progress, bucket_bar
) -> BucketOutcome:
    """List a bucket's pages in order and save them; every stage overlaps the others.

    The next page is asked for as soon as one arrives (its last key is the next marker);
    up to PAGES_AHEAD listed pages have their trimmed entries read at once; pages are
    buffered and their batches written in a thread, one at a time and in listing order,
    so the marker on disk only ever names a page saved with every page before it.
    Whatever stops the listing (a failure, a cancel), the pages listed in full are
    written before the bucket is reported, so that a rerun resumes after them.
    """
    s = export.state
    if s["complete"]:  # kept from an earlier run (skip_complete)
        return BucketOutcome(
            export.bucket, "complete", s["rows"], s["pages"], True, s["skipped"], s["other_locations"], s.get("rejected", 0)
        )
    master = s["last_master"]
    listing: asyncio.Future | None = asyncio.ensure_future(api.page(export.bucket, s["marker"], page_size))
    reading: deque[tuple[asyncio.Future, str, int]] = deque()  # (its entries, its last key, entries listed)
    saving: asyncio.Future | None = None
    try:
        while listing is not None or reading:
            if listing is not None and len(reading) < PAGES_AHEAD:
                items, truncated = await listing
                listing = asyncio.ensure_future(api.page(export.bucket, items[-1][0], page_size)) if truncated and items else None
                if items:
                    reading.append((asyncio.ensure_future(_read_page(api, export.bucket, items)), items[-1][0], len(items)))
                continue
            read, last_key, listed = reading.popleft()
            entries: list[Entry] = []
            for entry in await read:
                if VERSION_SEPARATOR not in entry.listed_key:
                    master = _master_of(entry)
                elif _repeats(master, entry):
                    continue
                entries.append(entry)
            export.add_page(entries, listed, last_key, master)
            if export.due:
                if saving is not None:
                    await saving
                saving = asyncio.ensure_future(asyncio.to_thread(export.write, export.take_batch()))
            progress.update(listed)
            bucket_bar.update(listed)
        if saving is not None:
            await saving
        await asyncio.to_thread(export.write, export.take_batch())
    finally:
        unsaved = [task for task in (listing, *(read for read, _, _ in reading)) if task is not None]
        for task in unsaved:
            task.cancel()
        # A batch being written is let finish: a thread cannot be stopped, and its marker must be on disk
        # before this bucket is reported.
        await asyncio.gather(*unsaved, *([saving] if saving is not None else []), return_exceptions=True)
        saved = saving is None or (not saving.cancelled() and saving.exception() is None)
        if export.buffered and saved:  # never after a batch that failed: the marker would skip its pages
            await asyncio.to_thread(export.write, export.take_batch())
    await completions.add(export)
    s = export.state
    return BucketOutcome(
        export.bucket, "complete", s["rows"], s["pages"], s["resumed"], s["skipped"], s["other_locations"], s.get("rejected", 0)
    )


@contextmanager
def _collecting_less() -> Iterator[None]:
    """Python's cycle collector run less often: a page allocates thousands of containers (its parsed
    metadata, none in a cycle), and collecting them every 700 cost ~20 % of the export's CPU."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], GC_YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def ingest_bucketd(
    store: Store,
    url: str,
    *,
    raft_sessions: tuple[int, ...] | list[int] = (),
    buckets: tuple[str, ...] | list[str] = (),
    policy: HttpPolicy | None = None,
    page_size: int = 1000,
    skip_complete: bool = False,
    bucket_concurrency: int = BUCKET_CONCURRENCY,
) -> BucketdReport:
    """Export the buckets of the raft sessions (or the named buckets) into ``s3keys``.

    An interrupted bucket always resumes after its last page written; a bucket
    whose export completed is exported again (replaced) unless ``skip_complete``.
    Buckets that fail are reported (RemoteError after the others finished).
    ``bucket_concurrency`` buckets are listed at once, their pages and metadata
    reads sharing the policy's ``concurrency`` connections.
    """
    if not raft_sessions and not buckets:
        raise ConfigError("name the buckets to export: --raft-session N or --bucket NAME")
    if bucket_concurrency < 1:
        raise ConfigError(f"bucket concurrency {bucket_concurrency}: expected at least 1")
    url = url.rstrip("/")
    policy = policy or HttpPolicy.from_settings(store.settings)
    preflight(url, policy, service="bucketd")
    limiter = RateLimiter(policy.max_rps)
    report = BucketdReport(redact(url))

    async def run() -> None:
        pool = ConnectionPool(url, policy, policy.concurrency)
        try:
            api = BucketdClient(pool, policy, limiter)

            async def session_buckets(session: int) -> list[str]:
                try:
                    return await api.buckets(session)
                except RequestFailed as exc:
                    raise RemoteError(f"bucketd {redact(url)}: cannot list raft session {session}: {exc.reason}") from None

            listed = await asyncio.gather(*(session_buckets(session) for session in raft_sessions))
            names = sorted(
                {n for n in [*buckets, *(n for session in listed for n in session)] if n != USERS_BUCKET}
            )  # users..bucket holds no data
            progress = bar(desc=f"bucketd: {len(names)} buckets", unit="entry", position=0)
            gate = asyncio.Semaphore(bucket_concurrency)
            completions = _Completions(store)
            free_rows = list(range(bucket_concurrency, 0, -1))  # screen rows under the overall bar

            async def one(bucket: str) -> BucketOutcome:
                async with gate:
                    row = free_rows.pop()
                    bucket_bar = bar(desc=f"  {bucket}", unit="entry", position=row, leave=False)
                    try:
                        # In a thread: a fresh export writes its marker (an fsync) before its first page.
                        export = await asyncio.to_thread(_BucketExport, store, url, bucket, skip_complete=skip_complete)
                        return await _export_bucket(api, export, completions, page_size, progress, bucket_bar)
                    except RequestFailed as exc:
                        return BucketOutcome(bucket, "failed", error=exc.reason)
                    finally:
                        bucket_bar.close()
                        free_rows.append(row)

            try:
                report.buckets = list(await asyncio.gather(*(one(b) for b in names)))
            finally:
                await completions.record()  # whatever ended the run, the buckets listed to their end are recorded
                progress.close()
        finally:
            await pool.aclose()

    with _collecting_less():
        asyncio.run(run())
    from ringfsck.ingest.overlap import overlap_notes

    report.overlaps = overlap_notes(store, [bucket_location(url, b.bucket) for b in report.buckets if b.status == "complete" and b.rows])
    if report.failed:
        first = report.failed[0]
        raise RemoteError(
            f"bucketd {redact(url)}: {len(report.failed)} bucket(s) not exported ({first.bucket}: {first.error}); "
            "rerun with --skip-complete to resume only the unfinished ones"
        )
    return report
