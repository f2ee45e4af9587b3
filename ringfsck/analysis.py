"""The offline analysis: run the SQL steps over the store and record a run.

Each ``sql/NN_name.sql`` file is one SELECT (dbt-style model), exposed under
its name to the steps after it (declared in :mod:`ringfsck.steps`). The written
outputs (ring_main_chunks with its keys packed, orphans, gaps, debris, duplicates)
go to ``runs/<id>/name.parquet``; candidates is a view over ring_main_chunks
(``RUN_VIEWS``); s3_references stays a DuckDB temp table, which spills to the temp directory beyond
``memory_limit``. A step that filters on ``getvariable('partition_low')`` runs
once per range of key-prefix partitions of the listkeys row groups
(``ringfsck.partitions``): as many passes as it takes to keep each one under
``ROWS_PER_PASS`` listkeys rows, so its aggregation stays in memory.
``00_macros.sql`` holds the key rules.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from ringfsck import __version__
from ringfsck.config import Settings
from ringfsck.keys import arc_app_specific
from ringfsck.partitions import PARTITIONS, pass_bounds
from ringfsck.progress import bar
from ringfsck.steps import RUN_VIEWS, WRITTEN_OUTPUTS, sql_steps, step_query
from ringfsck.store import Store, iso, one_row, scalar, sql_literal, utc_now, write_json_atomic

# Unrecoverable first: data already lost (fewer than k chunks), whatever the other figures say.
GAP_STATUSES = ("unrecoverable", "missing", "degraded")
# A step whose SQL filters on this runs once per range of listkeys partitions.
PARTITION_FILTER = "getvariable('partition_low')"
# Listkeys rows per pass of such a step: its per-main-chunk aggregation then needs a few
# hundred MB (one pass up to 32 M rows, 4 passes at 100 M, 8 at 250 M).
ROWS_PER_PASS = 32_000_000
_PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings of one analysis beyond the config (from the command line)."""

    assume_no_splits: bool = False  # the operator states no object is split: no resolve needed
    listing_time: datetime | None = None  # override: when the RING listing was taken


@dataclass
class AnalysisResult:
    run_id: str
    path: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.summary.get("complete"))


def analyze(store: Store, options: AnalysisOptions | None = None) -> AnalysisResult:
    """Run every SQL step, write the outputs and the run summary, mark the run as latest."""
    run_id, run_path = store.new_run_dir()
    try:
        return _write_run(store, options or AnalysisOptions(), run_id, run_path)
    except BaseException:
        store.discard_run(run_id)  # a run is published whole or leaves nothing behind
        raise


def _write_run(store: Store, options: AnalysisOptions, run_id: str, run_path: Path) -> AnalysisResult:
    settings = store.settings
    started = utc_now()
    clock = time.perf_counter()
    con = store.connect(run_id=None)
    listing_time = options.listing_time or _listing_time(store)
    _set_variables(con, settings, listing_time)
    # Known before any step runs (base tables only): the orphans step marks its rows reclaimable
    # only when the reference set is complete.
    completeness = check_completeness(con, store, settings, options)
    con.execute(f"SET VARIABLE references_complete = {'true' if not completeness.incomplete else 'false'}")
    steps = sql_steps()
    timings: dict[str, float] = {}
    progress = bar(total=len(steps), desc="analyze", unit="step")
    try:
        for name, path in steps:
            step_clock = time.perf_counter()
            _run_step(con, name, step_query(path), run_path, progress)
            timings[name] = round(time.perf_counter() - step_clock, 3)
    finally:
        progress.close()
    summary = _summarize(con, store, settings, options, listing_time, completeness)
    summary.update(
        run_id=run_id,
        ringfsck_version=__version__,
        started_at=iso(started),
        finished_at=iso(utc_now()),
        duration_s=round(time.perf_counter() - clock, 3),
        step_seconds=timings,
    )
    write_json_atomic(run_path / "summary.json", summary)
    store.set_latest_run(run_id)
    con.close()
    return AnalysisResult(run_id, run_path, summary)


def _run_step(con: duckdb.DuckDBPyConnection, name: str, query: str, run_path: Path, progress) -> None:
    if name in RUN_VIEWS:
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {query}")
        progress.update(1)
        return
    if PARTITION_FILTER in query:
        # One run per range of key-prefix partitions, appended: each reads only its row groups.
        bounds = pass_bounds(partition_passes(scalar(con, "SELECT count(*) FROM listkeys_packed")))
        for index, (low, high) in enumerate(bounds):
            con.execute(f"SET VARIABLE partition_low = {low}::UBIGINT")
            con.execute(f"SET VARIABLE partition_high = {high}::UBIGINT")
            verb = f"CREATE OR REPLACE TEMP TABLE {name} AS" if index == 0 else f"INSERT INTO {name}"
            con.execute(f"{verb} {query}")
            progress.update(1 / len(bounds))
        if name in WRITTEN_OUTPUTS:
            # Written for the store's views (ringfsck sql, report); the next steps read the temp table.
            con.execute(f"COPY {name} TO {sql_literal(str(run_path / f'{name}.parquet'))} ({_PARQUET_OPTIONS})")
        return
    if name in WRITTEN_OUTPUTS:
        target = run_path / f"{name}.parquet"
        con.execute(f"COPY ({query}) TO {sql_literal(str(target))} ({_PARQUET_OPTIONS})")
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({sql_literal(str(target))})")
    else:
        # Intermediate steps stay in DuckDB (spilled to the temp directory when large).
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}")
    progress.update(1)


def partition_passes(listkeys_rows: int) -> int:
    """How many passes a partitioned step makes: a power of two, each under ROWS_PER_PASS rows."""
    passes = 1
    while passes < PARTITIONS and listkeys_rows > passes * ROWS_PER_PASS:
        passes *= 2
    return passes


def _set_variables(con: duckdb.DuckDBPyConnection, settings: Settings, listing_time: datetime | None) -> None:
    con.execute(f"SET VARIABLE min_chunks = {int(settings.min_chunks)}")
    con.execute(f"SET VARIABLE arc_app_specific = {sql_literal(arc_app_specific(settings.arc_protection))}")
    con.execute(f"SET VARIABLE arc_stripes = {int(settings.arc_protection.stripes)}")
    if listing_time is None:
        con.execute("SET VARIABLE listing_time = NULL::TIMESTAMPTZ")
    else:
        con.execute(f"SET VARIABLE listing_time = {sql_literal(iso(listing_time))}::TIMESTAMPTZ")


def _listing_time(store: Store) -> datetime | None:
    """When the RING listing was taken: the earliest capture time of the listkeys sources."""
    times = [s.captured_at for s in store.sources() if s.kind == "listkeys"]
    return datetime.fromisoformat(min(times).replace("Z", "+00:00")) if times else None


def inputs_fingerprint(sources: list[dict[str, Any]]) -> str:
    """A checksum over what was analysed: every source's kind, location and checksum."""
    lines = sorted(f"{s['kind']}\t{s['location']}\t{s['checksum']}" for s in sources)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass
class Completeness:
    """Whether the reference set is complete: every reason it is not, and the split lookups' state."""

    incomplete: list[str]
    warnings: list[str]
    splits: dict[str, int]


# Rejected rows shown by name in an incomplete reason (the rejects view has them all).
_REJECTS_NAMED = 3


def check_completeness(con: duckdb.DuckDBPyConnection, store: Store, settings: Settings, options: AnalysisOptions) -> Completeness:
    """Every reason the S3 reference set (or the listing) is known to be incomplete: each refuses deletion.

    Whatever ringfsck could not read, parse or look up is a reference it does not know, so
    the orphans it would otherwise report might be live data (docs/domain.md section 8).
    """
    incomplete: list[str] = []
    warnings: list[str] = []
    splits = _split_status(con, settings, options)
    if splits["errors"]:
        incomplete.append(
            f"{splits['errors']} split lookups failed: their subkeys are unknown, and any candidate could be one (rerun 'ringfsck resolve')"
        )
    if splits["unresolved"]:
        incomplete.append(
            f"{splits['unresolved']} S3 input keys were never checked for split objects "
            "(run 'ringfsck resolve', or pass --assume-no-splits if no object is split)"
        )
    for source in store.sources():
        incomplete.extend(source.incomplete)
        warnings.extend(source.warnings)
    for source_id, state in store.bucketd_progress().items():
        if not state.get("complete"):
            # Its finished pages are in s3keys, the rest is not: the missing objects' data would look orphaned.
            incomplete.append(
                f"the bucketd export of bucket {state.get('bucket', source_id)} is unfinished (rerun 'ringfsck ingest bucketd' to resume it)"
            )
    rejected = scalar(con, "SELECT count(*) FROM s3_rejects")
    if rejected:
        named = con.execute(f"SELECT source, line, reason FROM s3_rejects ORDER BY source, line LIMIT {_REJECTS_NAMED}").fetchall()
        first = "; ".join(f"{source}{f' line {line}' if line is not None else ''}: {reason}" for source, line, reason in named)
        incomplete.append(
            f"{rejected:,} S3 export row(s) could not be parsed, so the references they hold are unknown "
            f"(fix or re-export them; see the rejects view): {first}{' …' if rejected > len(named) else ''}"
        )
    listing_rejects = scalar(con, "SELECT count(*) FROM rejects") - rejected
    if listing_rejects:
        warnings.append(f"{listing_rejects:,} RING listing rows were rejected (see the rejects view): their chunks are not counted")
    if scalar(con, "SELECT count(*) FROM s3keys") == 0:
        incomplete.append("no S3 keys were ingested: every candidate would look orphaned")
    if scalar(con, "SELECT count(*) FROM listkeys_packed") == 0:
        incomplete.append("no RING listkeys were ingested")
    return Completeness(incomplete, warnings, splits)


def _summarize(
    con: duckdb.DuckDBPyConnection,
    store: Store,
    settings: Settings,
    options: AnalysisOptions,
    listing_time: datetime | None,
    completeness: Completeness,
) -> dict[str, Any]:
    sources = [
        {
            k: v
            for k, v in vars(s).items()
            if k
            in ("kind", "location", "size", "checksum", "format", "captured_at", "rows", "rejected", "warnings", "incomplete", "mtime_max")
        }
        for s in store.sources()
    ]
    counts: dict[str, Any] = {
        "listkeys_rows": scalar(con, "SELECT count(*) FROM listkeys"),
        "s3keys_rows": scalar(con, "SELECT count(*) FROM s3keys"),
        "s3_references": scalar(con, "SELECT count(*) FROM s3_references"),
        "split_subkeys": scalar(con, "SELECT count(DISTINCT sproxyd_key) FROM s3_references WHERE role = 'subkey'"),
        "ring_main_chunks": scalar(con, "SELECT count(*) FROM ring_main_chunks"),
        "candidates": scalar(con, "SELECT count(*) FROM candidates"),
        "orphans": scalar(con, "SELECT count(*) FROM orphans"),
        "debris": scalar(con, "SELECT count(*) FROM debris"),
        "duplicates": scalar(con, "SELECT count(*) FROM duplicates"),
        "rejects": scalar(con, "SELECT count(*) FROM rejects"),
        "gaps": {status: 0 for status in GAP_STATUSES},
    }
    counts["tombstones"], counts["tombstoned_main_chunks"] = _tombstone_counts(con)
    for status, count in con.execute("SELECT status, count(*) FROM gaps GROUP BY status").fetchall():
        counts["gaps"][status] = count
    counts["gaps_total"] = sum(counts["gaps"].values())
    # The protections read from the keys themselves (what the raw figures use), not the settings.
    counts["protections"] = [
        {"protection": protection, "schema": schema, "main_chunks": main_chunks, "candidates": candidates}
        for protection, schema, main_chunks, candidates in con.execute(
            "SELECT protection, schema, count(*), count(*) FILTER (WHERE candidate) FROM ring_main_chunks GROUP BY ALL ORDER BY 3 DESC, 1, 2"
        ).fetchall()
    ]
    counts["orphans_by_protection"] = dict(con.execute("SELECT protection, count(*) FROM orphans GROUP BY ALL ORDER BY 1").fetchall())
    if listing_time is not None:
        counts["references_newer_than_listing"] = scalar(
            con, f"SELECT count(*) FROM s3_references WHERE last_modified >= {sql_literal(iso(listing_time))}::TIMESTAMPTZ"
        )

    incomplete, warnings = list(completeness.incomplete), list(completeness.warnings)
    splits = dict(completeness.splits)
    counts["s3_input_keys"] = splits.pop("input_keys")
    counts["rejected_references"] = scalar(con, "SELECT count(DISTINCT sproxyd_key) FROM s3_references WHERE role = 'rejected'")
    share = counts["orphans"] / counts["candidates"] if counts["candidates"] else 0.0
    if counts["candidates"] and share > settings.max_orphan_share:
        warnings.append(
            f"orphans are {share:.1%} of candidates (limit {settings.max_orphan_share:.0%}): "
            "a wrong protection setting or a missing S3 export is more likely than real orphans"
        )
    configured = str(settings.arc_protection)
    other_schemas = con.execute(
        f"SELECT schema, count(*) FROM candidates WHERE protection = 'arc' AND schema <> {sql_literal(configured)} GROUP BY ALL ORDER BY 2 DESC"
    ).fetchall()
    if other_schemas:
        listed = ", ".join(f"{schema} ({count})" for schema, count in other_schemas)
        warnings.append(f"ARC candidates with a schema other than the configured {configured}: {listed}")
    cos_others = [
        (row["schema"], row["main_chunks"])
        for row in counts["protections"]
        if row["protection"] == "cos" and row["schema"] != str(settings.cos_protection)
    ]
    if cos_others:
        listed = ", ".join(f"COS {schema} ({count:,})" for schema, count in cos_others)
        warnings.append(
            f"COS main chunks with a replica count other than the configured COS {settings.cos_protection} (--cos, cos_protection): {listed}; "
            "each key is judged and sized by its own replica count"
        )
    listkeys_times = [s["captured_at"] for s in sources if s["kind"] == "listkeys"]
    export_times = [s["captured_at"] for s in sources if s["kind"] != "listkeys"]
    return {
        "complete": not incomplete,
        # Orphans are reclaimable only from a complete reference set: no override changes that.
        "reclaimable": not incomplete,
        "incomplete_reasons": incomplete,
        "warnings": warnings,
        "orphan_share": round(share, 6),
        "counts": counts,
        "splits": splits,
        "settings": {
            "arc_protection": configured,
            "cos_protection": settings.cos_protection,
            "min_chunks": settings.min_chunks,
            "max_orphan_share": settings.max_orphan_share,
            "split_threshold": settings.split_threshold,
            "assume_no_splits": options.assume_no_splits,
            "ring": settings.ring,
        },
        "listing_time": iso(listing_time) if listing_time else None,
        "listing_captured": [min(listkeys_times), max(listkeys_times)] if listkeys_times else None,
        "export_captured": [min(export_times), max(export_times)] if export_times else None,
        "inputs": sources,
        "inputs_fingerprint": inputs_fingerprint(sources),
    }


def _tombstone_counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Tombstone rows listed (deleted chunks awaiting purge), and the S3 main chunks listed with only
    tombstones: 02_ring_main_chunks gives those no row, so they are counted here, apart."""
    rows, main_chunks = one_row(
        con,
        """
        WITH tombstoned AS (
            SELECT main_chunk_hi AS hi, main_chunk_mid AS mid, main_chunk_lo AS lo
            FROM listkeys_packed
            WHERE flag_is_tombstone(flag)
        )
        SELECT (SELECT count(*) FROM tombstoned),
               (SELECT count(*) FROM (SELECT DISTINCT hi, mid, lo FROM tombstoned WHERE packed_is_s3_main_chunk(mid, lo)) AS t
                ANTI JOIN ring_main_chunks AS m USING (hi, mid, lo))
        """,
    )
    return rows, main_chunks


def _split_status(con: duckdb.DuckDBPyConnection, settings: Settings, options: AnalysisOptions) -> dict[str, int]:
    """How many input keys there are, and how many have a final split answer, failed, or were never asked."""
    row = one_row(
        con,
        """
        SELECT
            count(*) FILTER (WHERE lookup_is_final(s.status)) AS resolved,
            count(*) FILTER (WHERE s.status = 'error') AS errors,
            count(*) FILTER (WHERE s.status IS NULL AND NOT k.below_split_threshold) AS unresolved,
            count(*) FILTER (WHERE s.status IS NULL AND k.below_split_threshold) AS below_threshold,
            count(*) FILTER (WHERE s.is_split) AS split,
            count(*) AS input_keys
        FROM s3_input_keys AS k
        LEFT JOIN splits AS s ON s.input_key = k.sproxyd_key
        """,
    )
    resolved, errors, unresolved, below_threshold, split, input_keys = row
    return {
        "input_keys": input_keys,
        "resolved": resolved,
        "errors": errors,
        "unresolved": 0 if options.assume_no_splits else unresolved,
        "assumed_not_split": unresolved if options.assume_no_splits else 0,
        "below_split_threshold": below_threshold,
        "split": split,
    }
