"""How fast ``ingest ring`` lists a RING natively: rows/s over HTTP and HTTPS, peak RSS, CPU per million rows.

Generates (or reuses) a lab world of about ``--rows`` listkeys rows over ``--nodes`` nodes, serves
it with the lab's supervisor and nodes (which stream pre-rendered byte ranges with sendfile: no
per-row work), and lists it into a fresh store, once over plain HTTP and once over HTTPS. Prints
the client's rows/s, its peak RSS, its CPU seconds per million rows, and the lab's, so that the
figure can be projected to a machine where the nodes are elsewhere (the lab shares this one's cores).

    python benchmarks/bench_ring_listing.py [--rows 10000000] [--nodes 6] [--world /var/tmp/ring-bench-world]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import lab_world, run_measured  # noqa: E402

from ringfsck.lab import LabServers, World  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

_CLIENT = """
import json, resource, sys, time
from ringfsck.config import Settings, SupSettings
from ringfsck.ingest.ring import ingest_ring
from ringfsck.remote.supervisor import Credentials
from ringfsck.store import Store
url, login, password, ca, store, concurrency = sys.argv[1:7]
settings = Settings(store=store, sup=SupSettings(url=url, login=login, password=password, ca_bundle=ca or None))
started = time.perf_counter()
report = ingest_ring(Store.open(settings), supervisor=url, credentials=Credentials(login, password), concurrency=int(concurrency) or None)
cpu = sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))  # workers joined
print(json.dumps({"rows": report.rows, "seconds": time.perf_counter() - started, "cpu": cpu}))
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks (100 Hz on Linux)


def _measure(world: World, tls: bool, concurrency: int | None) -> dict:
    store = Path(tempfile.mkdtemp(prefix="ring-bench-store-"))
    try:
        with LabServers(world, ring_tls=tls) as lab:
            lab_pid = lab._proc.pid  # type: ignore[union-attr]
            lab_before = _cpu_seconds(lab_pid)
            measured = run_measured([sys.executable, "-c", _CLIENT, lab.supervisor_url, lab.sup_login, lab.sup_password, lab.ca_bundle or "", str(store), str(concurrency or 0)],
                                    env={"PYTHONPATH": str(ROOT)})
            lab_cpu = _cpu_seconds(lab_pid) - lab_before
        if measured.returncode:
            raise SystemExit(f"ingest ring failed: {measured.stderr[-2000:]}")
        result = json.loads(measured.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(store, ignore_errors=True)
    millions = result["rows"] / 1e6
    return {"transport": "https" if tls else "http", "rows": result["rows"], "seconds": round(result["seconds"], 2),
            "rows_per_s": round(result["rows"] / result["seconds"]), "peak_rss_mib": round(measured.peak_rss_bytes / 2**20),
            "client_cpu_s_per_m_rows": round(result["cpu"] / millions, 2), "lab_cpu_s_per_m_rows": round(lab_cpu / millions, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=None, help="nodes listed at once (default: ingest ring's)")
    parser.add_argument("--world", type=Path, default=None, help="keep (and reuse) the generated world here")
    args = parser.parse_args()
    world = lab_world(args.world, args.rows, args.nodes, prefix="ring-bench-world-", splits=0.0)
    for tls in (False, True):
        figures = _measure(world, tls, args.concurrency)
        print(json.dumps(figures), flush=True)
        print(f"{figures['transport']:5s}: {figures['rows']:,} rows from {args.nodes} nodes in {figures['seconds']} s = "
              f"{figures['rows_per_s']:,} rows/s, peak RSS {figures['peak_rss_mib']} MiB, "
              f"client {figures['client_cpu_s_per_m_rows']} CPU s per M rows, lab {figures['lab_cpu_s_per_m_rows']}", flush=True)


if __name__ == "__main__":
    main()
