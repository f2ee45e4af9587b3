"""Ingestion: land RING listkeys and S3 key exports in the store as Parquet."""

from __future__ import annotations

from ringfsck.errors import InputError
from ringfsck.ingest._registry import FileOutcome, IngestReport, ingest_files
from ringfsck.ingest.inputs import expand_paths
from ringfsck.ingest.listkeys import parse_listkeys
from ringfsck.ingest.s3keys import parse_s3keys
from ringfsck.store import Store

__all__ = ["IngestReport", "FileOutcome", "ingest_listkeys", "ingest_s3keys"]


def ingest_listkeys(store: Store, paths: list[str] | tuple[str, ...]) -> IngestReport:
    """Ingest RING listkeys dumps (files, directories, globs, .gz) into ``listkeys``."""
    return ingest_files(store, "listkeys", expand_paths(paths, store.settings), parse_listkeys, ("listkeys",))


def ingest_s3keys(store: Store, paths: list[str] | tuple[str, ...]) -> IngestReport:
    """Ingest S3 key exports (per-bucket CSV or JSON-lines logs) into ``s3keys``.

    An empty per-bucket file is normal (an empty bucket); no keys at all is an error.
    """
    report = ingest_files(store, "s3keys", expand_paths(paths, store.settings), parse_s3keys, ("s3keys",), allow_empty=True)
    if report.rows == 0 and report.rejected == 0 and report.count("duplicate") == 0:
        raise InputError(f"{', '.join(paths)}: empty input (no S3 keys in {len(report.files)} file(s))")
    return report
