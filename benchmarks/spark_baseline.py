"""The reference algorithm in PySpark local mode, for side-by-side benchmarks.

Written from docs/domain.md sections 3 and 6 and from how the reference's scripts run
(not from their code). Two modes:

``--mode reference`` (default) runs the way operators run the reference: three
separate jobs (``--step p0``, ``p1``, ``p2``), each its own Spark application,
handing results to the next as CSV files with a header:

* p0 reads the S3 key exports (schema inferred, a pass of its own), and turns
  every input key into its digkey in a Python function over the rows (the
  reference also asks srebuildd whether each key is split: no split lookups
  here, so p0 is faster than the reference's);
* p1 reads the listkeys CSVs (schema inferred), and for service 50 (flag text
  containing ``0``) and service 51 separately, ARC main chunks (ending ``70``,
  more than 3 rows: rows are counted, not distinct chunks) and COS main chunks
  (ending ``<cos>0``), each found with a regular expression and grouped on its
  own, then the four unioned (Spark re-reads the CSV for each branch);
* p2 reads both (schema inferred) and anti-joins on the digkey.

``--mode builtin`` is the strongest Spark can do with this algorithm in one
job: Spark's own md5/unhex, no intermediate files, one scan.

Needs ``pip install .[bench]`` (pyspark) and Java 17.

    python benchmarks/spark_baseline.py --listkeys DIR --s3keys DIR --work DIR --step p0|p1|p2
    python benchmarks/spark_baseline.py --listkeys DIR --s3keys DIR --mode builtin
"""

from __future__ import annotations

import argparse
import json
import time

COS = 2  # the lab worlds' COS level (the reference's cos_protection)


def _digkey(key: str | None) -> str | None:
    """docs/domain.md section 3, in plain Python as a row function would do it."""
    import hashlib

    if key is None or len(key) != 40:
        return None
    digits = key.upper().lstrip("0")
    if len(digits) % 2:
        digits = "0" + digits
    return hashlib.md5(bytes.fromhex(digits)).hexdigest()[:22].upper() + "0000"


def _session(name: str, driver_memory: str):  # noqa: ANN202
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[*]")
        .appName(name)
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def step_p0(spark, s3keys: str, work: str) -> dict:  # noqa: ANN001
    from pyspark.sql import Row

    exports = spark.read.option("header", "false").option("inferSchema", "true").csv(s3keys)
    translated = exports.rdd.map(lambda row: Row(key=row[2], digkey=_digkey(row[2]))).toDF()
    translated.write.mode("overwrite").option("header", "true").csv(f"{work}/s3-dig-keys.csv")
    return {}


def step_p1(spark, listkeys: str, work: str) -> dict:  # noqa: ANN001
    from pyspark.sql import functions as F

    rows = spark.read.option("header", "false").option("inferSchema", "true").csv(listkeys)
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
    parser.add_argument("--step", choices=["p0", "p1", "p2"], help="reference mode: which job to run")
    args = parser.parse_args()
    if args.mode == "reference" and not (args.step and args.work):
        parser.error("reference mode runs one job at a time: --step and --work are required")
    started = time.perf_counter()
    spark = _session(f"ringfsck-spark-baseline-{args.step or 'builtin'}", args.memory)
    if args.mode == "builtin":
        result = builtin(spark, args.listkeys, args.s3keys)
    elif args.step == "p0":
        result = step_p0(spark, args.s3keys, args.work)
    elif args.step == "p1":
        result = step_p1(spark, args.listkeys, args.work)
    else:
        result = step_p2(spark, args.work)
    spark.stop()
    result.update(mode=args.mode, step=args.step, seconds=round(time.perf_counter() - started, 3))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
