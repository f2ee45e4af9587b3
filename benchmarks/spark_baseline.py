"""The reference algorithm in PySpark local mode, for side-by-side benchmarks.

Written from docs/domain.md sections 3, 4, 6 and 9 and from how the reference's scripts run
(not from their code). Two modes:

``--mode reference`` (default) runs the way operators run the reference: separate
jobs (``--step listkey``, ``p0``, ``p1``, ``p2``), each its own Spark application,
handing results to the next as CSV files with a header:

* listkey asks the supervisor for the ring's nodes (``--supervisor``, ``--ring``,
  ``--login``, the password in ``RINGFSCK_SUP_PASSWORD``) and lists each node with
  ``GET /listkeys`` (cookie login, chunks older than ``--retention``), one node per
  Spark task, a Python function splitting every line, into ``--listkeys`` as a Spark
  output directory with the header ``_1,_2,_3,_4`` (docs/domain.md section 9);
* p0 reads the S3 key exports (schema inferred, a pass of its own), and turns
  every input key into its digkey in a Python function over the rows. With
  ``--srebuildd URL`` it also asks srebuildd, as the reference does, whether each key is
  split: a HEAD per key, and a GET of the raw index when split, one request at a time per
  task (a keep-alive connection per task); the subkeys' digkeys replace the index's (the
  reference forgets the index's own chunk, docs/domain.md section 4) and a failed lookup
  becomes ``NOK_HTTP``, matching nothing. ``--lookups-share F`` asks only that share of
  the keys (picked by a hash of the key: spread evenly, the same on every run) and projects
  the lookups of the others linearly from their time.
  Without ``--srebuildd`` no key is looked up (p0 is then faster than the reference's);
* p1 reads the listkeys CSVs (schema inferred; ``--listkeys-header`` when they are
  listkey's output), and for service 50 (flag text
  containing ``0``) and service 51 separately, ARC main chunks (ending ``70``,
  more than 3 rows: rows are counted, not distinct chunks) and COS main chunks
  (ending ``<cos>0``), each found with a regular expression and grouped on its
  own, then the four unioned (Spark re-reads the CSV for each branch);
* p2 reads both (schema inferred) and anti-joins on the digkey.

``--mode builtin`` is the strongest Spark can do with this algorithm in one
job: Spark's own md5/unhex, no intermediate files, one scan.

Needs ``pip install .[bench]`` (pyspark) and Java 17.

    python benchmarks/spark_baseline.py --listkeys DIR --s3keys DIR --work DIR --step p0|p1|p2
    RINGFSCK_SUP_PASSWORD=… python benchmarks/spark_baseline.py --step listkey --supervisor URL --login USER --listkeys DIR --work DIR
    python benchmarks/spark_baseline.py --s3keys DIR --work DIR --step p0 --srebuildd URL [--lookups-share 0.05]
    python benchmarks/spark_baseline.py --listkeys DIR --s3keys DIR --mode builtin
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import zlib
from collections.abc import Iterator

COS = 2  # the lab worlds' COS level (the reference's cos_protection)
LISTING_MTIME_MIN = 123456789  # what the reference asks every node for (docs/domain.md section 9)
# docs/domain.md section 4: a subkey of 20, 19 or 18 bytes follows a marker ending 14, 13 or 12.
_SUBKEY_MARKER = re.compile(r"(?:2000000000000|201000000|51d688000000)(1[234])", re.IGNORECASE)


def _digkey(key: str | None) -> str | None:
    """docs/domain.md section 3, in plain Python as a row function would do it."""
    import hashlib

    if key is None or len(key) != 40:
        return None
    digits = key.upper().lstrip("0")
    if len(digits) % 2:
        digits = "0" + digits
    return hashlib.md5(bytes.fromhex(digits)).hexdigest()[:22].upper() + "0000"


def _subkeys(index: bytes) -> list[str]:
    """The subkeys of a raw split index, as the reference's p0 reads them (without its parsing bugs)."""
    text, found, pos = index.hex(), [], 0
    while (match := _SUBKEY_MARKER.search(text, pos)) is not None:
        start, width = match.end(), 2 * (6 + int(match.group(1)))
        if start % 2 or start + width > len(text):  # not on a byte boundary: not a marker
            pos = match.start() + 1
            continue
        found.append(text[start : start + width].upper().rjust(40, "0"))
        pos = start + width
    return found


def _session(name: str, driver_memory: str):  # noqa: ANN202
    from pyspark.sql import SparkSession

    # The Python workers must be this interpreter (the one with pyspark and httpx).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[*]")
        .appName(name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _tls(ca_bundle: str | None):  # noqa: ANN202
    """httpx's verify: the CA bundle, or no check at all as the reference does (built in each task: not picklable)."""
    import ssl

    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else False


def _ring_nodes(supervisor: str, ring: str, login: str, password: str, ca_bundle: str | None) -> list[dict]:
    """The ring's nodes from the supervisor's XML configuration (docs/domain.md section 9)."""
    import xml.etree.ElementTree as ET

    import httpx

    query = {"cmd": "supervisor config dso", "action": "view", "mergedisks": "1", "dsoname": ring,
             "suser": login, "spass": password, "output": "xml"}
    answer = httpx.get(f"{supervisor.rstrip('/')}/do", params=query, verify=_tls(ca_bundle), timeout=60)
    answer.raise_for_status()
    result = ET.fromstring(answer.content).find("res")
    if result is None or len(result) == 0 or result[0].tag == "reserror":
        raise SystemExit(f"supervisor: no configuration of {ring}: {answer.text[:300]}")
    scheme = supervisor.split("://", 1)[0]
    return [{"name": node.findtext("name"), "url": f"{scheme}://{node.findtext('config/ip')}:{node.findtext('config/adminport')}",
             "vnode": node.findtext("config/port")} for node in result[0].iterfind("dso/nodes/node")]


def _list_node(node: dict, ring: str, login: str, password: str, ca_bundle: str | None, mtime_max: int) -> Iterator[tuple]:
    """One Spark task: log in to a node, stream its listkeys, split every line in Python."""
    import httpx

    params = {"dso": ring, "vnode": node["vnode"], "mtime_min": LISTING_MTIME_MIN, "mtime_max": mtime_max, "loadmetadata": "browse"}
    with httpx.Client(base_url=node["url"], verify=_tls(ca_bundle), timeout=600) as client:
        for attempt in range(2):  # the first answer is the login redirect
            with client.stream("GET", "/listkeys", params=params) as answer:
                if answer.status_code == 302 and attempt == 0:
                    form = {"url": (None, "/listkeys"), "login": (None, login), "password": (None, password)}
                    logged_in = client.post("/login", files=form)
                    if "loginerror" in logged_in.headers.get("location", ""):
                        raise RuntimeError(f"{node['name']}: login refused")
                    continue
                answer.raise_for_status()
                for line in answer.iter_lines():
                    fields = line.split(",")
                    if len(fields[0]) > 30:  # keep-alive and noise lines are shorter
                        yield tuple(fields[:4])
                return


def step_listkey(spark, args: argparse.Namespace) -> dict:  # noqa: ANN001
    password = os.environ["RINGFSCK_SUP_PASSWORD"]
    nodes = _ring_nodes(args.supervisor, args.ring, args.login, password, args.ca_bundle)
    mtime_max = int(time.time()) - args.retention
    ring, login, ca_bundle = args.ring, args.login, args.ca_bundle
    rows = spark.sparkContext.parallelize(nodes, len(nodes)).flatMap(lambda node: _list_node(node, ring, login, password, ca_bundle, mtime_max))
    listing = spark.createDataFrame(rows, "_1 string, _2 string, _3 string, _4 string")
    listing.write.mode("overwrite").option("header", "true").csv(args.listkeys)
    return {"nodes": len(nodes)}


def _looked_up(rows: Iterator, srebuildd: str, arc_path: str, share: float, keys, spent, asked, failed) -> Iterator:  # noqa: ANN001
    """One Spark task of p0 with lookups: one request at a time over a keep-alive connection."""
    import httpx
    from pyspark.sql import Row

    with httpx.Client(base_url=srebuildd, timeout=30) as client:
        for row in rows:
            key = row[2]
            if key is None or len(key) != 40:  # other backends' keys: no RING data to look up
                continue
            keys.add(1)
            if share < 1 and zlib.crc32(key.encode()) >= share * 2**32:  # not in the sample: no lookup (projected)
                yield Row(key=key, subkey=key, digkey=_digkey(key))
                continue
            started = time.perf_counter()
            try:
                head = client.head(f"/{arc_path}/{key}")
                subkeys = [key]
                if head.status_code != 200:
                    subkeys = []
                elif "X-Scal-Attr-Is-Split" in head.headers:  # the reference tests for presence
                    index = client.get(f"/{arc_path}/{key}", headers={"x-scal-split-policy": "raw"})
                    subkeys = _subkeys(index.content) if index.status_code == 200 else []
            except httpx.HTTPError:
                subkeys = []
            spent.add(time.perf_counter() - started)
            asked.add(1)
            if not subkeys:
                failed.add(1)
                yield Row(key=key, subkey=key, digkey="NOK_HTTP")  # matches nothing: the reference's data-loss bug
            for subkey in subkeys:
                yield Row(key=key, subkey=subkey, digkey=_digkey(subkey))


def step_p0(spark, s3keys: str, work: str, srebuildd: str | None = None, arc_path: str = "rebuild/arc-DATA",
            share: float = 1.0) -> dict:  # noqa: ANN001
    from pyspark.sql import Row

    exports = spark.read.option("header", "false").option("inferSchema", "true").csv(s3keys)
    if srebuildd is None:
        translated = exports.rdd.map(lambda row: Row(key=row[2], digkey=_digkey(row[2]))).toDF()
        translated.write.mode("overwrite").option("header", "true").csv(f"{work}/s3-dig-keys.csv")
        return {}
    context, rows = spark.sparkContext, exports.rdd
    if rows.getNumPartitions() < context.defaultParallelism:  # at least a task per core (favours the reference)
        rows = rows.repartition(context.defaultParallelism)
    keys, spent, asked, failed = (context.accumulator(0), context.accumulator(0.0), context.accumulator(0), context.accumulator(0))
    path = arc_path.strip("/")
    translated = rows.mapPartitions(lambda part: _looked_up(part, srebuildd, path, share, keys, spent, asked, failed))
    translated.toDF("key string, subkey string, digkey string").write.mode("overwrite").option("header", "true").csv(f"{work}/s3-dig-keys.csv")
    result = {"keys": keys.value, "lookups": asked.value, "failed_lookups": failed.value, "lookup_task_seconds": round(spent.value, 3),
              "tasks": rows.getNumPartitions(), "cores": context.defaultParallelism}
    if asked.value < keys.value and asked.value:
        # The keys not asked, at the sample's time per key, spread over the cores as the tasks are.
        result["projected_extra_seconds"] = round(spent.value / asked.value * (keys.value - asked.value) / context.defaultParallelism, 1)
    return result


def step_p1(spark, listkeys: str, work: str, header: bool = False) -> dict:  # noqa: ANN001
    from pyspark.sql import functions as F

    rows = spark.read.option("header", str(header).lower()).option("inferSchema", "true").csv(listkeys)
    rows = rows.toDF(*(f"_c{i}" for i in range(len(rows.columns))))  # listkey's header names them _1.._4
    main = F.col("_c1").cast("string")

    def branch(service: str, ending: str, min_rows: int | None, flag_zero: bool):  # noqa: ANN202
        selected = rows.where(main.rlike(f"^.*000000..{service}........$") & main.rlike(f"^.*{ending}$"))
        if flag_zero:
            selected = selected.where(F.col("_c3").cast("string").rlike("0"))
        counted = selected.groupBy(main.alias("ringkey")).count()
        if min_rows is not None:
            counted = counted.where(F.col("count") > min_rows)
        return counted.withColumn("digkey", F.substring("ringkey", 1, 26))

    candidates = (
        branch("50", "70", 3, True)
        .union(branch("50", f"{COS}0", None, True))
        .union(branch("51", "70", 3, False))
        .union(branch("51", f"{COS}0", None, False))
    )
    candidates.write.mode("overwrite").option("header", "true").csv(f"{work}/arc-keys.csv")
    return {}


def step_p2(spark, work: str) -> dict:  # noqa: ANN001
    referenced = spark.read.option("header", "true").option("inferSchema", "true").csv(f"{work}/s3-dig-keys.csv")
    candidates = spark.read.option("header", "true").option("inferSchema", "true").csv(f"{work}/arc-keys.csv")
    orphans = candidates.join(referenced.select("digkey"), on="digkey", how="left_anti").select("ringkey")
    orphans.write.mode("overwrite").option("header", "false").csv(f"{work}/s3objects-missing.csv")
    return {"candidates": candidates.count(), "orphans": spark.read.csv(f"{work}/s3objects-missing.csv").count()}


def builtin(spark, listkeys: str, s3keys: str) -> dict:  # noqa: ANN001
    from pyspark.sql import functions as F

    rows = spark.read.option("header", "false").csv(listkeys).select(F.col("_c0").alias("chunk"), F.col("_c1").alias("main"))
    candidates = (
        rows.where(F.substring("main", 31, 2).isin("50", "51") & (F.substring("main", 23, 6) == "000000"))
        .groupBy("main")
        .agg(F.countDistinct("chunk").alias("chunks"))
        .where(
            ((F.substring("main", 39, 2) == "70") & (F.col("chunks") > 3))
            | (F.substring("main", 39, 1).isin("0", "1", "2", "3", "4", "5") & (F.substring("main", 40, 1) == "0"))
        )
        .withColumn("digkey", F.substring("main", 1, 26))
    )
    exports = spark.read.option("header", "false").option("multiLine", "true").option("escape", '"').csv(s3keys)
    key = F.regexp_replace(F.upper(F.col("_c2")), "^0+", "")
    padded = F.when(F.length(key) % 2 == 1, F.concat(F.lit("0"), key)).otherwise(key)
    referenced = exports.select(F.concat(F.upper(F.substring(F.md5(F.unhex(padded)), 1, 22)), F.lit("0000")).alias("digkey")).distinct()
    orphans = candidates.join(referenced, on="digkey", how="left_anti")
    return {"candidates": candidates.count(), "orphans": orphans.count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listkeys", help="directory of listkeys CSV files (p1, builtin)")
    parser.add_argument("--s3keys", help="directory of per-bucket S3 key CSV files (p0, builtin)")
    parser.add_argument("--work", help="where the reference steps hand over their CSV outputs")
    parser.add_argument("--memory", default="2g", help="spark.driver.memory (default 2g)")
    parser.add_argument("--mode", choices=["reference", "builtin"], default="reference")
    parser.add_argument("--step", choices=["listkey", "p0", "p1", "p2"], help="reference mode: which job to run")
    parser.add_argument("--listkeys-header", action="store_true", help="p1: the listkeys CSVs have a header (listkey's output)")
    parser.add_argument("--supervisor", help="listkey: the supervisor's URL")
    parser.add_argument("--ring", default="DATA", help="listkey: the ring (DSO) to list; p0: the arc path's ring (default DATA)")
    parser.add_argument("--login", help="listkey: the supervisor login (the password: env RINGFSCK_SUP_PASSWORD)")
    parser.add_argument("--ca-bundle", help="listkey: CA bundle of the nodes' certificates (default: not checked, as the reference)")
    parser.add_argument("--retention", type=int, default=604800, help="listkey: chunks younger than this are not listed (default 7 days)")
    parser.add_argument("--srebuildd", help="p0: ask this srebuildd whether each key is split, as the reference does")
    parser.add_argument("--lookups-share", type=float, default=1.0, metavar="F",
                        help="p0 with --srebuildd: look up this share of the keys only (0 to 1), project the rest")
    args = parser.parse_args()
    if args.mode == "reference" and not (args.step and args.work):
        parser.error("reference mode runs one job at a time: --step and --work are required")
    started = time.perf_counter()
    spark = _session(f"ringfsck-spark-baseline-{args.step or 'builtin'}", args.memory)
    if args.mode == "builtin":
        result = builtin(spark, args.listkeys, args.s3keys)
    elif args.step == "listkey":
        result = step_listkey(spark, args)
    elif args.step == "p0":
        result = step_p0(spark, args.s3keys, args.work, args.srebuildd, f"rebuild/arc-{args.ring}", args.lookups_share)
    elif args.step == "p1":
        result = step_p1(spark, args.listkeys, args.work, args.listkeys_header)
    else:
        result = step_p2(spark, args.work)
    spark.stop()
    result.update(mode=args.mode, step=args.step, seconds=round(time.perf_counter() - started, 3))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
