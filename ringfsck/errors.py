"""User-facing errors and the exit codes scripts can rely on.

Every error raised for bad input, bad configuration or a refused operation is
a :class:`RingfsckError`; the CLI prints its message as one line and exits with
its ``exit_code``. Anything else escaping is a bug and shows a traceback.
"""

from __future__ import annotations

# Exit codes (documented in the README; never renumber).
EXIT_OK = 0
EXIT_FAILURES = 1  # ran to the end, but some items failed (deletes, lookups)
EXIT_USAGE = 2  # bad option, bad configuration (click uses 2 for usage too)
EXIT_INPUT = 3  # unreadable, empty or malformed input
EXIT_REFUSED = 4  # a safety check refused the operation
EXIT_REMOTE = 5  # a remote service (bucketd, srebuildd, S3) failed or is unreachable
EXIT_INTERRUPTED = 130


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


class InvalidKeyError(ValueError):
    """A string that is not a valid RING or sproxyd key (raised by ringfsck.keys)."""
