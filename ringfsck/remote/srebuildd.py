"""What ringfsck asks srebuildd (DOMAIN.md sections 4 and 7).

Each function answers for one key or raises :class:`RequestFailed`: a failure
is never turned into "not found" or "not split".
"""

from __future__ import annotations

from dataclasses import dataclass

from ringfsck.remote.http import Endpoint, HttpPolicy, RateLimiter, RequestFailed, send
from ringfsck.split_index import parse_split_index

_TRUTHY = {"true", "1", "yes", "on"}


@dataclass(frozen=True)
class SplitAnswer:
    status: str  # ok | not_found
    is_split: bool
    subkeys: list[str]


async def lookup_split(client: Endpoint, arc_path: str, input_key: str, *, policy: HttpPolicy, limiter: RateLimiter) -> SplitAnswer:
    """HEAD the input key on the arc path; for a split key, GET its raw index and parse the subkeys."""
    url = f"/{arc_path}/{input_key}"
    head = await send(client, "HEAD", url, policy=policy, limiter=limiter)
    if head.status_code == 404:
        return SplitAnswer("not_found", False, [])
    if head.status_code != 200:
        raise RequestFailed(f"HEAD {url}: unexpected HTTP {head.status_code}", 1)
    if head.headers.get("X-Scal-Attr-Is-Split", "").strip().lower() not in _TRUTHY:
        return SplitAnswer("ok", False, [])
    raw = await send(client, "GET", url, policy=policy, limiter=limiter, headers={"x-scal-split-policy": "raw"})
    if raw.status_code != 200:
        # The key was there a moment ago: a 404 now is not an answer we can trust.
        raise RequestFailed(f"GET {url} (raw split index): unexpected HTTP {raw.status_code}", 1)
    return SplitAnswer("ok", True, parse_split_index(raw.content))


async def main_chunk_size(client: Endpoint, arcdata_path: str, ring_key: str, *, policy: HttpPolicy, limiter: RateLimiter) -> int | None:
    """Logical size of a main chunk from ``X-Scal-Size``; None when the key is not on the RING."""
    url = f"/{arcdata_path}/{ring_key}"
    head = await send(client, "HEAD", url, policy=policy, limiter=limiter)
    if head.status_code == 404:
        return None
    size = head.headers.get("X-Scal-Size", "")
    if head.status_code != 200 or not size.strip().isdigit():
        raise RequestFailed(f"HEAD {url}: HTTP {head.status_code} without a usable X-Scal-Size", 1)
    return int(size)
