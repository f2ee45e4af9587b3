"""Finding and opening input files: paths, directories, Spark output dirs, globs, gzip.

An :class:`InputFile` is what an ingester reads. It streams bytes (gunzipped
when the file is gzip, detected by its magic bytes, not its name) and computes
the checksum of the stored bytes on the way, so a file is read only once.
``s3://`` arguments become :class:`~ringfsck.ingest.s3_inputs.S3InputFile`
objects with the same interface (``local_path`` is None: stream them).
"""

from __future__ import annotations

import errno
import glob
import gzip
import io
import os
import stat
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import xxhash

from ringfsck.errors import InputError
from ringfsck.ingest.input_names import is_input_name

if TYPE_CHECKING:
    from ringfsck.config import Settings
    from ringfsck.ingest.s3_inputs import S3InputFile

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# A local input's identity: XXH3-128 of its stored bytes. It tells an unchanged or copied file
# from a changed one; nobody forges listings against it, so it needs no cryptographic hash, and
# at 20 GB/s it costs a tenth of sha256's time (which was a tenth of the listkeys ingest).
CHECKSUM_ALGORITHM = "xxh3-128"
READ_BLOCK = 4 * 1024 * 1024  # measured: 4 MB blocks parse faster than 2 or 8 (their arrays stay in cache)


@dataclass(frozen=True)
class InputFile:
    """One local input file."""

    path: Path

    @property
    def local_path(self) -> Path:
        return self.path

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    @property
    def modified_at(self) -> datetime:
        return datetime.fromtimestamp(self.path.stat().st_mtime, tz=UTC)

    def checksum(self) -> str:
        """The checksum of the stored bytes (a separate pass; ingesters get it while reading)."""
        digest = xxhash.xxh3_128()
        with open(self.path, "rb") as handle:
            while block := handle.read(READ_BLOCK):
                digest.update(block)
        return _checksum_text(digest)

    def known_checksum(self) -> str | None:
        """None: a local file's checksum is computed while it is read."""
        return None

    def open_raw(self) -> BinaryIO:
        try:
            return _SnapshotFile(self.path)  # type: ignore[return-value]  # a readable binary stream, as open() gives
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read: {exc.strerror}") from None


class _SnapshotFile(io.RawIOBase):
    """A local file read no further than its size when opened, which can tell whether it changed since.

    A file still being written (an export running, a copy in progress) would otherwise be read
    half old, half new, or cut anywhere: its checksum would name a content nobody parsed.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file = open(path, "rb", buffering=0)
        self._seen = _identity(os.fstat(self._file.fileno()))
        self._left = self._seen[0]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # readinto takes any writable buffer; a memoryview is what callers pass
        if self._left <= 0:
            return 0
        count = self._file.readinto(memoryview(buffer).cast("B")[: self._left]) or 0
        self._left -= count
        return count

    def changed(self) -> bool:
        """Whether the open file grew, shrank or was written, or its path now names another file."""
        try:
            at_path = _identity(os.stat(self._path))
        except OSError:
            return True
        return _identity(os.fstat(self._file.fileno())) != self._seen or at_path != self._seen

    def close(self) -> None:
        self._file.close()
        super().close()


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    return status.st_size, status.st_mtime_ns, status.st_ino, status.st_dev


# What ingesters read: a local file or an S3 object.
Input = Union[InputFile, "S3InputFile"]


class _HashingReader(io.RawIOBase):
    """Passes reads through while hashing them (unless the source's checksum is known)."""

    def __init__(self, raw: BinaryIO, *, hashing: bool = True, on_read: Callable[[int], object] | None = None) -> None:
        self._raw = raw
        self._hashing = hashing
        self._on_read = on_read
        self.digest = xxhash.xxh3_128()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # readinto takes any writable buffer; a memoryview is what callers pass
        raw_readinto = getattr(self._raw, "readinto", None)
        if raw_readinto is not None:  # straight into the caller's buffer: no copy
            count = raw_readinto(buffer) or 0
            data: memoryview | bytes = memoryview(buffer)[:count]
        else:
            data = self._raw.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        if self._hashing:
            self.digest.update(data)
        if self._on_read is not None:
            self._on_read(count)
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


class OpenedInput:
    """A readable stream of an input's (decompressed) bytes, hashing the stored bytes."""

    def __init__(self, source: Input, *, on_read: Callable[[int], object] | None = None) -> None:
        """``on_read`` is told how many stored bytes each read took (progress bars)."""
        self.source = source
        self._known_checksum = source.known_checksum()
        self._raw = source.open_raw()
        self._hasher = _HashingReader(self._raw, hashing=self._known_checksum is None, on_read=on_read)
        buffered = io.BufferedReader(self._hasher, buffer_size=READ_BLOCK)
        self.compressed = buffered.peek(2)[:2] == GZIP_MAGIC
        self._stream: BinaryIO = gzip.GzipFile(fileobj=buffered, mode="rb") if self.compressed else buffered  # type: ignore[assignment]  # GzipFile and BufferedReader both read as BinaryIO

    def read(self, size: int | None = None) -> bytes:
        try:
            return self._stream.read(size or READ_BLOCK)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._unreadable(exc) from None

    def read_after(self, head: bytes, size: int | None = None) -> bytearray:
        """``head`` followed by up to ``size`` more bytes, read in place (nothing more at the end)."""
        size = size or READ_BLOCK
        buffer = bytearray(len(head) + size)
        buffer[: len(head)] = head
        try:
            count = self._stream.readinto(memoryview(buffer)[len(head) :]) or 0  # type: ignore[attr-defined]  # buffered streams all have it
        except (OSError, EOFError, zlib.error) as exc:
            raise self._unreadable(exc) from None
        del buffer[len(head) + count :]
        return buffer

    def text(self) -> io.TextIOWrapper:
        """The decompressed bytes as text; undecodable bytes survive as surrogates for the parser to reject."""
        return io.TextIOWrapper(_ErrorTranslatingReader(self), encoding="utf-8", errors="surrogateescape", newline="")

    def peek_text(self, size: int = 4096) -> str:
        """The first bytes of the decompressed stream, without consuming them."""
        return self._peek(size).decode("utf-8", "replace")

    def skip_utf8_bom(self) -> None:
        """Consume a UTF-8 byte order mark at the start (some editors and exporters write one):
        left in, it would make the first row's first field unreadable."""
        if self._peek(len(UTF8_BOM)) == UTF8_BOM:
            self.read(len(UTF8_BOM))

    def _peek(self, size: int) -> bytes:
        if not isinstance(self._stream, io.BufferedReader):
            self._stream = io.BufferedReader(_ErrorTranslatingReader(self), buffer_size=READ_BLOCK)
        try:
            head = self._stream.peek(size)[:size]
        except (OSError, EOFError, zlib.error) as exc:
            raise self._unreadable(exc) from None
        return head

    def _unreadable(self, exc: BaseException) -> InputError:
        return InputError(f"{self.source.location}: unreadable {'gzip file' if self.compressed else 'file'}: {exc}")

    def verify_unchanged(self) -> None:
        """Raise if the input changed since it was opened (local files; an S3 object is one immutable version)."""
        if isinstance(self._raw, _SnapshotFile) and self._raw.changed():
            raise InputError(f"{self.source.location}: file changed while read; ingest it again once it is complete")

    def finish_checksum(self) -> str:
        """Read whatever is left of the stored bytes and return their checksum (or the known one)."""
        if self._known_checksum is not None:
            return self._known_checksum
        while self._hasher.read(READ_BLOCK):
            pass
        return _checksum_text(self._hasher.digest)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> OpenedInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ErrorTranslatingReader(io.RawIOBase):
    """A raw stream over an OpenedInput whose read errors are InputErrors naming the file."""

    def __init__(self, opened: OpenedInput) -> None:
        self._opened = opened
        self._inner = opened._stream

    @property
    def name(self) -> str:  # what TextIOWrapper reports as the stream's name
        return self._opened.source.location

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # readinto takes any writable buffer; a memoryview is what callers pass
        try:
            data = self._inner.read(len(buffer))
        except (OSError, EOFError, zlib.error) as exc:
            raise self._opened._unreadable(exc) from None
        buffer[: len(data)] = data
        return len(data)


def _checksum_text(digest: xxhash.xxh3_128) -> str:
    """Self-describing, like S3 inputs' ``s3etag:`` checksums (and unlike older stores' bare sha256)."""
    return f"{CHECKSUM_ALGORITHM}:{digest.hexdigest()}"


def expand_paths(paths: list[str] | tuple[str, ...], settings: Settings | None = None) -> list[Input]:
    """Expand files, directories (recursively, e.g. a Spark ``listkeys.csv/``), globs and ``s3://`` prefixes.

    Each argument must yield at least one file; the result has no duplicates. A local file is named
    by its real absolute path (docs/domain.md section 8): the same file reached through a relative path,
    a symbolic link or another working directory is one input, two files that merely share a
    relative path are two. Whatever cannot be read is an error, never skipped: in a directory,
    only hidden entries and Spark's marker files are. ``settings`` say how to reach S3.
    """
    if not paths:
        raise InputError("no input path given")
    found: dict[Path, None] = {}
    remote: dict[str, Input] = {}
    for arg in paths:
        if arg.startswith("s3://"):
            for item in _expand_s3(arg, settings):
                remote.setdefault(item.location, item)
            continue
        matches = [Path(m) for m in sorted(glob.glob(arg))] if glob.has_magic(arg) else [Path(arg)]
        if glob.has_magic(arg) and not matches:
            raise InputError(f"{arg}: no files match")
        for path in matches:
            real, mode = _real(path)
            if stat.S_ISDIR(mode):
                files = list(_walk(path, {real}))
                if not files:
                    raise InputError(f"{path}: directory holds no input files")
                found.update(dict.fromkeys(files))
            else:
                found[real] = None
    return [InputFile(p) for p in found] + list(remote.values())


def _real(path: Path) -> tuple[Path, int]:
    """The real absolute path of a readable regular file or directory, and its mode; else an InputError naming ``path``."""
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except RuntimeError:  # Python < 3.13 reports a loop so
        raise InputError(f"{path}: symbolic link loop") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{path}: symbolic link loop") from None
        if isinstance(exc, FileNotFoundError):
            raise InputError(f"{path}: {'dangling symbolic link' if _is_link(path) else 'no such file or directory'}") from None
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if stat.S_ISREG(mode):
        if not os.access(real, os.R_OK):
            raise InputError(f"{path}: cannot read: Permission denied")
    elif not stat.S_ISDIR(mode):
        raise InputError(f"{path}: not a regular file or directory")
    return real, mode


def _is_link(path: Path) -> bool:
    try:
        return path.is_symlink()
    except OSError:
        return False


def _walk(directory: Path, seen: set[Path]) -> Iterator[Path]:
    """The real paths of the input files under ``directory``, in name order; a directory reached twice
    (through a link) is walked once."""
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        raise InputError(f"{directory}: cannot read: {exc.strerror}") from None
    for entry in entries:
        if not is_input_name(entry.name):
            continue
        real, mode = _real(entry)
        if stat.S_ISDIR(mode):
            if real not in seen:
                seen.add(real)
                yield from _walk(entry, seen)
        else:
            yield real


def _expand_s3(argument: str, settings: Settings | None) -> list[S3InputFile]:
    from ringfsck.config import Settings
    from ringfsck.ingest.s3_inputs import expand_s3
    from ringfsck.s3 import S3

    return expand_s3(argument, S3(settings or Settings()))
