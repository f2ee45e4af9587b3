"""S3 key export ingestion (DOMAIN.md section 5), format detected per file.

* CSV, one file per bucket: ``"bucket","object key","sproxyd key"`` with proper
  quoting (object keys may hold commas, quotes, newlines, any UTF-8).
* JSON lines (the export tool's log): records with ``"message": "sproxyd key"``
  carry ``objectUrl`` (``s3://bucket/<encodeURIComponent(key)>``) and
  ``sproxydKey``; other records are progress lines, and error records mean the
  export itself is incomplete, which the analysis must know.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.ingest._registry import ParseContext, ParseResult
from ringfsck.ingest.inputs import OpenedInput
from ringfsck.keys import is_valid_key
from ringfsck.store import TABLES

S3KEYS_SCHEMA = TABLES["s3keys"]
MPU_SHADOW_PREFIX = "mpuShadowBucket"
_BATCH = 100_000
_ERROR_LEVELS = {"error", "fatal"}

csv.field_size_limit(sys.maxsize)  # object keys and metadata can be long


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _RowWriter:
    """Batches (bucket, key, sproxyd key, line) rows into the source's s3keys part."""

    def __init__(self, path, location: str) -> None:
        self._writer = pq.ParquetWriter(path, S3KEYS_SCHEMA, compression="zstd")
        self._location = location
        self._rows: list[tuple[str, str, str, int]] = []
        self.count = 0

    def add(self, bucket: str, object_key: str, sproxyd_key: str, line: int) -> None:
        self._rows.append((bucket, object_key, sproxyd_key.upper(), line))
        self.count += 1
        if len(self._rows) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        buckets, keys, sproxyd, lines = (list(col) for col in zip(*self._rows))
        n = len(lines)
        table = pa.table(
            {
                "bucket": buckets,
                "object_key": keys,
                "version_id": pa.nulls(n, pa.string()),
                "sproxyd_key": sproxyd,
                "size": pa.nulls(n, pa.int64()),
                "last_modified": pa.nulls(n, pa.timestamp("us", tz="UTC")),
                "mpu_part": [b.startswith(MPU_SHADOW_PREFIX) for b in buckets],
                "source": [self._location] * n,
                "line": lines,
            },
            schema=S3KEYS_SCHEMA,
        )
        self._writer.write_table(table)
        self._rows.clear()

    def close(self) -> None:
        self.flush()
        self._writer.close()


def detect_format(opened: OpenedInput) -> str:
    head = opened.peek_text().lstrip("\ufeff \t\r\n")
    return "s3keys-jsonl" if head.startswith("{") else "s3keys-csv"


def parse_s3keys(opened: OpenedInput, ctx: ParseContext) -> ParseResult:
    result = ParseResult(format=detect_format(opened))
    with ctx.store.writing_part("s3keys", ctx.source_id) as tmp:
        rows = _RowWriter(tmp, ctx.location)
        try:
            if result.format == "s3keys-csv":
                _parse_csv(opened, ctx, rows, result)
            else:
                _parse_jsonl(opened, ctx, rows, result)
        finally:
            rows.close()
        result.rows = rows.count
        ctx.ensure_not_empty(result.rows)
    return result


def _skip(result: ParseResult, what: str) -> None:
    result.skipped[what] = result.skipped.get(what, 0) + 1


def _csv_records(text) -> Iterator[tuple[int, list[str] | None, str]]:
    """Yield (first line number, fields or None for a malformed record, raw text)."""
    reader = csv.reader(text, strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, None, f"malformed CSV: {exc}"
            start = reader.line_num + 1
            continue
        yield start, fields, ""
        start = reader.line_num + 1


def _parse_csv(opened: OpenedInput, ctx: ParseContext, rows: _RowWriter, result: ParseResult) -> None:
    first = True
    for line, fields, error in _csv_records(opened.text()):
        if fields is None:
            ctx.rejects.add(line, error, "")
            continue
        raw = ",".join(fields)
        if not fields or fields == [""] or all(not f.strip() for f in fields):
            _skip(result, "blank")
            continue
        if len(fields) != 3:
            ctx.rejects.add(line, f"expected 3 fields (bucket, object key, sproxyd key), found {len(fields)}", _printable(raw))
            continue
        bucket, object_key, key = fields
        key = key.strip()
        if first and not is_valid_key(key) and "key" in key.lower():
            first = False
            _skip(result, "header")
            continue
        first = False
        if _has_surrogates(raw):
            ctx.rejects.add(line, "not valid UTF-8", _printable(raw))
        elif not bucket:
            ctx.rejects.add(line, "bucket name is empty", raw)
        elif not key:
            _skip(result, "no RING key")
        elif not is_valid_key(key):
            ctx.rejects.add(line, "sproxyd key is not 40 hex characters", raw)
        else:
            rows.add(bucket, object_key, key, line)


def _parse_jsonl(opened: OpenedInput, ctx: ParseContext, rows: _RowWriter, result: ParseResult) -> None:
    export_errors: list[str] = []
    for line, text in enumerate(opened.text(), start=1):
        stripped = text.strip()
        if not stripped:
            _skip(result, "blank")
            continue
        if _has_surrogates(stripped):
            ctx.rejects.add(line, "not valid UTF-8", _printable(stripped))
            continue
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as exc:
            ctx.rejects.add(line, f"not a JSON record: {exc.msg}", stripped)
            continue
        if not isinstance(record, dict):
            ctx.rejects.add(line, "not a JSON object", stripped)
            continue
        if record.get("message") != "sproxyd key":
            if str(record.get("level", "")).lower() in _ERROR_LEVELS:
                export_errors.append(f"line {line}: {record.get('message')}")
                _skip(result, "export error records")
            else:
                _skip(result, "other records")
            continue
        url, key = record.get("objectUrl"), record.get("sproxydKey")
        if not isinstance(url, str) or not url.startswith("s3://") or "/" not in url[5:]:
            ctx.rejects.add(line, "objectUrl is not s3://bucket/key", stripped)
            continue
        bucket, _, encoded = url[5:].partition("/")
        try:
            object_key = unquote(encoded, errors="strict")
        except UnicodeDecodeError:
            ctx.rejects.add(line, "objectUrl key is not percent-encoded UTF-8", stripped)
            continue
        if not bucket:
            ctx.rejects.add(line, "bucket name is empty", stripped)
        elif not isinstance(key, str) or not is_valid_key(key.strip()):
            ctx.rejects.add(line, "sproxydKey is not 40 hex characters", stripped)
        else:
            rows.add(bucket, object_key, key.strip(), line)
    if export_errors:
        result.warnings.append(
            f"{ctx.location}: the export logged {len(export_errors)} error(s), so it may be incomplete (first: {export_errors[0]})"
        )


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
