"""Which source a file is, and whether its content is already in the store.

A source is identified by its kind and location. Re-ingesting an unchanged source (same size
and checksum) does nothing; a different location with the same content as an ingested source,
or as an earlier file of the same call, is a duplicate (e.g. a node dump copied twice) and is
skipped with a warning, so nothing is ever counted twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ringfsck.errors import InputError
from ringfsck.ingest.inputs import Input
from ringfsck.store import Source, iso, utc_now


@dataclass
class FileOutcome:
    location: str
    status: str  # ingested | unchanged | duplicate
    rows: int = 0
    rejected: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    format: str = ""
    warnings: list[str] = field(default_factory=list)


def source_id(kind: str, location: str) -> str:
    return hashlib.sha256(f"{kind}\0{location}".encode()).hexdigest()[:16]


def settled_outcome(kind: str, file: Input, known: dict[str, Source]) -> FileOutcome | None:
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


def mark_duplicates_within(files: list[Input], outcomes: list[FileOutcome | None]) -> None:
    """Among the files still to parse (outcome None), a later file with the same content as an earlier one is a duplicate."""
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


def failed_source(kind: str, file: Input, error: InputError) -> Source:
    """The record of an S3 export that could not be read: its references are unknown, so every analysis
    stays incomplete until the file is ingested whole (its checksum never matches: it is read again)."""
    sid = source_id(kind, file.location)
    return Source(
        id=sid,
        kind=kind,
        location=file.location,
        size=0,
        checksum="failed",
        format="unreadable",
        captured_at=iso(utc_now()),
        ingested_at=iso(utc_now()),
        incomplete=[f"{error} (the references of this export are unknown until it is ingested whole)"],
    )
