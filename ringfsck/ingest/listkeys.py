"""RING listkeys ingestion (docs/domain.md section 5).

Input: ``ringsh node listKeys`` dumps or Spark ``listkeys.csv/`` parts, lines of
``chunk key,main chunk key,disk,flag[,more columns]``. Lines starting with
``Use`` are ringsh noise, ``_1,_2,_3,_4`` is a Spark header, blank lines are
skipped; everything else is either a valid row or a reject with its line number.

Two paths, same verdicts. What ringsh and Spark write (``HEX40,HEX40,disk,flag``
with no spaces) is validated and converted by numpy over the block's bytes,
keys straight into their packed integers (``ringfsck.packed_keys``); the rare other lines go
through polars, field by field, which names the reason of every reject.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.ingest._blocks import INVALID_LINE, LineBlock, line_blocks
from ringfsck.ingest.parsing import ParseContext, ParseResult
from ringfsck.packed_keys import KEY_CHARS, PackedKeys, decode_hex, pack_keys
from ringfsck.partitions import PARTITION_BITS, PARTITIONS
from ringfsck.store import arrow_schema

if TYPE_CHECKING:
    import polars as pl

LISTKEYS_SCHEMA = arrow_schema("listkeys")
_HEX40 = r"^[0-9A-Fa-f]{40}$"
_COMMA, _CR, _ZERO = ord(","), ord("\r"), ord("0")
_MAIN_AT = KEY_CHARS + 1  # "chunk,main"
_DISK_AT = 2 * KEY_CHARS + 2  # "chunk,main,disk"
_MAX_FLAG_DIGITS = 9
# Disk bytes the fast path takes: printable ASCII but the space, 0x21-0x7E. The exact path
# takes the rest: it strips whitespace (Unicode spaces such as U+00A0 too), and the fast path
# pads names with zero bytes, so a name holding one must not go through it.
_PLAIN_DISK_FIRST, _PLAIN_DISK_LAST = 0x21, 0x7E
_MAX_DISK_CHARS = 128  # longer names (never seen) take the exact path
# Bytes read at once for a disk name and its comma (g1disk1...); the rare longer names take a
# second, wider read. Both are whole 8-byte words (see _first).
_DISK_WINDOW = 16
_WIDE_DISK_WINDOW = -(-(_MAX_DISK_CHARS + 1) // 8) * 8
SKIPPED_VERDICTS = ("blank", "noise", "header")
ROW_GROUP_ROWS = 128 * 1024
_RANDOM_COLUMNS = ("chunk_key_hi", "main_chunk_hi")


class _Rows:
    """Valid rows of a block, column by column, as the Parquet part wants them.

    Disks are dictionary codes into ``disk_names`` (a node lists a handful of disks).
    """

    def __init__(self, chunk: PackedKeys, main: PackedKeys, disk_codes: np.ndarray, disk_names: pa.Array, flag: np.ndarray) -> None:
        self.chunk, self.main, self.flag = chunk, main, flag
        self.disk_codes, self.disk_names = disk_codes, disk_names

    @classmethod
    def empty(cls) -> _Rows:
        return cls(pack_keys([]), pack_keys([]), np.empty(0, dtype=np.int32), pa.array([], pa.string()), np.empty(0, dtype=np.int32))

    @classmethod
    def from_disk_strings(cls, chunk: PackedKeys, main: PackedKeys, disk: pa.Array, flag: np.ndarray) -> _Rows:
        encoded = disk.dictionary_encode()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        return cls(chunk, main, codes, encoded.dictionary.cast(pa.string()), flag)

    def __len__(self) -> int:
        return len(self.flag)

    def take(self, order: np.ndarray) -> _Rows:
        return _Rows(self.chunk.take(order), self.main.take(order), self.disk_codes[order], self.disk_names, self.flag[order])

    def table(self, location: str) -> pa.Table:
        n = len(self)
        return pa.Table.from_arrays(
            [
                pa.array(self.chunk.hi),
                pa.array(self.chunk.mid),
                pa.array(self.chunk.lo),
                pa.array(self.main.hi),
                pa.array(self.main.mid),
                pa.array(self.main.lo),
                pa.DictionaryArray.from_arrays(pa.array(self.disk_codes), self.disk_names),
                pa.array(self.flag),
                pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([location])),
            ],
            schema=LISTKEYS_SCHEMA,
        )


def _flags(buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flags at ``starts``: (values, ok). A flag is 1-9 digits up to a comma or the line end."""
    values = np.zeros(len(starts), dtype=np.int32)  # nine digits fit
    digits = np.zeros(len(starts), dtype=np.int32)
    reading = np.ones(len(starts), dtype=bool)
    last = len(buffer) - 1
    for position in range(_MAX_FLAG_DIGITS + 1):  # one more: a tenth digit makes the flag bad
        at = starts + position
        digit = buffer[np.minimum(at, last)] - np.uint8(_ZERO)  # non-digits wrap above 9
        reading &= (at < ends) & (digit <= 9)
        if not reading.any():
            break
        if position < _MAX_FLAG_DIGITS:
            values = np.where(reading, values * 10 + digit, values)
        digits += reading
    stop = starts + digits
    ended = (stop >= ends) | (buffer[np.minimum(stop, last)] == _COMMA)
    return values, ended & (digits >= 1) & (digits <= _MAX_FLAG_DIGITS)


def _canonical(block: LineBlock) -> tuple[np.ndarray, _Rows]:
    """Indices (within the block) of the canonical lines, and their rows."""
    buffer, starts = block.buffer, block.offsets[:-1]
    ends = block.offsets[1:] - 1  # the "\n"
    ends = ends - ((ends > starts) & (buffer[np.maximum(ends - 1, 0)] == _CR))
    # The shortest canonical line: two keys, a one-char disk and a one-digit flag.
    index = np.flatnonzero(ends - starts >= _DISK_AT + 3)
    at = starts[index]
    shaped = (buffer[at + KEY_CHARS] == _COMMA) & (buffer[at + _MAIN_AT + KEY_CHARS] == _COMMA)
    index, at = index[shaped], at[shaped]
    if len(index) == 0:
        return index, _Rows.empty()
    end = ends[index]

    # Each key column as an (n, 40) matrix of characters, decoded in one call.
    keys = np.lib.stride_tricks.sliding_window_view(buffer, KEY_CHARS)
    chunk, main = PackedKeys.from_bytes(*decode_hex(keys[at])), PackedKeys.from_bytes(*decode_hex(keys[at + _MAIN_AT]))
    # Disk: up to the next comma, which must be on this line; flag: up to the comma after it or the end.
    disk_at = at + _DISK_AT
    codes, names, disk_length, disk_ok = _disks(buffer, disk_at, end)
    flag, flag_ok = _flags(buffer, disk_at + disk_length + 1, end)
    keep = np.flatnonzero(chunk.valid & main.valid & disk_ok & flag_ok)
    return index[keep], _Rows(chunk.take(keep), main.take(keep), codes[keep], names, flag[keep])


def _windows(buffer: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes from each start as an (n, width) matrix (zeros past the buffer's end)."""
    last = len(buffer) - width
    if last < 0:  # a block shorter than the window (a one-line file)
        buffer, last = np.concatenate([buffer, np.zeros(-last, dtype=np.uint8)]), 0
    matrix = np.lib.stride_tricks.sliding_window_view(buffer, width)[np.minimum(starts, last)]
    for row in np.flatnonzero(starts > last):  # the block's last line or so
        tail = buffer[starts[row] :]
        matrix[row] = 0
        matrix[row, : len(tail)] = tail
    return matrix


def _first(found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a boolean matrix (a multiple of 8 columns wide): the first True column, and whether there is one."""
    words = found.view(np.uint64)  # OR-ing eight columns at a time is much cheaper than any(axis=1)
    anywhere = words[:, 0].copy()
    for column in range(1, words.shape[1]):
        anywhere |= words[:, column]
    return found.argmax(axis=1), anywhere != 0


def _up_to_comma(buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``width`` bytes from each start, and where the first comma of the line is among them (-1: not there)."""
    matrix = _windows(buffer, starts, width)
    comma, found = _first(matrix == _COMMA)
    return matrix, np.where(found & (comma < ends - starts), comma, -1)


def _disks(buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, pa.Array, np.ndarray, np.ndarray]:
    """The disk names at ``starts``, each up to the next comma before its line end.

    Returns (dictionary codes, names, lengths, ok). The bytes after each start are read as
    one fixed-width matrix (a second, wider one for the rare rows whose comma is further),
    zero-padded past the name, which Arrow's hash kernel dictionary-encodes: no per-row
    string, and no search over the whole block for commas. Not ok (left to the exact path):
    no comma, an empty or over-long name, or a byte outside printable ASCII but the space
    (the exact path strips spaces, Unicode ones included).
    """
    matrix, lengths = _up_to_comma(buffer, starts, ends, _DISK_WINDOW)
    further = np.flatnonzero((lengths < 0) & (ends - starts > _DISK_WINDOW))
    if len(further):
        wide, wide_lengths = _up_to_comma(buffer, starts[further], ends[further], _WIDE_DISK_WINDOW)
        matrix = np.pad(matrix, ((0, 0), (0, wide.shape[1] - _DISK_WINDOW)))
        matrix[further], lengths[further] = wide, wide_lengths
    first_bad, any_bad = _first(matrix - np.uint8(_PLAIN_DISK_FIRST) > np.uint8(_PLAIN_DISK_LAST - _PLAIN_DISK_FIRST))  # wraps below
    ok = (lengths >= 1) & (lengths <= _MAX_DISK_CHARS) & (~any_bad | (first_bad >= lengths))
    kept = np.where(ok, lengths, 0)  # the other lines are left out: keep their bytes out of the names too
    width = -(-max(int(kept.max(initial=0)), 1) // 8) * 8  # whole 8-byte words
    if width == 8:  # names of up to 8 characters (the usual g1disk1...): one masked word each, hashed as an integer
        bits = kept.astype(np.uint64) * np.uint64(8)
        mask = np.where(kept >= 8, ~np.uint64(0), (np.uint64(1) << np.minimum(bits, np.uint64(63))) - np.uint64(1))
        words = matrix.view("<u8")[:, 0] & mask
        encoded = pa.array(words).dictionary_encode()
        padded = [value.tobytes() for value in encoded.dictionary.to_numpy().astype("<u8").reshape(-1, 1).view(np.uint8)]
    else:
        names = np.where(np.arange(width) < kept[:, None], matrix[:, :width], np.uint8(0))
        encoded = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(starts), [None, pa.py_buffer(names)]).dictionary_encode()
        padded = encoded.dictionary.to_pylist()
    text = pa.array([name.rstrip(b"\0").decode("ascii") for name in padded], pa.string())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False), text, lengths, ok


def _classify_field_by_field(frame: pl.DataFrame) -> pl.DataFrame:
    import polars as pl

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


def _other_lines(block: LineBlock, canonical: np.ndarray) -> np.ndarray:
    """Indices (within the block) of the lines the fast path did not take."""
    rest = np.ones(len(block), dtype=bool)
    rest[canonical] = False
    return np.flatnonzero(rest)


def _others(block: LineBlock, index: np.ndarray) -> pl.DataFrame:
    """Lines of a block (``index``), each with its verdict (polars: only this path needs it)."""
    import polars as pl

    lines = pl.Series(block.lines.take(pa.array(index))).str.strip_chars_end("\r\n")
    frame = pl.DataFrame({"line": index + block.first_line, "raw": lines})
    return _classify_field_by_field(frame)


def _only_skipped(block: LineBlock, lines: np.ndarray, most: int = 64) -> dict[str, int] | None:
    """Counts of the blank, noise and header lines, if the ``lines`` (indices) are all of these.

    None when one is anything else (or there are many): the field-by-field path judges them.
    Only ASCII lines are judged here, with ASCII whitespace, as the exact path would.
    """
    if len(lines) > most:
        return None
    counts: dict[str, int] = {}
    for line in lines:
        raw = block.buffer[block.offsets[line] : block.offsets[line + 1]].tobytes()
        if not raw.isascii() or raw == INVALID_LINE.encode() + b"\n":
            return None
        stripped = raw.strip(b" \t\n\r\x0b\x0c")
        verdict = (
            "blank" if not stripped else "noise" if stripped.startswith(b"Use") else "header" if stripped.startswith(b"_1,_2") else None
        )
        if verdict is None:
            return None
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def _valid_rows(frame: pl.DataFrame) -> _Rows:
    import polars as pl

    good = frame.filter(pl.col("verdict") == "ok")
    return _Rows.from_disk_strings(
        pack_keys(good["chunk_key"].to_list()),
        pack_keys(good["main_chunk"].to_list()),
        good["disk"].to_arrow(),
        good["flag_text"].cast(pl.Int32).to_numpy(),
    )


class _PartitionedWriter:
    """Writes a listkeys part whose row groups each hold one key-prefix partition.

    Rows are buffered per partition (the first hex digit of the main chunk, see
    ``ringfsck.partitions``) and written as row groups of that partition only, so the
    Parquet min/max statistics of ``main_chunk_hi`` let the analysis read one
    partition at a time: its per-main-chunk aggregation then fits in memory.
    """

    def __init__(self, path, location: str) -> None:
        # The hi columns are hash bits: compressing them costs a third of the write time and saves
        # nothing; mid and lo (volume, service, class, schema) compress well, as do disk and source.
        # mid is half hash bits, half zeros: split into byte streams, it compresses as well, 25 % faster.
        compressed = [name for name in LISTKEYS_SCHEMA.names if name not in _RANDOM_COLUMNS]
        # Min/max statistics only where they can skip row groups: main_chunk_hi (each row group
        # holds one partition, see above) and the small columns. Those of the other key columns
        # span their whole range in every row group, and cost a third of the write time.
        self._writer = pq.ParquetWriter(
            path,
            LISTKEYS_SCHEMA,
            use_dictionary=["disk", "source"],
            use_byte_stream_split=["chunk_key_mid", "main_chunk_mid"],
            write_statistics=["main_chunk_hi", "disk", "flag", "source"],
            compression={**dict.fromkeys(_RANDOM_COLUMNS, "none"), **dict.fromkeys(compressed, "zstd")},
            compression_level=dict.fromkeys(compressed, 1),
        )
        self._location = location
        self._pending: list[list[pa.Table]] = [[] for _ in range(PARTITIONS)]
        self._pending_rows = [0] * PARTITIONS

    def write(self, rows: _Rows) -> None:
        partition = (rows.main.hi >> np.uint64(64 - PARTITION_BITS)).astype(np.uint8)
        order = np.argsort(partition, kind="stable")  # a radix sort on uint8
        table = rows.take(order).table(self._location)  # reordered as numpy arrays: cheaper than an Arrow table take
        ends = np.cumsum(np.bincount(partition, minlength=PARTITIONS))
        for index, (start, end) in enumerate(zip([0, *ends[:-1]], ends)):
            if end > start:
                self._pending[index].append(table.slice(start, end - start))
                self._pending_rows[index] += end - start
                if self._pending_rows[index] >= ROW_GROUP_ROWS:
                    self._flush(index)

    def _flush(self, index: int) -> None:
        if self._pending_rows[index]:
            self._writer.write_table(pa.concat_tables(self._pending[index]), row_group_size=max(self._pending_rows[index], 1))
            self._pending[index], self._pending_rows[index] = [], 0

    def close(self) -> None:
        try:
            for index in range(PARTITIONS):
                self._flush(index)
        finally:
            self._writer.close()


def _add_skipped(result: ParseResult, counts: dict[str, int]) -> None:
    for verdict, count in counts.items():
        result.skipped[verdict] = result.skipped.get(verdict, 0) + count


class ListingBytes(Protocol):
    """What the listing parser reads: an opened file (ingest.inputs.OpenedInput) or a node's stream (ingest.ring)."""

    def skip_utf8_bom(self) -> None: ...

    def read_after(self, head: bytes, size: int | None = None) -> bytearray: ...


def parse_listkeys(opened: ListingBytes, ctx: ParseContext) -> ParseResult:
    location, rejects = ctx.location, ctx.rejects
    result = ParseResult(format="listkeys-csv")
    opened.skip_utf8_bom()
    with ctx.store.writing_part("listkeys", ctx.source_id) as tmp:
        writer = _PartitionedWriter(tmp, location)
        try:
            for block in line_blocks(opened.read_after):
                for line, raw in block.invalid_utf8:
                    rejects.add(line, "line is not valid UTF-8", raw)
                canonical, rows = _canonical(block)
                if len(rows):
                    writer.write(rows)
                    result.rows += len(rows)
                if len(canonical) == len(block):
                    continue
                other = _other_lines(block, canonical)
                skipped = _only_skipped(block, other)
                if skipped is not None:  # ringsh's "Use ..." lines: no need for the field-by-field path
                    _add_skipped(result, skipped)
                    continue
                others = _others(block, other)
                _add_skipped(result, dict(others.filter(others["verdict"].is_in(SKIPPED_VERDICTS)).group_by("verdict").len().iter_rows()))
                bad = others.filter(~others["verdict"].is_in(["ok", "invalid", *SKIPPED_VERDICTS]))
                for line, reason, raw in bad.select("line", "verdict", "raw").iter_rows():
                    rejects.add(line, reason, raw)
                valid = _valid_rows(others)
                if len(valid):
                    writer.write(valid)
                    result.rows += len(valid)
        finally:
            writer.close()
        ctx.before_publishing(result.rows)
    return result
