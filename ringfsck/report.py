"""The capacity report: one self-contained HTML file for the operator and the customer.

Rendered from ``reports/templates/report.html.j2`` with autoescaping (object
keys are arbitrary UTF-8). No external scripts, fonts or styles; charts are
inline SVG, computed here so the template stays declarative.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from ringfsck import __version__
from ringfsck._resources import resource_dir
from ringfsck.capacity import capacity_summary, human_bytes
from ringfsck.redact import redact
from ringfsck.s3 import is_s3_url, local_output
from ringfsck.store import Store, iso, utc_now

TEMPLATE = "report.html.j2"
_FIRST_KEYS = 3
_TOP_DISKS = 24


def _bars(rows: list[dict[str, Any]], label: str, value: str, *, width: int = 560, bar_height: int = 18) -> dict[str, Any]:
    """Geometry of a horizontal bar chart (label, bar, value text) for the template."""
    peak = max((row[value] or 0 for row in rows), default=0) or 1
    label_width = 170
    bars = []
    for i, row in enumerate(rows):
        amount = row[value] or 0
        bars.append({"y": i * (bar_height + 6), "label": str(row[label]), "width": max(1.0, (width - label_width - 90) * amount / peak) if amount else 0,
                     "text": human_bytes(amount) if "bytes" in value else f"{amount:,}"})
    return {"bars": bars, "width": width, "height": max(1, len(rows)) * (bar_height + 6), "label_width": label_width, "bar_height": bar_height}


def _gaps_by_bucket(con) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT bucket, count(*) FILTER (WHERE status = 'missing'), count(*) FILTER (WHERE status = 'unrecoverable'), "
        "count(*) FILTER (WHERE status = 'degraded'), list(DISTINCT object_key ORDER BY object_key)[1:?] "
        "FROM gaps GROUP BY bucket ORDER BY count(*) DESC, bucket",
        [_FIRST_KEYS],
    ).fetchall()
    return [{"bucket": b, "missing": m, "unrecoverable": u, "degraded": d, "first_keys": keys} for b, m, u, d, keys in rows]


def _next_commands(summary: dict[str, Any], capacity: dict[str, Any]) -> list[tuple[str, str]]:
    if not summary["complete"]:
        steps = [("ringfsck resolve --srebuildd URL", "finish the split lookups (failed or never made)")]
        steps.append(("ringfsck analyze", "re-run the analysis once the inputs are complete"))
        return steps
    steps = []
    if capacity["totals"]["unsized"] or capacity["totals"]["failed"]:
        steps.append(("ringfsck size --srebuildd URL", "size the orphans still unsized"))
    steps += [
        ("ringfsck manifest -o orphans.csv", "write the deletion manifest of this analysis"),
        ("ringfsck delete --manifest orphans.csv", "dry run: what would be deleted, nothing sent"),
        ("ringfsck delete --manifest orphans.csv --execute --max-rps 200", "delete, journaled and resumable"),
    ]
    return steps


def render_report(store: Store, run_id: str | None = None) -> str:
    """The HTML report of an analysis run (default: the latest)."""
    summary = store.run_summary(run_id)
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
    disks = capacity["by_disk"][:_TOP_DISKS]
    return environment.get_template(TEMPLATE).render(
        summary=summary,
        counts=summary["counts"],
        capacity=capacity,
        totals=totals,
        warnings=warnings,
        gaps_by_bucket=_gaps_by_bucket(con),
        protection_chart=_bars([{**row, "name": ("ARC " if row["protection"] == "arc" else "COS ") + row["schema"]} for row in capacity["by_protection"]], "name", "raw_bytes"),
        disk_chart=_bars(disks, "disk", "raw_bytes"),
        disks_shown=len(disks),
        histogram_chart=_bars(capacity["histogram"], "label", "orphans"),
        next_commands=[(redact(command), why) for command, why in _next_commands(summary, capacity)],  # a URL given with credentials
        version=__version__,
        generated_at=iso(utc_now()),
    )


def write_report(store: Store, output: str | Path, run_id: str | None = None) -> str:
    """Write the report to a local file or an ``s3://`` object; return where it went."""
    html = render_report(store, run_id)
    with local_output(output, store.settings) as path:
        path.write_text(html, encoding="utf-8")
    return str(output) if is_s3_url(str(output)) else str(Path(output).resolve())
