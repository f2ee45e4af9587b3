"""Cutting a byte stream into blocks of whole lines, as Arrow string arrays.

Lines become a zero-copy Arrow array over the block's bytes (numpy finds the
newlines), so the per-line work is done by polars' vectorised string kernels,
never by a Python loop. Line numbers stay exact: every physical line, blank or
not, is one element.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# Stands in for a line that was not valid UTF-8 (already sent to rejects).
INVALID_LINE = "\x00"


@dataclass
class LineBlock:
    first_line: int  # 1-based number of the block's first line
    buffer: np.ndarray  # the block's bytes (uint8), every line ending in "\n"
    offsets: np.ndarray  # int64 line starts, plus the end of the buffer
    invalid_utf8: list[tuple[int, str]]  # (line number, raw text with escapes)

    @property
    def lines(self) -> pa.LargeStringArray:
        """Each line (keeping its trailing "\n") as a zero-copy Arrow string."""
        return pa.LargeStringArray.from_buffers(len(self), pa.py_buffer(self.offsets), pa.py_buffer(self.buffer))

    def __len__(self) -> int:
        return len(self.offsets) - 1


def line_blocks(read_after: Callable[[bytes], bytes | bytearray]) -> Iterator[LineBlock]:
    """Cut a stream into blocks that end on a line boundary.

    ``read_after(head)`` returns ``head`` (the unfinished line of the previous block)
    followed by the next bytes of the stream, nothing more at its end
    (``OpenedInput.read_after`` reads them in place: the block is never copied).
    """
    carry = b""
    next_line = 1
    while len(data := read_after(carry)) > len(carry):
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = bytes(data)
            continue
        carry = bytes(data[cut:])
        block = _to_block(data, cut, next_line)
        next_line += len(block)
        yield block
    if carry:
        yield _to_block(carry + b"\n", len(carry) + 1, next_line)


def _to_block(data: bytes | bytearray, size: int, first_line: int) -> LineBlock:
    """The first ``size`` bytes of ``data`` (whole lines) as a block."""
    invalid: list[tuple[int, str]] = []
    if not data.isascii():  # listings are ASCII: the full UTF-8 check only when needed
        data = bytes(data[:size])
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            data, invalid = _replace_invalid_lines(data, first_line)
        size = len(data)
    buf = np.frombuffer(data, dtype=np.uint8, count=size)
    ends = np.flatnonzero(buf == 10) + 1
    offsets = np.empty(len(ends) + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:] = ends
    return LineBlock(first_line, buf, offsets, invalid)


def _replace_invalid_lines(data: bytes, first_line: int) -> tuple[bytes, list[tuple[int, str]]]:
    """Slow path, only for blocks with bad bytes: swap each undecodable line for a marker."""
    out: list[bytes] = []
    invalid: list[tuple[int, str]] = []
    for number, line in enumerate(data.split(b"\n")[:-1], start=first_line):
        try:
            line.decode("utf-8")
            out.append(line)
        except UnicodeDecodeError:
            invalid.append((number, line.decode("utf-8", "backslashreplace")))
            out.append(INVALID_LINE.encode())
    return b"\n".join(out) + b"\n", invalid
