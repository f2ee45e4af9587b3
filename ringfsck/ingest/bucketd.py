"""``ingest bucketd``: export S3 keys straight from bucketd into the ``s3keys`` table.

Every version's RING locations are kept, big MPU objects are read in full when
their listing omits ``location``, parts of unfinished uploads in
``mpuShadowBucket…`` count as live (flagged ``mpu_part``), locations on other
backends go to ``s3_other_locations``. Each page is written as its own table
part and a marker records the last completed page, so an interrupted export
resumes there; a new export of a finished bucket replaces the old one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.errors import ConfigError, RemoteError
from ringfsck.ingest._registry import source_id
from ringfsck.ingest.s3keys import S3KEYS_SCHEMA
from ringfsck.progress import bar
from ringfsck.remote.batches import preflight
from ringfsck.remote.bucketd import USERS_BUCKET, BucketdClient, Entry, parse_entry
from ringfsck.remote.http import HttpPolicy, RateLimiter, RequestFailed, make_client
from ringfsck.store import Source, Store, arrow_schema, iso, utc_now

OTHER_SCHEMA = arrow_schema("s3_other_locations")
_PARALLEL_BUCKETS = 4


@dataclass
class BucketOutcome:
    bucket: str
    status: str  # complete | failed
    rows: int = 0
    pages: int = 0
    resumed: bool = False
    skipped: dict[str, int] = field(default_factory=dict)
    other_locations: int = 0
    error: str | None = None


@dataclass
class BucketdReport:
    url: str
    buckets: list[BucketOutcome] = field(default_factory=list)

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


class _BucketExport:
    """One bucket's export: pages in, parts and a progress marker out."""

    def __init__(self, store: Store, url: str, bucket: str, *, skip_complete: bool = False) -> None:
        self.store = store
        self.bucket = bucket
        self.location = f"{url}/default/bucket/{bucket}"
        # Identity is the bucket, not the URL: the same bucketd reached by another
        # address (hostname or IP, another connector) must replace, never add.
        self.sid = source_id("bucketd", bucket)
        self.marker_file = store.root / "bucketd" / f"{self.sid}.json"
        self.state = self._load_state(skip_complete)

    def _load_state(self, skip_complete: bool) -> dict[str, Any]:
        if self.marker_file.exists():
            state = json.loads(self.marker_file.read_text())
            if not state.get("complete"):
                return state | {"resumed": True}
            if skip_complete:
                return state | {"resumed": True}
        # A fresh export replaces whatever an earlier one of this bucket left.
        for table in ("s3keys", "s3_other_locations"):
            for part in self.store.part_names(table, f"{self.sid}-*"):
                self.store.remove_part(table, part)
        return {"bucket": self.bucket, "marker": None, "pages": 0, "rows": 0, "page_digests": [], "started_at": iso(utc_now()), "complete": False,
                "skipped": {}, "other_locations": 0, "last_master": None, "resumed": False}

    def save_page(self, entries: list[Entry], last_key: str, master: tuple[str, str] | None) -> None:
        rows, others = [], []
        for entry in entries:
            for location in entry.locations:
                if location.on_ring:
                    rows.append({"bucket": self.bucket, "object_key": entry.object_key, "version_id": entry.version_id,
                                 "sproxyd_key": location.key, "size": location.size, "last_modified": _timestamp(entry.last_modified),
                                 "mpu_part": entry.mpu_part, "source": self.location, "line": None})
                else:
                    others.append({"bucket": self.bucket, "object_key": entry.object_key, "version_id": entry.version_id,
                                   "data_store_name": location.data_store_name, "data_store_type": location.data_store_type,
                                   "location_key": location.key, "size": location.size, "source": self.location})
            if entry.skipped:
                self.state["skipped"][entry.skipped] = self.state["skipped"].get(entry.skipped, 0) + 1
        page = f"{self.sid}-p{self.state['pages']:06d}"
        with self.store.writing_part("s3keys", page) as tmp:
            pq.write_table(pa.Table.from_pylist(rows, schema=S3KEYS_SCHEMA), tmp, compression="zstd")
        if others:
            with self.store.writing_part("s3_other_locations", page) as tmp:
                pq.write_table(pa.Table.from_pylist(others, schema=OTHER_SCHEMA), tmp, compression="zstd")
        digest = hashlib.sha256("\n".join(f"{r['object_key']}\0{r['version_id']}\0{r['sproxyd_key']}" for r in rows).encode()).hexdigest()
        self.state.update(marker=last_key, pages=self.state["pages"] + 1, rows=self.state["rows"] + len(rows),
                          other_locations=self.state["other_locations"] + len(others), last_master=list(master) if master else None)
        self.state["page_digests"].append(digest)
        self.store.write_json(self.marker_file, self.state)  # the page counts only once this is on disk

    def finish(self) -> None:
        self.state["complete"] = True
        self.store.write_json(self.marker_file, self.state)
        checksum = hashlib.sha256("".join(self.state["page_digests"]).encode()).hexdigest()
        self.store.save_source(Source(
            id=self.sid, kind="bucketd", location=self.location, size=self.state["rows"], checksum=checksum, format="bucketd",
            captured_at=self.state["started_at"], ingested_at=iso(utc_now()), rows=self.state["rows"], rejected=0,
            skipped=self.state["skipped"] | ({"other backends": self.state["other_locations"]} if self.state["other_locations"] else {}),
        ))


async def _export_bucket(api: BucketdClient, export: _BucketExport, page_size: int, progress, bucket_bar) -> BucketOutcome:
    s = export.state
    if s["complete"]:  # kept from an earlier run (skip_complete)
        return BucketOutcome(export.bucket, "complete", s["rows"], s["pages"], True, s["skipped"], s["other_locations"])
    marker = export.state["marker"]
    master = tuple(export.state["last_master"]) if export.state["last_master"] else None
    while True:
        items, truncated = await api.page(export.bucket, marker, page_size)
        entries: list[Entry] = []
        for key, value in items:
            entry = parse_entry(export.bucket, key, value)
            # A versioned object's master entry repeats its latest version, listed right after it:
            # that version is a repeat only when the master itself was kept (a placeholder master
            # exports nothing, so the version it names must be exported on its own).
            if "\0" not in key:
                master = (entry.object_key, entry.version_id) if entry.version_id and not entry.skipped else None
            elif master == (entry.object_key, entry.version_id):
                continue
            entries.append(entry)
        missing = [e for e in entries if e.needs_full_metadata]
        if missing:
            metas = await asyncio.gather(*(api.metadata(export.bucket, e.object_key) for e in missing))
            for entry, meta in zip(missing, metas):
                full = parse_entry(export.bucket, entry.object_key, meta)
                entry.locations, entry.needs_full_metadata = full.locations, False
                entry.skipped = full.skipped if not full.locations else None
        if items:
            marker = items[-1][0]
            export.save_page(entries, marker, master)
            progress.update(len(items))
            bucket_bar.update(len(items))
        if not truncated or not items:
            break
    export.finish()
    s = export.state
    return BucketOutcome(export.bucket, "complete", s["rows"], s["pages"], s["resumed"], s["skipped"], s["other_locations"])


def ingest_bucketd(
    store: Store,
    url: str,
    *,
    raft_sessions: tuple[int, ...] | list[int] = (),
    buckets: tuple[str, ...] | list[str] = (),
    policy: HttpPolicy | None = None,
    page_size: int = 1000,
    skip_complete: bool = False,
) -> BucketdReport:
    """Export the buckets of the raft sessions (or the named buckets) into ``s3keys``.

    An interrupted bucket always resumes from its last completed page; a bucket
    whose export completed is exported again (replaced) unless ``skip_complete``.
    Buckets that fail are reported (RemoteError after the others finished).
    """
    if not raft_sessions and not buckets:
        raise ConfigError("name the buckets to export: --raft-session N or --bucket NAME")
    url = url.rstrip("/")
    policy = policy or HttpPolicy.from_settings(store.settings)
    preflight(url, policy, service="bucketd")
    limiter = RateLimiter(policy.max_rps)
    report = BucketdReport(url)

    async def run() -> None:
        async with make_client(url, policy, connections=policy.concurrency) as client:
            api = BucketdClient(client, policy, limiter)
            names = list(buckets)
            for session in raft_sessions:
                try:
                    names += await api.buckets(session)
                except RequestFailed as exc:
                    raise RemoteError(f"bucketd {url}: cannot list raft session {session}: {exc.reason}") from None
            names = sorted({n for n in names if n != USERS_BUCKET})  # users..bucket holds no data
            progress = bar(desc=f"bucketd: {len(names)} buckets", unit="entry", position=0)
            gate = asyncio.Semaphore(_PARALLEL_BUCKETS)
            free_rows = list(range(_PARALLEL_BUCKETS, 0, -1))  # screen rows under the overall bar

            async def one(bucket: str) -> BucketOutcome:
                async with gate:
                    row = free_rows.pop()
                    bucket_bar = bar(desc=f"  {bucket}", unit="entry", position=row, leave=False)
                    try:
                        return await _export_bucket(api, _BucketExport(store, url, bucket, skip_complete=skip_complete), page_size, progress, bucket_bar)
                    except RequestFailed as exc:
                        return BucketOutcome(bucket, "failed", error=exc.reason)
                    finally:
                        bucket_bar.close()
                        free_rows.append(row)

            try:
                report.buckets = list(await asyncio.gather(*(one(b) for b in names)))
            finally:
                progress.close()

    asyncio.run(run())
    if report.failed:
        first = report.failed[0]
        raise RemoteError(
            f"bucketd {url}: {len(report.failed)} bucket(s) not exported ({first.bucket}: {first.error}); "
            "rerun with --skip-complete to resume only the unfinished ones"
        )
    return report
