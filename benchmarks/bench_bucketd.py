"""``ingest bucketd`` throughput against the lab bucketd with added latency per request.

Two lab worlds of the same objects: one bucket holding them all (pages listed one
after the other: the latency-bound case) and ``--buckets`` buckets listed
``--bucket-concurrency`` at a time. Printed per run: listed keys/s (one listing
entry is one S3 key or version), s3keys rows/s, the requests (listing pages and
full-metadata GETs for entries the listing trimmed: the lab trims 3 % of objects,
its multipart uploads), client CPU per 1,000 keys (every thread of this process)
and the lab server's CPU (its own process, on the same machine), and the load
average, since the machine may be shared.

    python benchmarks/bench_bucketd.py [--objects 1000000] [--buckets 200] [--latency-ms 2] [--page-size 1000]
    python benchmarks/bench_bucketd.py --objects 10000000 --only one   # 1 bucket of the issue's 10 M objects (a 19 GB world, ~5.5 min to generate; 11.1 M keys)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from ringfsck import Settings, Store
from ringfsck.ingest.bucketd import BUCKET_CONCURRENCY, ingest_bucketd
from ringfsck.lab import LabServers, generate_world
from ringfsck.lab._state import MANIFEST, STATE_DIR
from ringfsck.remote.http import HttpPolicy


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's live children: the lab server, here."""
    total = 0.0
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def run(world: Path, label: str, args: argparse.Namespace, tmp: Path) -> None:
    store = Store.open(Settings(store=str(tmp / f"store-{label}")))
    policy = HttpPolicy(concurrency=args.concurrency)
    with LabServers(world, bucketd_faults=f"latency_ms={args.latency_ms}") as lab:
        server_cpu = _children_cpu_seconds()
        started, cpu = time.perf_counter(), time.process_time()
        report = ingest_bucketd(store, lab.bucketd_url, raft_sessions=_raft_sessions(world), policy=policy, page_size=args.page_size,
                                bucket_concurrency=args.bucket_concurrency)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_cpu = _children_cpu_seconds() - server_cpu
        requests = lab.request_counts("bucketd")
    listed = store.connect().execute("SELECT count(*) FROM s3keys").fetchone()[0]
    pages = sum(b.pages for b in report.buckets)
    keys = _listed_entries(store)
    listings = sum(n for path, n in requests.items() if path.startswith("GET /default/bucket/") and path.count("/") == 3)
    gets = sum(n for path, n in requests.items() if path.startswith("GET /default/bucket/")) - listings
    print(f"{label}: {len(report.buckets)} buckets exported (shadow buckets included), {keys:,} keys listed in {wall:.1f} s: {keys / wall:,.0f} keys/s, "
          f"{listed / wall:,.0f} s3keys rows/s ({listed:,} rows, {pages:,} pages of {args.page_size:,}, {gets:,} metadata GETs)")
    print(f"  client CPU {cpu:.1f} s ({cpu / keys * 1e6:.1f} ms per 1,000 keys, {cpu / wall:.0%} of a core); "
          f"lab server CPU {server_cpu:.1f} s ({server_cpu / keys * 1e6:.1f} ms per 1,000 keys, {server_cpu / wall:.0%} of a core); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def _raft_sessions(world: Path) -> list[int]:
    """Every raft session of a lab world (the lab spreads buckets over several)."""
    buckets = json.loads((world / STATE_DIR / MANIFEST).read_text())["buckets"]
    return sorted({info["raft_session"] for info in buckets.values()})


def _listed_entries(store: Store) -> int:
    """Listing entries seen, from the export markers (every entry, kept or skipped)."""
    return sum(json.loads(f.read_text())["entries"] for f in (store.root / "bucketd").glob("*.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=1_000_000, help="S3 objects in each world (about 1.1 listing entries each)")
    parser.add_argument("--buckets", type=int, default=200, help="buckets of the many-bucket world")
    parser.add_argument("--latency-ms", type=float, default=2.0)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight over all buckets")
    parser.add_argument("--bucket-concurrency", type=int, default=BUCKET_CONCURRENCY)
    parser.add_argument("--only", choices=("one", "many"), help="run one of the two worlds only")
    args = parser.parse_args()
    print(f"lab bucketd with {args.latency_ms:g} ms added latency per request, {args.page_size:,}-key pages, "
          f"{args.concurrency} requests in flight, {args.bucket_concurrency} buckets at a time")
    with tempfile.TemporaryDirectory(prefix="bench-bucketd-") as tmp:
        for label, buckets in (("one", 1), ("many", args.buckets)):
            if args.only not in (None, label):
                continue
            started = time.perf_counter()
            world = generate_world(Path(tmp) / f"world-{label}", objects=args.objects, buckets=buckets, seed=1,
                                   orphans=0.0, gaps=0.0, splits=0.0)
            print(f"({label}: world of {args.objects:,} objects in {buckets} bucket(s) generated in {time.perf_counter() - started:.0f} s)")
            run(world.path, f"{buckets} bucket{'s' if buckets > 1 else ''}", args, Path(tmp))


if __name__ == "__main__":
    main()
