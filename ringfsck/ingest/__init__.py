"""Ingestion: land RING listkeys and S3 key exports in the store as Parquet."""

from __future__ import annotations

from ringfsck.errors import InputError
from ringfsck.ingest.identity import FileOutcome
from ringfsck.ingest.inputs import expand_paths
from ringfsck.ingest.loop import IngestJob, IngestReport, ingest_jobs
from ringfsck.store import Store

__all__ = ["IngestReport", "FileOutcome", "ingest_inputs", "ingest_listkeys", "ingest_s3keys"]


def ingest_listkeys(store: Store, paths: list[str] | tuple[str, ...]) -> IngestReport:
    """Ingest RING listkeys dumps (files, directories, globs, .gz) into ``listkeys``."""
    (report,) = ingest_jobs(store, [_listkeys_job(store, paths)])
    _check_some_valid_row([report])
    return report


def ingest_s3keys(store: Store, paths: list[str] | tuple[str, ...]) -> IngestReport:
    """Ingest S3 key exports (per-bucket CSV or JSON-lines logs) into ``s3keys``.

    An empty per-bucket file is normal (an empty bucket); no keys at all is an error.
    """
    (report,) = ingest_jobs(store, [_s3keys_job(store, paths)])
    _check_some_valid_row([report])
    _check_s3keys(report, paths)
    report.overlaps = _overlaps(store, report)
    return report


def ingest_inputs(
    store: Store, listkeys: list[str] | tuple[str, ...], s3keys: list[str] | tuple[str, ...]
) -> tuple[IngestReport, IngestReport]:
    """Ingest a RING listing and an S3 export together, their files sharing the cores: (listkeys, s3keys) reports.

    Either may be empty (nothing of that kind is ingested: the store keeps what it holds).
    """
    jobs = ([_listkeys_job(store, listkeys)] if listkeys else []) + ([_s3keys_job(store, s3keys)] if s3keys else [])
    reports = iter(ingest_jobs(store, jobs))
    listkeys_report = next(reports) if listkeys else IngestReport("listkeys")
    s3keys_report = next(reports) if s3keys else IngestReport("s3keys")
    _check_some_valid_row([listkeys_report, s3keys_report])
    if s3keys:
        _check_s3keys(s3keys_report, s3keys)
        s3keys_report.overlaps = _overlaps(store, s3keys_report)
    return listkeys_report, s3keys_report


# Each format's parser is imported when its kind is ingested (the S3 key one needs Arrow's CSV reader).
def _listkeys_job(store: Store, paths: list[str] | tuple[str, ...]) -> IngestJob:
    from ringfsck.ingest.listkeys import parse_listkeys

    return IngestJob("listkeys", expand_paths(paths, store.settings), parse_listkeys, ("listkeys",))


def _s3keys_job(store: Store, paths: list[str] | tuple[str, ...]) -> IngestJob:
    from ringfsck.ingest.s3keys import parse_s3keys

    return IngestJob("s3keys", expand_paths(paths, store.settings), parse_s3keys, ("s3keys",), allow_empty=True)


def _overlaps(store: Store, report: IngestReport) -> list[str]:
    from ringfsck.ingest.overlap import overlap_notes

    return overlap_notes(store, [f.location for f in report.files if f.status == "ingested" and f.rows])


def _check_some_valid_row(reports: list[IngestReport]) -> None:
    """A file whose every row was rejected is most likely not the kind of file it was given as.

    Raised once every file of the call is recorded: its source and rejects are in the store (the
    rejected rows of an S3 export keep the analysis incomplete), so nothing is lost by stopping.
    """
    junk = [f.location for report in reports for f in report.files if f.status != "duplicate" and f.rows == 0 and f.rejected > 0]
    if junk:
        raise InputError(f"{', '.join(junk)}: no valid row: is this the right kind of file?")


def _check_s3keys(report: IngestReport, paths: list[str] | tuple[str, ...]) -> None:
    if report.rows == 0 and report.rejected == 0 and report.count("duplicate") == 0:
        raise InputError(f"{', '.join(paths)}: empty input (no S3 keys in {len(report.files)} file(s))")
