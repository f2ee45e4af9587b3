"""``ingest bucketd``: export S3 keys straight from bucketd into the ``s3keys`` table.

Every 40-hex key of every location of every version is kept (``on_ring`` says
whether the gap check judges it: false for another backend's key), entries the
listing shows without ``location`` (big metadata) are read in full by their
listed key, parts of unfinished uploads in ``mpuShadowBucket…`` count as live
(flagged ``mpu_part``), other backends' keys that are not sproxyd keys go to
``s3_other_locations``, and metadata not understood is a reject (its 40-hex
tokens stay references, and the analysis is incomplete). Each page is written as its own table
part and a marker records the last completed page, so an interrupted export
resumes there; a new export of a finished bucket replaces the old one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections import deque
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


class _BucketExport:
    """One bucket's export: pages in, parts and a progress marker out."""

    def __init__(self, store: Store, url: str, bucket: str, *, skip_complete: bool = False) -> None:
        self.store = store
        self.bucket = bucket
        self.location = bucket_location(url, bucket)
        # Identity is the bucket, not the URL: the same bucketd reached by another
        # address (hostname or IP, another connector) must replace, never add.
        self.sid = source_id("bucketd", bucket)
        self.marker_file = store.bucketd_progress_file(self.sid)
        self.state = self._load_state(skip_complete)

    def _load_state(self, skip_complete: bool) -> dict[str, Any]:
        if self.marker_file.exists():
            state = json.loads(self.marker_file.read_text())
            if "page_digests" in state:  # a marker written before the digests were chained
                state["digest"] = functools.reduce(_chained, state.pop("page_digests"), "")
            if not state.get("complete"):
                return state | {"resumed": state["pages"] > 0}
            if skip_complete:
                return state | {"resumed": True}
        # A fresh export replaces whatever an earlier one of this bucket left.
        for table in ("s3keys", "s3_other_locations", "rejects"):
            for part in self.store.part_names(table, f"{self.sid}-*"):
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

    def save_page(self, entries: list[Entry], listed: int, last_key: str, master: list[Any] | None) -> None:
        rows, others = [], []
        page = f"{self.sid}-p{self.state['pages']:06d}"
        with writing_rejects(self.store, page, self.location) as rejects:
            for ordinal, entry in enumerate(entries, start=self.state.get("entries", 0) + 1):
                if entry.rejected:  # the listing ordinal stands for the line of a file export
                    rejects.add(ordinal, f"bucket {self.bucket}, key {entry.listed_key!r}: {entry.rejected}", entry.raw)
                for location in entry.locations:
                    if location.is_sproxyd_key:  # whatever the backend: a reference for the orphan check
                        rows.append(
                            {
                                "bucket": self.bucket,
                                "object_key": entry.object_key,
                                "version_id": entry.version_id,
                                "sproxyd_key": location.key,
                                "size": location.size,
                                "last_modified": _timestamp(entry.last_modified),
                                "mpu_part": entry.mpu_part,
                                "source": self.location,
                                "line": None,
                                "on_ring": location.on_ring,
                            }
                        )
                    else:
                        others.append(
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
                if entry.skipped:
                    self.state["skipped"][entry.skipped] = self.state["skipped"].get(entry.skipped, 0) + 1
        with self.store.writing_part("s3keys", page) as tmp:
            pq.write_table(pa.Table.from_pylist(rows, schema=S3KEYS_SCHEMA), tmp, compression="zstd")
        if others:
            with self.store.writing_part("s3_other_locations", page) as tmp:
                pq.write_table(pa.Table.from_pylist(others, schema=OTHER_SCHEMA), tmp, compression="zstd")
        digest = hashlib.sha256("\n".join(f"{r['object_key']}\0{r['version_id']}\0{r['sproxyd_key']}" for r in rows).encode()).hexdigest()
        self.state.update(
            marker=last_key,
            pages=self.state["pages"] + 1,
            rows=self.state["rows"] + len(rows),
            other_locations=self.state["other_locations"] + len(others),
            last_master=master,
            entries=self.state.get("entries", 0) + listed,
            rejected=self.state.get("rejected", 0) + rejects.count,
        )
        # A chain, not a list of page digests: the marker, rewritten after every page, stays small.
        self.state["digest"] = _chained(self.state["digest"], digest)
        self.store.write_json(self.marker_file, self.state)  # the page counts only once this is on disk

    def finish(self) -> None:
        self.state["complete"] = True
        self.store.write_json(self.marker_file, self.state)
        checksum = self.state["digest"]
        self.store.save_source(
            Source(
                id=self.sid,
                kind="bucketd",
                location=self.location,
                size=self.state["rows"],
                checksum=checksum,
                format="bucketd",
                captured_at=self.state["started_at"],
                ingested_at=iso(utc_now()),
                rows=self.state["rows"],
                rejected=self.state.get("rejected", 0),
                skipped=self.state["skipped"]
                | ({"other backends": self.state["other_locations"]} if self.state["other_locations"] else {}),
            )
        )


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


async def _export_bucket(api: BucketdClient, export: _BucketExport, page_size: int, progress, bucket_bar) -> BucketOutcome:
    """List a bucket's pages in order and save each; every stage overlaps the others.

    The next page is asked for as soon as one arrives (its last key is the next marker);
    up to PAGES_AHEAD listed pages have their trimmed entries read at once; pages are
    saved in a thread, one at a time and in listing order, so the marker on disk only
    ever names a page saved with every page before it.
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
            if saving is not None:
                await saving
            saving = asyncio.ensure_future(asyncio.to_thread(export.save_page, entries, listed, last_key, master))
            progress.update(listed)
            bucket_bar.update(listed)
        if saving is not None:
            await saving
    finally:
        unsaved = [task for task in (listing, *(read for read, _, _ in reading)) if task is not None]
        for task in unsaved:
            task.cancel()
        # A page being saved is let finish: a thread cannot be stopped, and its marker must be on disk
        # before this bucket is reported.
        await asyncio.gather(*unsaved, *([saving] if saving is not None else []), return_exceptions=True)
    export.finish()
    s = export.state
    return BucketOutcome(
        export.bucket, "complete", s["rows"], s["pages"], s["resumed"], s["skipped"], s["other_locations"], s.get("rejected", 0)
    )


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

    An interrupted bucket always resumes from its last completed page; a bucket
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
            free_rows = list(range(bucket_concurrency, 0, -1))  # screen rows under the overall bar

            async def one(bucket: str) -> BucketOutcome:
                async with gate:
                    row = free_rows.pop()
                    bucket_bar = bar(desc=f"  {bucket}", unit="entry", position=row, leave=False)
                    try:
                        return await _export_bucket(
                            api, _BucketExport(store, url, bucket, skip_complete=skip_complete), page_size, progress, bucket_bar
                        )
                    except RequestFailed as exc:
                        return BucketOutcome(bucket, "failed", error=exc.reason)
                    finally:
                        bucket_bar.close()
                        free_rows.append(row)

            try:
                report.buckets = list(await asyncio.gather(*(one(b) for b in names)))
            finally:
                progress.close()
        finally:
            await pool.aclose()

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
