"""bucketd: listing buckets and reading object metadata (DOMAIN.md section 5).

The parsing is pure (:func:`locations_of_entry`); the HTTP calls go through
:func:`ringfsck.remote.http.send`, so 5xx, timeouts and dropped connections are
retried and a failure is an error, never an empty listing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from ringfsck.keys import is_valid_key
from ringfsck.remote.http import HttpPolicy, RateLimiter, RequestFailed, send

USERS_BUCKET = "users..bucket"
MPU_SHADOW_PREFIX = "mpuShadowBucket"
SPLITTER = "..|.."
REPLAY_PREFIX = "\x7fR"
VERSION_SEPARATOR = "\0"


@dataclass
class Location:
    key: str
    size: int | None
    data_store_name: str | None
    data_store_type: str | None

    @property
    def on_ring(self) -> bool:
        """Only scality locations with a 40-hex key are sproxyd keys."""
        return self.data_store_type == "scality" and is_valid_key(self.key)


@dataclass
class Entry:
    """What one listing entry holds, once parsed."""

    object_key: str
    version_id: str | None
    last_modified: str | None
    locations: list[Location] = field(default_factory=list)
    skipped: str | None = None  # why the entry holds no data, if it does not
    needs_full_metadata: bool = False
    mpu_part: bool = False


def _locations(value: Any) -> list[Location]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]  # old metadata: one object
    out = []
    for item in items:
        if isinstance(item, dict) and item.get("key"):
            size = item.get("size")
            out.append(Location(str(item["key"]).upper() if is_valid_key(str(item["key"])) else str(item["key"]),
                                int(size) if isinstance(size, (int, float)) else None, item.get("dataStoreName"), item.get("dataStoreType")))
    return out


def parse_entry(bucket: str, key: str, value: str | dict[str, Any]) -> Entry:
    """Classify a listing entry: data locations, or why it has none."""
    meta = json.loads(value) if isinstance(value, str) else value
    name, _, version = key.partition(VERSION_SEPARATOR)
    version_id = version or (meta.get("versionId") if isinstance(meta, dict) else None)
    entry = Entry(name, version_id, meta.get("last-modified") if isinstance(meta, dict) else None)
    if key.startswith(REPLAY_PREFIX):
        entry.skipped = "replay entries"
    elif not isinstance(meta, dict):
        entry.skipped = "entries without metadata"
    elif bucket.startswith(MPU_SHADOW_PREFIX):
        if key.startswith("overview" + SPLITTER):
            entry.skipped = "upload overviews"
        else:
            entry.mpu_part = True
            entry.locations = _locations(meta.get("partLocations"))
            if not entry.locations:
                entry.skipped = "parts without data"
    elif meta.get("isPHD"):
        entry.skipped = "placeholders"
    elif meta.get("isDeleteMarker"):
        entry.skipped = "delete markers"
    elif "location" not in meta:
        # Big MPU objects come without location in a listing: the full metadata has it.
        entry.needs_full_metadata = bool(meta.get("content-length"))
        if not entry.needs_full_metadata:
            entry.skipped = "empty objects"
    else:
        entry.locations = _locations(meta.get("location"))
        if not entry.locations:
            entry.skipped = "empty objects"
    return entry


class BucketdClient:
    """The few bucketd calls the export needs, each retried per the policy."""

    def __init__(self, client: httpx.AsyncClient, policy: HttpPolicy, limiter: RateLimiter) -> None:
        self._client = client
        self._policy = policy
        self._limiter = limiter

    async def _json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        target = url if not params else str(httpx.URL(url, params=params))
        response = await send(self._client, "GET", target, policy=self._policy, limiter=self._limiter)
        if response.status_code != 200:
            raise RequestFailed(f"GET {target}: HTTP {response.status_code}", 1)
        try:
            return response.json()
        except ValueError:
            raise RequestFailed(f"GET {target}: the answer is not JSON", 1) from None

    async def buckets(self, raft_session: int) -> list[str]:
        names = await self._json(f"/_/raft_sessions/{raft_session}/bucket")
        if not isinstance(names, list):
            raise RequestFailed(f"raft session {raft_session}: expected a list of buckets", 1)
        return [str(n) for n in names]

    async def page(self, bucket: str, marker: str | None, max_keys: int) -> tuple[list[tuple[str, str]], bool]:
        params: dict[str, Any] = {"maxKeys": max_keys}
        if marker:
            params["marker"] = marker
        body = await self._json(f"/default/bucket/{quote(bucket, safe='')}", params)
        contents = body.get("Contents") or []
        return [(item["key"], item["value"]) for item in contents], bool(body.get("IsTruncated"))

    async def metadata(self, bucket: str, key: str) -> dict[str, Any]:
        meta = await self._json(f"/default/bucket/{quote(bucket, safe='')}/{quote(key, safe='')}")
        if not isinstance(meta, dict):
            raise RequestFailed(f"{bucket}/{key}: metadata is not an object", 1)
        return meta
