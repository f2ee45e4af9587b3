"""``ingest ring``: list every node of a RING natively, straight into the store (DOMAIN.md section 9).

What the reference's ``listkey.py`` does with Spark, without it: the supervisor names the nodes
of the ring, each node streams its ``listkeys`` (chunks older than ``mtime_max`` = listing start
− ``retention`` only, so in-flight writes are never listed), and the rows go through the
listkeys block parser (``ringfsck.ingest.listkeys``: same validation, same rejects, same packed
Parquet parts), a fixed-size block at a time: no CSV on disk, memory flat whatever a node holds.

Each node is one source (kind ``listkeys``, format ``ring-node``), its part published only when
its stream ended cleanly. Before a node is streamed, its source is recorded as unfinished, so a
listing killed at any moment leaves every node it did not finish making analyses incomplete; a
node that cannot be reached, refuses the login or whose stream breaks off is recorded as failed
with the reason (its partial rows never published), which does the same until it is listed. A
node fully listed is not listed again unless asked (``refresh``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
import xxhash

from ringfsck.errors import ConfigError, RemoteError
from ringfsck.ingest._registry import ParseContext, RejectWriter
from ringfsck.ingest.inputs import READ_BLOCK, UTF8_BOM
from ringfsck.ingest.listkeys import parse_listkeys
from ringfsck.progress import bar
from ringfsck.remote.http import HttpPolicy
from ringfsck.remote.supervisor import Credentials, NodeClient, NodeFailed, RingNode, node_from_url, public_url, ring_nodes, split_userinfo, tls_verify
from ringfsck.store import Source, Store, iso, utc_now

RING_FORMAT = "ring-node"
# The reference's lower bound (listkey.py): every chunk written since 1973.
MTIME_MIN = 123456789
MAX_CONCURRENCY = 16  # nodes listed at once, at most: each is a stream, a parser and a Parquet writer
# A stream that breaks off is listed again from the start once (its partial rows are dropped).
_STREAM_ATTEMPTS = 2
_LISTED_TABLES = ("listkeys", "rejects")


@dataclass
class NodeOutcome:
    name: str
    address: str
    status: str  # listed | kept (listed before) | failed
    rows: int = 0
    rejected: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class RingReport:
    ring: str
    mtime_max: int
    nodes: list[NodeOutcome] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(n.rows for n in self.nodes)

    @property
    def failed(self) -> list[NodeOutcome]:
        return [n for n in self.nodes if n.status == "failed"]


def node_source_id(ring: str, node: RingNode) -> str:
    """A node's source: its ring, name and address (the same node reached again is replaced, never added)."""
    return hashlib.sha256(f"ring\0{ring}\0{node.name}\0{node.address}".encode()).hexdigest()[:16]


def node_location(ring: str, node: RingNode) -> str:
    """How a node's listing is named (rejects, the listkeys ``source`` column, messages): no credentials."""
    return f"ring {ring} node {node.name} ({public_url(node.admin_url)})"


def sup_credentials(settings, urls: list[str]) -> Credentials:  # noqa: ANN001 - Settings, imported lazily by the CLI
    """The supervisor's credentials: ``sup.login``/``sup.password``, else a URL's userinfo."""
    sup = settings.sup
    if sup.login and sup.password is not None:
        return Credentials(sup.login, sup.password)
    for url in urls:
        _, given = split_userinfo(url)
        if given is not None:
            return given
    raise ConfigError("the supervisor's credentials are not set: sup.login and sup.password in the config, "
                      "RINGFSCK_SUP_LOGIN and RINGFSCK_SUP_PASSWORD, or --login and --password-file")


class _BodyBlocks:
    """A node's response body as the blocks the listkeys parser reads (``OpenedInput``'s interface)."""

    def __init__(self, response: httpx.Response, on_lines: Callable[[int], object]) -> None:
        self._chunks: Iterator[bytes] = response.iter_bytes()
        self._pending = b""
        self._on_lines = on_lines
        self.digest = xxhash.xxh3_128()
        self.received = 0

    def _next(self) -> bytes | None:
        if self._pending:
            chunk, self._pending = self._pending, b""
            return chunk
        chunk = next(self._chunks, None)
        if chunk is not None:
            self.digest.update(chunk)
            self.received += len(chunk)
            self._on_lines(chunk.count(b"\n"))
        return chunk

    def skip_utf8_bom(self) -> None:
        head = b""
        while len(head) < len(UTF8_BOM) and (chunk := self._next()) is not None:
            head += chunk
        self._pending = head.removeprefix(UTF8_BOM)

    def read_after(self, head: bytes, size: int | None = None) -> bytearray:
        buffer = bytearray(head)
        want = len(head) + (size or READ_BLOCK)
        while len(buffer) < want and (chunk := self._next()) is not None:
            buffer += chunk
        return buffer


class _Listing:
    """One ``ingest ring`` run: nodes listed on a thread pool, sources recorded under a lock."""

    def __init__(self, store: Store, ring: str, credentials: Credentials, verify, policy: HttpPolicy, mtime_max: int,  # noqa: ANN001
                 progress, on_node: Callable[[NodeOutcome], None]) -> None:  # noqa: ANN001
        self.store, self.ring, self.credentials, self.verify, self.policy = store, ring, credentials, verify, policy
        self.mtime_max, self.progress, self.on_node = mtime_max, progress, on_node
        self._lock = threading.Lock()

    def _save(self, source: Source) -> None:
        with self._lock:  # sources.json is rewritten whole
            self.store.save_source(source)

    def _source(self, sid: str, node: RingNode, started: datetime, **values) -> Source:  # noqa: ANN003
        details = {"ring": self.ring, "node": node.name, "address": node.address, "admin_url": public_url(node.admin_url),
                   "chord_port": node.chord_port, "mtime_min": MTIME_MIN, "mtime_max": self.mtime_max}
        values.setdefault("details", {})
        values["details"] = details | values["details"]
        values.setdefault("size", 0)
        values.setdefault("checksum", "unfinished")
        # Nothing written after mtime_max is listed: evidence of age for the deleter's guard.
        mtime_max = iso(datetime.fromtimestamp(self.mtime_max, timezone.utc))
        return Source(id=sid, kind="listkeys", location=node_location(self.ring, node), format=RING_FORMAT,
                      captured_at=iso(started), ingested_at=iso(utc_now()), mtime_max=mtime_max, **values)

    def list_node(self, node: RingNode) -> NodeOutcome:
        sid, location = node_source_id(self.ring, node), node_location(self.ring, node)
        clock = time.perf_counter()
        self._remove_stale_temporaries(sid)
        # On record before the first byte: a listing killed now leaves this node unfinished, never unknown.
        self._save(self._source(sid, node, utc_now(), incomplete=[
            f"the listing of {location} is unfinished (rerun 'ringfsck ingest ring' to list it)"]))
        client = NodeClient(node, self.credentials, verify=self.verify, policy=self.policy)
        reason = ""
        for _ in range(_STREAM_ATTEMPTS):
            started = utc_now()
            body: _BodyBlocks | None = None
            rejects = RejectWriter(self.store, sid, location)
            try:
                with client.listkeys(self.ring, MTIME_MIN, self.mtime_max) as response:
                    body = _BodyBlocks(response, self.progress.update)
                    result = parse_listkeys(body, ParseContext(self.store, sid, location, rejects, True, lambda: None))
            except NodeFailed as exc:
                rejects.abort()
                reason = exc.reason
                break  # connection errors and 5xx were retried already
            except (httpx.TransportError, httpx.StreamError) as exc:
                rejects.abort()
                received = body.received if body is not None else 0
                reason = self.credentials.redact(f"{client.where}: the listing broke off after {received:,} bytes ({type(exc).__name__}: {exc})")
                continue
            except BaseException:
                rejects.abort()
                raise
            rejects.commit()
            seconds = round(time.perf_counter() - clock, 3)
            self._save(self._source(
                sid, node, started, size=body.received, checksum=f"xxh3-128:{body.digest.hexdigest()}", rows=result.rows,
                rejected=rejects.count, skipped=result.skipped, warnings=result.warnings,
                details={"finished_at": iso(utc_now()), "seconds": seconds}))
            return NodeOutcome(node.name, node.address, "listed", result.rows, rejects.count, seconds)
        # Failed: whatever an earlier listing of this node left goes too (the store says: not listed).
        for table in _LISTED_TABLES:
            self.store.remove_part(table, sid)
        reason = reason.rstrip(".")
        self._save(self._source(sid, node, utc_now(), checksum="failed", incomplete=[
            f"{reason}: its chunks are not in the listing, so gaps and debris cannot be trusted (rerun 'ringfsck ingest ring' to list it)"]))
        return NodeOutcome(node.name, node.address, "failed", seconds=round(time.perf_counter() - clock, 3), error=reason)

    def _remove_stale_temporaries(self, sid: str) -> None:
        """Half-written parts of a listing killed before (never published)."""
        for table in _LISTED_TABLES:
            for stale in self.store.table_dir(table).glob(f".{sid}.parquet.*.tmp"):
                stale.unlink(missing_ok=True)


def ingest_ring(
    store: Store,
    *,
    supervisor: str | None = None,
    node_urls: list[str] | tuple[str, ...] = (),
    credentials: Credentials,
    policy: HttpPolicy | None = None,
    concurrency: int | None = None,
    refresh: bool = False,
    on_node: Callable[[NodeOutcome], None] | None = None,
) -> RingReport:
    """List the nodes of the store's ring (``settings.ring``) from ``supervisor``, or the nodes at ``node_urls``.

    Nodes already listed are kept unless ``refresh``. ``on_node`` sees each node's outcome as it
    ends. Raises RemoteError naming the failed nodes once every node is settled (each is recorded).
    """
    settings = store.settings
    ring, policy = settings.ring, policy or HttpPolicy.from_settings(settings)
    if not supervisor and not node_urls:
        raise ConfigError("name the supervisor (--supervisor, or sup.url in the config) or the nodes (--node URL)")
    verify = tls_verify(settings.sup.ca_bundle, settings.sup.verify_tls)
    started = utc_now()
    # Keys written after this are never listed: in-flight writes stay out (the reference's retention).
    mtime_max = int(started.timestamp()) - settings.retention
    if supervisor:
        nodes = ring_nodes(split_userinfo(supervisor)[0], ring, credentials, verify=verify, policy=policy)
    else:
        nodes = [node_from_url(url)[0] for url in node_urls]
    if len({node_source_id(ring, n) for n in nodes}) != len(nodes):
        raise ConfigError(f"ring {ring}: the same node is named twice")
    known = {s.id: s for s in store.sources()}
    report = RingReport(ring, mtime_max)
    pending = []
    for node in nodes:
        prior = known.get(node_source_id(ring, node))
        if prior is not None and prior.format == RING_FORMAT and not prior.incomplete and not refresh:
            report.nodes.append(NodeOutcome(node.name, node.address, "kept", prior.rows, prior.rejected))
        else:
            pending.append(node)
    for outcome in report.nodes:
        if on_node is not None:
            on_node(outcome)
    total = sum(n.chunks or 0 for n in pending) or None
    progress = bar(total=total, desc=f"ring {ring}: {len(pending)} node(s)", unit="row", unit_scale=True)
    listing = _Listing(store, ring, credentials, verify, policy, mtime_max, progress, on_node or (lambda outcome: None))
    workers = max(1, min(len(pending), concurrency or len(pending), MAX_CONCURRENCY))
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ring-node") as pool:
            for outcome in pool.map(_reporting(listing), pending):
                report.nodes.append(outcome)
    finally:
        progress.close()
    if report.failed:
        named = "; ".join(n.error or n.name for n in report.failed)
        raise RemoteError(f"ring {ring}: {len(report.failed)} of {len(nodes)} node(s) not listed: {named}; "
                          "the listing is incomplete until 'ringfsck ingest ring' lists them")
    return report


def _reporting(listing: _Listing) -> Callable[[RingNode], NodeOutcome]:
    def run(node: RingNode) -> NodeOutcome:
        outcome = listing.list_node(node)
        listing.on_node(outcome)
        return outcome

    return run
