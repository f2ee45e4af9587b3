"""A synthetic RING for capacity benchmarks: nodes that render their listkeys in blocks, at any size.

A lab world written by :func:`ringfsck.lab.generate_world` costs ~3 CPU seconds and ~100 bytes of
disk per listkeys row (its nodes serve pre-rendered dumps): 500 M rows would be ~50 GB and most of
an hour. A synthetic world keeps only what cannot be recomputed cheaply: the md5 prefix of every main
chunk (the RING side of an S3 input key, docs/domain.md section 3), its layout and whether it is an
orphan, ~24 bytes per main chunk (~2.3 bytes per row). Its nodes render their rows from those with
numpy, a block of main chunks at a time; chunk keys are drawn from a generator seeded by (world
seed, node, block), so a node's body is the same bytes on every request and its length is known
before it is sent. The S3 side is a CSV export of every referenced input key (``ingest s3keys``),
and ``truth.json`` counts what was planted (rows per node, main chunks, orphans, S3 keys) with the
orphans in ``orphans.txt``: the truth comes from generation, never from an analysis.

The shapes are the lab world's (``world.ring_layouts``: 8+4 ARC main chunks of services 51 and 50 with
all their stripes, COS 2 with its replicas, the same row tail), without the rarer fates (splits,
gaps, tombstones, in-flight chunks: the regular lab covers those). Every chunk has one mtime, the
world's first batch's, so a listing's window takes every row or none. Layout::

    truth.json                the settings and what was planted: rows per node, main chunks, orphans, S3 keys
    mains.npy                 S22, one per main chunk: its md5 prefix, in generation order
    layouts.npy               uint8, one per main chunk: its layout (LAYOUTS), ORPHAN bit set if unreferenced
    s3keys/bucket-NN_keys.txt "bucket","object key","sproxyd key": the referenced input keys
    orphans.txt               the planted orphans' main chunk keys

Serve it with ``python -m ringfsck.lab.synthetic --world DIR`` (prints one JSON line with the
supervisor's and nodes' URLs, as ``ringfsck.lab.serve`` does) or :class:`SyntheticRingServers`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import numpy as np
import pyarrow as pa

from ringfsck import keys
from ringfsck.lab._state import NodeListing
from ringfsck.lab.ring_nodes import (
    CHORD_PORT_BASE,
    LAB_LOGIN,
    LAB_PASSWORD,
    NodeFaults,
    NodeServer,
    SupervisorServer,
    generated_tls,
    response_head,
)
from ringfsck.lab.world import CHUNK_BASE_S, FLUSH_SECONDS, hex_digits, ring_layouts

LAYOUTS = ("arc", "arc50", "cos")  # world.ring_layouts names; a layout code is the index here
ORPHAN = 0x80  # layout code bit: no S3 key references the main chunk
CHUNK_MTIME = CHUNK_BASE_S + FLUSH_SECONDS  # the world's first batch: every chunk was written then
GENERATION_BLOCK = 1 << 20  # main chunks per generation step (memory ~200 MB)
RENDER_BLOCK = 1 << 17  # main chunks per rendered block of a node's body (~24 MB of rows per node with 8+4)
_KEY_RANDOM_BYTES = 16  # a chunk key's first 32 hex chars: random (the RING disperses chunks)
_SEND_SLICE = 256 * 1024
_KEEPALIVE = b"\n"  # one before each block, as the daemons send while they work
_STARTUP_SECONDS = 30


@dataclass(frozen=True)
class SyntheticSettings:
    main_chunks: int
    seed: int = 1
    nodes: int = 6
    arc: str = "8+4"
    cos: int = 2
    cos_share: float = 0.12
    service50_share: float = 0.03
    orphan_share: float = 0.03
    buckets: int = 8

    def rows_per_main_chunk(self) -> float:
        """Listkeys rows per main chunk (the mix of ARC stripes and COS replicas)."""
        arc = keys.parse_arc(self.arc).stripes
        return (1 - self.cos_share) * arc + self.cos_share * (self.cos + 1)


@dataclass(frozen=True)
class SyntheticWorld:
    path: Path

    @property
    def settings(self) -> SyntheticSettings:
        return SyntheticSettings(**self.truth["settings"])

    @property
    def truth(self) -> dict[str, Any]:
        return json.loads((self.path / "truth.json").read_text())

    @property
    def s3keys_dir(self) -> Path:
        return self.path / "s3keys"

    def orphans(self) -> list[str]:
        return (self.path / "orphans.txt").read_text().split()


def _first_nodes(start: int, count: int, nodes: int) -> np.ndarray:
    """The node of each main chunk's first chunk; chunk ``p`` is on node ``(first + p) % nodes`` (as in world._Ring)."""
    return (np.arange(start, start + count, dtype=np.int64) % nodes).astype(np.int16)


def _md5_prefixes(con: duckdb.DuckDBPyConnection, raw: np.ndarray) -> np.ndarray:
    """(n, 22) uint8: the uppercase hex md5 prefix of each 20-byte input key (DuckDB: ~10x hashlib per key)."""
    n = len(raw)
    offsets = pa.py_buffer((np.arange(n + 1, dtype=np.int32) * raw.shape[1]).tobytes())
    input_keys = pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(raw.tobytes())])
    table = pa.table({"k": input_keys})
    con.register("synthetic_input_keys", table)
    try:
        hexed = con.sql(f"SELECT upper(left(md5(k), {keys.MD5_PREFIX_LEN})) AS p FROM synthetic_input_keys").fetchnumpy()["p"]
    finally:
        con.unregister("synthetic_input_keys")
    return np.frombuffer("".join(hexed).encode("ascii"), dtype=np.uint8).reshape(n, keys.MD5_PREFIX_LEN)


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """(n, width) ASCII decimal digits of ``values``, zero-padded."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers % 10 + ord("0")).astype(np.uint8)


def generate_synthetic_world(out: str | Path, settings: SyntheticSettings) -> SyntheticWorld:
    """Write a synthetic world (deterministic for the settings) under ``out``, replacing one there."""
    if settings.main_chunks < 1 or settings.nodes < 1 or settings.buckets < 1:
        raise ValueError("main_chunks, nodes and buckets must be at least 1")
    path = Path(out)
    if path.exists():
        shutil.rmtree(path)
    (path / "s3keys").mkdir(parents=True)
    tails = ring_layouts(keys.parse_arc(settings.arc), settings.cos)
    widths = np.array([len(tails[name].chunk_tails) for name in LAYOUTS])
    main_tails = [tails[name].main_tail.encode("ascii") for name in LAYOUTS]
    total = settings.main_chunks
    mains = np.lib.format.open_memmap(path / "mains.npy", mode="w+", dtype=f"S{keys.MD5_PREFIX_LEN}", shape=(total,))
    layouts = np.lib.format.open_memmap(path / "layouts.npy", mode="w+", dtype=np.uint8, shape=(total,))
    node_rows = np.zeros(settings.nodes, dtype=np.int64)
    main_counts = np.zeros(len(LAYOUTS), dtype=np.int64)
    orphans = s3_keys = 0
    exports = [open(path / "s3keys" / f"bucket-{b:02d}_keys.txt", "wb") for b in range(settings.buckets)]
    con = duckdb.connect()
    try:
        with open(path / "orphans.txt", "wb") as orphan_file:
            for start in range(0, total, GENERATION_BLOCK):
                n = min(GENERATION_BLOCK, total - start)
                rng = np.random.default_rng([settings.seed, start // GENERATION_BLOCK])
                raw = rng.integers(0, 256, size=(n, 20), dtype=np.uint8)
                raw[:, 0] = np.maximum(raw[:, 0], 1)  # no leading zero byte: md5 over all 20 bytes (docs/domain.md section 3)
                prefixes = _md5_prefixes(con, raw)
                roll = rng.random(n)
                layout = np.where(roll < settings.cos_share, 2, np.where(roll < settings.cos_share + settings.service50_share, 1, 0))
                orphan = rng.random(n) < settings.orphan_share
                mains[start : start + n] = prefixes.view(f"S{keys.MD5_PREFIX_LEN}").ravel()
                layouts[start : start + n] = layout | np.where(orphan, ORPHAN, 0)
                first = _first_nodes(start, n, settings.nodes)
                for code in range(len(LAYOUTS)):
                    chosen = layout == code
                    main_counts[code] += int(chosen.sum())
                    for position in range(widths[code]):  # chunk `position` of each main chunk lies on node (first + position) % nodes
                        node_rows += np.bincount((first[chosen] + position) % settings.nodes, minlength=settings.nodes)
                    planted = np.flatnonzero(chosen & orphan)
                    if len(planted):
                        rows = np.empty((len(planted), keys.KEY_HEX_LEN + 1), dtype=np.uint8)
                        rows[:, : keys.MD5_PREFIX_LEN] = prefixes[planted]
                        rows[:, keys.MD5_PREFIX_LEN : -1] = np.frombuffer(main_tails[code], dtype=np.uint8)
                        rows[:, -1] = ord("\n")
                        orphan_file.write(rows.tobytes())
                orphans += int(orphan.sum())
                referenced = np.flatnonzero(~orphan)
                s3_keys += len(referenced)
                _write_exports(exports, start, referenced, hex_digits(raw[referenced]))
    finally:
        con.close()
        for handle in exports:
            handle.close()
    mains.flush()
    layouts.flush()
    del mains, layouts
    counts = {
        "listkeys_rows": int(node_rows.sum()),
        "node_rows": node_rows.tolist(),
        "main_chunks": total,
        "main_chunks_by_layout": dict(zip(LAYOUTS, main_counts.tolist())),
        "orphans": orphans,
        "s3_keys": s3_keys,
    }
    truth = {"settings": asdict(settings), "counts": counts}
    (path / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return SyntheticWorld(path)


_OBJECT_DIGITS = 12


def _write_exports(exports: Sequence[IO[bytes]], start: int, referenced: np.ndarray, input_keys: np.ndarray) -> None:
    """One CSV row per referenced input key, ``"bucket-NN","obj-<index>","<key>"``, in the bucket of index mod buckets."""
    index = start + referenced
    bucket = index % len(exports)
    head = b'"bucket-00","obj-'
    tail_at = len(head) + _OBJECT_DIGITS
    rows = np.empty((len(referenced), tail_at + 3 + keys.KEY_HEX_LEN + 2), dtype=np.uint8)
    rows[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    rows[:, 8:10] = _digits(bucket, 2)
    rows[:, len(head) : tail_at] = _digits(index, _OBJECT_DIGITS)
    rows[:, tail_at : tail_at + 3] = np.frombuffer(b'","', dtype=np.uint8)
    rows[:, tail_at + 3 : -2] = input_keys
    rows[:, -2:] = np.frombuffer(b'"\n', dtype=np.uint8)
    for number, handle in enumerate(exports):
        handle.write(rows[bucket == number].tobytes())


class SyntheticListing:
    """What one node of a synthetic world lists: its rows rendered block by block, the same bytes every time."""

    def __init__(self, world: SyntheticWorld, node: int) -> None:
        self.settings = settings = world.settings
        self.node = node
        self.rows = int(world.truth["counts"]["node_rows"][node])
        self.mains = np.load(world.path / "mains.npy", mmap_mode="r")
        self.layouts = np.load(world.path / "layouts.npy", mmap_mode="r")
        layouts = ring_layouts(keys.parse_arc(settings.arc), settings.cos)
        # A row is "<32 random hex><chunk tail>,<md5 prefix><main chunk tail><row tail>": the row tail is
        # world._Ring._lines' (flag 0), its disk number one digit, so every row of a node has one width.
        row_tails = [
            f",g{node + 1}disk{position % 4 + 1},0\n".encode() for position in range(max(len(layouts[n].chunk_tails) for n in LAYOUTS))
        ]
        self._chunk_tails = [[f"{tail},".encode() for tail in layouts[name].chunk_tails] for name in LAYOUTS]
        self._main_tails = [[layouts[name].main_tail.encode() + row_tail for row_tail in row_tails] for name in LAYOUTS]
        self._row_dtype = np.dtype(
            [
                ("random", f"S{2 * _KEY_RANDOM_BYTES}"),
                ("chunk_tail", f"S{len(self._chunk_tails[0][0])}"),
                ("prefix", f"S{keys.MD5_PREFIX_LEN}"),
                ("main_tail", f"S{len(self._main_tails[0][0])}"),
            ]
        )
        self.row_width = self._row_dtype.itemsize
        self.blocks = -(-len(self.mains) // RENDER_BLOCK)

    def length(self, listed: bool) -> int:
        """The body's length: every row (``listed``: the window holds the chunks' mtime) or none, with the keep-alives."""
        return (self.blocks * len(_KEEPALIVE) + self.rows * self.row_width) if listed else len(_KEEPALIVE)

    def render(self, block: int) -> np.ndarray:
        """(rows, row_width) uint8: this node's rows of the main chunks of ``block``."""
        start = block * RENDER_BLOCK
        mains = np.asarray(self.mains[start : start + RENDER_BLOCK])
        layouts = np.asarray(self.layouts[start : start + RENDER_BLOCK]) & (ORPHAN - 1)
        first, nodes = _first_nodes(start, len(mains), self.settings.nodes), self.settings.nodes
        picks = []  # (layout code, position, main chunk indexes) of this node's rows
        for code, tails in enumerate(self._chunk_tails):
            of_layout = layouts == code
            # Chunk `position` is on this node when first + position = node (mod nodes): one mask per first node.
            by_first = [np.flatnonzero(of_layout & (first == f)) for f in range(nodes)]
            for position in range(len(tails)):
                on_node = by_first[(self.node - position) % nodes]
                if len(on_node):
                    picks.append((code, position, on_node))
        out = np.empty(sum(len(p[2]) for p in picks), dtype=self._row_dtype)
        rng = np.random.default_rng([self.settings.seed, self.node, block])
        random = np.frombuffer(rng.bytes(len(out) * _KEY_RANDOM_BYTES), dtype=np.uint8).reshape(-1, _KEY_RANDOM_BYTES)
        out["random"] = hex_digits(random).view(out.dtype["random"]).ravel()
        at = 0
        for code, position, on_node in picks:  # whole fields at a time: a copy per row and field, no per-byte indexing
            rows = out[at : at + len(on_node)]
            rows["chunk_tail"] = self._chunk_tails[code][position]
            rows["prefix"] = mains[on_node]
            rows["main_tail"] = self._main_tails[code][position]
            at += len(on_node)
        return out.view(np.uint8).reshape(-1, self.row_width)


class SyntheticNodeServer(NodeServer):
    """A node of a synthetic world: the lab node's login and checks, its listing rendered (no cut, slow or chunked faults)."""

    def __init__(self, listing: SyntheticListing, ring: str, ssl_context: ssl.SSLContext | None) -> None:
        # NodeServer's fields but its world state (this node has no dump files to read): the daemon's __init__, not NodeServer's.
        super(NodeServer, self).__init__(f"node-{listing.node:02d}", NodeFaults(), ssl_context)
        self.listing = NodeListing(self.name, "", "", listing.rows)
        self.synthetic, self.ring = listing, ring
        self.chord_port = CHORD_PORT_BASE + listing.node
        self._sessions: set[str] = set()

    async def send_listing(self, writer: asyncio.StreamWriter, low: int, high: int) -> bool:
        listed = low <= CHUNK_MTIME <= high
        writer.write(response_head(200, {"Content-Type": "text/plain"}, self.synthetic.length(listed)))
        if not listed:
            writer.write(_KEEPALIVE)
            await writer.drain()
            return True
        loop = asyncio.get_running_loop()
        for block in range(self.synthetic.blocks):
            writer.write(_KEEPALIVE)
            rows = await loop.run_in_executor(None, self.synthetic.render, block)  # numpy drops the GIL: nodes render side by side
            body = rows.data.cast("B")  # no copy: each block is a new array
            for at in range(0, len(body), _SEND_SLICE):  # slices: asyncio's buffer moves what remains after each send
                writer.write(body[at : at + _SEND_SLICE])
                await writer.drain()
        return True


async def serve_synthetic_ring(
    world: Path, *, ring: str = "DATA", ssl_context: ssl.SSLContext | None = None, ready: Callable[[dict[str, Any]], None] | None = None
) -> None:
    """Serve the supervisor and the synthetic world's nodes until cancelled; ``ready`` gets their URLs."""
    synthetic = SyntheticWorld(Path(world))
    nodes: list[NodeServer] = [
        SyntheticNodeServer(SyntheticListing(synthetic, n), ring, ssl_context) for n in range(synthetic.settings.nodes)
    ]
    supervisor = SupervisorServer(nodes, ring, NodeFaults(), ssl_context)
    try:
        for daemon in [supervisor, *nodes]:
            await daemon.listen()
        if ready is not None:
            ready({"supervisor": supervisor.url, "nodes": {node.name: node.url for node in nodes}})
        await asyncio.Event().wait()
    finally:
        for daemon in [supervisor, *nodes]:
            daemon.close()


class SyntheticRingServers:
    """The synthetic world's supervisor and nodes, served by a child process on 127.0.0.1 (a context manager)."""

    sup_login = LAB_LOGIN
    sup_password = LAB_PASSWORD

    def __init__(self, world: SyntheticWorld, *, tls: bool = False) -> None:
        self._args = [sys.executable, "-m", "ringfsck.lab.synthetic", "--world", str(world.path), "--parent-pid", str(os.getpid())]
        if tls:
            self._args.append("--tls")
        self._proc: subprocess.Popen[str] | None = None
        self.supervisor_url = ""
        self.node_urls: dict[str, str] = {}
        self.ca_bundle: str | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self) -> SyntheticRingServers:
        """Start the servers and wait for their URLs; RuntimeError if they do not come up."""
        root = str(Path(__file__).resolve().parents[2])  # the child imports this checkout, installed or not
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True, env=env)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]  # started with stdout=PIPE
        reader.start()
        reader.join(_STARTUP_SECONDS)
        if not line or not line[0].strip():
            self.stop()
            raise RuntimeError("the synthetic RING's servers did not start (their stderr says why)")
        urls = json.loads(line[0])
        self.supervisor_url, self.node_urls, self.ca_bundle = urls["supervisor"], urls["nodes"], urls["ca_bundle"]
        return self

    def stop(self) -> None:
        """Terminate the servers (kill them if they do not exit within a few seconds)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> SyntheticRingServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    from ringfsck.lab.serve import run_servers

    parser = argparse.ArgumentParser(prog="python -m ringfsck.lab.synthetic", description="Serve a synthetic world's supervisor and nodes.")
    parser.add_argument("--world", required=True, type=Path, help="a directory written by generate_synthetic_world")
    parser.add_argument("--ring", default="DATA")
    parser.add_argument("--tls", action="store_true", help="HTTPS with a generated certificate")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is no longer our parent")
    args = parser.parse_args(argv)
    tls_dir = Path(tempfile.mkdtemp(prefix="ringfsck-synthetic-tls-")) if args.tls else None
    try:
        ssl_context, ca_bundle = None, None
        if tls_dir is not None:
            ssl_context, ca_bundle = generated_tls(tls_dir)

        def ready(urls: dict[str, Any]) -> None:
            print(json.dumps(urls | {"ca_bundle": ca_bundle}), flush=True)

        run_servers([serve_synthetic_ring(args.world, ring=args.ring, ssl_context=ssl_context, ready=ready)], args.parent_pid)
    except (OSError, ValueError) as exc:
        print(f"synthetic RING: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if tls_dir is not None:
            shutil.rmtree(tls_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
