"""delete --execute throughput with its guards, beside a bare client that only sends the DELETEs.

A lab world with many orphans is ingested, resolved (the canaries are input keys resolve found
present) and analysed, a manifest written, then the
manifest's keys are deleted through the Python API (``delete_from_manifest``: the same
code as ``ringfsck delete --execute``) against a lab srebuildd with added latency per
request. Every key is HEADed on the arcdata path just before its DELETE (gone? too
recent?), its outcome journaled, and canaries (referenced input keys, HEADed on the arc
path) are asked before the first DELETE and then every so many deletions. Printed:
keys/s, client CPU per key, requests per key from the lab's request log (re-check HEADs,
DELETEs, canary HEADs counted separately) and the lab's share of the machine. Then the
same keys on a fresh lab (nothing deleted yet) by a bare client, with the same HTTP
client and concurrency, that sends only the DELETEs and journals nothing: the minimum.
The guards' overhead is printed as the ratio of the two, in time and in client CPU.

    python benchmarks/bench_delete.py [--objects 40000] [--orphans 0.5] [--latency-ms 2] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench_resolve import process_cpu

from ringfsck import Settings, Store, analyze, ingest_listkeys, ingest_s3keys
from ringfsck.deleter import delete_from_manifest
from ringfsck.lab import LabServers, generate_world
from ringfsck.manifest import read_manifest, write_manifest
from ringfsck.remote.http import Endpoint, HttpPolicy, run_batched, send
from ringfsck.resolve import resolve_splits

# Overridden checks of the benchmark's manifest: the lab world plants orphans as a large share on
# purpose, and its listing files are written after its exports (their mtimes are the listing's time).
MANIFEST_FORCES = ["orphan-share", "listing-order"]
R = TypeVar("R")


@dataclass
class Measured:
    keys: int
    seconds: float
    client_cpu: float  # seconds
    lab_cpu: float  # seconds
    requests: Counter[str]  # the lab's log, per kind of request

    @property
    def rate(self) -> float:
        return self.keys / self.seconds

    def cpu_per_key_us(self) -> float:
        return self.client_cpu / self.keys * 1e6

    def lab_share(self) -> float:
        return self.lab_cpu / self.seconds / (os.cpu_count() or 1)


def request_kinds(counts: dict[str, int], ring: str = "DATA") -> Counter[str]:
    """The lab's ``"METHOD path"`` counts by kind: re-check HEADs, DELETEs, canary HEADs, other (preflight)."""
    kinds = {
        f"HEAD /rebuild/arcdata-{ring}/": "re-check HEAD",
        f"DELETE /rebuild/chord-{ring}/": "DELETE",
        f"HEAD /rebuild/arc-{ring}/": "canary HEAD",
    }
    found: Counter[str] = Counter()
    for path, count in counts.items():
        found[next((kind for prefix, kind in kinds.items() if path.startswith(prefix)), "other")] += count
    return found


def measured(lab: LabServers, keys: int, job: Callable[[], R]) -> tuple[Measured, R]:
    """``job``'s result, and its time, CPU (client and lab) and the requests the lab received for it."""
    lab.reset_stats()
    lab_cpu = process_cpu(lab.pid) if lab.pid else 0.0
    started, cpu = time.perf_counter(), time.process_time()
    result = job()
    seconds, client_cpu = time.perf_counter() - started, time.process_time() - cpu
    lab_cpu = (process_cpu(lab.pid) if lab.pid else 0.0) - lab_cpu
    return Measured(keys, seconds, client_cpu, lab_cpu, request_kinds(lab.request_counts("srebuildd"))), result


def bare_deletes(url: str, keys: list[str], policy: HttpPolicy, chord_path: str) -> None:
    """Only the DELETEs, with the deleter's HTTP client and concurrency: no re-check, no canary, no journal."""
    failed: list[str] = []

    async def delete(client: Endpoint, key: str) -> int:
        return (await send(client, "DELETE", f"/{chord_path}/{key}", policy=policy)).status_code

    run_batched(
        keys, delete, policy=policy, base_url=url, on_batch=lambda batch: failed.extend(str(r.item) for r in batch if r.value != 200)
    )
    if failed:
        raise SystemExit(f"the bare client failed {len(failed):,} DELETEs, e.g. {failed[0]}")


def line(name: str, m: Measured, bare: Measured | None = None) -> str:
    per_key = {kind: count / m.keys for kind, count in sorted(m.requests.items())}
    requests = ", ".join(f"{value:.3f} {kind}" for kind, value in per_key.items())
    text = (
        f"{name:<22} {m.keys:>7,} keys in {m.seconds:6.1f} s: {m.rate:>7,.0f} keys/s, client CPU {m.cpu_per_key_us():6.0f} us/key, "
        f"lab {m.lab_share():.0%} of the machine; requests per key: {requests}"
    )
    if bare is not None:
        text += f"\n{'':<22} guards' overhead: x{m.seconds / bare.seconds:.2f} time, x{m.client_cpu / bare.client_cpu:.2f} client CPU"
    return text


def run(objects: int, orphans: float, latency_ms: float, concurrency: int, root: Path) -> tuple[Measured, Measured]:
    world = generate_world(root / "world", objects=objects, orphans=orphans, gaps=0.0, seed=5)
    store = Store.open(Settings(store=str(root / "store")))
    ingest_listkeys(store, [str(world.listkeys_dir)])
    ingest_s3keys(store, [str(world.s3keys_dir)])
    policy = HttpPolicy(concurrency=concurrency)
    faults = {"latency_ms": latency_ms}
    with LabServers(world.path) as lab:
        resolve_splits(store, base_url=lab.srebuildd_url, policy=policy)
        analyze(store)
        manifest = root / "orphans.csv"
        write_manifest(store, manifest, force=MANIFEST_FORCES)
        keys = read_manifest(manifest).keys
        print(
            f"world: {objects:,} objects, {len(keys):,} orphans in the manifest; lab srebuildd +{latency_ms:g} ms/request, {concurrency} in flight"
        )
        lab.set_faults("srebuildd", **faults)
        guarded_run, report = measured(
            lab,
            len(keys),
            lambda: delete_from_manifest(store, manifest, execute=True, base_url=lab.srebuildd_url, policy=policy, force=["retention"]),
        )
        if report.outcomes["deleted"] != len(keys):
            raise SystemExit(f"the deleter did not delete every key: {dict(report.outcomes)}")
    with LabServers(world.path, srebuildd_faults=faults) as fresh:  # nothing deleted yet
        bare_run, _ = measured(fresh, len(keys), lambda: bare_deletes(fresh.srebuildd_url, keys, policy, store.settings.chord_path))
    print(line("delete --execute", guarded_run, bare_run))
    print(f"{'':<22} canaries: {guarded_run.requests['canary HEAD']:,} HEADs in {report.canary_rounds:,} rounds")
    print(line("bare DELETEs (minimum)", bare_run))
    return guarded_run, bare_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=40000, help="S3 objects of the lab world")
    parser.add_argument("--orphans", type=float, default=0.5, help="orphan main chunks, as a share of --objects")
    parser.add_argument("--latency-ms", type=float, default=2.0, help="added to every srebuildd request")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (the config's default)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="ringfsck-bench-delete-") as tmp:
        run(args.objects, args.orphans, args.latency_ms, args.concurrency, Path(tmp))


if __name__ == "__main__":
    main()
