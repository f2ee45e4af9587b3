"""The lab's srebuildd and bucketd: HTTP/1.1 servers over a generated world.

They are plain asyncio servers rather than ASGI apps under uvicorn: fault
injection must be able to drop a TCP connection with no response at all, which
an ASGI app cannot do (its server answers 500 instead). The HTTP subset is
small (no request bodies beyond Content-Length, keep-alive, HEAD) and a bare
asyncio protocol serves tens of thousands of requests per second on one core.
Both servers run in one process (``python -m ringfsck.lab.serve``, started by
:class:`ringfsck.lab.LabServers`) over the memory-mapped world state.

Admin endpoints, never faulted: ``GET /_lab/health``, ``GET /_lab/requests``
(counts per "METHOD path"), ``GET /_lab/request-times`` (when each request came,
Unix seconds), ``POST /_lab/reset-stats``, ``GET|POST /_lab/faults``
and, on srebuildd, ``GET /_lab/deleted``.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
import traceback
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from ringfsck.errors import ConfigError
from ringfsck.lab._state import Bucket, WorldState

# What X-Scal-Size measures on the arcdata path (docs/domain.md section 7) is not settled: the lab
# answers either way, so that ringfsck's measurement of it is tested both ways.
from ringfsck.store import SIZE_READINGS

HOST = "127.0.0.1"
_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
_NUMERIC_FAULTS = ("latency_ms", "error_rate", "drop_rate", "hang_rate", "hang_seconds")
_SHARE_KNOBS = ("recent_share",)
MTIME_FORMATS = ("http", "iso", "epoch", "absent")
# The X-Scal-Mtime srebuildd answers by default: older than any lab world's S3 export (and its
# objects), so that only the knobs below make a key look recently written.
LAB_OLD_MTIME = datetime(2024, 1, 1, tzinfo=UTC)
Response = tuple[int, dict[str, str], bytes]
_DROP = None  # a handler's answer meaning: close the connection without a response


@dataclass
class Faults:
    """What goes wrong on a server, per request (admin endpoints excepted).

    Every request first waits ``latency_ms``; then one roll decides: dropped
    (``drop_rate``), hung for ``hang_seconds`` before its answer (``hang_rate``),
    answered 503 or 500 (``error_rate``), or served. Requests naming a key (or
    bucket) in ``fail_keys`` always get 503, and so does every request after the
    first ``fail_after`` ones since the faults were set (a deterministic outage).
    bucketd lists the bucket named by ``common_prefixes`` as if asked for a delimiter:
    keys under a common prefix are grouped in ``CommonPrefixes`` and not listed; it serves the
    metadata of the bucket named by ``unknown_shape`` in a shape no ringfsck knows (each location's
    ``key`` field renamed, as a future metadata version might), in listings and GETs alike.

    srebuildd's arcdata HEAD answers ``X-Scal-Mtime`` (docs/domain.md sections 5 and 8) in ``mtime_format``
    (``http``, ``iso``, ``epoch``, or ``absent``: no header); the time is the chunk's mtime as the lab's nodes list it (LAB_OLD_MTIME if it has none), or now for
    the main chunks in ``recent_keys`` and a ``recent_share`` of all main chunks (picked by key hash,
    the same on every request: uploads in flight). ``vanish_after_deletes``: once that many DELETEs
    succeeded, every input key answers 404 on the arc path (live data lost while deleting).
    """

    latency_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 60.0
    fail_keys: set[str] = field(default_factory=set)
    fail_after: int | None = None
    common_prefixes: str | None = None  # bucketd: this bucket's listings group keys under CommonPrefixes
    unknown_shape: str | None = None  # bucketd: this bucket's locations name their key "dataKey"
    mtime_format: str = "http"  # srebuildd: how X-Scal-Mtime is written (absent: not at all)
    recent_keys: set[str] = field(default_factory=set)  # srebuildd: main chunks written just now
    recent_share: float = 0.0  # srebuildd: this share of main chunks written just now
    vanish_after_deletes: int | None = None  # srebuildd: input keys 404 on the arc path after this many DELETEs

    @classmethod
    def parse(cls, spec: str | dict[str, Any] | None) -> Faults:
        """From ``"error_rate=0.1,drop_rate=0.05,latency_ms=2,fail_keys=KEY1;KEY2"`` or a dict."""
        faults = cls()
        if isinstance(spec, dict):
            faults.update(spec)
        elif spec:
            values: dict[str, Any] = {}
            for item in spec.split(","):
                name, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"fault {item!r}: expected name=value, e.g. error_rate=0.1")
                values[name.strip()] = value.strip()
            faults.update(values)
        return faults

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name in ("fail_after", "vanish_after_deletes"):
                try:
                    count = None if value in (None, "", "none") else int(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"fault {name}: expected a number of requests, got {value!r}") from None
                if count is not None and count < 0:
                    raise ConfigError(f"fault {name}: {value!r} out of range")
                setattr(self, name, count)
            elif name == "mtime_format":
                if value not in MTIME_FORMATS:
                    raise ConfigError(f"fault mtime_format: expected one of {', '.join(MTIME_FORMATS)}, got {value!r}")
                self.mtime_format = value
            elif name in ("common_prefixes", "unknown_shape"):
                setattr(self, name, None if value in (None, "", "none") else str(value))
            elif name in ("fail_keys", "recent_keys"):
                items = value.split(";") if isinstance(value, str) else value
                setattr(self, name, {str(k).strip().upper() for k in items if str(k).strip()})
            elif name in _NUMERIC_FAULTS or name in _SHARE_KNOBS:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"fault {name}: expected a number, got {value!r}") from None
                if number < 0 or ((name.endswith("_rate") or name in _SHARE_KNOBS) and number > 1):
                    raise ConfigError(f"fault {name}: {value!r} out of range")
                setattr(self, name, number)
            else:
                raise ConfigError(
                    f"unknown fault {name!r} (known: {', '.join(_NUMERIC_FAULTS)}, fail_keys, fail_after, common_prefixes, "
                    "unknown_shape, mtime_format, recent_keys, recent_share, vanish_after_deletes)"
                )

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"fail_keys": sorted(self.fail_keys), "recent_keys": sorted(self.recent_keys)}


async def read_request_head(reader: asyncio.StreamReader) -> tuple[str, str, str, dict[str, str]] | None:
    """The next request's method, target, version and headers (names lowercased); None when the client is gone."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return method, target, version, headers


class _Server:
    """HTTP/1.1 keep-alive connections, admin endpoints and faults; subclasses answer the API."""

    name = "server"

    def __init__(self, faults: Faults, seed: int) -> None:
        self.faults = faults
        self.requests: Counter[str] = Counter()
        self.request_times = array("d")  # time.time() of each request received (8 bytes each), to measure rates
        self.connections = 0  # accepted: a client that reconnects for every round of work shows here
        self._since_faults = 0  # requests since the faults were last set, for fail_after
        self._rng = random.Random(seed)

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                request = await read_request_head(reader)
                if request is None:
                    return
                method, target, version, headers = request
                length = headers.get("content-length", "0")
                if "chunked" in headers.get("transfer-encoding", "").lower() or not length.isdigit():
                    response: Response | None = (
                        501,
                        {"Connection": "close"},
                        b'{"error":"only Content-Length request bodies are supported"}',
                    )
                else:
                    body = await reader.readexactly(int(length)) if int(length) else b""
                    try:
                        response = await self._respond(method, target, headers, body)
                    except Exception as exc:  # noqa: BLE001 - a lab bug: say so on stderr, which LabServers forwards
                        traceback.print_exc()
                        response = (500, {}, json.dumps({"error": f"lab server bug: {exc!r}"}).encode())
                if response is _DROP:
                    writer.transport.abort()  # RST: the client sees the connection die with no answer
                    return
                status, out_headers, payload = response
                close = (
                    headers.get("connection", "").lower() == "close" or version == "HTTP/1.0" or out_headers.get("Connection") == "close"
                )
                writer.write(_serialize(method, status, out_headers, payload))
                if writer.transport.get_write_buffer_size():  # only a full socket buffer makes us wait
                    await writer.drain()
                if close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # Shutdown cancels open connections. Ending normally keeps Python 3.11's stream
            # callback from logging each of them as an error on stderr.
            writer.transport.abort()
            return
        finally:
            if not writer.is_closing():
                writer.close()

    async def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response | None:
        path, _, query = target.partition("?")  # origin-form targets only (what clients send)
        if path.startswith("/_lab/"):
            return self._admin(method, path, body)
        self.requests[f"{method} {self.count_path(path)}"] += 1
        self.request_times.append(time.time())
        faults = self.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.fail_keys and unquote(path.rsplit("/", 1)[-1]).upper() in faults.fail_keys:
            return 503, {}, b'{"error":"injected failure for this key"}'
        self._since_faults += 1
        if faults.fail_after is not None and self._since_faults > faults.fail_after:
            return 503, {}, b'{"error":"injected outage"}'
        if faults.drop_rate or faults.hang_rate or faults.error_rate:  # no roll when nothing can go wrong
            roll = self._rng.random()
            if roll < faults.drop_rate:
                return _DROP
            roll -= faults.drop_rate
            if roll < faults.hang_rate:
                await asyncio.sleep(faults.hang_seconds)
            elif roll - faults.hang_rate < faults.error_rate:
                return (503 if self._rng.random() < 0.5 else 500), {}, b'{"error":"injected"}'
        return self.handle(method, path, parse_qs(query, keep_blank_values=True) if query else {}, headers)

    def _admin(self, method: str, path: str, body: bytes) -> Response:
        if path == "/_lab/health":
            return 200, {}, json.dumps({"ok": True, "server": self.name}).encode()
        if path == "/_lab/requests":
            return 200, {}, json.dumps(dict(self.requests)).encode()
        if path == "/_lab/request-times":
            return 200, {}, json.dumps(self.request_times.tolist()).encode()
        if path == "/_lab/connections":
            return 200, {}, json.dumps(self.connections).encode()
        if path == "/_lab/reset-stats" and method == "POST":
            self.requests.clear()
            self.request_times = array("d")
            self.connections = 0
            return 200, {}, b"{}"
        if path == "/_lab/faults":
            if method == "POST":
                try:
                    values = json.loads(body or b"{}")
                    if not isinstance(values, dict):
                        raise ConfigError("expected a JSON object of faults")
                    changed = replace(self.faults, fail_keys=set(self.faults.fail_keys), recent_keys=set(self.faults.recent_keys))
                    changed.update(values)  # all or nothing: a bad value leaves the faults as they were
                    self.faults = changed
                    self._since_faults = 0
                except (ConfigError, ValueError) as exc:
                    return 400, {}, json.dumps({"error": str(exc)}).encode()
            return 200, {}, json.dumps(self.faults.to_json()).encode()
        return self.admin(method, path)

    def admin(self, method: str, path: str) -> Response:
        return 404, {}, b'{"error":"unknown admin endpoint"}'

    def count_path(self, path: str) -> str:
        return path

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        raise NotImplementedError


# Response heads by (status, headers, body length): most answers repeat one of a few heads.
_HEADS: dict[tuple[int, tuple[tuple[str, str], ...], int], bytes] = {}
_HEADS_KEPT = 4096  # heads that vary per key (sizes, mtimes) would otherwise fill memory


def _serialize(method: str, status: int, headers: dict[str, str], payload: bytes) -> bytes:
    cache_key = (status, tuple(headers.items()), len(payload))
    head = _HEADS.get(cache_key)
    if head is None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        if "Content-Type" not in headers:
            lines.append("Content-Type: application/json")
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        lines.append(f"Content-Length: {len(payload)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if len(_HEADS) >= _HEADS_KEPT:
            _HEADS.clear()
        _HEADS[cache_key] = head
    return head if method == "HEAD" or not payload else head + payload


# The arc path's answer headers (never changed: _serialize only reads them).
_SPLIT_HEADERS = {"Content-Type": "application/octet-stream", "X-Scal-Attr-Is-Split": "true"}
_PLAIN_HEADERS = {"Content-Type": "application/octet-stream"}


class SrebuilddServer(_Server):
    """The arc (split check, raw index), arcdata (sizes) and chord (delete) paths of one RING."""

    name = "srebuildd"

    def __init__(self, state: WorldState, ring: str, faults: Faults, seed: int = 1, *, size_reading: str = "object") -> None:
        super().__init__(faults, seed)
        if size_reading not in SIZE_READINGS:
            raise ConfigError(f"size reading {size_reading!r}: expected one of {', '.join(SIZE_READINGS)}")
        self.state = state
        self.size_reading = size_reading
        self.deleted: list[str] = []
        self._deleted_set: set[str] = set()
        self.paths = {f"/rebuild/arc-{ring}": "arc", f"/rebuild/arcdata-{ring}": "arcdata", f"/rebuild/chord-{ring}": "chord"}

    def on_the_same_ring(self) -> SrebuilddServer:
        """Another srebuildd of this RING (one per lab node): deletions shared, its own request log and faults (a copy)."""
        other = SrebuilddServer(self.state, "", replace(self.faults), size_reading=self.size_reading)
        other.paths, other.deleted, other._deleted_set = self.paths, self.deleted, self._deleted_set
        return other

    def admin(self, method: str, path: str) -> Response:
        if path == "/_lab/deleted":
            return 200, {}, json.dumps(self.deleted).encode()
        return super().admin(method, path)

    def count_path(self, path: str) -> str:
        base, _, key = path.rpartition("/")
        return f"{base}/{key.upper()}" if base in self.paths else path  # keys are case-insensitive

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        base, _, key = path.rpartition("/")
        kind = self.paths.get(base)
        key = key.upper()
        if kind is None or len(key) != 40:
            return 400, {}, b'{"error":"unknown path"}'
        if kind == "arc":
            return self._arc(method, key, headers)
        on_ring = key not in self._deleted_set and self.state.has_main_chunk(key)
        if kind == "arcdata":
            if method != "HEAD":
                return 405, {}, b""
            return (200, {"X-Scal-Size": str(self.x_scal_size(key))} | self.x_scal_mtime(key), b"") if on_ring else (404, {}, b"")
        if method != "DELETE":
            return 405, {}, b""
        if not on_ring:
            return 404, {}, b""
        self._deleted_set.add(key)
        self.deleted.append(key)
        return 200, {}, b""

    def x_scal_size(self, main_chunk: str) -> int:
        """What the arcdata HEAD answers: the object's size, or (``chunk`` reading) one ARC stripe's, ceil(size / k)."""
        size = self.state.size_of(main_chunk)
        if self.size_reading == "chunk" and main_chunk[38] == "7":
            k = int(main_chunk[32:35], 16) >> 6  # chars 32-34 hold k<<6|m
            return -(-size // k)
        return size

    def x_scal_mtime(self, main_chunk: str) -> dict[str, str]:
        """The ``X-Scal-Mtime`` header of a present main chunk, as the faults say (see :class:`Faults`)."""
        faults = self.faults
        if faults.mtime_format == "absent":
            return {}
        # The key's md5 chars are uniform: the same share of keys, the same keys, on every request.
        recent = main_chunk in faults.recent_keys or int(main_chunk[:8], 16) < faults.recent_share * 0x1_0000_0000
        stored = self.state.chunk_mtime(main_chunk)  # what the lab's nodes list for it
        written = datetime.now(UTC) if recent else datetime.fromtimestamp(stored, UTC) if stored is not None else LAB_OLD_MTIME
        if faults.mtime_format == "iso":
            return {"X-Scal-Mtime": written.isoformat(timespec="seconds")}
        if faults.mtime_format == "epoch":
            return {"X-Scal-Mtime": str(int(written.timestamp()))}
        return {"X-Scal-Mtime": format_datetime(written, usegmt=True)}

    def _arc(self, method: str, key: str, headers: dict[str, str]) -> Response:
        if method not in ("HEAD", "GET"):
            return 405, {}, b""
        vanish = self.faults.vanish_after_deletes
        if vanish is not None and len(self.deleted) >= vanish:
            return 404, {}, b""  # live data lost while deleting: the canaries must notice
        index = self.state.split_body(key)
        if index is None and not self.state.knows_input_key(key):
            return 404, {}, b""
        # Like srebuildd (docs/domain.md section 4): the header only on a split index, absent for a plain key.
        split = _SPLIT_HEADERS if index is not None else _PLAIN_HEADERS
        if method == "HEAD":
            return 200, split, b""
        if index is not None and headers.get("x-scal-split-policy", "").lower() == "raw":
            return 200, split, index
        return 200, split, b"\x00lab object data " + key.encode()


class BucketdServer(_Server):
    """Raft sessions, bucket listings with paging, and object metadata."""

    name = "bucketd"

    def __init__(self, state: WorldState, faults: Faults, seed: int = 2) -> None:
        super().__init__(faults, seed)
        self.state = state

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        if method != "GET":
            return 405, {}, b""
        parts = path.split("/")
        if len(parts) == 5 and parts[1:3] == ["_", "raft_sessions"] and parts[4] == "bucket":
            if not parts[3].isdigit():
                return 400, {}, b'{"error":"bad raft session"}'
            names = sorted(b.name for b in self.state.buckets.values() if b.raft_session == int(parts[3]))
            return (200, {}, json.dumps(names).encode()) if names else (404, {}, b'{"error":"no such raft session"}')
        if len(parts) >= 4 and parts[1:3] == ["default", "bucket"]:
            bucket = self.state.buckets.get(unquote(parts[3]))
            if bucket is None:
                return 404, {}, b'{"error":"NoSuchBucket"}'
            unknown = bucket.name == self.faults.unknown_shape
            if len(parts) == 4:
                return self._list(bucket, query, grouped=bucket.name == self.faults.common_prefixes, unknown_shape=unknown)
            meta = bucket.get(unquote("/".join(parts[4:])))
            if meta is None:
                return 404, {}, b'{"error":"ObjNotFound"}'
            return 200, {}, (_unknown_shape(meta) if unknown else meta).encode()
        return 400, {}, b'{"error":"unknown path"}'

    @staticmethod
    def _list(bucket: Bucket, query: dict[str, list[str]], *, grouped: bool = False, unknown_shape: bool = False) -> Response:
        try:
            max_keys = max(1, min(10_000, int(query.get("maxKeys", ["1000"])[0])))
        except ValueError:
            return 400, {}, b'{"error":"bad maxKeys"}'
        contents, truncated = bucket.page(query.get("marker", [""])[0], query.get("prefix", [""])[0], max_keys)
        prefixes: list[str] = []
        if grouped:  # as a delimiter "/" would: keys with a slash are folded into their first prefix
            prefixes = sorted({item["key"].split("/", 1)[0] + "/" for item in contents if "/" in item["key"]}) or ["lab-grouped/"]
            contents = [item for item in contents if "/" not in item["key"]]
        if unknown_shape:
            contents = [item | {"value": _unknown_shape(item["value"])} for item in contents]
        # orjson: a 1,000-entry page is ~800 KB of escaped JSON, and json.dumps spent half the page's CPU on it.
        return 200, {}, orjson.dumps({"Contents": contents, "CommonPrefixes": prefixes, "IsTruncated": truncated})


def _unknown_shape(value: str) -> str:
    """Metadata whose locations name their key ``dataKey``: a shape the client must not understand."""
    meta = json.loads(value)
    for field_name in ("location", "partLocations"):
        located = meta.get(field_name)
        if isinstance(located, list):
            meta[field_name] = [
                {("dataKey" if k == "key" else k): v for k, v in item.items()} if isinstance(item, dict) else item for item in located
            ]
    return json.dumps(meta)


async def serve(
    world: Path,
    *,
    ring: str = "DATA",
    srebuildd_port: int = 0,
    bucketd_port: int = 0,
    srebuildd_faults: Faults | None = None,
    bucketd_faults: Faults | None = None,
    size_reading: str = "object",
    ready: Callable[[dict[str, str]], None] | None = None,
    srebuildd: SrebuilddServer | None = None,
) -> None:
    """Serve both servers on 127.0.0.1 until cancelled; ``ready(urls)`` is called once they listen.

    ``size_reading``: what srebuildd's X-Scal-Size measures, ``object`` or ``chunk`` (see SIZE_READINGS).
    ``srebuildd``: the srebuildd to serve, when its RING is shared with others (the lab nodes' own).
    """
    state = WorldState(world)
    srebuildd = srebuildd or SrebuilddServer(state, ring, srebuildd_faults or Faults(), size_reading=size_reading)
    servers = {
        "srebuildd": (srebuildd, srebuildd_port),
        "bucketd": (BucketdServer(state, bucketd_faults or Faults()), bucketd_port),
    }
    listeners, urls = [], {}
    try:
        for name, (server, port) in servers.items():
            listener = await asyncio.start_server(server.handle_connection, HOST, port, backlog=2048, limit=1 << 20)
            listeners.append(listener)
            urls[name] = f"http://{HOST}:{listener.sockets[0].getsockname()[1]}"
        if ready is not None:
            ready(urls)
        await asyncio.gather(*(listener.serve_forever() for listener in listeners))
    finally:
        for listener in listeners:
            listener.close()
