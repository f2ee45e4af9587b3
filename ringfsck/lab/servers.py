"""The lab's srebuildd and bucketd: HTTP/1.1 servers over a generated world.

They are plain asyncio servers rather than ASGI apps: fault injection must be
able to drop a TCP connection with no response at all, which an ASGI app
cannot do (its server answers 500 instead). Both run in one process started by
``python -m ringfsck.lab.serve`` (see :class:`ringfsck.lab.LabServers`).

Admin endpoints, never faulted: ``GET /_lab/health``, ``GET /_lab/requests``
(counts per "METHOD path"), ``POST /_lab/reset-stats``, ``GET|POST /_lab/faults``
and, on srebuildd, ``GET /_lab/deleted``.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow.parquet as pq

from ringfsck.errors import ConfigError

MPU_SHADOW_PREFIX = "mpuShadowBucket"
USERS_BUCKET = "users..bucket"
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}
Response = tuple[int, dict[str, str], bytes]


@dataclass
class Faults:
    """What goes wrong on a server, per request (admin endpoints excepted)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0  # answered 503 or 500
    drop_rate: float = 0.0  # connection closed with no response
    hang_rate: float = 0.0  # answered only after hang_seconds, past any sane client timeout
    hang_seconds: float = 60.0
    fail_keys: set[str] = field(default_factory=set)  # requests naming these keys always get 503

    @classmethod
    def parse(cls, text: str | None) -> "Faults":
        """``"error_rate=0.1,drop_rate=0.05,latency_ms=2,fail_keys=KEY1;KEY2"``."""
        faults = cls()
        if text:
            values: dict[str, Any] = {}
            for item in text.split(","):
                name, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"fault {item!r}: expected name=value")
                values[name.strip()] = value.strip()
            faults.update(values)
        return faults

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name == "fail_keys":
                items = value.split(";") if isinstance(value, str) else value
                self.fail_keys = {str(k).upper() for k in items if k}
            elif name in ("latency_ms", "error_rate", "drop_rate", "hang_rate", "hang_seconds"):
                try:
                    setattr(self, name, float(value))
                except (TypeError, ValueError):
                    raise ConfigError(f"fault {name}: expected a number, got {value!r}") from None
            else:
                raise ConfigError(f"unknown fault {name!r} (latency_ms, error_rate, drop_rate, hang_rate, hang_seconds, fail_keys)")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fail_keys"] = sorted(self.fail_keys)
        return data


class _Server:
    """HTTP/1.1 keep-alive connection handling, admin endpoints and faults."""

    name = "server"

    def __init__(self, faults: Faults, seed: int = 0) -> None:
        self.faults = faults
        self.requests: Counter[str] = Counter()
        self._rng = random.Random(seed)

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                response = await self._respond(method, target, headers, body)
                if response is None:  # fault: drop the connection, no answer
                    writer.transport.abort()
                    return
                status, out_headers, payload = response
                head_out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
                out_headers.setdefault("Content-Type", "application/json")
                for name, value in out_headers.items():
                    head_out.append(f"{name}: {value}")
                head_out.append(f"Content-Length: {0 if method == 'HEAD' else len(payload)}")
                writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode("latin-1") + (b"" if method == "HEAD" else payload))
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if not writer.is_closing():
                writer.close()

    async def _respond(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response | None:
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/_lab/"):
            return self._admin(method, path, body)
        self.requests[f"{method} {path}"] += 1
        faults = self.faults
        if faults.fail_keys and unquote(path.rsplit("/", 1)[-1]).upper() in faults.fail_keys:
            return 503, {}, b'{"error":"injected failure for this key"}'
        roll = self._rng.random()
        if roll < faults.drop_rate:
            return None
        roll -= faults.drop_rate
        if roll < faults.hang_rate:
            await asyncio.sleep(faults.hang_seconds)
        elif roll - faults.hang_rate < faults.error_rate:
            return (503 if self._rng.random() < 0.5 else 500), {}, b'{"error":"injected"}'
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        return self.handle(method, path, parse_qs(parts.query, keep_blank_values=True), headers)

    def _admin(self, method: str, path: str, body: bytes) -> Response:
        if path == "/_lab/health":
            return 200, {}, json.dumps({"ok": True, "server": self.name}).encode()
        if path == "/_lab/requests":
            return 200, {}, json.dumps(dict(self.requests)).encode()
        if path == "/_lab/reset-stats" and method == "POST":
            self.requests.clear()
            return 200, {}, b"{}"
        if path == "/_lab/faults":
            if method == "POST":
                try:
                    self.faults.update(json.loads(body or b"{}"))
                except (ConfigError, ValueError) as exc:
                    return 400, {}, json.dumps({"error": str(exc)}).encode()
            return 200, {}, json.dumps(self.faults.to_json()).encode()
        return self.admin(method, path)

    def admin(self, method: str, path: str) -> Response:
        return 404, {}, b'{"error":"unknown admin endpoint"}'

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        raise NotImplementedError


class SrebuilddServer(_Server):
    """arc (split check, raw index), arcdata (sizes) and chord (delete) paths of one RING."""

    name = "srebuildd"

    def __init__(self, world: Path, ring: str, faults: Faults, seed: int = 0) -> None:
        super().__init__(faults, seed)
        arc = pq.read_table(world / "lab" / "arc.parquet").to_pydict()
        self.index_bodies: dict[str, bytes | None] = {
            key: (body if split else None) for key, split, body in zip(arc["input_key"], arc["is_split"], arc["body"])
        }
        sizes = pq.read_table(world / "lab" / "arcdata.parquet").to_pydict()
        self.sizes: dict[str, int] = dict(zip(sizes["main_chunk"], sizes["size"]))
        self.deleted: list[str] = []
        self.paths = {f"/rebuild/arc-{ring}": "arc", f"/rebuild/arcdata-{ring}": "arcdata", f"/rebuild/chord-{ring}": "chord"}

    def admin(self, method: str, path: str) -> Response:
        if path == "/_lab/deleted":
            return 200, {}, json.dumps(self.deleted).encode()
        return super().admin(method, path)

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        base, _, key = path.rpartition("/")
        kind = self.paths.get(base)
        key = key.upper()
        if kind is None or len(key) != 40:
            return 400, {}, b'{"error":"unknown path"}'
        if kind == "arc":
            if method not in ("HEAD", "GET"):
                return 405, {}, b""
            if key not in self.index_bodies:
                return 404, {}, b""
            body = self.index_bodies[key]
            split = body is not None
            if method == "HEAD":
                return 200, {"X-Scal-Attr-Is-Split": "true" if split else "false"}, b""
            if headers.get("x-scal-split-policy", "").lower() == "raw" and split:
                return 200, {"Content-Type": "application/octet-stream", "X-Scal-Attr-Is-Split": "true"}, body
            return 200, {"Content-Type": "application/octet-stream", "X-Scal-Attr-Is-Split": "true" if split else "false"}, b"object data"
        if kind == "arcdata":
            if method != "HEAD":
                return 405, {}, b""
            if key not in self.sizes:
                return 404, {}, b""
            return 200, {"X-Scal-Size": str(self.sizes[key])}, b""
        if method != "DELETE":
            return 405, {}, b""
        if key not in self.sizes:
            return 404, {}, b""
        del self.sizes[key]
        self.deleted.append(key)
        return 200, {}, b""


class BucketdServer(_Server):
    """Raft sessions, bucket listings with paging, and object metadata."""

    name = "bucketd"

    def __init__(self, world: Path, faults: Faults, seed: int = 0) -> None:
        super().__init__(faults, seed)
        table = pq.read_table(world / "lab" / "bucketd.parquet").to_pydict()
        self.keys: dict[str, list[str]] = {}
        self.values: dict[str, dict[str, tuple[str, str]]] = {}
        for bucket, key, value, full in zip(table["bucket"], table["key"], table["value"], table["full_value"]):
            self.keys.setdefault(bucket, []).append(key)
            self.values.setdefault(bucket, {})[key] = (value, full)
        for bucket in self.keys:
            self.keys[bucket].sort()
        self.sessions: dict[int, list[str]] = {1: [], 2: []}
        regular = sorted(b for b in self.keys if not b.startswith(MPU_SHADOW_PREFIX) and b != USERS_BUCKET)
        for i, bucket in enumerate(regular):
            session = 1 + i % 2
            self.sessions[session].append(bucket)
            if MPU_SHADOW_PREFIX + bucket in self.keys:
                self.sessions[session].append(MPU_SHADOW_PREFIX + bucket)
        if USERS_BUCKET in self.keys:
            self.sessions[1].append(USERS_BUCKET)

    def handle(self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Response:
        if method != "GET":
            return 405, {}, b""
        parts = path.split("/")
        if len(parts) == 5 and parts[1] == "_" and parts[2] == "raft_sessions" and parts[4] == "bucket":
            try:
                session = int(parts[3])
            except ValueError:
                return 400, {}, b'{"error":"bad raft session"}'
            if session not in self.sessions:
                return 404, {}, b""
            return 200, {}, json.dumps(sorted(self.sessions[session])).encode()
        if len(parts) >= 4 and parts[1] == "default" and parts[2] == "bucket":
            bucket = unquote(parts[3])
            if bucket not in self.keys:
                return 404, {}, b'{"error":"NoSuchBucket"}'
            if len(parts) == 4:
                return self._list(bucket, query)
            key = unquote("/".join(parts[4:]))
            if key not in self.values[bucket]:
                return 404, {}, b'{"error":"ObjNotFound"}'
            return 200, {}, self.values[bucket][key][1].encode()
        return 400, {}, b'{"error":"unknown path"}'

    def _list(self, bucket: str, query: dict[str, list[str]]) -> Response:
        try:
            max_keys = max(1, min(10_000, int(query.get("maxKeys", ["1000"])[0])))
        except ValueError:
            return 400, {}, b'{"error":"bad maxKeys"}'
        marker = query.get("marker", [""])[0]
        prefix = query.get("prefix", [""])[0]
        names = self.keys[bucket]
        start = bisect.bisect_right(names, marker) if marker else 0
        contents = []
        i = start
        while i < len(names) and len(contents) < max_keys:
            if names[i].startswith(prefix):
                contents.append({"key": names[i], "value": self.values[bucket][names[i]][0]})
            i += 1
        # Keys sharing a prefix are contiguous in sorted order.
        truncated = i < len(names) and names[i].startswith(prefix)
        return 200, {}, json.dumps({"Contents": contents, "IsTruncated": truncated}).encode()


async def serve(world: Path, *, ring: str = "DATA", srebuildd_port: int = 0, bucketd_port: int = 0,
                srebuildd_faults: Faults | None = None, bucketd_faults: Faults | None = None, ready=None) -> None:
    """Serve both servers on 127.0.0.1 until cancelled; ``ready(urls)`` is called once listening."""
    srebuildd = SrebuilddServer(world, ring, srebuildd_faults or Faults(), seed=1)
    bucketd = BucketdServer(world, bucketd_faults or Faults(), seed=2)
    servers = []
    urls = {}
    for name, server, port in (("srebuildd", srebuildd, srebuildd_port), ("bucketd", bucketd, bucketd_port)):
        listener = await asyncio.start_server(server.handle_connection, "127.0.0.1", port, backlog=1024, limit=1 << 20)
        servers.append(listener)
        urls[name] = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    if ready is not None:
        ready(urls)
    try:
        await asyncio.gather(*(s.serve_forever() for s in servers))
    finally:
        for listener in servers:
            listener.close()
