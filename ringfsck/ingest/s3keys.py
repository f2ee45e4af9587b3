"""S3 key export ingestion (docs/domain.md section 5), format detected per file.

* CSV, one file per bucket: ``"bucket","object key","sproxyd key"`` with proper
  quoting (object keys may hold commas, quotes, newlines, any UTF-8).
* JSON lines (the export tool's log): records with ``"message": "sproxyd key"``
  carry ``objectUrl`` (``s3://bucket/<encodeURIComponent(key)>``) and
  ``sproxydKey``; other records are progress lines, and error records mean the
  export itself is incomplete, which the analysis must know.
"""

from __future__ import annotations

import binascii
import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ringfsck.ingest.inputs import OpenedInput
from ringfsck.ingest.parsing import ParseContext, ParseResult
from ringfsck.keys import MPU_SHADOW_PREFIX, is_other_backend_key, is_valid_key
from ringfsck.store import CSV_EXPORT_FORMAT, arrow_schema

S3KEYS_SCHEMA = arrow_schema("s3keys")
_BATCH = 100_000

csv.field_size_limit(sys.maxsize)  # object keys and metadata can be long


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def s3keys_writer(path) -> pq.ParquetWriter:
    """A writer for an s3keys part: object and sproxyd keys are unique, so only the
    repetitive columns get dictionaries; level-1 zstd writes several times faster
    than the default level for a few percent more bytes."""
    return pq.ParquetWriter(path, S3KEYS_SCHEMA, compression="zstd", compression_level=1, use_dictionary=["bucket", "version_id", "source"])


def _export_rows(
    buckets: pa.Array, object_keys: pa.Array, sproxyd_keys: pa.Array, lines: pa.Array, location: str, versions: pa.Array | None = None
) -> pa.Table:
    """Rows of a file export as the s3keys table wants them (files carry no size or time; a CSV no version)."""
    n = len(lines)
    return pa.table(
        {
            "bucket": buckets,
            "object_key": object_keys,
            "version_id": pa.nulls(n, pa.string()) if versions is None else versions,
            "sproxyd_key": sproxyd_keys,
            "size": pa.nulls(n, pa.int64()),
            "last_modified": pa.nulls(n, pa.timestamp("us", tz="UTC")),
            "mpu_part": pc.starts_with(buckets, MPU_SHADOW_PREFIX),
            "source": pa.repeat(location, n),
            "line": lines,
            "on_ring": pa.nulls(n, pa.bool_()),  # a file export does not say which backend a key is on
        },
        schema=S3KEYS_SCHEMA,
    )


class _RowWriter:
    """Batches (bucket, key, sproxyd key, line, version) rows into the source's s3keys part."""

    def __init__(self, path, location: str) -> None:
        self._writer = s3keys_writer(path)
        self._location = location
        self._rows: list[tuple[str, str, str, int, str | None]] = []
        self.count = 0

    def add(self, bucket: str, object_key: str, sproxyd_key: str, line: int, version_id: str | None = None) -> None:
        self._rows.append((bucket, object_key, sproxyd_key.upper(), line, version_id))
        self.count += 1
        if len(self._rows) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        buckets, keys, sproxyd, lines, versions = (list(col) for col in zip(*self._rows))
        bucket_array, key_array, sproxyd_array = (pa.array(column, pa.string()) for column in (buckets, keys, sproxyd))
        self._writer.write_table(
            _export_rows(
                bucket_array, key_array, sproxyd_array, pa.array(lines, pa.int64()), self._location, pa.array(versions, pa.string())
            )
        )
        self._rows.clear()

    def close(self) -> None:
        self.flush()
        self._writer.close()


def detect_format(opened: OpenedInput) -> str:
    head = opened.peek_text().lstrip("\ufeff \t\r\n")
    return "s3keys-jsonl" if head.startswith("{") else CSV_EXPORT_FORMAT


def parse_s3keys(opened: OpenedInput, ctx: ParseContext) -> ParseResult:
    result = ParseResult(format=detect_format(opened))
    opened.skip_utf8_bom()
    with ctx.store.writing_part("s3keys", ctx.source_id) as tmp:
        if result.format == CSV_EXPORT_FORMAT:
            try:
                writer = s3keys_writer(tmp)
                try:
                    result.rows = _parse_csv_fast(opened, ctx, result, writer)
                finally:
                    writer.close()
                ctx.before_publishing(result.rows)
                return result
            except _NotPlain:
                # Start again from the first byte on the exact path (``opened`` still hashes every stored byte).
                result.skipped.clear()
                with OpenedInput(opened.source) as again:
                    again.skip_utf8_bom()
                    _parse_exact(again, ctx, tmp, result, _parse_csv)
                return result
        _parse_exact(opened, ctx, tmp, result, _parse_jsonl)
    return result


def _parse_exact(opened: OpenedInput, ctx: ParseContext, tmp, result: ParseResult, parse) -> None:
    rows = _RowWriter(tmp, ctx.location)
    try:
        parse(opened, ctx, rows, result)
    finally:
        rows.close()
    result.rows = rows.count
    ctx.before_publishing(result.rows)


def _skip(result: ParseResult, what: str) -> None:
    result.skipped[what] = result.skipped.get(what, 0) + 1


class _ConsumedLines:
    """The physical lines a ``csv.reader`` takes, kept until the record they make is handed out."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._taken: list[str] = []

    def __iter__(self) -> _ConsumedLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._taken.append(line)
        return line

    def record_text(self) -> str:
        """The exact text of the record just read (an unclosed quote's: every line it swallowed)."""
        text = "".join(self._taken)
        self._taken.clear()
        return text


def _csv_records(text: Iterator[str]) -> Iterator[tuple[int, list[str] | None, str, str]]:
    """Yield (first line number, fields or None for a malformed record, error, the record's raw text)."""
    lines = _ConsumedLines(text)
    reader = csv.reader(lines, strict=True)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # csv drops the rest of the line it failed on: that text is in the record's raw text too.
            yield start, None, f"malformed CSV: {exc}", lines.record_text()
            start = reader.line_num + 1
            continue
        yield start, fields, "", lines.record_text()
        start = reader.line_num + 1


def _unquoted_field_with_quote(fields: list[str], raw: str) -> bool:
    """A quote in a field that was not quoted (``b,a"b,KEY``): csv keeps it as text, but the
    exporter quotes every such field, so the row's fields cannot be trusted."""
    return any('"' in field and f'"{field.replace(chr(34), chr(34) * 2)}"' not in raw for field in fields)


class _NotPlain(Exception):
    """The fast CSV path met something only the exact path handles: start again there."""


class _CheckedStream(io.RawIOBase):
    """Feeds the decompressed bytes to pyarrow's CSV reader, checking their quoting on the way.

    pyarrow and Python's ``csv`` agree on well-formed CSV only: pyarrow reads
    ``"abc"def`` as ``abcdef`` where ``csv`` (strict) rejects it, and a bare CR
    counts as a line for ``csv``. So, in numpy over each chunk (the quote
    parity carried across chunks): a closing quote must be followed by a comma,
    a line end or another quote; an opening quote must follow a comma, a line
    start or a quote; a CR must precede an LF. Anything else is not plain.
    """

    def __init__(self, opened: OpenedInput) -> None:
        self._opened = opened
        self._inside = False  # quote parity at the end of the previous chunk
        self._previous = _LF  # last byte of the previous chunk (the start of the file acts as a line start)
        self._closed_last = False  # the previous chunk ended on a closing quote
        self.plain = True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # readinto takes any writable buffer; a memoryview is what callers pass
        data = self._opened.read(len(buffer))
        buffer[: len(data)] = data
        if data and self.plain:
            self.plain = self._check(np.frombuffer(data, dtype=np.uint8))
        return len(data)

    def _check(self, chunk: np.ndarray) -> bool:
        """Work in proportion to the quotes and CRs, not the bytes: their positions only."""
        if self._closed_last and chunk[0] not in _AFTER_CLOSING:
            return False
        if self._previous == _CR and chunk[0] != _LF:
            return False
        quotes = np.flatnonzero(chunk == _QUOTE)
        # Quotes alternate opening and closing ("" inside a value is a close and a reopen).
        odd = (np.arange(len(quotes)) & 1).astype(bool)
        closes = ~odd if self._inside else odd
        opening, closing = quotes[~closes], quotes[closes]
        padded = np.empty(len(chunk) + 2, dtype=np.uint8)  # padded[i + 1] is chunk[i] (uint8: a list would make it int64)
        padded[0], padded[1:-1], padded[-1] = self._previous, chunk, _COMMA
        if not np.isin(padded[opening], _BEFORE_OPENING).all():
            return False
        last = len(chunk) - 1
        if not np.isin(padded[closing[closing < last] + 2], _AFTER_CLOSING).all():
            return False
        carriage = np.flatnonzero(chunk[:-1] == _CR)
        if (chunk[carriage + 1] != _LF).any():
            return False
        self._closed_last = bool(len(closing)) and closing[-1] == last
        self._inside = (len(quotes) % 2 == 1) != self._inside
        self._previous = int(chunk[-1])
        return True


_QUOTE, _COMMA, _LF, _CR = (ord(c) for c in '",\n\r')
_AFTER_CLOSING = np.array([_COMMA, _LF, _CR, _QUOTE], dtype=np.uint8)
_BEFORE_OPENING = np.array([_COMMA, _LF, _QUOTE], dtype=np.uint8)
_CSV_COLUMNS = ("bucket", "object_key", "sproxyd_key")


def _parse_csv_fast(opened: OpenedInput, ctx: ParseContext, result: ParseResult, writer: pq.ParquetWriter) -> int:
    """pyarrow's multi-threaded CSV reader, for files whose every row is plain and valid.

    Raises _NotPlain at the first row that would be a reject (or quoting pyarrow
    and ``csv`` could read differently): the caller starts again on the exact path.
    Line numbers stay exact: each record is one line plus the newlines inside its values.
    """
    stream = _CheckedStream(opened)
    try:
        reader = pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(column_names=list(_CSV_COLUMNS), block_size=8 << 20),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in _CSV_COLUMNS}, strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, OSError) as exc:
        raise _NotPlain(str(exc)) from None
    rows, next_line, first = 0, 1, True
    try:
        for batch in reader:
            if not stream.plain:
                raise _NotPlain("quoting")
            bucket, object_key, key = (batch.column(i) for i in range(3))
            # (a key with a newline is no valid key: that row sends the file to the exact path anyway)
            extra = pc.add(pc.count_substring(bucket, "\n"), pc.count_substring(object_key, "\n")).to_numpy(zero_copy_only=False)
            lines = next_line + np.arange(len(batch)) + np.concatenate(([0], np.cumsum(extra)[:-1]))
            next_line = int(lines[-1] + 1 + extra[-1]) if len(batch) else next_line
            keep = np.ones(len(batch), dtype=bool)
            if first and len(batch):
                first = False
                head = key[0].as_py()
                if _is_header_key(head):
                    result.skipped["header"] = 1
                    keep[0] = False
            empty_key = pc.equal(key, "").to_numpy(zero_copy_only=False)
            empty_bucket = pc.equal(bucket, "").to_numpy(zero_copy_only=False)
            other = keep & ~empty_key & ~_hex40(key)
            if other.any():
                # Another backend's keys are skipped here as on the exact path; a damaged key is a reject: exact path.
                rows_other = np.flatnonzero(other)
                if not all(is_other_backend_key(text) for text in key.take(pa.array(rows_other)).to_pylist()):
                    raise _NotPlain("a row to reject")
                result.skipped["keys of other backends"] = result.skipped.get("keys of other backends", 0) + len(rows_other)
            if (keep & empty_bucket).any():
                raise _NotPlain("a row to reject")
            no_data = int((keep & empty_key).sum())
            if no_data:
                result.skipped["no RING key"] = result.skipped.get("no RING key", 0) + no_data
            kept = keep & ~empty_key & ~other
            if not kept.all():
                take = pa.array(np.flatnonzero(kept))
                bucket, object_key, key, lines = bucket.take(take), object_key.take(take), key.take(take), lines[kept]
            if len(lines) == 0:
                continue
            writer.write_table(_export_rows(bucket, object_key, pc.utf8_upper(key), pa.array(lines, pa.int64()), ctx.location))
            rows += len(lines)
    except pa.ArrowInvalid as exc:  # wrong column count, invalid UTF-8, ...
        raise _NotPlain(str(exc)) from None
    if not stream.plain:
        raise _NotPlain("quoting")
    return rows


def _hex40(keys: pa.StringArray) -> np.ndarray:
    """Which strings are 40 hex characters: when the whole column's characters are hex (one
    unhexlify over its bytes), those of length 40; else a regex per row (it costs more)."""
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int32, count=len(keys) + 1, offset=keys.offset * 4)
    try:
        binascii.unhexlify(memoryview(keys.buffers()[2])[offsets[0] : offsets[-1]])
    except binascii.Error:  # a non-hex character, or an odd count of them
        return pc.match_substring_regex(keys, r"^[0-9A-Fa-f]{40}$").to_numpy(zero_copy_only=False)
    return np.diff(offsets) == 40


def _parse_csv(opened: OpenedInput, ctx: ParseContext, rows: _RowWriter, result: ParseResult) -> None:
    first = True
    for line, fields, error, raw in _csv_records(opened.text()):
        shown = _printable(raw.rstrip("\r\n"))
        if fields is None:
            ctx.rejects.add(line, error, shown)
            continue
        if not fields or fields == [""] or all(not f.strip() for f in fields):
            _skip(result, "blank")
            continue
        if len(fields) != 3:
            ctx.rejects.add(line, f"expected 3 fields (bucket, object key, sproxyd key), found {len(fields)}", shown)
            continue
        bucket, object_key, key = fields
        key = key.strip()
        if first and _is_header_key(key):
            first = False
            _skip(result, "header")
            continue
        first = False
        if _has_surrogates(raw):
            ctx.rejects.add(line, "not valid UTF-8", shown)
        elif _unquoted_field_with_quote(fields, raw):
            ctx.rejects.add(line, "malformed CSV: quote inside an unquoted field", shown)
        elif not bucket:
            ctx.rejects.add(line, "bucket name is empty", shown)
        elif not key:
            _skip(result, "no RING key")
        elif is_other_backend_key(key):
            _skip(result, "keys of other backends")  # exports list every backend's keys (bucket/name…)
        elif not is_valid_key(key):
            ctx.rejects.add(line, "sproxyd key is not 40 hex characters", shown)
        else:
            rows.add(bucket, object_key, key, line)


# s3utils' verifyBucketSproxydKeys.js (werelogs JSON, one record per line; docs/domain.md section 5).
S3UTILS_LOGGER = "s3utils:verifyBucketSproxydKeys"
# Records that carry an object's objectUrl and one sproxydKey: "sproxyd key" with NO_MISSING_KEY_CHECK=1
# VERBOSE=1, the "sproxyd check ..." ones without NO_MISSING_KEY_CHECK. Each is a reference, whatever its level.
_REFERENCE_MESSAGES = frozenset(
    {
        "sproxyd key",
        "sproxyd check returned success",
        "sproxyd check reported missing key",
        "sproxyd check error",
        "sproxyd check returned HTTP error",
    }
)
# Error records that lose no reference (the object's keys are logged all the same). Every other
# error or fatal record may stand for keys the log does not hold: the export is incomplete.
_HARMLESS_ERRORS = frozenset(
    {
        "duplicate sproxyd key found",
        "object with empty metadata found",
        'object master metadata with duplicate "versionId" field found',
    }
)
_COMPLETED_SCAN = "completed scan"
_ERROR_LEVELS = {"error", "fatal"}
_MAX_REASONS = 20  # incomplete reasons named one by one per file; the rest are counted


class _ScanLog:
    """What an s3utils log says about its own completeness, gathered record by record.

    Logs of several runs may be appended into one file: each run (a process: hostname and pid)
    that logged s3utils records must have logged its own "completed scan".
    """

    def __init__(self, location: str) -> None:
        self._location = location
        self._references: dict[tuple[object, object], int] = {}  # per run that logged s3utils records
        self._completed: dict[tuple[object, object], dict] = {}
        self._losses: list[str] = []

    def s3utils_record(self, record: dict, *, reference: bool) -> None:
        run = _run(record)
        self._references[run] = self._references.get(run, 0) + reference

    def completed(self, record: dict) -> None:
        self._completed[_run(record)] = record

    def loss(self, line: int, why: str, record: dict) -> None:
        url = record.get("objectUrl")
        self._losses.append(f"{self._location}: line {line}: {why}" + (f" ({url})" if isinstance(url, str) else ""))

    def incomplete_reasons(self) -> list[str]:
        reasons = self._losses[:_MAX_REASONS]
        if len(self._losses) > _MAX_REASONS:
            reasons.append(f"{self._location}: {len(self._losses) - _MAX_REASONS} more records whose references are unknown")
        for run, references in self._references.items():
            record = self._completed.get(run)
            if record is None:
                reasons.append(
                    f'{self._location}: the scan did not complete (no "{_COMPLETED_SCAN}" record{_run_text(run)}): its references are partial'
                )
            elif not references and _positive(record.get("scanned")):
                reasons.append(
                    f"{self._location}: the scan covered {record['scanned']} objects but logged no sproxyd key{_run_text(run)}: "
                    "run it with VERBOSE=1 NO_MISSING_KEY_CHECK=1"
                )
        return reasons


def _run(record: dict) -> tuple[object, object]:
    hostname, pid = record.get("hostname"), record.get("pid")
    return (hostname if isinstance(hostname, str) else None), (pid if isinstance(pid, (str, int)) else None)


def _run_text(run: tuple[object, object]) -> str:
    hostname, pid = run
    return "" if pid is None else f" from {hostname or 'a host'} pid {pid}"


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _parse_jsonl(opened: OpenedInput, ctx: ParseContext, rows: _RowWriter, result: ParseResult) -> None:
    scan = _ScanLog(ctx.location)
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
        message = record.get("message")
        if record.get("name") == S3UTILS_LOGGER or message in _REFERENCE_MESSAGES:
            scan.s3utils_record(record, reference=message in _REFERENCE_MESSAGES)
        if message in _REFERENCE_MESSAGES:
            _reference(record, line, stripped, ctx, rows, result, scan)
        elif message == _COMPLETED_SCAN:
            scan.completed(record)
            _skip(result, "other records")
        elif str(record.get("level", "")).lower() in _ERROR_LEVELS:
            if message in _HARMLESS_ERRORS:
                _skip(result, "export warnings")
            else:
                scan.loss(line, f"the export logged {message!r}", record)
                _skip(result, "export error records")
        else:
            _skip(result, "other records")
    result.incomplete.extend(scan.incomplete_reasons())


def _reference(record: dict, line: int, text: str, ctx: ParseContext, rows: _RowWriter, result: ParseResult, scan: _ScanLog) -> None:
    """One object location: a row when its key is an sproxyd key; else skipped (another backend's) or rejected."""
    url, key = record.get("objectUrl"), record.get("sproxydKey")
    if not isinstance(url, str) or not url.startswith("s3://") or "/" not in url[5:]:
        ctx.rejects.add(line, "objectUrl is not s3://bucket/key", text)
        return
    bucket, _, encoded = url[5:].partition("/")
    try:
        object_key = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        ctx.rejects.add(line, "objectUrl key is not percent-encoded UTF-8", text)
        return
    if not bucket:
        ctx.rejects.add(line, "bucket name is empty", text)
    elif key is None:
        # s3utils logs loc.key, undefined when the location is a plain string (the oldest metadata model).
        ctx.rejects.add(line, "sproxydKey is missing", text)
        scan.loss(line, "an object location without its sproxydKey", record)
    elif not isinstance(key, str):
        ctx.rejects.add(line, "sproxydKey is not a string", text)
    elif is_other_backend_key(key):
        _skip(result, "keys of other backends")  # any string on another backend (bucket/name...): not a RING key
    elif not is_valid_key(key.strip()):
        ctx.rejects.add(line, "sproxydKey is not 40 hex characters (a damaged sproxyd key?)", text)
    else:
        name, version_id = _split_version(object_key)
        rows.add(bucket, name, key.strip(), line, version_id)


def _split_version(object_key: str) -> tuple[str, str | None]:
    """``name\\0versionId`` → (name, versionId), split on the last NUL as s3utils does; ``name\\0`` is the
    null version (version id ""); a key without NUL is an object's master entry (no version)."""
    name, separator, version_id = object_key.rpartition("\0")
    return (name, version_id) if separator else (object_key, None)


_HEADER_KEY = re.compile(r"[A-Za-z _]*key[A-Za-z _]*", re.IGNORECASE)


def _is_header_key(field: str) -> bool:
    """The first row's key column names a column ("sproxyd key", "sproxydKey"), nothing a damaged key could become."""
    return _HEADER_KEY.fullmatch(field.strip()) is not None


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
