"""ringfsck: consistency between Scality S3 metadata and the RING.

The public Python API is small; the CLI is a thin layer over it::

    from ringfsck import Store, load_settings, ingest_listkeys, ingest_s3keys, analyze, AnalysisOptions

    store = Store.open(load_settings(overrides={"store": "/data/fsck"}))
    ingest_listkeys(store, ["/data/DATA/listkeys.csv/"])
    ingest_s3keys(store, ["/data/DATA/s3-bucketd/"])
    result = analyze(store, AnalysisOptions(assume_no_splits=True))
    print(result.summary["counts"]["orphans"])
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ringfsck")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from ringfsck.analysis import AnalysisOptions, AnalysisResult, analyze  # noqa: E402
from ringfsck.config import Settings, load_settings  # noqa: E402
from ringfsck.errors import RingfsckError  # noqa: E402
from ringfsck.ingest import IngestReport, ingest_listkeys, ingest_s3keys  # noqa: E402
from ringfsck.store import Store  # noqa: E402

__all__ = [
    "AnalysisOptions",
    "AnalysisResult",
    "IngestReport",
    "RingfsckError",
    "Settings",
    "Store",
    "__version__",
    "analyze",
    "ingest_listkeys",
    "ingest_s3keys",
    "load_settings",
]
