"""``ingest ring``: list every node of a RING natively, straight into the store (docs/domain.md section 9).

What the reference's ``listkey.py`` does with Spark, without it: the supervisor names the nodes
of the ring, each node streams its ``listkeys`` (chunks older than ``mtime_max`` = listing start
− ``retention`` only, so in-flight writes are never listed), and the rows go through the
listkeys block parser (``ringfsck.ingest.listkeys``: same validation, same rejects, same packed
Parquet parts), a fixed-size block at a time: no CSV on disk, memory flat whatever a node holds.
Nodes are listed by worker processes forked as ``ingest listkeys`` forks its file parsers (each
with its own HTTP client; threads would share one interpreter lock), which write the node's parts;
this process records the sources and shows one bar of rows received over all nodes.

Each node is one source (kind ``listkeys``, format ``ring-node``), its part published only when
its stream ended cleanly: its body framed (a Content-Length reached, or the last chunk received:
a body that ends when the connection closes ends the same way when cut) and its last line whole.
Before the nodes are streamed, their sources are recorded as unfinished, so a
listing killed at any moment leaves every node it did not finish making analyses incomplete; a
node that cannot be reached, refuses the login or whose stream breaks off is recorded as failed
with the reason (its partial rows never published), which does the same until it is listed. A
node fully listed is not listed again unless asked (``refresh``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, MutableSequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
import numpy as np
import xxhash

from ringfsck.errors import ConfigError, RemoteError
from ringfsck.ingest.inputs import READ_BLOCK, UTF8_BOM
from ringfsck.ingest.listkeys import parse_listkeys
from ringfsck.ingest.parsing import ParseContext
from ringfsck.ingest.rejects import writing_rejects
from ringfsck.ingest.workers import busy_worker, fork_is_safe, forked_pool, inherited_work, settle_all, shared_counters
from ringfsck.progress import bar
from ringfsck.remote.http import HttpPolicy
from ringfsck.remote.supervisor import (
    Credentials,
    NodeClient,
    NodeFailed,
    RingNode,
    node_from_url,
    public_url,
    ring_nodes,
    split_userinfo,
    tls_verify,
)
from ringfsck.store import Source, Store, iso, utc_now

RING_FORMAT = "ring-node"
# The reference's lower bound (listkey.py): every chunk written since 1973.
MTIME_MIN = 123456789
MAX_CONCURRENCY = 16  # nodes listed at once, at most: each is a process with a stream, a parser and a Parquet writer
# Nodes listed at once unless told: one per core (at least two, so a slow node does not stall the
# listing). Parsing is what costs on the client: more processes than cores add no speed when the
# nodes stream faster than a core parses, and each node in flight holds ~180 MB of row groups.
DEFAULT_CONCURRENCY = max(2, os.cpu_count() or 1)
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


def listing_node_ips(store: Store) -> list[str]:
    """The chord ips of the store's native listing: its node sources of the store's ring, once each, by node name.

    What ``srebuildd_endpoints`` (ringfsck.config) makes the default srebuildd endpoints of. A store
    written before the ip was recorded gives the host of the node's admin URL (built from config/ip).
    """
    ring = store.settings.ring
    ips = []
    for source in sorted(store.sources(), key=lambda s: (str(s.details.get("node")), s.id)):
        details = source.details
        if source.format == RING_FORMAT and details.get("ring") == ring:
            ips.append(details.get("ip") or urlsplit(details.get("admin_url", "")).hostname or "")
    return [ip for ip in dict.fromkeys(ips) if ip]


def sup_credentials(settings, urls: list[str]) -> Credentials:  # settings: Settings (imported lazily by the CLI)
    """The supervisor's credentials: ``sup.login``/``sup.password``, else a URL's userinfo."""
    sup = settings.sup
    if sup.login and sup.password is not None:
        return Credentials(sup.login, sup.password)
    for url in urls:
        _, given = split_userinfo(url)
        if given is not None:
            return given
    raise ConfigError(
        "the supervisor's credentials are not set: sup.login and sup.password in the config, "
        "RINGFSCK_SUP_LOGIN and RINGFSCK_SUP_PASSWORD, or --login and --password-file"
    )


class BrokenOff(Exception):
    """A node's stream ended in a way that cannot be told from a cut; ``reason`` is safe to print."""


class _BodyBlocks:
    """A node's response body as the blocks the listkeys parser reads (``OpenedInput``'s interface).

    httpx checks the body's framing (a Content-Length that was not reached, a chunked body without
    its last chunk are errors); :meth:`verify_ended` adds that the last line is whole. Rows are
    counted for the progress bar as the bytes come (lines but keep-alives, the empty lines).
    """

    def __init__(self, response: httpx.Response, on_rows: Callable[[int], object]) -> None:
        self._chunks: Iterator[bytes] = response.iter_bytes()
        self._pending = b""
        self._on_rows = on_rows
        self._last_byte = _NEWLINE  # the stream starts as after a line end: a leading "\n" is a keep-alive
        self.digest = xxhash.xxh3_128()
        self.received = 0

    def _next(self) -> bytes | None:
        if self._pending:
            pending, self._pending = self._pending, b""
            return pending
        chunk = next(self._chunks, None)
        if chunk:
            self.digest.update(chunk)
            self.received += len(chunk)
            self._on_rows(self._rows_in(chunk))
            self._last_byte = chunk[-1]
        return chunk

    def _rows_in(self, chunk: bytes) -> int:
        """Line ends in ``chunk`` that end a non-empty line (numpy: bytes.count is several times slower)."""
        ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == _NEWLINE)
        if not len(ends):
            return 0
        blank = np.count_nonzero(np.diff(ends) == 1) + (ends[0] == 0 and self._last_byte == _NEWLINE)
        return len(ends) - int(blank)

    def verify_ended(self) -> None:
        """Raise BrokenOff unless the last line is whole (called before the node's part is published)."""
        if self.received and self._last_byte != _NEWLINE:
            raise BrokenOff(f"the listing ended inside a line after {self.received:,} bytes")

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


_NEWLINE = ord("\n")


@dataclass
class _Listing:
    """What listing a node needs. Forked workers inherit it: only a node's position is sent to them."""

    store: Store
    ring: str
    credentials: Credentials
    ca_bundle: str | None
    verify_tls: bool
    policy: HttpPolicy
    mtime_max: int
    nodes: list[RingNode]  # the nodes to list, by position
    rows_seen: MutableSequence[int]  # rows received so far, per node (shared memory with forked workers)

    def source(self, node: RingNode, started: datetime, **values) -> Source:
        details = {
            "ring": self.ring,
            "node": node.name,
            "address": node.address,
            "ip": node.ip,
            "admin_url": public_url(node.admin_url),
            "chord_port": node.chord_port,
            "mtime_min": MTIME_MIN,
            "mtime_max": self.mtime_max,
        }
        values.setdefault("details", {})
        values["details"] = details | values["details"]
        values.setdefault("size", 0)
        values.setdefault("checksum", "unfinished")
        # Nothing written after mtime_max is listed: evidence of age for the deleter's guard.
        mtime_max = iso(datetime.fromtimestamp(self.mtime_max, UTC))
        return Source(
            id=node_source_id(self.ring, node),
            kind="listkeys",
            location=node_location(self.ring, node),
            format=RING_FORMAT,
            captured_at=iso(started),
            ingested_at=iso(utc_now()),
            mtime_max=mtime_max,
            **values,
        )

    def unfinished(self, node: RingNode) -> Source:
        """A node's record before the first byte: a listing killed then leaves it unfinished, never unknown."""
        return self.source(
            node,
            utc_now(),
            incomplete=[f"the listing of {node_location(self.ring, node)} is unfinished (rerun 'ringfsck ingest ring' to list it)"],
        )

    def remove_stale_temporaries(self, node: RingNode) -> None:
        """Half-written parts of a listing killed before (never published)."""
        sid = node_source_id(self.ring, node)
        for table in _LISTED_TABLES:
            for stale in self.store.table_dir(table).glob(f".{sid}.parquet.*.tmp"):
                stale.unlink(missing_ok=True)


def _list_node(position: int, listing: _Listing | None = None) -> tuple[Source, NodeOutcome]:
    """List the node at ``position`` into its parts; its record (listed or failed) is the caller's to save.

    In a forked worker (``listing`` None: the inherited one) with its own HTTP client and TLS context.
    """
    if listing is None:
        with busy_worker():  # Ctrl-C stops a node being listed (an idle worker ignores it)
            return _list_node(position, inherited_work())
    assert isinstance(listing, _Listing)
    node = listing.nodes[position]
    sid, location = node_source_id(listing.ring, node), node_location(listing.ring, node)
    clock = time.perf_counter()
    client = NodeClient(node, listing.credentials, verify=tls_verify(listing.ca_bundle, listing.verify_tls), policy=listing.policy)
    counters = listing.rows_seen

    def on_rows(rows: int) -> None:
        counters[position] += rows

    reason = ""
    for _ in range(_STREAM_ATTEMPTS):
        started = utc_now()
        counters[position] = 0
        body: _BodyBlocks | None = None
        try:
            # The rejects are published once the stream is closed, discarded if it fails.
            with (
                writing_rejects(listing.store, sid, location) as rejects,
                client.listkeys(listing.ring, MTIME_MIN, listing.mtime_max) as response,
            ):
                body = _BodyBlocks(response, on_rows)
                result = parse_listkeys(body, ParseContext(listing.store, sid, location, rejects, True, body.verify_ended))
        except NodeFailed as exc:
            reason = exc.reason
            break  # connection errors and 5xx were retried already
        except (httpx.TransportError, httpx.StreamError, BrokenOff) as exc:
            received = body.received if body is not None else 0
            cause = (
                str(exc) if isinstance(exc, BrokenOff) else f"the listing broke off after {received:,} bytes ({type(exc).__name__}: {exc})"
            )
            reason = listing.credentials.redact(f"{client.where}: {cause}")
            continue
        seconds = round(time.perf_counter() - clock, 3)
        source = listing.source(
            node,
            started,
            size=body.received,
            checksum=f"xxh3-128:{body.digest.hexdigest()}",
            rows=result.rows,
            rejected=rejects.count,
            skipped=result.skipped,
            warnings=result.warnings,
            details={"finished_at": iso(utc_now()), "seconds": seconds},
        )
        return source, NodeOutcome(node.name, node.address, "listed", result.rows, rejects.count, seconds)
    # Failed: whatever an earlier listing of this node left goes too (the store says: not listed).
    for table in _LISTED_TABLES:
        listing.store.remove_part(table, sid)
    reason = reason.rstrip(".")
    source = listing.source(
        node,
        utc_now(),
        checksum="failed",
        incomplete=[
            f"{reason}: its chunks are not in the listing, so gaps and debris cannot be trusted (rerun 'ringfsck ingest ring' to list it)"
        ],
    )
    return source, NodeOutcome(node.name, node.address, "failed", seconds=round(time.perf_counter() - clock, 3), error=reason)


def _forking(store: Store, nodes: list[RingNode], workers: int) -> bool:
    """Whether nodes are listed in forked processes (each parses at full speed) rather than threads (which share a lock).

    As ``ingest listkeys`` decides it (:func:`fork_is_safe`).
    """
    return workers > 1 and len(nodes) > 1 and fork_is_safe(store)


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
    workers = max(1, min(len(pending), concurrency or DEFAULT_CONCURRENCY, MAX_CONCURRENCY))
    forking = _forking(store, pending, workers)
    listing = _Listing(
        store,
        ring,
        credentials,
        settings.sup.ca_bundle,
        settings.sup.verify_tls,
        policy,
        mtime_max,
        pending,
        shared_counters(len(pending)) if forking else [0] * len(pending),
    )
    for node in pending:
        listing.remove_stale_temporaries(node)
        store.save_source(listing.unfinished(node))
    # The pool first: forked workers must not inherit the progress bar's thread.
    with forked_pool(listing, workers) if forking else ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ring-node") as pool:
        futures = {pool.submit(_list_node, position, *(() if forking else (listing,))): position for position in range(len(pending))}
        total = sum(n.chunks or 0 for n in pending) or None  # the supervisor's stats/chunks/nb
        progress = bar(total=total, desc=f"ring {ring}: {len(pending)} node(s)", unit="row", unit_scale=True)
        shown = 0  # rows on the bar

        def show_rows() -> None:
            nonlocal shown
            seen = sum(listing.rows_seen)
            progress.update(seen - shown)  # down too: a stream listed again from the start counts again
            shown = seen

        def record(position: int, listed: tuple[Source, NodeOutcome]) -> None:
            source, outcome = listed
            store.save_source(source)
            report.nodes.append(outcome)
            if on_node is not None:
                on_node(outcome)

        try:
            settle_all(futures, on_result=record, on_tick=show_rows)  # nodes listed are recorded; the others stay unfinished
        finally:
            progress.close()
    if report.failed:
        named = "; ".join(n.error or n.name for n in report.failed)
        raise RemoteError(
            f"ring {ring}: {len(report.failed)} of {len(nodes)} node(s) not listed: {named}; "
            "the listing is incomplete until 'ringfsck ingest ring' lists them"
        )
    return report
