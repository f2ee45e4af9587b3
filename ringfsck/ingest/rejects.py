"""The rows ringfsck could not parse, kept per source in the ``rejects`` table.

A rejected row is never dropped: its start is kept to show what it was, and every 40-hex token
of its whole text stays a reference (it may be an sproxyd key ringfsck cannot place).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ringfsck.store import Store, arrow_schema

REJECTS_SCHEMA = arrow_schema("rejects")
# A 40-hex run (not part of a longer one): in a rejected row it may be an sproxyd key ringfsck cannot place.
_HEX_TOKEN = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{40}(?![0-9A-Fa-f])")
_REJECT_FLUSH = 50_000
MAX_RAW_CHARS = 4096  # a reject keeps the start of a very long line, enough to see what it was


def hex_tokens(text: str) -> list[str]:
    """Every 40-hex token of a text, uppercased, in order, without repeats."""
    return list(dict.fromkeys(token.upper() for token in _HEX_TOKEN.findall(text)))


class RejectWriter:
    """Streams the rejected rows of one source into a Parquet file (see :func:`writing_rejects`)."""

    def __init__(self, path: Path, location: str) -> None:
        self._path = path
        self._location = location
        self._pending: list[tuple[int, str, str, list[str]]] = []
        self._writer: pq.ParquetWriter | None = None
        self.count = 0

    def add(self, line: int, reason: str, raw: str) -> None:
        """Record a rejected row; every 40-hex token of its whole text is kept as a reference."""
        self._pending.append((line, reason, raw[:MAX_RAW_CHARS], hex_tokens(raw)))
        self.count += 1
        if len(self._pending) >= _REJECT_FLUSH:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        lines, reasons, raws, tokens = zip(*self._pending)
        table = pa.table(
            {
                "source": [self._location] * len(lines),
                "line": list(lines),
                "reason": list(reasons),
                "raw": list(raws),
                "keys": list(tokens),
            },
            schema=REJECTS_SCHEMA,
        )
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, REJECTS_SCHEMA, compression="zstd")
        self._writer.write_table(table)
        self._pending.clear()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


@contextmanager
def writing_rejects(store: Store, source_id: str, location: str) -> Iterator[RejectWriter]:
    """A writer of the source's ``rejects`` part: published when the block ends cleanly (a stale part is
    removed when there are no rejects), discarded when it raises (the part published before stays)."""
    with store.writing_part("rejects", source_id) as tmp:
        rejects = RejectWriter(tmp, location)
        try:
            yield rejects
            rejects.flush()
        finally:
            rejects.close()
    if rejects.count == 0:
        store.remove_part("rejects", source_id)
