"""resolve throughput against the lab srebuildd, beside a one-request-at-a-time client.

The sequential client is the reference's pattern: one blocking HEAD per key
(and a GET for split keys), no concurrency. Both run on the same keys, against
the same lab with the same added latency, in one run.

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


def sequential(url: str, keys: list[str]) -> float:
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=30) as client:
        for key in keys:
            head = client.head(f"/rebuild/arc-DATA/{key}")
            if head.headers.get("X-Scal-Attr-Is-Split") == "true":
                client.get(f"/rebuild/arc-DATA/{key}", headers={"x-scal-split-policy": "raw"})
    return len(keys) / (time.perf_counter() - started)


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
        with LabServers(world.path, srebuildd_faults=f"latency_ms={args.latency_ms}") as lab:
            seq_rate = sequential(lab.srebuildd_url, keys[: args.sequential_keys])
            report = resolve_splits(store, base_url=lab.srebuildd_url, policy=HttpPolicy(concurrency=args.concurrency))
        print(f"lab srebuildd with {args.latency_ms:g} ms added latency, {len(keys):,} input keys ({world.truth['counts']['splits']:,} split)")
        print(f"sequential client (reference pattern): {seq_rate:>8,.0f} keys/s  (on {min(len(keys), args.sequential_keys):,} keys)")
        print(f"ringfsck resolve, concurrency {args.concurrency}: {report.rate:>8,.0f} keys/s  ({report.requested:,} keys, {report.errors} errors)")
        print(f"speed-up: {report.rate / seq_rate:.1f}x")


if __name__ == "__main__":
    main()
