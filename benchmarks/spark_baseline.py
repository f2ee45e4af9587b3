"""The reference algorithm in PySpark local mode, for side-by-side benchmarks.

Written from DOMAIN.md sections 3 and 6 (not from the reference's code): read
the listkeys CSVs, keep service 50/51 main chunks with a zero volume id, count
chunk rows per main chunk (the reference counts rows), keep ARC main chunks with
more than 3 rows and COS main chunks, translate the S3 input keys to digkeys and
anti-join.

``--mode reference`` (default) keeps the reference's shape: the translation is a
Python UDF and each step hands its result to the next as CSV files (p0 writes
the translated S3 keys, p1 the filtered candidates, p2 the orphans).
``--mode builtin`` uses Spark's md5/unhex and no intermediate files: the
strongest Spark can do with this algorithm.

Needs ``pip install .[bench]`` (pyspark) and Java 17.

    python benchmarks/spark_baseline.py --listkeys DIR --s3keys DIR [--work DIR] [--mode reference|builtin]
"""

from __future__ import annotations

import argparse
import json
import time


def _digkey_udf(key: str | None) -> str | None:
    import hashlib

    if key is None or len(key) != 40:
        return None
    digits = key.upper().lstrip("0")
    if len(digits) % 2:
        digits = "0" + digits
    return hashlib.md5(bytes.fromhex(digits)).hexdigest()[:22].upper() + "0000"


def run(listkeys: str, s3keys: str, driver_memory: str, mode: str = "reference", work: str | None = None) -> dict:
    import tempfile

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    spark = (
        SparkSession.builder.master("local[*]")
        .appName("ringfsck-spark-baseline")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter()

    rows = (
        spark.read.option("header", "false")
        .option("mode", "DROPMALFORMED")
        .csv(listkeys)
        .select(F.col("_c0").alias("chunk"), F.col("_c1").alias("main"))
        .where(F.length("main") == 40)
    )
    service = F.substring("main", 31, 2)
    candidates = (
        rows.where(service.isin("50", "51") & (F.substring("main", 23, 6) == "000000"))
        .groupBy("main")
        .agg(F.count("*").alias("chunks"))
        .where(
            ((F.substring("main", 39, 2) == "70") & (F.col("chunks") > 3))
            | (F.substring("main", 39, 1).isin("0", "1", "2", "3", "4", "5") & (F.substring("main", 40, 1) == "0"))
        )
        .withColumn("digkey", F.substring("main", 1, 26))
    )

    exports = spark.read.option("header", "false").option("multiLine", "true").option("escape", '"').csv(s3keys)
    if mode == "builtin":
        key = F.regexp_replace(F.upper(F.col("_c2")), "^0+", "")
        padded = F.when(F.length(key) % 2 == 1, F.concat(F.lit("0"), key)).otherwise(key)
        referenced = exports.select(F.concat(F.upper(F.substring(F.md5(F.unhex(padded)), 1, 22)), F.lit("0000")).alias("digkey")).distinct()
        orphans = candidates.join(referenced, on="digkey", how="left_anti")
        counts = {"candidates": candidates.count(), "orphans": orphans.count()}
    else:
        work = work or tempfile.mkdtemp(prefix="spark-baseline-")
        translate = F.udf(_digkey_udf, StringType())
        # p0: S3 keys -> digkeys, written out; p1: candidates, written out; p2: anti-join, written out.
        exports.select(translate(F.col("_c2")).alias("digkey")).write.mode("overwrite").csv(f"{work}/s3-dig-keys.csv")
        candidates.write.mode("overwrite").csv(f"{work}/candidates.csv")
        referenced = spark.read.csv(f"{work}/s3-dig-keys.csv").select(F.col("_c0").alias("digkey"))
        kept = spark.read.csv(f"{work}/candidates.csv").select(F.col("_c0").alias("main"), F.col("_c2").alias("digkey"))
        kept.join(referenced, on="digkey", how="left_anti").write.mode("overwrite").csv(f"{work}/orphans.csv")
        counts = {
            "candidates": spark.read.csv(f"{work}/candidates.csv").count(),
            "orphans": spark.read.csv(f"{work}/orphans.csv").count(),
        }
    counts["seconds"] = round(time.perf_counter() - started, 3)
    counts["mode"] = mode
    spark.stop()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listkeys", required=True, help="directory of listkeys CSV files")
    parser.add_argument("--s3keys", required=True, help="directory of per-bucket S3 key CSV files")
    parser.add_argument("--memory", default="2g", help="spark.driver.memory (default 2g)")
    parser.add_argument("--mode", choices=["reference", "builtin"], default="reference")
    parser.add_argument("--work", default=None, help="where the reference mode writes its step outputs (default: a temp dir)")
    args = parser.parse_args()
    print(json.dumps(run(args.listkeys, args.s3keys, args.memory, args.mode, args.work)))


if __name__ == "__main__":
    main()
