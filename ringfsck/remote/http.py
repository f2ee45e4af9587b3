"""Concurrent, rate-limited, retrying HTTP requests over keep-alive connections.

The one rule that matters for safety (DOMAIN.md section 8): a request that
failed (timeout, 5xx, connection error) after every retry is a *failure*, never
an answer. Callers get :class:`RequestFailed` and must record the item as
unknown, never as "not found".

Usage::

    async def head_one(client, key):
        response = await send(client, "HEAD", f"/rebuild/arc-DATA/{key}", policy=policy, limiter=limiter)
        return response.status_code

    run_batched(keys, head_one, policy=policy, base_url=url, on_batch=save)
"""

from __future__ import annotations

import asyncio
import base64
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, overload
from urllib.parse import quote, unquote_to_bytes

import httpcore
import httpx

from ringfsck.errors import RemoteError
from ringfsck.redact import redact

K = TypeVar("K")
R = TypeVar("R")

RETRYABLE_STATUS = frozenset({500, 502, 503, 504, 429})
# httpcore's errors as well as httpx's: Endpoint talks to httpcore directly.
TRANSIENT_ERRORS = (httpx.TransportError, httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError)
_KEEPALIVE_SECONDS = 5.0  # httpx's default: an idle connection older than this is replaced, not trusted
# What httpx sent before Endpoint bypassed it, so servers' logs see the same client. No
# Accept-Encoding: bodies (split indexes) must arrive as stored, never compressed.
_USER_AGENT = f"python-httpx/{httpx.__version__}".encode()
_SAFE = "/%:@!$&'()*+,;=?~"  # left as they are in a request target; the rest is percent-encoded


@dataclass(frozen=True)
class HttpPolicy:
    """How hard to push a server and how long to insist."""

    concurrency: int = 64
    timeout: float = 30.0
    retries: int = 5  # attempts after the first
    backoff_base: float = 0.1  # seconds; doubled per attempt, with full jitter
    backoff_max: float = 10.0
    max_rps: float | None = None  # ceiling on requests per second, retries included

    @classmethod
    def from_settings(cls, settings, **overrides) -> "HttpPolicy":  # noqa: ANN001 - avoids a config import cycle
        values = {
            "concurrency": settings.concurrency,
            "timeout": settings.timeout,
            "retries": settings.retries,
            "max_rps": settings.max_rps,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class RequestFailed(Exception):
    """Every attempt failed (5xx, timeout or connection error): the answer is unknown."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class RateLimiter:
    """Spaces request starts evenly so no more than ``rate`` start per second."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._interval
        if start > now:
            await asyncio.sleep(start - now)


def _describe(exc: Exception) -> str:
    name = type(exc).__name__
    text = str(exc)
    return f"{name}: {text}" if text else name


@overload
async def send(client: Endpoint, method: str, url: str, *, policy: HttpPolicy, limiter: RateLimiter | None = None,
               headers: dict[str, str] | None = None) -> Reply: ...
@overload
async def send(client: httpx.AsyncClient, method: str, url: str, *, policy: HttpPolicy, limiter: RateLimiter | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response: ...
async def send(
    client: httpx.AsyncClient | Endpoint,
    method: str,
    url: str,
    *,
    policy: HttpPolicy,
    limiter: RateLimiter | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response | Reply:
    """Send one request, retrying 5xx/429, timeouts and connection errors with backoff.

    Returns the first response that is not retryable (any 2xx/3xx/4xx); raises
    RequestFailed when the retries are exhausted. The body is read (AsyncClient's
    ``request`` reads it too).
    """
    attempts = 0
    last = ""
    while True:
        attempts += 1
        if limiter is not None:
            await limiter.wait()
        try:
            response = await client.request(method, url, headers=headers)
            if response.status_code not in RETRYABLE_STATUS:
                return response
            last = f"HTTP {response.status_code}"
        except TRANSIENT_ERRORS as exc:
            last = _describe(exc)
        if attempts > policy.retries:
            raise RequestFailed(f"{method} {url}: {last} (after {attempts} attempts)", attempts)
        delay = min(policy.backoff_max, policy.backoff_base * 2 ** (attempts - 1))
        await asyncio.sleep(random.uniform(0, delay))


def make_client(base_url: str, policy: HttpPolicy, *, verify: bool | str | ssl.SSLContext = True, connections: int = 1) -> httpx.AsyncClient:
    """A keep-alive client with a small pool.

    Each worker gets its own: one httpx pool shared by many connections spends
    more and more time on its own bookkeeping (measured here: 64 connections in
    one pool gave ~450 requests/s, 64 one-connection clients ~2,600).
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, timeout=policy.timeout, limits=limits, verify=verify)


class Reply(NamedTuple):
    """An answer read in full: what per-key jobs look at, for a ninth of an httpx.Response's cost."""

    status_code: int
    headers: httpx.Headers
    content: bytes


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """One asyncio connection as httpcore sees it.

    httpcore's own backend goes through anyio, whose cancel scopes and stream
    wrappers cost about 30 % of a request's CPU here; asyncio's streams and
    timeouts do the same job directly.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:  # before OSError: TimeoutError is one
            raise httpcore.ReadTimeout(f"no answer within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ReadError(_describe(exc)) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if self._writer.transport.get_write_buffer_size():  # only a full socket buffer makes us wait
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"could not send within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.WriteError(_describe(exc)) from exc

    async def aclose(self) -> None:
        self._writer.close()

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of an idle keep-alive connection: anything to read means the server hung up.
            return self._reader.at_eof() or self._reader.exception() is not None
        return self._writer.get_extra_info({"client_addr": "sockname", "server_addr": "peername"}.get(info, info))


class Endpoint:
    """One keep-alive HTTP/1.1 connection to a base URL, at httpcore's level.

    Per-key jobs send tens of thousands of tiny requests, and every layer above the
    connection costs CPU that the requests in flight wait for. Client CPU per HEAD
    at 64 in flight, measured here: httpx's transport ~310 us, httpcore's pool
    ~240, its connection over anyio ~180, this ~125. A closed or expired
    connection is replaced before a request; one that breaks during a request
    fails it, and ``send`` retries.
    """

    def __init__(self, base_url: str, policy: HttpPolicy, *, ssl_context: ssl.SSLContext | None = None) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https"):
            raise httpx.InvalidURL(f"unsupported scheme {url.scheme!r}")
        self._scheme = url.scheme.encode()
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._prefix = url.raw_path.rstrip(b"/")
        self._origin = httpcore.Origin(self._scheme, url.raw_host, self._port)
        self._ssl = (ssl_context or httpx.create_ssl_context()) if url.scheme == "https" else None
        self._headers = [(b"Host", url.netloc), (b"User-Agent", _USER_AGENT)]
        if url.userinfo:  # http://user:pass@host: basic auth, as httpx (bucketd's client) does
            self._headers.append((b"Authorization", b"Basic " + base64.b64encode(unquote_to_bytes(url.userinfo))))
        self._timeout = policy.timeout
        self._extensions = {"timeout": httpx.Timeout(policy.timeout).as_dict()}
        self._connection: httpcore.AsyncHTTP11Connection | None = None

    async def _connect(self) -> httpcore.AsyncHTTP11Connection:
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._ssl, server_hostname=self._host if self._ssl else None)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection within {self._timeout} s") from exc
        except OSError as exc:  # ssl.SSLError included
            raise httpcore.ConnectError(_describe(exc)) from exc
        return httpcore.AsyncHTTP11Connection(self._origin, _AsyncioStream(reader, writer), keepalive_expiry=_KEEPALIVE_SECONDS)

    async def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> Reply:
        connection = self._connection
        if connection is None or connection.is_closed() or connection.has_expired():
            if connection is not None:
                self._connection = None
                await connection.aclose()
            connection = self._connection = await self._connect()
        target = self._prefix + quote(url, safe=_SAFE).encode("ascii")
        extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()] if headers else []
        request = httpcore.Request(method.encode("ascii"), httpcore.URL(scheme=self._scheme, host=self._origin.host, port=self._port, target=target),
                                   headers=self._headers + extra, extensions=self._extensions)
        response = await connection.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return Reply(response.status, httpx.Headers(response.headers), content)

    async def aclose(self) -> None:
        if self._connection is not None:
            await self._connection.aclose()


@dataclass
class Result(Generic[K, R]):
    """The outcome of one item: ``value`` or ``failure`` (never both)."""

    item: K
    value: R | None = None
    failure: RequestFailed | None = None


async def _run(
    items: Iterable[K],
    worker: Callable[[Endpoint, K], Awaitable[R]],
    *,
    policy: HttpPolicy,
    clients: list[Endpoint],
    on_batch: Callable[[list[Result[K, R]]], None],
    batch_size: int,
    flush_seconds: float,
    on_result: Callable[[Result[K, R]], None] | None = None,
) -> None:
    queue: asyncio.Queue = asyncio.Queue(maxsize=policy.concurrency * 4)
    done: list[Result[K, R]] = []
    last_flush = time.monotonic()
    stop = object()

    def flush() -> None:
        nonlocal last_flush
        if done:
            batch = done.copy()
            done.clear()
            on_batch(batch)  # synchronous on purpose: callers persist before we go on
        last_flush = time.monotonic()

    async def consume(client: Endpoint) -> None:
        while True:
            item = await queue.get()
            if item is stop:
                return
            try:
                result = Result(item, value=await worker(client, item))
            except RequestFailed as failure:
                result = Result(item, failure=failure)
            if on_result is not None:
                on_result(result)
            done.append(result)
            if len(done) >= batch_size or time.monotonic() - last_flush >= flush_seconds:
                flush()

    workers = [asyncio.create_task(consume(client)) for client in clients]
    try:
        for item in items:
            await queue.put(item)
            # Surface a crashed worker at once instead of blocking on a full queue.
            for task in workers:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        for _ in workers:
            await queue.put(stop)
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        flush()  # answers received before a stop (Ctrl-C, SIGTERM, an error) are kept too


def run_batched(
    items: Iterable[K],
    worker: Callable[[Endpoint, K], Awaitable[R]],
    *,
    policy: HttpPolicy,
    base_url: str,
    on_batch: Callable[[list[Result[K, R]]], None],
    batch_size: int = 1000,
    flush_seconds: float = 2.0,
    verify: bool | str = True,
    on_result: Callable[[Result[K, R]], None] | None = None,
) -> None:
    """Run ``worker`` over ``items`` with the policy's concurrency; hand results to ``on_batch``.

    ``on_batch`` runs in the caller's thread between requests, so what it has
    persisted when it returns is durable before more results are counted. An
    item is in exactly one batch, unless the process dies first. ``on_result``,
    if given, sees each result the moment it arrives (e.g. to journal it).
    """

    async def main() -> None:
        # One TLS context for all clients: building one per client costs ~20 ms each.
        context = httpx.create_ssl_context(verify=verify) if httpx.URL(base_url).scheme == "https" else None
        clients = [Endpoint(base_url, policy, ssl_context=context) for _ in range(policy.concurrency)]
        try:
            await _run(items, worker, policy=policy, clients=clients, on_batch=on_batch, batch_size=batch_size,
                       flush_seconds=flush_seconds, on_result=on_result)
        finally:
            await asyncio.gather(*(client.aclose() for client in clients))

    try:
        asyncio.run(main())
    except httpx.InvalidURL as exc:
        raise RemoteError(f"{redact(base_url)}: invalid URL: {redact(str(exc))}") from None
