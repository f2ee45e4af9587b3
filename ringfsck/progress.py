"""Progress bars (tqdm on stderr, shown only on a terminal unless forced)."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm


def bar(*, total: float | None = None, desc: str = "", unit: str = "it", unit_scale: bool = False, **kwargs: Any) -> tqdm:
    """A progress bar; hidden when stderr is not a terminal (RINGFSCK_PROGRESS=1 forces it)."""
    forced = os.environ.get("RINGFSCK_PROGRESS")
    disable = not sys.stderr.isatty() if forced is None else forced in ("0", "false", "no")
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit_scale, disable=disable, file=sys.stderr, dynamic_ncols=True, **kwargs)
