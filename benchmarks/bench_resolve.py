"""resolve throughput over 3 lab srebuildd endpoints and over 1, beside a one-request-at-a-time client.

The sequential client is the reference's pattern: one blocking HEAD per key
(and a GET for split keys), no concurrency, one keep-alive connection. All run
against lab srebuildd servers with the same added latency per request, in one
run: the sequential one on the first ``--sequential-keys`` keys (it is slow),
``resolve`` on every key, once over one endpoint and once over three (three lab
processes over one world, as srebuildd runs on every node). Printed per run:
keys/s, the ratio to the sequential client, the client processes used, client
CPU per key (every client process: the forked workers included), the lab's CPU
per request and its share of the machine (its processes' CPU over the run's wall
time and the machine's cores): on a 2-core machine the lab competes with the
client for CPU.

    python benchmarks/bench_resolve.py [--objects 20000] [--latency-ms 2] [--sequential-keys 2000] [--endpoints 3] [--processes N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

import httpx

from ringfsck import Settings, Store, ingest_s3keys
from ringfsck.lab import LabServers, generate_world
from ringfsck.remote.batches import JobReport
from ringfsck.remote.http import HttpPolicy
from ringfsck.resolve import resolve_splits


def sequential(url: str, keys: list[str]) -> tuple[float, float, int]:
    """keys/s, client CPU seconds per key, split keys seen."""
    splits = 0
    started, cpu = time.perf_counter(), time.process_time()
    with httpx.Client(base_url=url, timeout=30) as client:
        for key in keys:
            head = client.head(f"/rebuild/arc-DATA/{key}")
            if head.headers.get("X-Scal-Attr-Is-Split") == "true":
                client.get(f"/rebuild/arc-DATA/{key}", headers={"x-scal-split-policy": "raw"})
                splits += 1
    return len(keys) / (time.perf_counter() - started), (time.process_time() - cpu) / len(keys), splits


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    """CPU seconds of this process and of its children waited for: the forked workers, not the labs (still running)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measured_resolve(store: Store, labs: list[LabServers], policy: HttpPolicy, processes: int | None) -> tuple[JobReport, float, float, float]:
    """resolve over the labs' endpoints from scratch: the report, client CPU s/key, lab CPU s/request, the labs' share of the machine."""
    for part in (store.root / "tables" / "splits").glob("*.parquet"):  # every key asked again
        part.unlink()
    lab_cpu = [process_cpu(lab.pid) for lab in labs if lab.pid]
    started, cpu = time.perf_counter(), client_cpu()
    report = resolve_splits(store, base_url=[lab.srebuildd_url for lab in labs], policy=policy, processes=processes)
    wall = time.perf_counter() - started
    client = (client_cpu() - cpu) / max(report.requested, 1)
    lab_used = sum(process_cpu(lab.pid) for lab in labs if lab.pid) - sum(lab_cpu)
    requests = sum(endpoint["requests"] for endpoint in report.endpoints)
    return report, client, lab_used / max(requests, 1), lab_used / (wall * (os.cpu_count() or 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=64, help="connections per endpoint")
    parser.add_argument("--endpoints", type=int, default=3)
    parser.add_argument("--sequential-keys", type=int, default=2_000, help="keys for the sequential client (it is slow)")
    parser.add_argument("--processes", type=int, default=None, help="client processes (default: resolve's, one per core)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resolve-") as tmp:
        world = generate_world(Path(tmp) / "world", objects=args.objects, seed=1)
        store = Store.open(Settings(store=str(Path(tmp) / "store")))
        ingest_s3keys(store, [str(world.s3keys_dir)])
        keys = sorted(world.truth["sproxyd_keys"])
        sample = keys[: args.sequential_keys]
        policy = HttpPolicy(concurrency=args.concurrency)
        with contextlib.ExitStack() as stack:
            labs = [stack.enter_context(LabServers(world.path, srebuildd_faults=f"latency_ms={args.latency_ms}")) for _ in range(args.endpoints)]
            seq_rate, seq_cpu, seq_splits = sequential(labs[0].srebuildd_url, sample)
            runs = [
                (1, *measured_resolve(store, labs[:1], policy, args.processes)),
                (len(labs), *measured_resolve(store, labs, policy, args.processes)),
            ]
        print(f"lab srebuildd with {args.latency_ms:g} ms added latency, {len(keys):,} input keys ({world.truth['counts']['splits']:,} split), "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end")
        print(f"sequential client (reference pattern): {seq_rate:>8,.0f} keys/s  {seq_cpu * 1e6:4.0f} us CPU/key  ({len(sample):,} keys, {seq_splits:,} split)")
        for endpoints, report, cpu, lab_cpu, lab_share in runs:
            print(f"ringfsck resolve, {endpoints} endpoint(s) x {args.concurrency} connections, {report.processes} process(es): "
                  f"{report.rate:>8,.0f} keys/s ({report.rate / seq_rate:.1f}x)  {cpu * 1e6:4.0f} us client CPU/key  "
                  f"lab {lab_cpu * 1e6:.0f} us CPU/request, {lab_share:.0%} of the machine  ({report.requested:,} keys, {report.errors} errors)")


if __name__ == "__main__":
    main()
