"""Inputs on S3: ``s3://bucket/DATA/listkeys.csv/`` and the like, read as streams.

An argument names one object, or a prefix whose objects are taken recursively
in key order, skipping what local directories skip (``_SUCCESS``, ``*.crc``,
hidden names). An object is identified by its ETag and size, so deciding that an
input is unchanged reads nothing; its bytes are streamed from ``GetObject``,
never held whole in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from ringfsck.errors import InputError
from ringfsck.ingest.input_names import is_hidden, is_input_name
from ringfsck.s3 import S3, S3Object, S3Url


@dataclass(frozen=True)
class S3InputFile:
    """One S3 object to ingest; the same interface as :class:`~ringfsck.ingest.inputs.InputFile`."""

    obj: S3Object
    s3: S3 = field(compare=False, repr=False)

    @property
    def local_path(self) -> None:
        """No local file: readers that need a path (the DuckDB fast path) stream it instead."""
        return None

    @property
    def location(self) -> str:
        return str(self.obj.url)

    @property
    def size(self) -> int:
        return self.obj.size

    @property
    def modified_at(self) -> datetime:
        stamp = self.obj.last_modified
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)

    def checksum(self) -> str:
        """The identity of the content: ETag and size (an S3 ETag is not a hash of every upload kind)."""
        return f"s3etag:{self.obj.etag}:{self.obj.size}"

    def known_checksum(self) -> str:
        return self.checksum()

    def open_raw(self) -> BinaryIO:
        return self.s3.open_stream(self.obj)  # type: ignore[return-value]  # boto3's streaming body reads as a binary stream


def _is_input_key(relative: str) -> bool:
    """An object under the prefix is an input unless its name is not (input_names) or a folder of its key is hidden."""
    *folders, name = relative.split("/")
    return is_input_name(name) and not any(is_hidden(folder) for folder in folders)


def expand_s3(argument: str, s3: S3) -> list[S3InputFile]:
    """The objects an ``s3://`` argument names: the object itself, or every input object under the prefix."""
    url = S3Url.parse(argument)
    objects = list(s3.list(url))
    if url.key and not url.key.endswith("/"):
        exact = [obj for obj in objects if obj.url.key == url.key]
        if exact:
            return [S3InputFile(exact[0], s3)]
    prefix = url.key if not url.key or url.key.endswith("/") else url.key + "/"
    under = [obj for obj in objects if obj.url.key.startswith(prefix)]
    found = [S3InputFile(obj, s3) for obj in under if _is_input_key(obj.url.key[len(prefix) :])]
    if not found:
        what = "no input objects (only markers or hidden files)" if under else "no objects"
        raise InputError(f"{argument}: {what} under this prefix")
    return found
