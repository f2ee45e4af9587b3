"""The whole offline job in one call: ingest the RING listing and the S3 export, then analyze.

What the reference does with three Spark jobs (listing, S3 export, anti-join), in one
process: the files of both inputs share the cores, and files already ingested
unchanged are skipped, so running it again after a new export only reads what changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringfsck.analysis import AnalysisOptions, AnalysisResult, analyze
from ringfsck.ingest import IngestReport, ingest_inputs
from ringfsck.store import Store


@dataclass
class CheckResult:
    listkeys: IngestReport
    s3keys: IngestReport
    analysis: AnalysisResult


def check(
    store: Store,
    listkeys: list[str] | tuple[str, ...],
    s3keys: list[str] | tuple[str, ...],
    options: AnalysisOptions | None = None,
) -> CheckResult:
    """Ingest ``listkeys`` and ``s3keys`` (paths as for the ingest commands), then run the analysis."""
    listkeys_report, s3keys_report = ingest_inputs(store, listkeys, s3keys)
    return CheckResult(listkeys_report, s3keys_report, analyze(store, options))
