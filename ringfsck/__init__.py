"""ringfsck: consistency between Scality S3 metadata and the RING.

The public Python API is small; the CLI is a thin layer over it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ringfsck")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from ringfsck.config import Settings, load_settings
from ringfsck.errors import RingfsckError

__all__ = ["Settings", "load_settings", "RingfsckError", "__version__"]
