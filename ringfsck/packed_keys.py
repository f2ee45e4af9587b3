"""RING keys packed as integers: the compact encoding of the listkeys table.

A 40-hex RING key is stored as three unsigned integers, ``hi`` (chars 0-15),
``mid`` (chars 16-31) and ``lo`` (chars 32-39): 20 bytes instead of 40
characters, and DuckDB groups and joins integers several times faster than
strings. ``key_hex()`` in ``sql/00_macros.sql`` turns them back into the 40
uppercase hex characters the views show. (Parquet has no 128-bit integer:
DuckDB would write a HUGEINT as a lossy DOUBLE, hence three columns.)

Decoding works on a matrix of ASCII characters, one key per row: binascii
decodes the whole matrix at C speed, and only a matrix holding a non-hex
character goes through a lookup table that tells which rows are bad.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence

import numpy as np

KEY_CHARS = 40
KEY_BYTES = KEY_CHARS // 2
_NOT_HEX = np.uint8(0xFF)
_NIBBLE = np.full(256, _NOT_HEX, dtype=np.uint8)
for _value, _char in enumerate(b"0123456789ABCDEF"):
    _NIBBLE[_char] = _value
    _NIBBLE[bytes([_char]).lower()[0]] = _value
_KEY_RECORD = np.dtype([("hi", ">u8"), ("mid", ">u8"), ("lo", ">u4")])  # a key's 20 bytes, big-endian


class PackedKeys:
    """Keys as three integer columns, with a validity mask (False: not 40 hex characters)."""

    __slots__ = ("hi", "mid", "lo", "valid")

    def __init__(self, hi: np.ndarray, mid: np.ndarray, lo: np.ndarray, valid: np.ndarray) -> None:
        self.hi, self.mid, self.lo, self.valid = hi, mid, lo, valid

    @classmethod
    def from_bytes(cls, data: np.ndarray, valid: np.ndarray) -> PackedKeys:
        """From an (n, 20) uint8 matrix of key bytes."""
        # Each row read as a big-endian (hi, mid, lo) record: one byte-swapping copy per column.
        records = np.ascontiguousarray(data).view(_KEY_RECORD).ravel()
        return cls(records["hi"].astype(np.uint64), records["mid"].astype(np.uint64), records["lo"].astype(np.uint32), valid)

    def take(self, rows: np.ndarray) -> PackedKeys:
        return PackedKeys(self.hi[rows], self.mid[rows], self.lo[rows], self.valid[rows])


def decode_hex(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An (n, 2w) matrix of ASCII hex characters as (n, w) bytes, and which rows were all hex."""
    rows = len(chars)
    try:
        data = np.frombuffer(binascii.unhexlify(np.ascontiguousarray(chars).data), dtype=np.uint8)
        return data.reshape(rows, chars.shape[1] // 2), np.ones(rows, dtype=bool)
    except binascii.Error:
        nibbles = _NIBBLE[chars]
        return (nibbles[:, 0::2] << 4) | nibbles[:, 1::2], (nibbles != _NOT_HEX).all(axis=1)


def pack_keys(keys: Sequence[str]) -> PackedKeys:
    """Pack 40-hex strings, any case (a string of another length is invalid)."""
    joined = "".join(k if len(k) == KEY_CHARS else "-" * KEY_CHARS for k in keys).encode("ascii", "replace")
    chars = np.frombuffer(joined, dtype=np.uint8).reshape(len(keys), KEY_CHARS)
    return PackedKeys.from_bytes(*decode_hex(chars))


def key_hex(hi: int, mid: int, lo: int) -> str:
    """The 40-char uppercase hex of a packed key (the SQL macro ``key_hex`` does the same)."""
    return f"{hi:016X}{mid:016X}{lo:08X}"
