"""Concurrent, rate-limited, retrying HTTP requests over keep-alive connections.

The one rule that matters for safety (docs/domain.md section 8): a request that
failed (timeout, 5xx, connection error) after every retry is a *failure*, never
an answer. Callers get :class:`RequestFailed` and must record the item as
unknown, never as "not found".

Usage::

    async def head_one(client, key):
        response = await send(client, "HEAD", f"/rebuild/arc-DATA/{key}", policy=policy, limiter=limiter)
        return response.status_code

    run_batched(keys, head_one, policy=policy, base_url=url, on_batch=save)

Several endpoints (srebuildd on every node): pass an :class:`EndpointPool` as
``base_url``. Keys go to the healthy endpoint with the shortest queue, each
endpoint has its own connections and ``max_rps`` ceiling (``max_rps_total``
caps them all), a key that failed on one endpoint is asked again on another,
and an endpoint that fails its preflight or ``set_aside_after`` keys in a row
is set aside: its queued keys go to the others. Only when every healthy
endpoint failed a key is it a failure; it is never an answer.
"""

from __future__ import annotations

import asyncio
import base64
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, overload
from urllib.parse import quote, unquote_to_bytes

import httpcore
import httpx

from ringfsck import __version__
from ringfsck.errors import RemoteError
from ringfsck.redact import redact

if TYPE_CHECKING:
    from ringfsck.config import Settings

K = TypeVar("K")
R = TypeVar("R")

RETRYABLE_STATUS = frozenset({500, 502, 503, 504, 429})
# httpcore's errors as well as httpx's: Endpoint talks to httpcore directly.
TRANSIENT_ERRORS = (httpx.TransportError, httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError)
KEEPALIVE_SECONDS = 5.0  # httpx's default: an idle connection older than this is replaced, not trusted
# Servers' logs name the tool that sent the request. No Accept-Encoding: bodies (split
# indexes) must arrive as stored, never compressed.
USER_AGENT = f"ringfsck/{__version__}"
REQUEST_TARGET_SAFE = "/%:@!$&'()*+,;=?~"  # left as they are in a request target; the rest is percent-encoded


@dataclass(frozen=True)
class HttpPolicy:
    """How hard to push a server and how long to insist."""

    concurrency: int = 64
    timeout: float = 30.0
    retries: int = 5  # attempts after the first
    backoff_base: float = 0.1  # seconds; doubled per attempt, with full jitter
    backoff_max: float = 10.0
    max_rps: float | None = None  # ceiling on requests per second per endpoint, retries included
    max_rps_total: float | None = None  # ceiling over all the endpoints of a pool
    set_aside_after: int = 3  # keys failed in a row (after their retries) that set an endpoint aside

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> HttpPolicy:
        values: dict[str, Any] = {
            "concurrency": settings.concurrency,
            "timeout": settings.timeout,
            "retries": settings.retries,
            "max_rps": settings.max_rps,
            "max_rps_total": settings.max_rps_total,
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
    """Lets no more than ``rate`` requests start per second, measured when they really start.

    Waiters queue in order and a ticker lets one through per interval, timed from when
    the previous one was let through: after the event loop stalls (a batch written to
    disk), the queue resumes at the rate instead of catching up in a burst, as slots
    booked in advance would.
    """

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._last = float("-inf")  # time.monotonic() of the last start let through
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ticker: asyncio.Task[None] | None = None

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        if not self._waiters and now - self._last >= self._interval:
            self._last = now
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        if self._ticker is None or self._ticker.done() or self._ticker.get_loop() is not loop:
            self._ticker = loop.create_task(self._tick())
        await future

    async def _tick(self) -> None:
        while self._waiters:
            delay = self._last + self._interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            future = self._waiters.popleft()
            if not future.done():  # a cancelled waiter gives its turn away
                self._last = time.monotonic()
                future.set_result(None)


def describe(exc: Exception) -> str:
    name = type(exc).__name__
    text = str(exc)
    return f"{name}: {text}" if text else name


@overload
async def send(
    client: Endpoint,
    method: str,
    url: str,
    *,
    policy: HttpPolicy,
    limiter: RateLimiter | None = None,
    headers: dict[str, str] | None = None,
) -> Reply: ...
@overload
async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: HttpPolicy,
    limiter: RateLimiter | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response: ...
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
        if isinstance(client, Endpoint):
            for ceiling in client.limiters:
                await ceiling.wait()
        try:
            response = await client.request(method, url, headers=headers)
            if response.status_code not in RETRYABLE_STATUS:
                return response
            last = f"HTTP {response.status_code}"
        except TRANSIENT_ERRORS as exc:
            last = describe(exc)
        if attempts > policy.retries:
            raise RequestFailed(f"{method} {url}: {last} (after {attempts} attempts)", attempts)
        delay = min(policy.backoff_max, policy.backoff_base * 2 ** (attempts - 1))
        await asyncio.sleep(random.uniform(0, delay))


def make_client(
    base_url: str, policy: HttpPolicy, *, verify: bool | str | ssl.SSLContext = True, connections: int = 1
) -> httpx.AsyncClient:
    """An httpx keep-alive client with a pool of ``connections``, shared by the tasks that use it.

    For requests whose bodies are worth httpx's convenience (bucketd listings). Per-key
    jobs use :class:`Endpoint` instead: an httpx pool serving many connections spends
    more and more CPU on its own bookkeeping (measured here: 64 connections in one pool
    gave ~450 requests/s, 64 one-connection clients ~2,600).
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, timeout=policy.timeout, limits=limits, verify=verify, headers={"User-Agent": USER_AGENT})


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
            raise httpcore.ReadError(describe(exc)) from exc

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
            raise httpcore.WriteError(describe(exc)) from exc

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

    def __init__(
        self,
        base_url: str,
        policy: HttpPolicy,
        *,
        ssl_context: ssl.SSLContext | None = None,
        stats: EndpointStats | None = None,
        limiters: tuple[RateLimiter, ...] = (),
    ) -> None:
        self.stats = stats  # where its requests are counted, shared by the endpoint's connections
        self.limiters = limiters  # waited on before each attempt, retries included
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https"):
            raise httpx.InvalidURL(f"unsupported scheme {url.scheme!r}")
        self._scheme = url.scheme.encode()
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._prefix = url.raw_path.rstrip(b"/")
        self._origin = httpcore.Origin(self._scheme, url.raw_host, self._port)
        self._ssl = (ssl_context or httpx.create_ssl_context()) if url.scheme == "https" else None
        self._headers = [(b"Host", url.netloc), (b"User-Agent", USER_AGENT.encode())]
        if url.userinfo:  # http://user:pass@host: basic auth, as httpx (bucketd's client) does
            self._headers.append((b"Authorization", b"Basic " + base64.b64encode(unquote_to_bytes(url.userinfo))))
        self._timeout = policy.timeout
        self._extensions = {"timeout": httpx.Timeout(policy.timeout).as_dict()}
        self._connection: httpcore.AsyncHTTP11Connection | None = None

    async def _connect(self) -> httpcore.AsyncHTTP11Connection:
        try:
            async with asyncio.timeout(self._timeout):
                reader, writer = await asyncio.open_connection(
                    self._host, self._port, ssl=self._ssl, server_hostname=self._host if self._ssl else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection within {self._timeout} s") from exc
        except OSError as exc:  # ssl.SSLError included
            raise httpcore.ConnectError(describe(exc)) from exc
        return httpcore.AsyncHTTP11Connection(self._origin, _AsyncioStream(reader, writer), keepalive_expiry=KEEPALIVE_SECONDS)

    async def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> Reply:
        if self.stats is not None:
            self.stats.requests += 1
        connection = self._connection
        if connection is None or connection.is_closed() or connection.has_expired():
            if connection is not None:
                self._connection = None
                await connection.aclose()
            connection = self._connection = await self._connect()
        target = self._prefix + quote(url, safe=REQUEST_TARGET_SAFE).encode("ascii")
        extra = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()] if headers else []
        request = httpcore.Request(
            method.encode("ascii"),
            httpcore.URL(scheme=self._scheme, host=self._origin.host, port=self._port, target=target),
            headers=self._headers + extra,
            extensions=self._extensions,
        )
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


def preflight(base_url: str, policy: HttpPolicy, service: str = "srebuildd") -> int:
    """Fail at once, in one line, when the service cannot be reached at all; else the requests it took.

    Any HTTP answer (even 404) proves it is there; without this, every key would
    spend all its retries before the run could say the endpoint is wrong.
    """
    last = ""
    for attempt in range(1, 4):
        try:
            httpx.head(f"{base_url}/", timeout=min(policy.timeout, 10), headers={"User-Agent": USER_AGENT})
            return attempt
        except httpx.TransportError as exc:
            last = describe(exc)
        time.sleep(0.2)
    raise RemoteError(f"cannot reach {service} at {redact(base_url)}: {redact(last)}")


@dataclass
class EndpointStats:
    """One endpoint's figures for a run: requests sent (retries included), keys failed there, why set aside."""

    url: str
    requests: int = 0
    failures: int = 0  # keys whose every attempt failed on this endpoint (each then tried elsewhere if possible)
    set_aside: str | None = None
    failing_in_a_row: int = field(default=0, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"url": redact(self.url), "requests": self.requests, "failures": self.failures, "set_aside": self.set_aside}

    def describe(self) -> str:
        aside = f", set aside ({self.set_aside})" if self.set_aside else ""
        return f"{redact(self.url)}: {self.requests:,} requests, {self.failures:,} keys failed{aside}"


class EndpointPool:
    """The endpoints of one service that share a job: their health, ceilings and figures.

    Made once per command and passed to every ``run_batched`` of it, so that an
    endpoint set aside stays aside and its figures and rate ceilings span the run.
    """

    def __init__(self, urls: Sequence[str], policy: HttpPolicy, service: str = "srebuildd") -> None:
        if not urls:
            raise ValueError("an endpoint pool needs at least one URL")
        self.service = service
        self.policy = policy
        self.stats = [EndpointStats(url.rstrip("/")) for url in dict.fromkeys(urls)]
        self._total = RateLimiter(policy.max_rps_total)
        self._ceilings = {s.url: RateLimiter(policy.max_rps) for s in self.stats}

    @property
    def healthy(self) -> list[EndpointStats]:
        return [s for s in self.stats if s.set_aside is None]

    def limiters(self, stats: EndpointStats) -> tuple[RateLimiter, ...]:
        return (self._ceilings[stats.url], self._total)

    def preflight(self) -> None:
        """Set aside each endpoint that cannot be reached; RemoteError when none can."""
        for stats in self.healthy:
            try:
                stats.requests += preflight(stats.url, self.policy, self.service)
            except RemoteError as exc:
                stats.set_aside = f"preflight: {exc}"
        if not self.healthy:
            raise RemoteError("; ".join(s.set_aside or "" for s in self.stats).replace("preflight: ", ""))

    def record(self, stats: EndpointStats, failed: bool) -> None:
        """Count one key's outcome on an endpoint; set it aside after too many failures in a row.

        The last healthy endpoint is never set aside for failures: its keys have nowhere
        else to go, so they keep being asked (and fail, as one endpoint's run always did).
        """
        if not failed:
            stats.failing_in_a_row = 0
            return
        stats.failures += 1
        stats.failing_in_a_row += 1
        if stats.failing_in_a_row >= self.policy.set_aside_after and stats.set_aside is None and len(self.healthy) > 1:
            stats.set_aside = f"{stats.failing_in_a_row} keys failed in a row"

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.stats]

    def __str__(self) -> str:
        return ", ".join(redact(s.url) for s in self.stats)


@dataclass(eq=False)
class _Pending(Generic[K]):
    item: K
    tried: set[str] = field(default_factory=set)
    failure: RequestFailed | None = None


async def _run(
    items: Iterable[K],
    worker: Callable[[Endpoint, K], Awaitable[R]],
    *,
    policy: HttpPolicy,
    pool: EndpointPool,
    connections: dict[str, list[Endpoint]],
    on_batch: Callable[[list[Result[K, R]]], None],
    batch_size: int,
    flush_seconds: float,
    on_result: Callable[[Result[K, R]], None] | None = None,
) -> None:
    queues: dict[str, asyncio.Queue] = {url: asyncio.Queue() for url in connections}
    # Keys taken from ``items`` and not finished yet: bounds memory and the queues.
    room = asyncio.Semaphore(policy.concurrency * 4 * len(connections))
    unfinished = 0
    all_finished = asyncio.Event()
    crashed: list[BaseException] = []
    done: list[Result[K, R]] = []
    last_flush = time.monotonic()
    stop = object()
    turn = 0

    def flush() -> None:
        nonlocal last_flush
        if done:
            batch = done.copy()
            done.clear()
            on_batch(batch)  # synchronous on purpose: callers persist before we go on
        last_flush = time.monotonic()

    def finish(result: Result[K, R]) -> None:
        nonlocal unfinished
        if on_result is not None:
            on_result(result)
        done.append(result)
        if len(done) >= batch_size or time.monotonic() - last_flush >= flush_seconds:
            flush()
        unfinished -= 1
        room.release()
        if not unfinished:
            all_finished.set()

    def route(pending: _Pending[K]) -> None:
        """To the healthy endpoint not tried yet with the shortest queue; a failure when none is left."""
        nonlocal turn
        candidates = [s.url for s in pool.healthy if s.url not in pending.tried and s.url in queues]
        if not candidates:
            failure = pending.failure or RequestFailed(f"no {pool.service} endpoint left to ask (all set aside)", 0)
            finish(Result(pending.item, failure=failure))
            return
        turn += 1  # rotates the ties, so that idle endpoints share the keys evenly
        url = min(candidates, key=lambda u: (queues[u].qsize(), (candidates.index(u) - turn) % len(candidates)))
        queues[url].put_nowait(pending)

    async def consume(stats: EndpointStats, client: Endpoint) -> None:
        queue = queues[stats.url]
        while True:
            pending = await queue.get()
            if pending is stop:
                return
            if stats.set_aside is not None:  # queued before it was set aside: someone else asks
                route(pending)
                continue
            try:
                value = await worker(client, pending.item)
            except RequestFailed as failure:
                pool.record(stats, failed=True)
                pending.tried.add(stats.url)
                pending.failure = failure
                if stats.set_aside is not None:
                    while not queue.empty():  # hand its queue over at once, not one key per connection
                        queued = queue.get_nowait()
                        if queued is not stop:
                            route(queued)
                route(pending)
                continue
            except BaseException as exc:  # a bug in the worker: surface it instead of hanging
                crashed.append(exc)
                all_finished.set()
                room.release()
                raise
            pool.record(stats, failed=False)
            finish(Result(pending.item, value=value))

    stats_of = {s.url: s for s in pool.stats}
    workers = [asyncio.create_task(consume(stats_of[url], client)) for url, clients in connections.items() for client in clients]
    try:
        for item in items:
            await room.acquire()
            if crashed:
                break
            unfinished += 1
            all_finished.clear()
            route(_Pending(item))
        if unfinished and not crashed:
            await all_finished.wait()
        if crashed:
            raise crashed[0]
        for queue in queues.values():
            for _ in range(len(workers)):
                queue.put_nowait(stop)
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
    base_url: str | EndpointPool,
    on_batch: Callable[[list[Result[K, R]]], None],
    batch_size: int = 1000,
    flush_seconds: float = 2.0,
    verify: bool | str = True,
    on_result: Callable[[Result[K, R]], None] | None = None,
) -> None:
    """Run ``worker`` over ``items`` with the policy's concurrency per endpoint; hand results to ``on_batch``.

    ``base_url`` is one URL or a pool of endpoints (see the module's docstring).
    ``on_batch`` runs in the caller's thread between requests, so what it has
    persisted when it returns is durable before more results are counted. An
    item is in exactly one batch, unless the process dies first. ``on_result``,
    if given, sees each result the moment it arrives (e.g. to journal it).
    """
    pool = base_url if isinstance(base_url, EndpointPool) else EndpointPool([base_url], policy)

    async def main() -> None:
        # One TLS context for all clients: building one per client costs ~20 ms each.
        context = httpx.create_ssl_context(verify=verify) if any(s.url.startswith("https:") for s in pool.stats) else None
        connections = {
            s.url: [Endpoint(s.url, policy, ssl_context=context, stats=s, limiters=pool.limiters(s)) for _ in range(policy.concurrency)]
            for s in pool.healthy
        }
        try:
            await _run(
                items,
                worker,
                policy=policy,
                pool=pool,
                connections=connections,
                on_batch=on_batch,
                batch_size=batch_size,
                flush_seconds=flush_seconds,
                on_result=on_result,
            )
        finally:
            await asyncio.gather(*(client.aclose() for clients in connections.values() for client in clients))

    try:
        asyncio.run(main())
    except httpx.InvalidURL as exc:
        raise RemoteError(f"{redact(str(pool))}: invalid URL: {redact(str(exc))}") from None
