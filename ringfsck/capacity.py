"""Orphan capacity from ``orphan_sizes``: the SQL files in ``sql/capacity/``, one aggregate each.

``capacity_summary(store)`` returns::

    {"totals": {orphans, sized, unsized, failed, gone, logical_bytes, raw_bytes},
     "by_protection": [{protection, schema, orphans, sized, logical_bytes, raw_bytes, raw_multiplier}],
     "by_disk": [{disk, chunks, raw_bytes}],
     "histogram": [{step, label, lower, upper, orphans, logical_bytes}]}
"""

from __future__ import annotations

from typing import Any

from ringfsck._resources import resource_dir
from ringfsck.store import Store

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def _rows(con, name: str) -> list[dict[str, Any]]:
    result = con.execute((resource_dir("sql") / "capacity" / f"{name}.sql").read_text())
    columns = [d[0] for d in result.description]
    return [dict(zip(columns, row)) for row in result.fetchall()]


def capacity_summary(store: Store, run_id: str | None = None) -> dict[str, Any]:
    con = store.connect(run_id=run_id)
    histogram = _rows(con, "histogram")
    for row in histogram:
        row["label"] = f"{human_bytes(row['lower'])} - {human_bytes(row['upper'])}" if row["upper"] else f">= {human_bytes(row['lower'])}"
    return {
        "totals": _rows(con, "totals")[0],
        "by_protection": _rows(con, "by_protection"),
        "by_disk": _rows(con, "by_disk"),
        "histogram": histogram,
    }
