"""What ringfsck asks srebuildd (docs/domain.md sections 4, 5 and 7).

Each function answers for one key or raises :class:`RequestFailed`: a failure
is never turned into "not found" or "not split".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from ringfsck.config import srebuildd_endpoints
from ringfsck.errors import ConfigError
from ringfsck.remote.http import Endpoint, EndpointPool, HttpPolicy, RateLimiter, RequestFailed, send
from ringfsck.split_index import parse_split_index
from ringfsck.store import Store

# X-Scal-Attr-Is-Split values understood (docs/domain.md section 4). srebuildd omits the header for a
# plain key (the reference tests it for presence); any other value is not guessed either way.
_IS_SPLIT_VALUES = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def require_srebuildd(store: Store, base_url: str | Sequence[str] | None = None) -> list[str]:
    """The srebuildd endpoints to ask: ``base_url`` (one or several), else the configured ones, else one per
    node of the store's native listing (``ringfsck.config.srebuildd_endpoints``)."""
    urls = [base_url] if isinstance(base_url, str) else list(base_url or [])
    if not urls:
        from ringfsck.ingest.ring import listing_node_ips  # here: the listing module is heavy to import

        urls = srebuildd_endpoints(store.settings, listing_node_ips(store)).urls
    if not urls:
        raise ConfigError(
            "no srebuildd URL: pass --srebuildd URL (repeatable), set srebuildd_urls, srebuildd_url or srebuildd_ip in the config, "
            "or list the RING natively ('ringfsck ingest ring': srebuildd on each node's ip at srebuildd_port)"
        )
    return [url.rstrip("/") for url in urls]


def srebuildd_pool(store: Store, base_url: str | Sequence[str] | None, policy: HttpPolicy) -> EndpointPool:
    """The srebuildd endpoints of one command, sharing its keys (see :class:`EndpointPool`)."""
    return EndpointPool(require_srebuildd(store, base_url), policy, "srebuildd")


@dataclass(frozen=True)
class SplitAnswer:
    status: str  # ok | not_found
    is_split: bool
    subkeys: list[str]


def split_header_says(value: str | None) -> bool:
    """Whether an ``X-Scal-Attr-Is-Split`` value (None when absent) means split; ValueError when not understood."""
    if value is None:
        return False
    said = _IS_SPLIT_VALUES.get(value.strip().lower())
    if said is None:
        raise ValueError(f"X-Scal-Attr-Is-Split {value!r} is not understood (expected absent, true/1/yes or false/0/no)")
    return said


async def arc_split_state(
    client: Endpoint, arc_path: str, input_key: str, *, policy: HttpPolicy, limiter: RateLimiter | None = None
) -> bool | None:
    """HEAD an input key on the arc path: None when not found, else whether it is a split index."""
    url = f"/{arc_path}/{input_key}"
    head = await send(client, "HEAD", url, policy=policy, limiter=limiter)
    if head.status_code == 404:
        return None
    if head.status_code != 200:
        raise RequestFailed(f"HEAD {url}: unexpected HTTP {head.status_code}", 1)
    try:
        return split_header_says(head.headers.get("X-Scal-Attr-Is-Split"))
    except ValueError as exc:
        raise RequestFailed(f"HEAD {url}: {exc}", 1) from None


async def lookup_split(
    client: Endpoint, arc_path: str, input_key: str, *, policy: HttpPolicy, limiter: RateLimiter | None = None
) -> SplitAnswer:
    """HEAD the input key on the arc path; for a split key, GET its raw index and parse the subkeys."""
    is_split = await arc_split_state(client, arc_path, input_key, policy=policy, limiter=limiter)
    if is_split is None:
        return SplitAnswer("not_found", False, [])
    if not is_split:
        return SplitAnswer("ok", False, [])
    url = f"/{arc_path}/{input_key}"
    raw = await send(client, "GET", url, policy=policy, limiter=limiter, headers={"x-scal-split-policy": "raw"})
    if raw.status_code != 200:
        # The key was there a moment ago: a 404 now is not an answer we can trust.
        raise RequestFailed(f"GET {url} (raw split index): unexpected HTTP {raw.status_code}", 1)
    return SplitAnswer("ok", True, parse_split_index(raw.content))


@dataclass(frozen=True)
class MainChunkHead:
    """What a HEAD on the arcdata path says of a main chunk just before it is deleted."""

    present: bool
    mtime: datetime | None = None  # None: absent or not a date ringfsck reads (never guessed)
    mtime_text: str | None = None  # the header as received, for the journal


def parse_scal_mtime(value: str | None) -> datetime | None:
    """``X-Scal-Mtime`` as an aware UTC datetime: an HTTP date, ISO 8601 with a zone, or epoch seconds.

    Anything else (a date without a time zone included) is None: no usable mtime, which keeps the key.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), tz=UTC)
        if "," in text or " GMT" in text:
            parsed = parsedate_to_datetime(text)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, TypeError, OverflowError, OSError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None  # a local time of an unknown zone: no evidence of age either way
    return parsed.astimezone(UTC)


async def head_main_chunk(
    client: Endpoint, arcdata_path: str, ring_key: str, *, policy: HttpPolicy, limiter: RateLimiter | None = None
) -> MainChunkHead:
    """HEAD a main chunk on the arcdata path: present (with its X-Scal-Mtime) or not; RequestFailed otherwise."""
    url = f"/{arcdata_path}/{ring_key}"
    head = await send(client, "HEAD", url, policy=policy, limiter=limiter)
    if head.status_code == 404:
        return MainChunkHead(False)
    if head.status_code != 200:
        raise RequestFailed(f"HEAD {url}: unexpected HTTP {head.status_code}", 1)
    text = head.headers.get("X-Scal-Mtime")
    return MainChunkHead(True, parse_scal_mtime(text), text)


async def main_chunk_size(
    client: Endpoint, arcdata_path: str, ring_key: str, *, policy: HttpPolicy, limiter: RateLimiter | None = None
) -> int | None:
    """Logical size of a main chunk from ``X-Scal-Size``; None when the key is not on the RING."""
    url = f"/{arcdata_path}/{ring_key}"
    head = await send(client, "HEAD", url, policy=policy, limiter=limiter)
    if head.status_code == 404:
        return None
    size = head.headers.get("X-Scal-Size", "")
    if head.status_code != 200 or not size.strip().isdigit():
        raise RequestFailed(f"HEAD {url}: HTTP {head.status_code} without a usable X-Scal-Size", 1)
    return int(size)
