"""resolve throughput against the lab srebuildd, beside a one-request-at-a-time client.

The sequential client is the reference's pattern: one blocking HEAD per key
(and a GET for split keys), no concurrency, one keep-alive connection. Both run
on the same keys (the sequential one on the first ``--sequential-keys`` of them,
it is slow), against the same lab with the same added latency, in one run.
Client CPU per key is printed too: on a shared machine it varies less than
keys/s (the lab server runs in its own process and is not counted).

    python benchmarks/bench_resolve.py [--objects 20000] [--latency-ms 2] [--sequential-keys 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from ringfsck import Settings, Store, ingest_s3keys
from ringfsck.lab import LabServers, generate_world
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sequential-keys", type=int, default=2_000, help="keys for the sequential client (it is slow)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resolve-") as tmp:
        world = generate_world(Path(tmp) / "world", objects=args.objects, seed=1)
        store = Store.open(Settings(store=str(Path(tmp) / "store")))
        ingest_s3keys(store, [str(world.s3keys_dir)])
        keys = sorted(world.truth["sproxyd_keys"])
        sample = keys[: args.sequential_keys]
        with LabServers(world.path, srebuildd_faults=f"latency_ms={args.latency_ms}") as lab:
            seq_rate, seq_cpu, seq_splits = sequential(lab.srebuildd_url, sample)
            cpu = time.process_time()
            report = resolve_splits(store, base_url=lab.srebuildd_url, policy=HttpPolicy(concurrency=args.concurrency))
            cpu = (time.process_time() - cpu) / max(report.requested, 1)
        print(f"lab srebuildd with {args.latency_ms:g} ms added latency, {len(keys):,} input keys ({world.truth['counts']['splits']:,} split)")
        print(f"sequential client (reference pattern): {seq_rate:>8,.0f} keys/s  {seq_cpu * 1e6:4.0f} us CPU/key  ({len(sample):,} keys, {seq_splits:,} split)")
        print(f"ringfsck resolve, concurrency {args.concurrency}: {report.rate:>8,.0f} keys/s  {cpu * 1e6:4.0f} us CPU/key  "
              f"({report.requested:,} keys, {report.errors} errors)")
        print(f"speed-up: {report.rate / seq_rate:.1f}x")


if __name__ == "__main__":
    main()
