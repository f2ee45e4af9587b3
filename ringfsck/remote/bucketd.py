"""bucketd: listing buckets and reading object metadata (docs/domain.md section 5).

The parsing is pure (:func:`parse_entry`); the HTTP calls go through
:func:`ringfsck.remote.http.send`, so 5xx, timeouts and dropped connections are
retried and a failure is an error, never an empty listing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson

from ringfsck.keys import MPU_SHADOW_PREFIX, is_valid_key
from ringfsck.remote.http import (
    Endpoint,
    HttpPolicy,
    RateLimiter,
    Reply,
    RequestFailed,
    send,
)

USERS_BUCKET = "users..bucket"
# Shadow buckets join an upload's key parts with "..|.."; old ones used "splitterfornow".
SHADOW_SPLITTERS = ("..|..", "splitterfornow")
SPLITTER = SHADOW_SPLITTERS[0]
REPLAY_PREFIX = "\x7fR"
VERSION_SEPARATOR = "\0"
RING_DATA_STORE_TYPE = "scality"
# JavaScript's encodeURIComponent leaves these alone (bucketd decodes the path either way).
ENCODE_URI_SAFE = "-_.!~*'()"
# How deep the parsers below read a JSON value: a listing's Contents[i].value, an ObjectMD's location[i].size.
_READ_DEPTH = 3


def _float_within(value: Any, levels: int) -> bool:
    """Whether a float is among the values of a JSON container, down to ``levels`` levels."""
    containers = [value]
    for _ in range(levels):
        nested: list[Any] = []
        for container in containers:
            children = container.values() if isinstance(container, dict) else container if isinstance(container, list) else ()
            kinds = set(map(type, children))  # one pass in C: most containers hold no container
            if float in kinds:
                return True
            if dict in kinds or list in kinds:
                nested.extend(child for child in children if isinstance(child, (dict, list)))
        containers = nested
    return False


def load_json(text: str | bytes) -> Any:
    """What ``json.loads`` answers (a listing page, a metadata GET), for half its CPU: orjson unless it may differ.

    orjson refuses some texts json reads (NaN, Infinity, lone surrogates, UTF-16 bytes) and reads an integer
    past 64 bits as a float: a text orjson refuses, or with a float where the parsers read, goes to json.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    return json.loads(text) if _float_within(value, _READ_DEPTH) else value


def _floats_read(meta: dict[str, Any]) -> bool:
    """Whether a value :func:`parse_entry` reads as a number or a type is a float (``load_json``'s rule,
    for one ObjectMD, at a tenth of its cost: the listing's values are a thousand per page)."""
    if type(meta.get("versionId")) is float:
        return True
    for name in ("location", "partLocations"):
        located = meta.get(name)
        for item in located if isinstance(located, list) else (located,):
            if type(item) is float or (isinstance(item, dict) and float in (type(item.get("size")), type(item.get("dataStoreType")))):
                return True
    return False


def _load_metadata(text: str) -> Any:
    """An ObjectMD text read as ``json.loads`` reads it (see :func:`load_json`)."""
    try:
        meta = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    return json.loads(text) if isinstance(meta, dict) and _floats_read(meta) else meta


@dataclass(slots=True)
class Location:
    key: str
    size: int | None
    data_store_name: str | None
    data_store_type: str | None  # None: written before multiple backends, RING data
    is_sproxyd_key: bool  # a 40-hex key: a reference for the orphan check, whichever backend holds it

    @property
    def on_ring(self) -> bool:
        """RING data: dataStoreType scality, or none at all (older metadata)."""
        return self.data_store_type in (None, RING_DATA_STORE_TYPE)


@dataclass(slots=True)
class Entry:
    """What one listing entry holds, once parsed."""

    listed_key: str  # as listed, `\0versionId` included: the key its full metadata is fetched by
    object_key: str
    version_id: str | None
    last_modified: str | None
    locations: list[Location] = field(default_factory=list)
    skipped: str | None = None  # why the entry holds no data, if it does not
    needs_full_metadata: bool = False
    mpu_part: bool = False
    rejected: str | None = None  # what in its metadata was not understood (its understood locations still count)
    raw: str = ""  # the metadata text, kept for a reject


def _location(item: Any) -> Location | str:
    """One location object, or why it is not understood."""
    if not isinstance(item, dict):
        return f"a location item of type {type(item).__name__}"
    key, kind = item.get("key"), item.get("dataStoreType") or None
    if not isinstance(key, str) or not key:
        return "a location item without a key"
    if kind is not None and not isinstance(kind, str):
        return f"a location with dataStoreType {kind!r}"
    size = item.get("size")
    name = item.get("dataStoreName")
    sproxyd_key = is_valid_key(key)
    location = Location(
        key.upper() if sproxyd_key else key,
        int(size) if isinstance(size, (int, float)) else None,
        name if isinstance(name, str) else None,
        kind,
        sproxyd_key,
    )
    if location.on_ring and not location.is_sproxyd_key:
        return f"a RING location whose key {key[:60]!r} is not 40 hex"
    return location


def _locations(value: Any) -> tuple[list[Location], list[str]]:
    """The locations of a `location` or `partLocations` value, and what in it was not understood."""
    if value is None or value == "":
        return [], []
    if isinstance(value, str):
        items: list[Any] = [{"key": value}]  # the oldest metadata model: the key itself, on the RING
    elif isinstance(value, dict):
        items = [value]  # old metadata: one location object
    elif isinstance(value, list):
        items = value
    else:
        return [], [f"a location of type {type(value).__name__}"]
    located, problems = [], []
    for item in items:
        parsed = _location(item)
        if isinstance(parsed, Location):
            located.append(parsed)
        else:
            problems.append(parsed)
    return located, problems


def _is_upload_overview(key: str) -> bool:
    return any(key.startswith("overview" + splitter) for splitter in SHADOW_SPLITTERS)


def parse_entry(bucket: str, key: str, value: Any) -> Entry:
    """Classify a listing entry: data locations, why it has none, or what in it is not understood."""
    raw = value if isinstance(value, str) else json.dumps(value)
    name, versioned, version = key.partition(VERSION_SEPARATOR)
    entry = Entry(key, name, version if versioned else None, None, raw=raw)
    if key.startswith(REPLAY_PREFIX):
        entry.skipped = "replay entries"
        return entry
    try:
        meta = _load_metadata(value) if isinstance(value, str) else value
    except ValueError:
        entry.rejected = "metadata is not JSON"
        return entry
    if not isinstance(meta, dict):
        entry.rejected = "metadata is not a JSON object"
        return entry
    if not versioned:
        # A master repeats its latest version: label its rows with that version's id, so that
        # both name the same object version. A null master's version is the null version, "".
        master_version = meta.get("versionId")
        entry.version_id = "" if meta.get("isNull") else None if master_version is None else str(master_version)
    modified = meta.get("last-modified")
    entry.last_modified = modified if isinstance(modified, str) else None
    problems: list[str] = []
    if bucket.startswith(MPU_SHADOW_PREFIX):
        if _is_upload_overview(key):
            entry.skipped = "upload overviews"
        else:  # a part: `<uploadId><splitter><partNumber>`; whatever it is, its partLocations count
            entry.mpu_part = True
            entry.locations, problems = _locations(meta.get("partLocations"))
    elif meta.get("isPHD"):
        entry.skipped = "placeholders"
    elif meta.get("isDeleteMarker"):
        entry.skipped = "delete markers"
    elif "location" not in meta:
        # The listing drops `location` from big metadata (any version): the full metadata has it.
        entry.needs_full_metadata = True
    else:
        entry.locations, problems = _locations(meta["location"])
    if problems:
        entry.rejected = "; ".join(dict.fromkeys(problems))
    elif not entry.locations and not entry.skipped and not entry.needs_full_metadata:
        entry.skipped = "parts without data" if entry.mpu_part else "empty objects"
    return entry


class ConnectionPool:
    """``size`` keep-alive connections to one bucketd, each carrying one request at a time.

    An httpx pool shared by 64 connections spends most of the client's CPU on its own
    bookkeeping once requests queue in it (measured here on the export: ~60 % of its CPU);
    each connection here is an :class:`Endpoint` (llhttp on a bare asyncio connection). A request waits for a free connection,
    so ``size`` bounds the requests in flight whatever the callers gather; the one used
    last goes first, so that connections stay warm rather than expire in turn.
    """

    def __init__(self, base_url: str, policy: HttpPolicy, size: int) -> None:
        # One TLS context for all connections: building one per connection costs ~20 ms each.
        context = httpx.create_ssl_context() if httpx.URL(base_url).scheme == "https" else None
        self._connections = [Endpoint(base_url, policy, ssl_context=context) for _ in range(max(1, size))]
        self._idle: asyncio.LifoQueue[Endpoint] = asyncio.LifoQueue()
        for connection in self._connections:
            self._idle.put_nowait(connection)

    async def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> Reply:
        connection = await self._idle.get()
        try:
            return await connection.request(method, url, headers)
        finally:
            self._idle.put_nowait(connection)

    async def aclose(self) -> None:
        await asyncio.gather(*(connection.aclose() for connection in self._connections))


class BucketdClient:
    """The few bucketd calls the export needs, each retried per the policy."""

    def __init__(self, pool: ConnectionPool, policy: HttpPolicy, limiter: RateLimiter) -> None:
        self._pool = pool
        self._policy = policy
        self._limiter = limiter

    async def _json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        # Every byte of a parameter percent-encoded: markers are object keys, any character included.
        target = url if not params else f"{url}?{urlencode(params, quote_via=quote, safe='')}"
        response = await send(self._pool, "GET", target, policy=self._policy, limiter=self._limiter)
        if response.status_code != 200:
            raise RequestFailed(f"GET {target}: HTTP {response.status_code}", 1)
        try:
            return load_json(response.content)
        except ValueError:
            raise RequestFailed(f"GET {target}: the answer is not JSON", 1) from None

    async def buckets(self, raft_session: int) -> list[str]:
        names = await self._json(f"/_/raft_sessions/{raft_session}/bucket")
        if not isinstance(names, list):
            raise RequestFailed(f"raft session {raft_session}: expected a list of buckets", 1)
        return [str(n) for n in names]

    async def page(self, bucket: str, marker: str | None, max_keys: int) -> tuple[list[tuple[str, Any]], bool]:
        params: dict[str, Any] = {"maxKeys": max_keys}
        if marker:
            params["marker"] = marker
        body = await self._json(f"/default/bucket/{quote(bucket, safe='')}", params)
        if not isinstance(body, dict):
            raise RequestFailed(f"bucket {bucket}: the listing is not a JSON object", 1)
        if body.get("CommonPrefixes"):
            # Without a delimiter bucketd lists every key; grouped keys are keys this listing never showed.
            raise RequestFailed(f"bucket {bucket}: the listing grouped keys under CommonPrefixes (not listed, so not exported)", 1)
        contents = body.get("Contents") or []
        if not all(isinstance(item, dict) and isinstance(item.get("key"), str) for item in contents):
            raise RequestFailed(f"bucket {bucket}: a listing entry has no key", 1)
        return [(item["key"], item.get("value")) for item in contents], bool(body.get("IsTruncated"))

    async def metadata(self, bucket: str, key: str) -> Any:
        """The full metadata of a listed key (``name\\0versionId`` for a version: its own, not the newest's)."""
        return await self._json(f"/default/bucket/{quote(bucket, safe='')}/{quote(key, safe=ENCODE_URI_SAFE)}")
