"""Capacity at one machine's limit: a RING of ``--rows`` listkeys rows streamed from lab nodes, analysed within ``--memory-limit``.

A regular lab world costs ~100 bytes of disk and ~3 CPU seconds per row (500 M rows: ~50 GB), so
this benchmark serves a synthetic world (``ringfsck.lab.synthetic``: ~2.3 bytes per row on disk,
its nodes render their rows with numpy as they stream them) and the S3 side as a CSV export of the
referenced input keys (``ingest s3keys``; at this size ``ingest bucketd`` would take an hour of
lab bucketd). Each step is a process of its own, measured (wall time, CPU, peak RSS of its tree):

* ``ingest ring`` from ``--nodes`` synthetic nodes (plain HTTP, or ``--tls``): rows/s, client and
  lab CPU seconds per million rows (the lab shares the cores: project with its share), peak RSS;
* ``ingest s3keys``: keys/s, CPU per million keys, peak RSS;
* ``analyze`` with DuckDB's ``memory_limit`` = ``--memory-limit``: seconds, rows/s, peak RSS,
  memory per million main chunks, the peak of DuckDB's spill directory (sampled);
* the store's bytes per listkeys row and per S3 key, the world's disk per million rows;
* correctness: the orphans found are exactly those planted (the truth comes from generation).

    python benchmarks/bench_capacity.py --rows 5000000
    python benchmarks/bench_capacity.py --rows 500000000 --memory-limit 4GB --data /data/capacity

A world already in ``--data`` with the same settings is reused; the store is removed at the end
unless ``--keep``. Disk: the world ~2.3 bytes per row plus its S3 export ~7 bytes per row, the store
~30 bytes per row, DuckDB's spill a few GB: ~20 GB at 500 M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Measured, run_measured
from bench_ring_listing import _CLIENT as RING_CLIENT
from bench_ring_listing import _cpu_seconds

from ringfsck.capacity import human_bytes
from ringfsck.config import Settings
from ringfsck.lab.synthetic import (
    SyntheticRingServers,
    SyntheticSettings,
    SyntheticWorld,
    generate_synthetic_world,
)
from ringfsck.store import Store

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT)}


@dataclass
class Step:
    measured: Measured
    cpu: float  # CPU seconds of the step's process tree


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str], env: dict[str, str] | None = None) -> Step:
    before = _children_cpu()
    measured = run_measured(cmd, env={**ENV, **(env or {})})
    if measured.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])} failed:\n{measured.stderr[-3000:]}")
    return Step(measured, _children_cpu() - before)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


class _PeakSize:
    """The largest size a directory reached, sampled every ``interval`` seconds on a thread (DuckDB's spill)."""

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        self.path, self.interval, self.peak = path, interval, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                self.peak = max(self.peak, _size(self.path))
            except OSError:  # a spill file removed while walked
                pass
            self._done.wait(self.interval)

    def __enter__(self) -> _PeakSize:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def _world(data: Path, rows: int, nodes: int) -> tuple[SyntheticWorld, float | None]:
    """The synthetic world of about ``rows`` rows (reused when there), and its generation's seconds (None: reused)."""
    shape = SyntheticSettings(main_chunks=1, nodes=nodes)  # the default mix, for its rows per main chunk
    settings = replace(shape, main_chunks=max(1, round(rows / shape.rows_per_main_chunk())))
    path = data / f"world-{rows}-{nodes}"
    if (path / "truth.json").is_file() and SyntheticWorld(path).settings == settings:
        return SyntheticWorld(path), None
    print(f"generating a synthetic world of {settings.main_chunks:,} main chunks (~{rows:,} rows) in {path}", flush=True)
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    world = generate_synthetic_world(path, settings)
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    generation_cpu = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
    listed = world.truth["counts"]["listkeys_rows"]
    print(f"generated in {seconds:.1f} s ({generation_cpu / listed * 1e6:.2f} CPU s per M rows), {human_bytes(_size(path))} on disk", flush=True)
    return world, seconds


def _ingest_ring(world: SyntheticWorld, store: Path, tls: bool) -> dict:
    with SyntheticRingServers(world, tls=tls) as lab:
        lab_before = _cpu_seconds(lab.pid)
        args = [lab.supervisor_url, lab.sup_login, lab.sup_password, lab.ca_bundle or "", str(store), "0"]
        step = _run([sys.executable, "-c", RING_CLIENT, *args])
        lab_cpu = _cpu_seconds(lab.pid) - lab_before
    result = json.loads(step.measured.stdout.strip().splitlines()[-1])
    expected = world.truth["counts"]["listkeys_rows"]
    if result["rows"] != expected:
        raise SystemExit(f"ingest ring listed {result['rows']:,} rows, the world has {expected:,}")
    millions = result["rows"] / 1e6
    return {
        "rows": result["rows"],
        "seconds": round(result["seconds"], 1),
        "rows_per_s": round(result["rows"] / result["seconds"]),
        "client_cpu_s_per_m_rows": round(result["cpu"] / millions, 3),
        "lab_cpu_s_per_m_rows": round(lab_cpu / millions, 3),
        "peak_rss_mib": round(step.measured.peak_rss_bytes / 2**20),
    }


def _ingest_s3keys(world: SyntheticWorld, store: Path) -> dict:
    step = _run([sys.executable, "-m", "ringfsck", "ingest", "s3keys", str(world.s3keys_dir), "--store", str(store)])
    keys = world.truth["counts"]["s3_keys"]
    return {
        "keys": keys,
        "seconds": round(step.measured.seconds, 1),
        "keys_per_s": round(keys / step.measured.seconds),
        "cpu_s_per_m_keys": round(step.cpu / (keys / 1e6), 3),
        "peak_rss_mib": round(step.measured.peak_rss_bytes / 2**20),
    }


def _analyze(world: SyntheticWorld, store: Path, memory_limit: str | None) -> dict:
    env = {"RINGFSCK_DUCKDB_MEMORY_LIMIT": memory_limit} if memory_limit else {}
    spill = Store.open(Settings(store=str(store))).temp_dir
    with _PeakSize(spill) as spilled:
        step = _run([sys.executable, "-m", "ringfsck", "analyze", "--assume-no-splits", "--json", "--store", str(store)], env)
    summary = json.loads(step.measured.stdout)
    counts, seconds = world.truth["counts"], step.measured.seconds
    if not summary["complete"]:
        raise SystemExit(f"the analysis is incomplete: {summary['incomplete_reasons']}")
    return {
        "seconds": round(seconds, 1),
        "rows_per_s": round(counts["listkeys_rows"] / seconds),
        "cpu_s_per_m_rows": round(step.cpu / (counts["listkeys_rows"] / 1e6), 3),
        "peak_rss_mib": round(step.measured.peak_rss_bytes / 2**20),
        "mib_per_m_main_chunks": round(step.measured.peak_rss_bytes / 2**20 / (counts["main_chunks"] / 1e6), 1),
        "spill_peak_mib": round(spilled.peak / 2**20),
        "memory_limit": memory_limit or "default",
        "orphans": summary["counts"]["orphans"],
        "step_seconds": summary.get("step_seconds"),
    }


def _orphans_differ(world: SyntheticWorld, store: Path) -> int:
    """Orphans found but not planted, plus planted but not found (0: exactly the planted ones)."""
    con = Store.open(Settings(store=str(store))).connect()
    planted = f"read_csv('{world.path / 'orphans.txt'}', header = false, columns = {{'key': 'VARCHAR'}})"
    query = f"SELECT count(*) FROM orphans FULL OUTER JOIN {planted} AS planted ON orphans.ring_key = planted.key"
    return con.execute(f"{query} WHERE orphans.ring_key IS NULL OR planted.key IS NULL").fetchone()[0]


def _print(name: str, figures: dict, line: Callable[[dict], str]) -> None:
    print(json.dumps({"step": name} | figures), flush=True)
    print(f"{name:14s} {line(figures)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000, help="about this many listkeys rows (default 5 M)")
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--memory-limit", default="4GB", help="DuckDB memory_limit for analyze (default 4GB)")
    parser.add_argument("--tls", action="store_true", help="list the nodes over HTTPS")
    parser.add_argument("--data", type=Path, default=Path("/var/tmp/ringfsck-capacity"), help="the world and the store")
    parser.add_argument("--keep", action="store_true", help="keep the store (the world is always kept, for reuse)")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    world, _ = _world(args.data, args.rows, args.nodes)
    counts = world.truth["counts"]
    store = args.data / f"store-{args.rows}-{args.nodes}"
    shutil.rmtree(store, ignore_errors=True)
    print(f"world: {counts['listkeys_rows']:,} rows, {counts['main_chunks']:,} main chunks, {counts['s3_keys']:,} S3 keys, "
          f"{counts['orphans']:,} orphans planted; {human_bytes(_size(world.path))} on disk "
          f"({_size(world.path) / (counts['listkeys_rows'] / 1e6) / 2**20:.1f} MiB per M rows)", flush=True)
    try:
        ring = _ingest_ring(world, store, args.tls)
        _print("ingest ring", ring, lambda f: f"{f['rows']:,} rows in {f['seconds']} s = {f['rows_per_s']:,} rows/s; client "
               f"{f['client_cpu_s_per_m_rows']} CPU s per M rows, lab nodes {f['lab_cpu_s_per_m_rows']}; peak RSS {f['peak_rss_mib']} MiB")
        s3 = _ingest_s3keys(world, store)
        _print("ingest s3keys", s3, lambda f: f"{f['keys']:,} keys in {f['seconds']} s = {f['keys_per_s']:,} keys/s; "
               f"{f['cpu_s_per_m_keys']} CPU s per M keys; peak RSS {f['peak_rss_mib']} MiB")
        analysis = _analyze(world, store, args.memory_limit)
        _print("analyze", analysis, lambda f: f"{f['seconds']} s = {f['rows_per_s']:,} rows/s, {f['cpu_s_per_m_rows']} CPU s per M rows; "
               f"peak RSS {f['peak_rss_mib']} MiB (memory_limit {f['memory_limit']}) = {f['mib_per_m_main_chunks']} MiB per M main chunks; "
               f"spill peak {f['spill_peak_mib']} MiB")
        listkeys, s3keys = _size(store / "tables" / "listkeys"), _size(store / "tables" / "s3keys")
        _print("store", {"listkeys_bytes": listkeys, "s3keys_bytes": s3keys, "total_bytes": _size(store)},
               lambda f: f"{human_bytes(f['total_bytes'])}: {listkeys / counts['listkeys_rows']:.1f} bytes per listkeys row, "
               f"{s3keys / counts['s3_keys']:.1f} bytes per S3 key")
        differ = _orphans_differ(world, store)
        if analysis["orphans"] != counts["orphans"] or differ:
            raise SystemExit(f"WRONG: {analysis['orphans']:,} orphans found, {counts['orphans']:,} planted, {differ:,} differ")
        print(f"correct: the {counts['orphans']:,} orphans found are exactly those planted", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)


if __name__ == "__main__":
    main()
