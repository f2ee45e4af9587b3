"""Split index bodies (docs/domain.md section 4). Pure functions, no I/O.

sproxyd stores a large object as a small *split index* under its input key;
the raw index (``GET`` with ``x-scal-split-policy: raw``) lists the subkeys.
In the hex of the body every subkey follows a length marker; the key always
starts on a byte boundary. Markers ending in ``14``/``13``/``12`` precede
20-/19-/18-byte keys (leading zero bytes stripped: left-pad to 40 hex).
"""

from __future__ import annotations

import re

# The three marker families, each for 20-, 19- and 18-byte keys.
MARKER_FAMILIES = ("2000000000000", "201000000", "51d688000000")
_KEY_BYTES_BY_SUFFIX = {"14": 20, "13": 19, "12": 18}
MARKERS = tuple(family + suffix for family in MARKER_FAMILIES for suffix in _KEY_BYTES_BY_SUFFIX)

_MARKER_RE = re.compile("(?:" + "|".join(re.escape(f) for f in MARKER_FAMILIES) + ")(1[234])", re.IGNORECASE)


def parse_split_index(body: bytes) -> list[str]:
    """Return the subkeys listed in a raw split index, in order, as 40 uppercase hex chars.

    A marker match that would put the key off a byte boundary, or that runs past
    the end of the body, is not a marker (it is part of other data) and is skipped.
    """
    text = body.hex()
    subkeys: list[str] = []
    pos = 0
    while True:
        match = _MARKER_RE.search(text, pos)
        if match is None:
            return subkeys
        start = match.end()
        width = 2 * _KEY_BYTES_BY_SUFFIX[match.group(1)]
        if start % 2 or start + width > len(text):
            pos = match.start() + 1
            continue
        subkeys.append(text[start : start + width].upper().rjust(40, "0"))
        pos = start + width


def encode_split_index(subkeys: list[str], *, family: int | None = None, header: bytes = b"\x00SPLITIDX") -> bytes:
    """Build a raw split index body that :func:`parse_split_index` reads back.

    Used by the lab to serve split objects. Keys with leading zero bytes are
    written in their short (19/18-byte) form. ``family`` picks the marker family
    (0-2); by default entries cycle through all three so every family is served.
    """
    parts = [header.hex()]
    for i, key in enumerate(subkeys):
        raw = bytes.fromhex(key)
        stripped = raw.lstrip(b"\x00")
        if len(stripped) < 18:
            raise ValueError(f"subkey {key} has more than two leading zero bytes: no marker can encode it")
        size = len(stripped)
        fam = MARKER_FAMILIES[(i if family is None else family) % len(MARKER_FAMILIES)]
        marker = f"{fam}{size:02x}"
        # Markers have an odd number of hex digits: a leading nibble puts the
        # key on a byte boundary. A little filler separates entries.
        filler = f"{i & 0xFF:02x}0" if len(marker) % 2 else f"{i & 0xFF:02x}"
        parts.append(filler + marker + stripped.hex())
    text = "".join(parts)
    if len(text) % 2:
        text += "0"
    return bytes.fromhex(text)
