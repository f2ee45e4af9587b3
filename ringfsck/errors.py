"""User-facing errors and the exit codes scripts can rely on.

Every error raised for bad input, bad configuration or a refused operation is
a :class:`RingfsckError`; the CLI prints its message as one line and exits with
its ``exit_code``. Anything else escaping is a bug and shows a traceback.
"""

from __future__ import annotations

import errno
import re

# Exit codes (documented in the README; never renumber).
EXIT_OK = 0
EXIT_FAILURES = 1  # ran to the end, but some items failed (deletes, lookups)
EXIT_USAGE = 2  # bad option, bad configuration (click uses 2 for usage too)
EXIT_INPUT = 3  # unreadable, empty or malformed input
EXIT_REFUSED = 4  # a safety check refused the operation
EXIT_REMOTE = 5  # a remote service (bucketd, srebuildd, S3) failed or is unreachable
EXIT_NO_SPACE = 6  # a disk (or quota) filled up: what was finished is kept, nothing is half-written
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM), handled like Ctrl-C


class RingfsckError(Exception):
    """An error the user can act on; its message is one line."""

    exit_code = EXIT_USAGE


class ConfigError(RingfsckError):
    exit_code = EXIT_USAGE


class InputError(RingfsckError):
    exit_code = EXIT_INPUT


class RefusedError(RingfsckError):
    exit_code = EXIT_REFUSED


class RemoteError(RingfsckError):
    exit_code = EXIT_REMOTE


class NoSpaceError(RingfsckError):
    exit_code = EXIT_NO_SPACE


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be: every path that stops cleanly on Ctrl-C stops cleanly on it."""


_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Arrow and DuckDB report a full disk in their message only (no errno), naming the file in quotes.
_NO_SPACE_TEXT = re.compile(r"No space left on device|Disk quota exceeded", re.IGNORECASE)
_QUOTED_PATH = re.compile(r"""["'](/[^"'\\]+)\\?["']""")  # DuckDB's message is JSON: the quotes may be escaped


def no_space_error(exc: BaseException, where: str) -> NoSpaceError | None:
    """The one-line error for an exception raised by a full disk (None for any other exception).

    ``where`` names the path when the exception does not (an Arrow or DuckDB error often does not).
    One already made is kept: it names the file being written when the disk filled, which an
    enclosing write (a part written while another is open) must not rename.
    """
    if isinstance(exc, NoSpaceError):
        return exc
    own = isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS
    if not own and not _NO_SPACE_TEXT.search(str(exc)):
        return None
    named = _QUOTED_PATH.search(str(exc))
    path = getattr(exc, "filename", None) or (named.group(1) if named else where)
    return NoSpaceError(
        f"{path}: no space left on device; free some space there (or point --store or duckdb.temp_directory elsewhere) "
        "and run the command again: what it finished is kept, nothing it left half-written is used"
    )


class InvalidKeyError(ValueError):
    """A string that is not a valid RING or sproxyd key (raised by ringfsck.keys)."""
