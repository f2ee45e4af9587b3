"""Which entries of an input directory or S3 prefix are inputs: one rule for both.

A directory or prefix handed to ``ingest`` (a Spark ``listkeys.csv/``, a dump) also holds
files that carry no rows: Spark's markers and checksums, temporary and hidden files.
Only those are skipped; anything else that cannot be read is an error, never skipped.
"""

from __future__ import annotations

# Files in Spark output directories and dumps that carry no rows.
MARKER_NAMES = frozenset({"_SUCCESS", "_committed", "_started"})
MARKER_SUFFIXES = (".crc", ".tmp")


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def is_input_name(name: str) -> bool:
    """Whether a file (or, locally, a directory) of this name may hold rows: not hidden, no marker."""
    return bool(name) and not (is_hidden(name) or name in MARKER_NAMES or name.endswith(MARKER_SUFFIXES))
