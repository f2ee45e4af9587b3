"""ringfsck: consistency between Scality S3 metadata and the RING.

The public Python API is small; the CLI is a thin layer over it::

    from ringfsck import Store, load_settings, ingest_listkeys, ingest_s3keys, analyze, check, AnalysisOptions

    store = Store.open(load_settings(overrides={"store": "/data/fsck"}))
    ingest_listkeys(store, ["/data/DATA/listkeys.csv/"])
    ingest_s3keys(store, ["/data/DATA/s3-bucketd/"])
    result = analyze(store, AnalysisOptions(assume_no_splits=True))
    print(result.summary["counts"]["orphans"])

    # or both ingests (sharing the cores) and the analysis in one call:
    result = check(store, ["/data/DATA/listkeys.csv/"], ["/data/DATA/s3-bucketd/"], AnalysisOptions(assume_no_splits=True))
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ringfsck")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

# The API is imported on first use: the CLI and ``python -m ringfsck --help`` need
# none of DuckDB, Arrow or polars, and each command loads only what it uses.
_API = {
    "AnalysisOptions": "ringfsck.analysis",
    "AnalysisResult": "ringfsck.analysis",
    "analyze": "ringfsck.analysis",
    "CheckResult": "ringfsck.check",
    "check": "ringfsck.check",
    "Settings": "ringfsck.config",
    "load_settings": "ringfsck.config",
    "RingfsckError": "ringfsck.errors",
    "IngestReport": "ringfsck.ingest",
    "ingest_inputs": "ringfsck.ingest",
    "ingest_listkeys": "ringfsck.ingest",
    "ingest_s3keys": "ringfsck.ingest",
    "Store": "ringfsck.store",
}


def __getattr__(name: str):  # PEP 562: names resolved on first use
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ringfsck' has no attribute {name!r}")


__all__ = [
    "AnalysisOptions",
    "AnalysisResult",
    "CheckResult",
    "IngestReport",
    "RingfsckError",
    "Settings",
    "Store",
    "__version__",
    "analyze",
    "check",
    "ingest_inputs",
    "ingest_listkeys",
    "ingest_s3keys",
    "load_settings",
]
