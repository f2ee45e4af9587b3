"""The capacity report: one self-contained HTML file for the operator and the customer.

Rendered from ``reports/templates/report.html.j2`` with autoescaping (object
keys are arbitrary UTF-8). No external scripts, fonts or styles; charts are
inline SVG, computed here so the template stays declarative.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import jinja2

from ringfsck import __version__
from ringfsck._resources import resource_dir
from ringfsck.analysis import GAP_STATUSES
from ringfsck.capacity import capacity_summary, human_bytes
from ringfsck.commands import absolute_location, printed_command
from ringfsck.deleter import DeletionHistory, deletion_history
from ringfsck.history import run_history
from ringfsck.s3 import is_s3_url, local_output
from ringfsck.store import Store, iso, utc_now

TEMPLATE = "report.html.j2"
_FIRST_KEYS = 3
_TOP_DISKS = 24
MANIFEST_NAME = "orphans.csv"  # where the report's next steps put the manifest: in the store's folder
# Rows of the unrecoverable, debris and duplicates tables (all of them: ringfsck sql).
FIRST_ROWS = 20
_SHORT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def quoted_name(name: str | None) -> str:
    """An S3 object name as the report shows it: in double quotes, every control, format or separator
    character (newlines, NUL, bidi overrides, zero-width marks) written as an escape, so that two names
    that look alike on screen never read alike: ``"crlf\\r\\nkey"``."""
    if name is None:
        return "(none)"
    out = []
    for char in name:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _bars(rows: list[dict[str, Any]], label: str, value: str, *, width: int = 560, bar_height: int = 18) -> dict[str, Any]:
    """Geometry of a horizontal bar chart (label, bar, value text) for the template."""
    peak = max((row[value] or 0 for row in rows), default=0) or 1
    label_width = 170
    bars = []
    for i, row in enumerate(rows):
        amount = row[value] or 0
        bars.append(
            {
                "y": i * (bar_height + 6),
                "label": str(row[label]),
                "width": max(1.0, (width - label_width - 90) * amount / peak) if amount else 0,
                "text": human_bytes(amount) if "bytes" in value else f"{amount:,}",
            }
        )
    return {
        "bars": bars,
        "width": width,
        "height": max(1, len(rows)) * (bar_height + 6),
        "label_width": label_width,
        "bar_height": bar_height,
    }


def _gaps_by_bucket(con) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT bucket, count(*) FILTER (WHERE status = 'missing'), count(*) FILTER (WHERE status = 'unrecoverable'), "
        "count(*) FILTER (WHERE status = 'degraded'), list(DISTINCT object_key ORDER BY object_key)[1:?] "
        "FROM gaps GROUP BY bucket ORDER BY count(*) FILTER (WHERE status = 'unrecoverable') DESC, count(*) DESC, bucket",
        [_FIRST_KEYS],
    ).fetchall()
    return [{"bucket": b, "missing": m, "unrecoverable": u, "degraded": d, "first_keys": keys} for b, m, u, d, keys in rows]


def _dicts(con, query: str, parameters: list[Any] | None = None) -> list[dict[str, Any]]:
    result = con.execute(query, parameters or [])
    columns = [d[0] for d in result.description]
    return [dict(zip(columns, row)) for row in result.fetchall()]


def _unrecoverable_gaps(con) -> list[dict[str, Any]]:
    """The first objects whose data is lost (fewer than k chunks): what the customer must hear first."""
    return _dicts(
        con,
        "SELECT bucket, object_key, version_id, sproxyd_key, ring_key, chunks_found, chunks_expected FROM gaps "
        "WHERE status = 'unrecoverable' ORDER BY bucket, object_key, version_id NULLS FIRST, sproxyd_key LIMIT ?",
        [FIRST_ROWS],
    )


def _debris_rows(con) -> list[dict[str, Any]]:
    """The first debris main chunks, referenced ones first, with the objects whose data they are (from gaps)."""
    return _dicts(
        con,
        """
        SELECT d.ring_key, d.schema, d.chunks, d.referenced,
               list(DISTINCT g.bucket || '/' || g.object_key ORDER BY g.bucket || '/' || g.object_key)
                   FILTER (WHERE g.bucket IS NOT NULL)[1:?] AS objects
        FROM debris AS d LEFT JOIN gaps AS g ON left(g.ring_key, 26) = d.digkey
        GROUP BY ALL ORDER BY d.referenced DESC, d.ring_key LIMIT ?""",
        [_FIRST_KEYS, FIRST_ROWS],
    )


def _duplicate_rows(con) -> list[dict[str, Any]]:
    return _dicts(
        con,
        "SELECT sproxyd_key, reference_count, objects[1:?] AS objects FROM duplicates ORDER BY reference_count DESC, sproxyd_key LIMIT ?",
        [_FIRST_KEYS, FIRST_ROWS],
    )


def _context(counts: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """Figures that frame the headline: listed main chunks, candidates, the gaps total, the protections read from the keys."""
    gaps = counts["gaps"]
    return {
        "main_chunks": counts["ring_main_chunks"],
        "candidate_share": counts["candidates"] / counts["ring_main_chunks"] if counts["ring_main_chunks"] else 0.0,
        "gaps": [(status, gaps.get(status, 0)) for status in GAP_STATUSES],
        "gaps_total": sum(gaps.values()),
        # Runs analysed before the protections were counted show the settings instead.
        "protections": counts.get("protections"),
    }


def _next_commands(store: Store, summary: dict[str, Any], capacity: dict[str, Any], deletion: DeletionHistory) -> list[tuple[str, str]]:
    """The next steps that follow from the state (incomplete, deleting, deleted), each a command that
    runs as printed from any folder (ringfsck.commands)."""

    def command(*words: str, srebuildd: bool = False) -> str:
        return printed_command(store, *words, srebuildd=srebuildd)

    if not summary["complete"]:
        return [
            (command("resolve", srebuildd=True), "finish the split lookups (failed or never made)"),
            (command("analyze"), "re-run the analysis once the inputs are complete"),
        ]
    if deletion.runs and deletion.left == 0:
        return [
            (
                command("analyze"),
                "every orphan of this analysis is deleted or was already gone: the next check starts "
                "with a fresh RING listing and S3 export (ingest them again), then this",
            ),
        ]
    if deletion.runs:
        manifest = deletion.manifest or absolute_location(store.location_of(store.root / MANIFEST_NAME))
        why = (
            f"{deletion.left:,} key(s) of the manifest left (kept, failed or not reached): run it again to continue; "
            "kept keys are checked again, confirmed ones are skipped"
        )
        if deletion.stopped:
            why = f"deletion stopped ({deletion.stopped[-1]['reason']}): find out why first; then " + why
        return [(command("delete", "--manifest", manifest, "--execute", "--max-rps", "200", srebuildd=True), why)]
    steps = []
    if capacity["totals"]["unsized"] or capacity["totals"]["failed"]:
        steps.append((command("size", srebuildd=True), "size the orphans still unsized"))
    # Beside the store's own files, so it is found from any folder (on S3 too).
    manifest = absolute_location(store.location_of(store.root / MANIFEST_NAME))
    steps += [
        (command("manifest", "-o", manifest), "write the deletion manifest of this analysis"),
        (command("delete", "--manifest", manifest), "dry run: what would be deleted, nothing sent"),
        (command("delete", "--manifest", manifest, "--execute", "--max-rps", "200", srebuildd=True), "delete, journaled and resumable"),
    ]
    return steps


def render_report(store: Store, run_id: str | None = None) -> str:
    """The HTML report of an analysis run (default: the latest)."""
    summary = store.run_summary(run_id)
    deletion = deletion_history(store, summary["run_id"])
    capacity = capacity_summary(store, summary["run_id"])
    con = store.connect(run_id=summary["run_id"])
    warnings = list(summary["warnings"])
    totals = capacity["totals"]
    if totals["unsized"] or totals["failed"]:
        warnings.append(f"{totals['unsized'] + totals['failed']:,} orphans have no size yet: the capacity shown is a lower bound")
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("templates")),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["bytes"] = human_bytes
    environment.filters["object_name"] = quoted_name
    disks = capacity["by_disk"][:_TOP_DISKS]
    return environment.get_template(TEMPLATE).render(
        summary=summary,
        counts=summary["counts"],
        capacity=capacity,
        totals=totals,
        warnings=warnings,
        gaps_by_bucket=_gaps_by_bucket(con),
        context=_context(summary["counts"], summary),
        unrecoverable=_unrecoverable_gaps(con),
        debris_rows=_debris_rows(con),
        duplicate_rows=_duplicate_rows(con),
        first_rows=FIRST_ROWS,
        history=run_history(store, known={summary["run_id"]: deletion}),
        protection_chart=_bars(
            [{**row, "name": ("ARC " if row["protection"] == "arc" else "COS ") + row["schema"]} for row in capacity["by_protection"]],
            "name",
            "raw_bytes",
        ),
        disk_chart=_bars(disks, "disk", "raw_bytes"),
        disks_shown=len(disks),
        histogram_chart=_bars(capacity["histogram"], "label", "orphans"),
        next_commands=_next_commands(store, summary, capacity, deletion),
        deletion=deletion,
        version=__version__,
        generated_at=iso(utc_now()),
    )


def write_report(store: Store, output: str | Path, run_id: str | None = None) -> str:
    """Write the report to a local file or an ``s3://`` object; return where it went."""
    html = render_report(store, run_id)
    with local_output(output, store.settings) as path:
        path.write_text(html, encoding="utf-8")
    return str(output) if is_s3_url(str(output)) else str(Path(output).resolve())
