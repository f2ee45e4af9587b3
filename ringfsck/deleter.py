"""Deleting orphans from a manifest, with guards, and a journal that survives a crash.

Every outcome is appended to a segment of ``STORE/journal/<manifest checksum>/``
and made durable, batch by batch, before it is counted: fsync'ed, and for a store
on S3 uploaded as one object. A later run skips every key the journal confirms
(deleted, or already gone) and retries the others (failed, kept, not reached), so a
run killed at any moment repeats at most the requests whose outcome was not durable
yet (a repeated DELETE is a harmless 404). Without ``execute`` nothing is sent.

The guards (docs/domain.md section 8), each journaled:
- every key is HEADed on the arcdata path just before its DELETE: 404 is "already
  gone" (no DELETE); a main chunk written after the S3 export's start minus
  ``retention`` (``X-Scal-Mtime``) is kept as too recent; one with no usable mtime
  and no other evidence of age is kept unless ``force_retention``; a failed HEAD
  sends no DELETE;
- canaries (:mod:`ringfsck.canaries`) are asked before the first DELETE, after the
  first ``first_after`` deletions and then every ``every``: deletion runs in rounds
  that end at those points, so a run stops within one round of live data vanishing;
- a budget (keys, bytes) ends the run cleanly; the next run continues from the journal.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from ringfsck.canaries import Canaries
from ringfsck.commands import absolute_location
from ringfsck.config import DeleteBudget
from ringfsck.errors import ConfigError, RefusedError, RingfsckError
from ringfsck.keys import normalize_key
from ringfsck.manifest import Manifest, read_manifest, verify_against_store
from ringfsck.progress import bar
from ringfsck.remote.http import BatchSession, Endpoint, HttpPolicy, RequestFailed, Result, send
from ringfsck.remote.srebuildd import MainChunkHead, head_main_chunk, srebuildd_pool
from ringfsck.reverse_lookup import refuse_if_disproved
from ringfsck.s3 import local_input
from ringfsck.store import Store, iso, utc_now

CONFIRMED = ("deleted", "already_gone")
KEPT_TOO_RECENT = "kept_too_recent"
KEPT_NO_MTIME = "kept_no_mtime"
OUTCOMES = ("deleted", "already_gone", KEPT_TOO_RECENT, KEPT_NO_MTIME, "failed")
# Guards an operator may override by name (delete --force NAME), recorded in the journal.
DELETE_FORCES = ("retention",)


@dataclass
class DeleteReport:
    manifest_keys: int
    selected: int
    already_confirmed: int = 0
    executed: bool = False
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    bytes_selected: int = 0
    unsized_selected: int = 0
    bytes_reclaimed: int = 0
    seconds: float = 0.0
    journal: Path | None = None  # the journal directory (in the local mirror for a store on S3)
    journal_location: str = ""  # where the journal lives, for messages
    first_failures: list[str] = field(default_factory=list)
    first_kept: list[str] = field(default_factory=list)
    budget: DeleteBudget = DeleteBudget()
    budget_reached: str | None = None  # why the run stopped at its budget, None if it did not
    left_keys: int = 0  # manifest keys (of the selection) not confirmed when the run ended
    left_bytes: int = 0
    canary_rounds: int = 0
    forced: tuple[str, ...] = ()
    endpoints: list[dict[str, Any]] = field(default_factory=list)  # EndpointStats.to_json() of each srebuildd endpoint

    @property
    def failed(self) -> int:
        return self.outcomes["failed"]

    @property
    def kept(self) -> int:
        return self.outcomes[KEPT_TOO_RECENT] + self.outcomes[KEPT_NO_MTIME]


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


def journal_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of a journal directory (segments in order) or file; torn lines are ignored."""
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path] if path.exists() else []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def read_journal(path: Path) -> dict[str, str]:
    """The last outcome per key (events such as canary askings are not keys' outcomes)."""
    return {r["ring_key"]: r["outcome"] for r in journal_records(path) if "ring_key" in r and "outcome" in r}


@dataclass(frozen=True)
class AgeGuard:
    """Whether a main chunk is old enough to delete: written at least ``retention`` before the S3 export started.

    ``cutoff`` is the export's start minus retention (None: some S3 source has no start time);
    ``listed_before`` is the latest ``mtime_max`` of the RING listings when every listing has
    one (what it lists was written before it). Where neither answers, the key is kept unless the
    operator forces ``retention`` (accepting the listing-to-export gap as the only guard).
    """

    cutoff: datetime | None
    listed_before: datetime | None
    force_retention: bool = False

    @classmethod
    def of_run(cls, summary: dict[str, Any], retention_seconds: int, *, force_retention: bool = False) -> AgeGuard:
        inputs = summary.get("inputs") or []
        # As the analysis does: whatever is not a RING listing counts as an S3 export (erring early is safe).
        exports = [_parse_time(s.get("captured_at")) for s in inputs if s.get("kind") != "listkeys"]
        start = min(exports) if exports and all(t is not None for t in exports) else None  # type: ignore[type-var]  # all checked not None just before
        listings = [s for s in inputs if s.get("kind") == "listkeys" or s.get("mtime_max")]
        listed = [_parse_time(s.get("mtime_max")) for s in listings]
        listed_before = max(listed) if listed and all(t is not None for t in listed) else None  # type: ignore[type-var]  # all checked not None just before
        cutoff = start - timedelta(seconds=retention_seconds) if start is not None else None
        return cls(cutoff, listed_before, force_retention)

    def kept_because(self, head: MainChunkHead) -> tuple[str, str] | None:
        """(outcome, reason) when the key must be kept, None when it is old enough to delete."""
        if self.cutoff is not None and head.mtime is not None:
            if head.mtime > self.cutoff:
                return KEPT_TOO_RECENT, f"X-Scal-Mtime {head.mtime_text} is after {iso(self.cutoff)} (S3 export start minus retention)"
            return None
        if self.cutoff is not None and self.listed_before is not None and self.listed_before <= self.cutoff:
            return None  # listed, so written before the listing's mtime_max, itself old enough
        if self.force_retention:
            return None
        why = (
            "no S3 export start time"
            if self.cutoff is None
            else f"no usable X-Scal-Mtime ({head.mtime_text!r})"
            if head.mtime_text
            else "no X-Scal-Mtime"
        )
        return KEPT_NO_MTIME, f"{why} and no listing mtime_max: age unknown (override: --force retention)"


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


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
        raise RefusedError(
            f"{only_keys}: {len(outside)} key(s) are not in the manifest (first: {outside[0]}); nothing outside it is ever deleted"
        )
    return sorted(set(wanted))


def _budget(store: Store, max_keys: int | None, max_bytes: int | None) -> DeleteBudget:
    """The run's budget: the options, else the config's ``delete_budget``."""
    configured = store.settings.delete_budget
    keys = max_keys if max_keys is not None else configured.keys
    size = max_bytes if max_bytes is not None else configured.bytes
    if (keys is not None and keys < 1) or (size is not None and size < 0):
        raise ConfigError(f"delete budget: --max-keys must be at least 1 and --max-bytes not negative (got {keys}, {size})")
    return DeleteBudget(keys, size)


@dataclass
class _Outcome:
    outcome: str
    status: int | None = None
    error: str | None = None
    mtime: str | None = None
    delete_sent: bool = False


def outcome_of(result: Result[str, _Outcome]) -> _Outcome:
    """A key's outcome; a HEAD that failed on every endpoint is "failed", and no DELETE was sent."""
    if result.value is not None:
        return result.value
    assert result.failure is not None
    return _Outcome("failed", error=f"check before delete: {result.failure.reason}")


def delete_from_manifest(
    store: Store,
    manifest_path: str | Path,
    *,
    execute: bool = False,
    only_keys: str | Path | None = None,
    base_url: str | Sequence[str] | None = None,
    policy: HttpPolicy | None = None,
    max_keys: int | None = None,
    max_bytes: int | None = None,
    force: tuple[str, ...] | list[str] = (),
) -> DeleteReport:
    """Verify the manifest, then report (dry run) or delete its keys on the chord path, guarded."""
    unknown = set(force) - set(DELETE_FORCES)
    if unknown:
        raise ConfigError(f"delete --force takes {', '.join(DELETE_FORCES)}; not {', '.join(sorted(unknown))}")
    with local_input(manifest_path, store.settings) as local:
        manifest = read_manifest(local, location=str(manifest_path))
    verify_against_store(manifest, store)
    refuse_if_disproved(store, manifest)  # a reverse lookup (ringfsck verify) traced a key to a live S3 reference
    selected = _only(manifest, only_keys)
    sizes = {row["ring_key"]: row["size"] for row in manifest.rows}
    journal = Journal(store, manifest.header["keys_sha256"][:32])
    confirmed = {k for k, outcome in journal.outcomes().items() if outcome in CONFIRMED}
    todo = [k for k in selected if k not in confirmed]
    report = DeleteReport(
        len(manifest.keys),
        len(selected),
        already_confirmed=len(selected) - len(todo),
        journal=journal.directory,
        journal_location=journal.location,
        budget=_budget(store, max_keys, max_bytes),
        forced=tuple(sorted(set(force))),
    )
    report.bytes_selected = sum(sizes[k] or 0 for k in todo)
    report.unsized_selected = sum(1 for k in todo if sizes[k] is None)
    report.left_keys, report.left_bytes = len(todo), report.bytes_selected
    if not execute or not todo:
        return report
    report.executed = True
    policy = policy or HttpPolicy.from_settings(store.settings)
    endpoints = srebuildd_pool(store, base_url, policy)
    endpoints.preflight()
    summary = store.run_summary(manifest.header["run_id"])
    age = AgeGuard.of_run(summary, store.settings.retention, force_retention="retention" in force)
    chord, arcdata = store.settings.chord_path, store.settings.arcdata_path
    budget = report.budget
    progress = bar(total=len(todo), desc="delete", unit="key")

    def event(record: dict[str, Any]) -> None:
        journal.write(record)
        journal.commit()

    async def guarded_delete(client: Endpoint, key: str) -> _Outcome:
        # A failed HEAD raises: nothing was sent, so the key may be tried on another endpoint,
        # HEAD first again; when every endpoint failed it, it is "failed" (outcome_of), never deleted.
        head = await head_main_chunk(client, arcdata, key, policy=policy)
        if not head.present:
            return _Outcome("already_gone", 404, mtime=head.mtime_text)
        kept = age.kept_because(head)
        if kept is not None:
            return _Outcome(kept[0], 200, kept[1], head.mtime_text)
        try:
            response = await send(client, "DELETE", f"/{chord}/{key}", policy=policy)
        except RequestFailed as failure:  # a DELETE may have been applied: not retried elsewhere this run
            return _Outcome("failed", error=failure.reason, mtime=head.mtime_text, delete_sent=True)
        if response.status_code in (200, 204):
            return _Outcome("deleted", response.status_code, mtime=head.mtime_text, delete_sent=True)
        if response.status_code == 404:
            return _Outcome("already_gone", 404, mtime=head.mtime_text, delete_sent=True)
        return _Outcome("failed", response.status_code, f"HTTP {response.status_code}", head.mtime_text, delete_sent=True)

    def journal_one(result: Result[str, _Outcome]) -> None:
        # Written the moment the answer arrives: after a kill -9 the OS still has it,
        # so only requests truly in flight can be repeated. fsync (power loss) is per batch.
        done = outcome_of(result)
        journal.write(
            {
                "ring_key": result.item,
                "outcome": done.outcome,
                "status": done.status,
                "error": done.error,
                "mtime": done.mtime,
                "size": sizes[result.item],
                "at": iso(utc_now()),
            }
        )

    sent = {"keys": 0, "bytes": 0}  # what this run put at risk: keys a DELETE was sent for (the budget counts these)

    def count(batch: list[Result[str, _Outcome]]) -> None:
        journal.commit()
        # Counted only now that the journal holds them durably.
        for result in batch:
            done = outcome_of(result)
            report.outcomes[done.outcome] += 1
            size = sizes[result.item] or 0
            if done.delete_sent:
                sent["keys"] += 1
                sent["bytes"] += size
            if done.outcome in CONFIRMED:
                report.left_keys -= 1
                report.left_bytes -= size
            if done.outcome == "deleted":
                report.bytes_reclaimed += size
            elif done.outcome == "failed" and len(report.first_failures) < 5:
                report.first_failures.append(f"{result.item}: {done.error}")
            elif done.outcome in (KEPT_TOO_RECENT, KEPT_NO_MTIME) and len(report.first_kept) < 5:
                report.first_kept.append(f"{result.item}: {done.error}")
        progress.update(len(batch))
        progress.set_postfix_str(f"{report.bytes_reclaimed / 2**30:.2f} GiB reclaimed", refresh=False)

    def next_round(queue: list[str], room: int) -> list[str]:
        """The next keys to try: at most ``room`` deletions, within the budget (which may end the run)."""
        if budget.keys is not None:
            room = min(room, budget.keys - sent["keys"])
            if room <= 0:
                report.budget_reached = f"--max-keys {budget.keys:,} reached"
                return []
        taken, planned_bytes = [], sent["bytes"]
        for key in queue[:room]:
            if budget.bytes is not None:
                size = sizes[key]
                if size is None:
                    report.budget_reached = f"--max-bytes: {key} has no known size"
                    break
                if planned_bytes + size > budget.bytes:
                    report.budget_reached = f"--max-bytes {budget.bytes:,} reached"
                    break
                planned_bytes += size
            taken.append(key)
        return taken

    canaries = Canaries(store, summary["run_id"], store.settings.canaries, base_url=endpoints, policy=policy, journal=event)
    cadence = store.settings.canaries
    started = time.perf_counter()
    event(
        {
            "event": "run",
            "run_id": summary["run_id"],
            "manifest": absolute_location(str(manifest_path)),  # for the report's next step: resume from it
            "manifest_keys": len(manifest.keys),
            "selected": len(selected),
            "todo": len(todo),
            "forced": list(report.forced),
            "budget": {"keys": budget.keys, "bytes": budget.bytes},
            "age_cutoff": iso(age.cutoff) if age.cutoff else None,
            "at": iso(utc_now()),
        }
    )
    session = BatchSession(endpoints, policy)  # one loop and one set of connections for every round
    try:
        canaries.start()
        queue, checked_at = list(todo), 0
        while queue:
            deletions = sent["keys"]
            boundary = cadence.first_after if deletions < cadence.first_after else (deletions // cadence.every + 1) * cadence.every
            batch = next_round(queue, boundary - deletions)
            if not batch:
                break
            del queue[: len(batch)]
            session.run(
                batch,
                guarded_delete,
                on_batch=count,
                on_result=journal_one,
                batch_size=200,
                flush_seconds=0.5,
            )
            if sent["keys"] >= boundary:
                canaries.check(sent["keys"])
                checked_at = sent["keys"]
        if sent["keys"] > checked_at:
            canaries.check(sent["keys"])  # what the last round did is known before the run says it is done
        event(
            {
                "event": "finished",
                "outcomes": report.outcomes,
                "budget_reached": report.budget_reached,
                "left_keys": report.left_keys,
                "endpoints": endpoints.to_json(),
                "at": iso(utc_now()),
            }
        )
    except Exception as stop:  # journaled (a canary, an outage…), then raised as it was
        reason = str(stop) if isinstance(stop, RingfsckError) else f"{type(stop).__name__}: {stop}"
        event({"event": "stopped", "reason": reason, "after_deletions": sent["keys"], "at": iso(utc_now())})
        raise
    finally:
        try:
            session.close()
            canaries.close()
        finally:  # the journal is closed whatever closing the connections did
            journal.close()
            progress.close()
            report.seconds = time.perf_counter() - started
            report.canary_rounds = len(canaries.rounds)
            report.endpoints = endpoints.to_json()
    return report


@dataclass
class DeletionHistory:
    """What the journals say of the deletions of one analysis run's manifests (the report's deletion section)."""

    manifests: int = 0
    manifest_keys: int = 0
    runs: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    bytes_reclaimed: int = 0
    canary_rounds: list[dict[str, Any]] = field(default_factory=list)  # {"at", "after_deletions", "asked"}
    forced: list[dict[str, Any]] = field(default_factory=list)  # {"at", "forced"} of runs that overrode a guard
    budget_stops: int = 0
    stopped: list[dict[str, Any]] = field(default_factory=list)  # {"at", "reason"}
    last_at: str | None = None
    manifest: str | None = None  # where the last run's manifest was (absolute), when its journal says

    @property
    def confirmed(self) -> int:
        return self.outcomes["deleted"] + self.outcomes["already_gone"]

    @property
    def left(self) -> int:
        """Manifest keys not confirmed deleted or gone: kept, failed, or not reached (budget, stop)."""
        return self.manifest_keys - self.confirmed

    @property
    def not_reached(self) -> int:
        return self.left - self.outcomes[KEPT_TOO_RECENT] - self.outcomes[KEPT_NO_MTIME] - self.outcomes["failed"]

    @property
    def canaries_asked(self) -> int:
        return sum(r["asked"] for r in self.canary_rounds)


def deletion_history(store: Store, run_id: str) -> DeletionHistory:
    """Aggregate every journal whose runs deleted from a manifest of ``run_id`` (last outcome per key)."""
    history = DeletionHistory()
    root = store.root / "journal"
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if not directory.is_dir():
            continue
        records = list(journal_records(directory))
        runs = [r for r in records if r.get("event") == "run" and r.get("run_id") == run_id]
        if not runs:
            continue
        history.manifests += 1
        history.runs += len(runs)
        history.manifest_keys += max(r.get("manifest_keys", 0) for r in runs)
        history.manifest = runs[-1].get("manifest") or history.manifest
        last: dict[str, dict[str, Any]] = {}
        for record in records:
            history.last_at = max(filter(None, (history.last_at, record.get("at"))), default=None)
            event = record.get("event")
            if "ring_key" in record and "outcome" in record:
                last[record["ring_key"]] = record
            elif event == "canaries":
                history.canary_rounds.append(
                    {"at": record.get("at"), "after_deletions": record.get("after_deletions", 0), "asked": record.get("asked", 0)}
                )
            elif event == "run" and record.get("forced"):
                history.forced.append({"at": record.get("at"), "forced": record["forced"]})
            elif event == "stopped":
                history.stopped.append({"at": record.get("at"), "reason": record.get("reason", "")})
            elif event == "finished" and record.get("budget_reached"):
                history.budget_stops += 1
        for record in last.values():
            outcome = record["outcome"] if record["outcome"] in history.outcomes else "failed"
            history.outcomes[outcome] += 1
            if outcome == "deleted":
                history.bytes_reclaimed += record.get("size") or 0
    return history
