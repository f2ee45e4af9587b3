"""ringfsck ingest + analyze at scale, beside the bare DuckDB floor and Spark.

Generates a lab world (streamed to disk, never committed) with about --rows
listkeys rows and one S3 key per object (about 10 % as many), then runs and
measures, each as its own process (wall time, peak RSS of the whole process tree):

* ``ringfsck ingest listkeys``, ``ringfsck ingest s3keys``, ``ringfsck analyze``
  (checked against the planted truth), then the same job as one ``ringfsck check``;
* the floor: one DuckDB query reading the same CSVs, grouping, translating, anti-joining;
* with --spark (``pip install .[bench]``, Java 17): the reference's three Spark jobs
  (p0, p1, p2, each its own application, as operators run them) and the strongest
  one-job Spark version of the same algorithm (benchmarks/spark_baseline.py).

    python benchmarks/bench_pipeline.py --rows 10000000 --spark --repeat 3
    python benchmarks/bench_pipeline.py --rows 100000000 --data /data/bench
    python benchmarks/bench_pipeline.py --rows 250000000 --data /data/bench --memory-limit 4GB --no-floor
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from _measure import Measured, run_measured

from ringfsck.capacity import human_bytes
from ringfsck.lab import generate_world

ROWS_PER_OBJECT = 12.5  # 8+4 stripes, plus orphans, gaps and noise
HERE = Path(__file__).resolve().parent

FLOOR_QUERY = """
WITH lk AS (
    SELECT c0 AS chunk, c1 AS main FROM read_csv('{listkeys}/*.csv', header = false, delim = ',', quote = '', escape = '',
        columns = {{'c0': 'VARCHAR', 'c1': 'VARCHAR', 'c2': 'VARCHAR', 'c3': 'VARCHAR'}}, null_padding = true, auto_detect = false)
    WHERE NOT starts_with(c0, 'Use') AND (TRY_CAST(c3 AS INTEGER) & 1) = 0  -- tombstones hold no data
),
candidates AS (
    SELECT main, count(DISTINCT chunk) AS n FROM lk
    WHERE substr(main, 31, 2) IN ('50', '51') AND substr(main, 23, 6) = '000000'
    GROUP BY main
    HAVING (right(main, 2) = '70' AND n > 3) OR (substr(main, 39, 1) BETWEEN '0' AND '5' AND right(main, 1) = '0')
),
s3 AS (
    SELECT DISTINCT upper(left(md5(unhex(CASE WHEN length(ltrim(c2, '0')) % 2 = 1 THEN '0' || ltrim(c2, '0') ELSE ltrim(c2, '0') END)), 22)) || '0000' AS d
    FROM read_csv('{s3keys}/*_keys.txt', header = false, columns = {{'c0': 'VARCHAR', 'c1': 'VARCHAR', 'c2': 'VARCHAR'}}, auto_detect = false)
    WHERE regexp_full_match(c2, '[0-9A-Fa-f]{{40}}')  -- the exports also list other backends' keys
)
SELECT count(*) FROM candidates ANTI JOIN s3 ON left(candidates.main, 26) = s3.d
"""


def _ringfsck(*args: str, env: dict[str, str] | None = None) -> Measured:
    result = run_measured([sys.executable, "-m", "ringfsck", *args], env=env)
    if result.returncode != 0:
        raise SystemExit(f"ringfsck {' '.join(args)} failed:\n{result.stderr}")
    return result


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _spark(*args: str) -> Measured:
    spark = run_measured([sys.executable, str(HERE / "spark_baseline.py"), *args])
    if spark.returncode != 0:
        raise SystemExit(f"spark baseline {' '.join(args)} failed:\n{spark.stderr[-3000:]}")
    return spark


def _stepwise(world_dir: Path, store: Path, truth: dict, env: dict[str, str] | None) -> list[Measured]:
    """ingest listkeys, ingest s3keys, analyze: each a process, on a new store."""
    shutil.rmtree(store, ignore_errors=True)
    common = ["--store", str(store)]
    listkeys = _ringfsck("ingest", "listkeys", str(world_dir / "listkeys"), *common)
    s3keys = _ringfsck("ingest", "s3keys", str(world_dir / "s3-bucketd"), *common)
    analyze = _ringfsck("analyze", "--assume-no-splits", "--json", *common, env=env)
    assert json.loads(analyze.stdout)["counts"]["orphans"] == len(truth["orphans"]), "ringfsck did not find exactly the planted orphans"
    return [listkeys, s3keys, analyze]


def _check(world_dir: Path, store: Path, truth: dict, env: dict[str, str] | None) -> Measured:
    """The same job as one ringfsck check, on a new store."""
    shutil.rmtree(store, ignore_errors=True)
    one = _ringfsck("check", "--listkeys", str(world_dir / "listkeys"), "--s3keys", str(world_dir / "s3-bucketd"),
                    "--assume-no-splits", "--json", "--store", str(store), env=env)
    assert json.loads(one.stdout)["analysis"]["counts"]["orphans"] == len(truth["orphans"]), "ringfsck check did not find exactly the planted orphans"
    shutil.rmtree(store, ignore_errors=True)
    return one


def _median(runs: list[Measured]) -> Measured:
    """The run of median time (the machine's noise is a few tenths of a second at 10 M rows)."""
    return sorted(runs, key=lambda m: m.seconds)[(len(runs) - 1) // 2]


def _spread(seconds: list[float]) -> str:
    return f"  [median of {len(seconds)}: {min(seconds):.1f}-{max(seconds):.1f} s]" if len(seconds) > 1 else ""


def _spark_ratios(seconds: float, peak: int, flows: dict[str, tuple[float, int]]) -> str:
    return "; ".join(f"{name}: time {seconds / flow_seconds:.1f}x, memory {peak / flow_peak:.1f}x" for name, (flow_seconds, flow_peak) in flows.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="about this many listkeys rows (default 10 M)")
    parser.add_argument("--data", type=Path, default=Path("bench-data"), help="work directory (default ./bench-data)")
    parser.add_argument("--memory-limit", help="DuckDB memory_limit for analyze (default: ringfsck's own, 3GB)")
    parser.add_argument("--spark", action="store_true", help="also run the Spark baselines (pip install .[bench])")
    parser.add_argument("--no-floor", action="store_true", help="skip the one-query DuckDB floor")
    parser.add_argument("--keep", action="store_true", help="keep the generated world and store")
    parser.add_argument("--repeat", type=int, default=1, metavar="N", help="run ringfsck and the floor N times, report medians (Spark runs once)")
    args = parser.parse_args()

    world_dir = args.data / f"world-{args.rows}"
    store = args.data / f"store-{args.rows}"
    shutil.rmtree(store, ignore_errors=True)
    if not (world_dir / "truth.json").exists():
        started = time.perf_counter()
        generate_world(world_dir, objects=int(args.rows / ROWS_PER_OBJECT), seed=1, splits=0.0, server_state=False)
        print(f"generated in {time.perf_counter() - started:.1f} s")
    truth = json.loads((world_dir / "truth.json").read_text())
    rows = truth["counts"]["listkeys_rows"]
    s3_rows = truth["counts"]["export_rows"] if "export_rows" in truth["counts"] else truth["counts"]["sproxyd_keys"]
    csv_bytes = _size(world_dir / "listkeys") + _size(world_dir / "s3-bucketd")
    print(f"world: {rows:,} listkeys rows, {s3_rows:,} S3 keys, {human_bytes(csv_bytes)} of CSV")

    env = {"RINGFSCK_DUCKDB_MEMORY_LIMIT": args.memory_limit} if args.memory_limit else None
    stepwise = [_stepwise(world_dir, store, truth, env) for _ in range(args.repeat)]
    listkeys, s3keys, analyze = (_median([run[i] for run in stepwise]) for i in range(3))
    summary = json.loads(analyze.stdout)
    total = statistics.median(sum(m.seconds for m in run) for run in stepwise)
    peak = max(m.peak_rss_bytes for run in stepwise for m in run)
    print(f"ringfsck ingest listkeys  {listkeys.seconds:7.1f} s  {rows / listkeys.seconds:>12,.0f} rows/s  peak {human_bytes(listkeys.peak_rss_bytes)}")
    print(f"ringfsck ingest s3keys    {s3keys.seconds:7.1f} s  {s3_rows / s3keys.seconds:>12,.0f} rows/s  peak {human_bytes(s3keys.peak_rss_bytes)}")
    print(f"ringfsck ingest (both)    {listkeys.seconds + s3keys.seconds:7.1f} s  {(rows + s3_rows) / (listkeys.seconds + s3keys.seconds):>12,.0f} rows/s")
    print(f"ringfsck analyze          {analyze.seconds:7.1f} s  {'':>12}        peak {human_bytes(analyze.peak_rss_bytes)}"
          f"  (memory_limit {args.memory_limit or 'default'}; steps {summary['step_seconds']})")
    print(f"ringfsck total            {total:7.1f} s  peak {human_bytes(peak)}  store {human_bytes(_size(store / 'tables'))} vs {human_bytes(csv_bytes)} CSV"
          f"{_spread([sum(m.seconds for m in run) for run in stepwise])}")
    one_store = args.data / f"store-check-{args.rows}"
    checks = [_check(world_dir, one_store, truth, env) for _ in range(args.repeat)]
    one, one_peak = _median(checks), max(m.peak_rss_bytes for m in checks)
    print(f"ringfsck check (one command) {one.seconds:4.1f} s  peak {human_bytes(one_peak)}  (both ingests and the analysis in one process)"
          f"{_spread([m.seconds for m in checks])}")
    flows = {"3 commands": (total, peak), "check": (one.seconds, one_peak)}

    if not args.no_floor:
        query = FLOOR_QUERY.format(listkeys=world_dir / "listkeys", s3keys=world_dir / "s3-bucketd")
        floors = []
        for _ in range(args.repeat):
            floors.append(run_measured([sys.executable, "-c", f"import duckdb; con = duckdb.connect(); con.execute('SET enable_progress_bar = false'); print(con.execute({query!r}).fetchone()[0])"]))
            if floors[-1].returncode != 0 or int(floors[-1].stdout.strip()) != len(truth["orphans"]):
                raise SystemExit(f"floor query failed or disagrees:\n{floors[-1].stdout}{floors[-1].stderr[-2000:]}")
        floor = _median(floors)
        ratios = ", ".join(f"{name} {seconds / floor.seconds:.2f}x" for name, (seconds, _) in flows.items())
        print(f"DuckDB floor (one query)  {floor.seconds:7.1f} s  peak {human_bytes(floor.peak_rss_bytes)}  -> ringfsck/floor: {ratios}"
              f"{_spread([m.seconds for m in floors])}")

    if args.spark:
        work = args.data / f"spark-{args.rows}"
        inputs = ["--listkeys", str(world_dir / "listkeys"), "--s3keys", str(world_dir / "s3-bucketd"), "--work", str(work)]
        jobs = [_spark(*inputs, "--step", step) for step in ("p0", "p1", "p2")]
        reference_seconds = sum(job.seconds for job in jobs)
        reference_peak = max(job.peak_rss_bytes for job in jobs)
        orphans = json.loads(jobs[-1].stdout.strip().splitlines()[-1])["orphans"]
        print(f"Spark, reference jobs     {reference_seconds:7.1f} s  peak {human_bytes(reference_peak)}  "
              f"(p0 {jobs[0].seconds:.1f} s, p1 {jobs[1].seconds:.1f} s, p2 {jobs[2].seconds:.1f} s; {orphans:,} orphans)")
        print(f"  -> Spark/ringfsck: {_spark_ratios(reference_seconds, reference_peak, flows)}")
        best = _spark("--listkeys", str(world_dir / "listkeys"), "--s3keys", str(world_dir / "s3-bucketd"), "--mode", "builtin")
        print(f"Spark, one builtin job    {best.seconds:7.1f} s  peak {human_bytes(best.peak_rss_bytes)}")
        print(f"  -> Spark/ringfsck: {_spark_ratios(best.seconds, best.peak_rss_bytes, flows)}")
        shutil.rmtree(work, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
