"""The SQL of ``sql/``, declared once: the key rules, the store's views, the analysis steps and their outputs.

``00_macros.sql`` holds the key rules every query uses. ``sql/views/NN_name.sql`` are the
store's views over its tables (``Store.create_views``). ``sql/NN_name.sql`` are the analysis
steps, run in order by :mod:`ringfsck.analysis`, each a SELECT exposed under its name to the
steps after it; RUN_OUTPUTS are the ones a run keeps, with their column contracts: written to
``runs/<id>/name.parquet``, or (RUN_VIEWS) views over those. Plain data and file lookups, so that
the store can show a run's outputs without importing the analysis.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ringfsck._resources import resource_dir

if TYPE_CHECKING:
    import duckdb

MACROS_FILE = "00_macros.sql"
# The store's views over its tables and the run's outputs, one SELECT per file.
VIEWS_DIR = "views"

# Outputs of an analysis run, with their column contracts.
RUN_OUTPUTS: dict[str, dict[str, str]] = {
    # Every RING main chunk that may hold S3 data, keys packed like listkeys (one row per main chunk).
    "ring_main_chunks": {
        "hi": "UBIGINT",
        "mid": "UBIGINT",
        "lo": "UINTEGER",
        "dig_hi": "UBIGINT",
        "dig_lo": "UBIGINT",
        "protection": "VARCHAR",
        "schema": "VARCHAR",
        "chunks": "BIGINT",
        "candidate": "BOOLEAN",
        "healthy": "BOOLEAN",
    },
    "candidates": {
        "ring_key": "VARCHAR",
        "digkey": "VARCHAR",
        "protection": "VARCHAR",
        "chunks": "BIGINT",
        "service_id": "VARCHAR",
        "schema": "VARCHAR",
    },
    "orphans": {
        "ring_key": "VARCHAR",
        "digkey": "VARCHAR",
        "protection": "VARCHAR",
        "chunks": "BIGINT",
        "service_id": "VARCHAR",
        "schema": "VARCHAR",
        "reclaimable": "BOOLEAN",
    },
    "gaps": {
        "bucket": "VARCHAR",
        "object_key": "VARCHAR",
        "version_id": "VARCHAR",
        "sproxyd_key": "VARCHAR",
        "parent_key": "VARCHAR",
        "ring_key": "VARCHAR",
        "chunks_found": "BIGINT",
        "chunks_expected": "BIGINT",
        "status": "VARCHAR",
    },
    "debris": {
        "ring_key": "VARCHAR",
        "digkey": "VARCHAR",
        "chunks": "BIGINT",
        "referenced": "BOOLEAN",
        "service_id": "VARCHAR",
        "schema": "VARCHAR",
    },
    "duplicates": {"sproxyd_key": "VARCHAR", "reference_count": "BIGINT", "objects": "VARCHAR[]"},
}
# Run outputs kept as views over the others (their SQL step), not written: candidates are most of
# ring_main_chunks, and writing tens of millions of hex keys would cost more than the analysis.
RUN_VIEWS = ("candidates",)
# Outputs written to the run's directory; the next steps of the analysis read them too.
WRITTEN_OUTPUTS = tuple(name for name in RUN_OUTPUTS if name not in RUN_VIEWS)


def load_macros(con: duckdb.DuckDBPyConnection) -> None:
    """The key rules of ``sql/00_macros.sql`` (the views and every SQL step use them)."""
    con.execute((resource_dir("sql") / MACROS_FILE).read_text())


def view_files() -> list[tuple[str, Path]]:
    """The store's views in the order they are created: (view name, file), from ``sql/views/NN_name.sql``."""
    return [(path.stem.split("_", 1)[1], path) for path in sorted((resource_dir("sql") / VIEWS_DIR).glob("[0-9][0-9]_*.sql"))]


def sql_steps() -> list[tuple[str, Path]]:
    """The analysis steps in order: (output name, file), from ``sql/NN_name.sql``."""
    steps = []
    for path in sorted(resource_dir("sql").glob("[0-9][0-9]_*.sql")):
        if path.name != MACROS_FILE:
            steps.append((path.stem.split("_", 1)[1], path))
    return steps


def step_query(path: Path) -> str:
    """The SELECT of a step file."""
    return path.read_text().rstrip().rstrip(";")


def step_sql(name: str) -> str:
    """The SELECT of one analysis step, by name."""
    for step, path in sql_steps():
        if step == name:
            return step_query(path)
    raise KeyError(name)
