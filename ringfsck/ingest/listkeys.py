"""RING listkeys ingestion (DOMAIN.md section 5).

Input: ``ringsh node listKeys`` dumps or Spark ``listkeys.csv/`` parts, lines of
``chunk key,main chunk key,disk,flag[,more columns]``. Lines starting with
``Use`` are ringsh noise, ``_1,_2,_3,_4`` is a Spark header, blank lines are
skipped; everything else is either a valid row or a reject with its line number.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.ingest._blocks import INVALID_LINE, line_blocks
from ringfsck.ingest._registry import ParseContext, ParseResult
from ringfsck.ingest.inputs import OpenedInput
from ringfsck.store import TABLES

LISTKEYS_SCHEMA = TABLES["listkeys"]
_HEX40 = r"^[0-9A-Fa-f]{40}$"
# What ringsh and Spark write: fixed-width keys, no spaces. Lines in this form
# are split by position; only the others go through the field-by-field checks.
_CANONICAL = r"^[0-9A-Fa-f]{40},[0-9A-Fa-f]{40},[^,\s]+,[0-9]{1,9}(,.*)?$"


def _canonical(frame: pl.DataFrame) -> pl.DataFrame:
    rest = pl.col("raw").str.slice(82).str.splitn(",", 3)
    return frame.select(
        pl.col("line"),
        pl.col("raw"),
        pl.col("raw").str.slice(0, 40).alias("chunk_key"),
        pl.col("raw").str.slice(41, 40).alias("main_chunk"),
        rest.struct.field("field_0").alias("disk"),
        rest.struct.field("field_1").alias("flag_text"),
        pl.lit("ok").alias("verdict"),
    )


def _classify(lines: pa.LargeStringArray, first_line: int) -> pl.DataFrame:
    """Split and validate a block of lines; one row per line with its verdict."""
    frame = pl.DataFrame({"raw": pl.Series(lines).str.strip_chars_end("\r\n")}).with_row_index("line", offset=first_line)
    is_canonical = pl.col("raw").str.contains(_CANONICAL)
    canonical = _canonical(frame.filter(is_canonical))
    others = frame.filter(~is_canonical)
    if others.height == 0:
        return canonical
    return pl.concat([canonical, _classify_field_by_field(others)], how="vertical_relaxed")


def _classify_field_by_field(frame: pl.DataFrame) -> pl.DataFrame:
    fields = pl.col("raw").str.splitn(",", 5)
    frame = frame.with_columns(
        fields.struct.field("field_0").str.strip_chars().alias("chunk_key"),
        fields.struct.field("field_1").str.strip_chars().alias("main_chunk"),
        fields.struct.field("field_2").str.strip_chars().alias("disk"),
        fields.struct.field("field_3").str.strip_chars().alias("flag_text"),
    )
    stripped = pl.col("raw").str.strip_chars()
    return frame.with_columns(
        pl.when(pl.col("raw") == INVALID_LINE)
        .then(pl.lit("invalid"))
        .when(stripped == "")
        .then(pl.lit("blank"))
        .when(stripped.str.starts_with("Use"))
        .then(pl.lit("noise"))
        .when(stripped.str.starts_with("_1,_2"))
        .then(pl.lit("header"))
        .when(pl.col("flag_text").is_null())
        .then(pl.lit("expected at least 4 comma-separated columns (chunk key, main chunk, disk, flag)"))
        .when(~pl.col("chunk_key").str.contains(_HEX40))
        .then(pl.lit("chunk key is not 40 hex characters"))
        .when(~pl.col("main_chunk").str.contains(_HEX40))
        .then(pl.lit("main chunk key is not 40 hex characters"))
        .when(pl.col("disk") == "")
        .then(pl.lit("disk is empty"))
        .when(~pl.col("flag_text").str.contains(r"^[0-9]{1,9}$"))
        .then(pl.lit("flag is not a non-negative integer"))
        .otherwise(pl.lit("ok"))
        .alias("verdict")
    ).select("line", "raw", "chunk_key", "main_chunk", "disk", "flag_text", "verdict")


def parse_listkeys(opened: OpenedInput, ctx: ParseContext) -> ParseResult:
    location, rejects = ctx.location, ctx.rejects
    result = ParseResult(format="listkeys-csv")
    with ctx.store.writing_part("listkeys", ctx.source_id) as tmp:
        # Chunk keys are unique: dictionary-encoding them is wasted work.
        writer = pq.ParquetWriter(tmp, LISTKEYS_SCHEMA, compression="zstd", use_dictionary=["main_chunk", "disk", "source"])
        try:
            for block in line_blocks(opened.blocks()):
                for line, raw in block.invalid_utf8:
                    rejects.add(line, "line is not valid UTF-8", raw)
                frame = _classify(block.lines, block.first_line)
                counts = frame.group_by("verdict").len()
                for verdict, count in counts.iter_rows():
                    if verdict in ("blank", "noise", "header"):
                        result.skipped[verdict] = result.skipped.get(verdict, 0) + count
                bad = frame.filter(~pl.col("verdict").is_in(["ok", "blank", "noise", "header", "invalid"]))
                for line, reason, raw in bad.select("line", "verdict", "raw").iter_rows():
                    rejects.add(line, reason, raw)
                good = frame.filter(pl.col("verdict") == "ok").select(
                    pl.col("chunk_key").str.to_uppercase(),
                    pl.col("main_chunk").str.to_uppercase(),
                    pl.col("disk"),
                    pl.col("flag_text").cast(pl.Int32).alias("flag"),
                    pl.lit(location).alias("source"),
                )
                if good.height:
                    writer.write_table(good.to_arrow().cast(LISTKEYS_SCHEMA))
                    result.rows += good.height
        finally:
            writer.close()
        ctx.ensure_not_empty(result.rows)
    return result
