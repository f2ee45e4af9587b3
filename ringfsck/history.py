"""The store's analyses side by side: what an operator compares from one weekly check to the next.

Each run's own files are the source: its summary (orphans, gaps), the capacity ``size`` last
measured for it and the journals of the deletions from its manifests.
"""

from __future__ import annotations

import json
from typing import Any

from ringfsck.analysis import GAP_STATUSES
from ringfsck.deleter import DeletionHistory, deletion_history
from ringfsck.store import Store

# Runs the history shows: about two months of weekly checks.
HISTORY_RUNS = 8


def run_history(store: Store, limit: int = HISTORY_RUNS, *, known: dict[str, DeletionHistory] | None = None) -> list[dict[str, Any]]:
    """The store's last ``limit`` analyses, oldest first, with the figures an operator compares week to week.

    Each run's own files are the source: its summary (orphans, gaps), the capacity ``size`` last
    printed for it (None if never sized) and the deletion journal of its manifest (None if nothing
    was deleted from it). ``known`` holds deletion histories the caller already read (the journals
    are read once per run).
    """
    history = []
    for run_id in store.run_ids()[-limit:]:
        summary = store.run_summary(run_id)
        counts = summary["counts"]
        capacity_file = store.run_dir(run_id) / "capacity.json"
        totals = json.loads(capacity_file.read_text())["totals"] if capacity_file.is_file() else None
        gaps = counts["gaps"]
        history.append(
            {
                "run_id": run_id,
                "finished_at": summary.get("finished_at"),
                "complete": bool(summary.get("complete")),
                "candidates": counts["candidates"],
                "orphans": counts["orphans"],
                "orphan_share": summary.get("orphan_share", 0.0),
                "logical_bytes": totals["logical_bytes"] if totals else None,
                "raw_bytes": totals["raw_bytes"] if totals else None,
                "gaps": {status: gaps.get(status, 0) for status in GAP_STATUSES},
                "gaps_total": sum(gaps.values()),
                "deletion": _deletions((known or {}).get(run_id) or deletion_history(store, run_id)),
            }
        )
    return history


def _deletions(history: DeletionHistory) -> dict[str, int] | None:
    """Outcomes of the deletions from the run's manifests, as their journals say (None: nothing deleted from them)."""
    return dict(history.outcomes) if history.runs else None
