"""Locating the SQL steps and report templates, installed or in a source tree.

They live at the top of the repository (``sql/``, ``reports/templates/``) and
the wheel carries them as ``ringfsck/_resources/``.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SOURCE_TREE = {"sql": _PACKAGE.parent / "sql", "templates": _PACKAGE.parent / "reports" / "templates"}


def resource_dir(name: str) -> Path:
    """``"sql"`` or ``"templates"``: the installed copy if present, else the source tree's."""
    installed = _PACKAGE / "_resources" / name
    if installed.is_dir():
        return installed
    source = _SOURCE_TREE[name]
    if source.is_dir():
        return source
    raise FileNotFoundError(f"ringfsck resource directory {name!r} is missing from the installation")
