"""Deleting orphans from a manifest, with a journal that survives a crash.

Every outcome is appended to a segment of ``STORE/journal/<manifest checksum>/``
and made durable, batch by batch, before it is counted: fsync'ed, and for a store
on S3 uploaded as one object. A later run skips every key the journal confirms
(deleted, or already gone) and retries the failed ones, so a run killed at any
moment repeats at most the requests whose outcome was not durable yet (a repeated
DELETE is a harmless 404). Without ``execute`` nothing is sent.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ringfsck.errors import RefusedError
from ringfsck.keys import normalize_key
from ringfsck.manifest import Manifest, read_manifest, verify_against_store
from ringfsck.progress import bar
from ringfsck.remote.batches import preflight, require_srebuildd
from ringfsck.remote.http import Endpoint, HttpPolicy, RateLimiter, Result, run_batched, send
from ringfsck.s3 import local_input
from ringfsck.store import Store, iso, utc_now

CONFIRMED = ("deleted", "already_gone")


@dataclass
class DeleteReport:
    manifest_keys: int
    selected: int
    already_confirmed: int = 0
    executed: bool = False
    outcomes: dict[str, int] = field(default_factory=lambda: {"deleted": 0, "already_gone": 0, "failed": 0})
    bytes_selected: int = 0
    unsized_selected: int = 0
    bytes_reclaimed: int = 0
    seconds: float = 0.0
    journal: Path | None = None  # the journal directory (in the local mirror for a store on S3)
    journal_location: str = ""  # where the journal lives, for messages
    first_failures: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return self.outcomes["failed"]


class Journal:
    """The outcomes of one manifest's deletions: ``journal/<name>/<segment>.jsonl``.

    ``write`` puts an outcome in the current segment the moment its answer arrives
    (after a kill -9 the OS still has it); ``commit`` makes the batch durable before
    it counts: fsync, and on S3 the upload of the segment as one object (objects are
    immutable, so later outcomes go to a new segment). A segment left behind by a
    crash is uploaded when the store is next opened from the same cache.
    """

    def __init__(self, store: Store, name: str) -> None:
        self._store = store
        self.directory = store.root / "journal" / name
        self._legacy = store.root / "journal" / f"{name}.jsonl"  # one file per manifest, before segments
        self._segment: Path | None = None
        self._handle: IO[str] | None = None

    @property
    def location(self) -> str:
        return self._store.location_of(self.directory) + "/"

    def outcomes(self) -> dict[str, str]:
        """The last outcome per key, over every segment in order."""
        return read_journal(self._legacy) | read_journal(self.directory)

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._segment = self.directory / f"{self._store.new_batch_id()}.jsonl"
            self._handle = open(self._segment, "a", encoding="utf-8")
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def commit(self) -> None:
        if self._handle is None or self._segment is None:
            return
        os.fsync(self._handle.fileno())
        if self._store.on_s3:
            self._handle.close()
            self._handle = None
            self._store.publish(self._segment)

    def close(self) -> None:
        if self._handle is not None:
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None


def read_journal(path: Path) -> dict[str, str]:
    """The last outcome per key in a journal directory (segments in order) or file; torn lines are ignored."""
    outcomes: dict[str, str] = {}
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path] if path.exists() else []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            outcomes[record["ring_key"]] = record["outcome"]
    return outcomes


def _only(manifest: Manifest, only_keys: str | Path | None) -> list[str]:
    if only_keys is None:
        return manifest.keys
    wanted = []
    for number, line in enumerate(Path(only_keys).read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            wanted.append(normalize_key(text.split(",")[0]))
        except ValueError:
            raise RefusedError(f"{only_keys}:{number}: {text!r} is not a RING key") from None
    outside = sorted(set(wanted) - set(manifest.keys))
    if outside:
        raise RefusedError(f"{only_keys}: {len(outside)} key(s) are not in the manifest (first: {outside[0]}); nothing outside it is ever deleted")
    return sorted(set(wanted))


def delete_from_manifest(
    store: Store,
    manifest_path: str | Path,
    *,
    execute: bool = False,
    only_keys: str | Path | None = None,
    base_url: str | None = None,
    policy: HttpPolicy | None = None,
) -> DeleteReport:
    """Verify the manifest, then report (dry run) or delete its keys on the chord path."""
    with local_input(manifest_path, store.settings) as local:
        manifest = read_manifest(local, location=str(manifest_path))
    verify_against_store(manifest, store)
    selected = _only(manifest, only_keys)
    sizes = {row["ring_key"]: row["size"] for row in manifest.rows}
    journal = Journal(store, manifest.header["keys_sha256"][:32])
    confirmed = {k for k, outcome in journal.outcomes().items() if outcome in CONFIRMED}
    todo = [k for k in selected if k not in confirmed]
    report = DeleteReport(len(manifest.keys), len(selected), already_confirmed=len(selected) - len(todo),
                          journal=journal.directory, journal_location=journal.location)
    report.bytes_selected = sum(sizes[k] or 0 for k in todo)
    report.unsized_selected = sum(1 for k in todo if sizes[k] is None)
    if not execute or not todo:
        return report
    report.executed = True
    url = require_srebuildd(store, base_url)
    policy = policy or HttpPolicy.from_settings(store.settings)
    preflight(url, policy)
    limiter = RateLimiter(policy.max_rps)
    chord = store.settings.chord_path
    progress = bar(total=len(todo), desc="delete", unit="key")

    async def delete(client: Endpoint, key: str) -> tuple[str, int]:
        response = await send(client, "DELETE", f"/{chord}/{key}", policy=policy, limiter=limiter)
        if response.status_code in (200, 204):
            return "deleted", response.status_code
        if response.status_code == 404:
            return "already_gone", 404
        return "failed", response.status_code

    def outcome_of(result: Result[str, tuple[str, int]]) -> tuple[str, int | None, str | None]:
        if result.failure is not None:
            return "failed", None, result.failure.reason
        outcome, status = result.value  # type: ignore[misc]
        return outcome, status, None if outcome != "failed" else f"HTTP {status}"

    def journal_one(result: Result[str, tuple[str, int]]) -> None:
        # Written the moment the answer arrives: after a kill -9 the OS still has it,
        # so only requests truly in flight can be repeated. fsync (power loss) is per batch.
        outcome, status, error = outcome_of(result)
        journal.write({"ring_key": result.item, "outcome": outcome, "status": status, "error": error, "at": iso(utc_now())})

    def count(batch: list[Result[str, tuple[str, int]]]) -> None:
        journal.commit()
        # Counted only now that the journal holds them durably.
        for result in batch:
            outcome, _, error = outcome_of(result)
            report.outcomes[outcome] += 1
            if outcome == "deleted":
                report.bytes_reclaimed += sizes[result.item] or 0
            elif outcome == "failed" and len(report.first_failures) < 5:
                report.first_failures.append(f"{result.item}: {error}")
        progress.update(len(batch))
        progress.set_postfix_str(f"{report.bytes_reclaimed / 2**30:.2f} GiB reclaimed", refresh=False)

    started = time.perf_counter()
    try:
        run_batched(todo, delete, policy=policy, base_url=url, on_batch=count, on_result=journal_one, batch_size=200, flush_seconds=0.5)
    finally:
        journal.close()
        progress.close()
        report.seconds = time.perf_counter() - started
    return report

