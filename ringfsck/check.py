"""The whole offline job in one call: take the RING listing and the S3 export, then analyze.

What the reference does with three Spark jobs (listing, S3 export, anti-join), in one
process. The listing is taken first: natively from the supervisor when one is configured
(``sup.url``) and no listkeys files are given, else from the files. The files of both inputs
share the cores, and files already ingested unchanged are skipped (so are nodes listed
completely before), so running it again after a new export only reads what changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ringfsck.analysis import AnalysisOptions, AnalysisResult, analyze
from ringfsck.ingest import IngestReport, ingest_inputs
from ringfsck.store import Store

if TYPE_CHECKING:  # the native listing's modules are imported when it runs
    from ringfsck.ingest.ring import NodeOutcome, RingReport


@dataclass
class CheckResult:
    listkeys: IngestReport
    s3keys: IngestReport
    analysis: AnalysisResult
    ring: RingReport | None = None  # the native listing, when it was taken


def check(
    store: Store,
    listkeys: list[str] | tuple[str, ...],
    s3keys: list[str] | tuple[str, ...],
    options: AnalysisOptions | None = None,
    *,
    on_node: Callable[[NodeOutcome], None] | None = None,
) -> CheckResult:
    """Take the listing (``listkeys`` paths, else the supervisor's nodes when ``sup.url`` is set), ingest ``s3keys``, analyze.

    ``on_node`` sees each node's outcome of a native listing as it ends.
    """
    ring = None
    supervisor = store.settings.sup.url
    if not listkeys and supervisor:
        from ringfsck.ingest.ring import ingest_ring, sup_credentials

        ring = ingest_ring(store, supervisor=supervisor, credentials=sup_credentials(store.settings, [supervisor]), on_node=on_node)
    listkeys_report, s3keys_report = ingest_inputs(store, listkeys, s3keys)
    return CheckResult(listkeys_report, s3keys_report, analyze(store, options), ring)
