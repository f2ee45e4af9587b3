"""``ringfsck demo``: the whole job on a simulated RING, start to finish, on 127.0.0.1.

Generates a small lab world, serves its srebuildd, bucketd, supervisor and RING nodes
(HTTPS with a generated certificate when the ``cryptography`` package is there, else plain
HTTP), and runs what an operator runs: list the RING natively, export S3 keys from bucketd, resolve split
objects, analyze, size the orphans, write the report and the manifest, delete.
The results are checked against what the lab planted (the lab records every
deletion), so the demo doubles as a smoke test of an installation.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringfsck.analysis import AnalysisOptions, analyze
from ringfsck.capacity import capacity_summary
from ringfsck.config import Settings, SupSettings
from ringfsck.deleter import DeleteReport, delete_from_manifest
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.ingest.ring import ingest_ring, sup_credentials
from ringfsck.lab import LabServers, generate_world
from ringfsck.manifest import write_manifest
from ringfsck.remote.http import HttpPolicy
from ringfsck.report import write_report
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import size_orphans
from ringfsck.store import Store


@dataclass
class DemoResult:
    directory: Path
    store: Path
    summary: dict[str, Any]
    capacity: dict[str, Any]
    truth: dict[str, Any]
    report: Path
    deletion: DeleteReport
    deleted_on_lab: list[str]
    steps: list[tuple[str, float]] = field(default_factory=list)

    @property
    def matches_truth(self) -> bool:
        counts = self.summary["counts"]
        return (
            self.summary["complete"]
            and counts["orphans"] == len(self.truth["orphans"])
            and self.capacity["totals"]["logical_bytes"] == sum(self.truth["orphan_sizes"].values())
            and counts["gaps"] == {s: len(k) for s, k in self.truth["gaps"].items()}
            and sorted(self.deleted_on_lab) == sorted(self.truth["orphans"])
            and self.deletion.failed == 0
        )


def run_demo(
    directory: str | Path | None = None,
    *,
    objects: int = 2000,
    seed: int = 7,
    faults: str = "error_rate=0.05,drop_rate=0.02",
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo in ``directory`` (default: a new temporary directory, kept for inspection)."""
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="ringfsck-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    steps: list[tuple[str, float]] = []

    def step(name: str, action: Callable[[], Any]) -> Any:
        echo(f"-> {name}")
        started = time.perf_counter()
        value = action()
        steps.append((name, time.perf_counter() - started))
        return value

    world = step(f"generate a lab world of {objects:,} objects", lambda: generate_world(root / "world", objects=objects, seed=seed))
    policy = HttpPolicy(concurrency=32, timeout=10, retries=8, backoff_base=0.01, backoff_max=0.2)
    with LabServers(world.path, srebuildd_faults=faults, bucketd_faults=faults) as lab:
        echo(f"   lab srebuildd {lab.srebuildd_url}, bucketd {lab.bucketd_url} (faults: {faults})")
        echo(f"   lab supervisor {lab.supervisor_url} and {len(lab.node_urls)} nodes")
        sup = SupSettings(url=lab.supervisor_url, login=lab.sup_login, password=lab.sup_password, ca_bundle=lab.ca_bundle)
        # The world's protections, as an operator would configure them (a wrong COS level is warned about).
        store = Store.open(Settings(store=str(root / "store"), sup=sup, cos_protection=world.truth["settings"]["cos"]))
        step(
            "list the RING natively, every node (taken first)",
            lambda: ingest_ring(store, supervisor=sup.url, credentials=sup_credentials(store.settings, []), policy=policy),
        )
        step("export S3 keys from bucketd", lambda: ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=policy))
        step("resolve split objects on srebuildd", lambda: resolve_splits(store, base_url=lab.srebuildd_url, policy=policy))
        result = step("analyze", lambda: analyze(store, AnalysisOptions()))
        step("size the orphans on srebuildd", lambda: size_orphans(store, base_url=lab.srebuildd_url, policy=policy))
        report = Path(step("write the HTML report", lambda: write_report(store, root / "report.html")))
        step("write the deletion manifest", lambda: write_manifest(store, root / "orphans.csv"))
        deletion = step(
            "delete the orphans (journaled)",
            lambda: delete_from_manifest(store, root / "orphans.csv", execute=True, base_url=lab.srebuildd_url, policy=policy),
        )
        deleted_on_lab = lab.deleted()
    capacity = capacity_summary(store)
    return DemoResult(root, store.root, result.summary, capacity, world.truth, report, deletion, sorted(deleted_on_lab), steps)
