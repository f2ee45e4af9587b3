"""``python -m ringfsck.lab.serve``: the lab servers as a process of their own.

Prints one JSON line with the servers' URLs once all listen (what
:class:`ringfsck.lab.LabServers` waits for): srebuildd, bucketd, and the RING's supervisor
and nodes (``ring``: their URLs, with ``--node-ips`` their srebuildds' too, and with ``--ring-tls``
the CA bundle of the certificate generated for them), then serves until SIGTERM or SIGINT. A world that cannot be served is
one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import ssl
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ringfsck.errors import ConfigError
from ringfsck.lab._state import WorldState
from ringfsck.lab.ring_nodes import generated_tls, loopback_hosts, parse_node_faults, serve_ring
from ringfsck.lab.servers import SIZE_READINGS, Faults, SrebuilddServer, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ringfsck.lab.serve", description=__doc__)
    parser.add_argument("--world", required=True, type=Path, help="a directory written by 'ringfsck lab generate'")
    parser.add_argument("--ring", default="DATA", help="RING name in the srebuildd paths and the supervisor's dso")
    parser.add_argument("--srebuildd-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--bucketd-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--srebuildd-faults", default=None, help="e.g. error_rate=0.1,drop_rate=0.05")
    parser.add_argument("--bucketd-faults", default=None)
    parser.add_argument(
        "--node-faults",
        action="append",
        default=[],
        metavar="NODE:SPEC",
        help="faults of one RING node (or 'supervisor'), e.g. node-02:cut_at=0.5 (repeatable)",
    )
    parser.add_argument("--ring-tls", action="store_true", help="serve the supervisor and nodes over HTTPS with a generated certificate")
    parser.add_argument(
        "--node-ips",
        action="store_true",
        help="give each node an ip of its own (127.0.0.2, 127.0.0.3, ...) with a srebuildd on it, at one port for all",
    )
    parser.add_argument(
        "--size-reading",
        choices=SIZE_READINGS,
        default="object",
        help="what srebuildd's X-Scal-Size measures: the object's size, or one ARC chunk's (ceil(size / k))",
    )
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is no longer our parent")
    args = parser.parse_args(argv)
    tls_dir = Path(tempfile.mkdtemp(prefix="ringfsck-lab-tls-")) if args.ring_tls else None
    try:
        faults = {"srebuildd_faults": Faults.parse(args.srebuildd_faults), "bucketd_faults": Faults.parse(args.bucketd_faults)}
        node_faults = parse_node_faults(args.node_faults)
        node_hosts = world_node_hosts(args.world) if args.node_ips else None
        ssl_context, ca_bundle = None, None
        if tls_dir is not None:
            ssl_context, ca_bundle = generated_tls(tls_dir, node_hosts or ())
        urls: dict[str, Any] = {}

        def ready(part: dict[str, Any]) -> None:
            urls.update(part)
            if "srebuildd" in urls and "ring" in urls:
                print(json.dumps(urls), flush=True)

        servers = lab_servers(
            args.world,
            ring=args.ring,
            srebuildd_port=args.srebuildd_port,
            bucketd_port=args.bucketd_port,
            size_reading=args.size_reading,
            faults=faults,
            node_faults=node_faults,
            ssl_context=ssl_context,
            ready=ready,
            ring_ready=lambda ring: ready({"ring": ring | {"ca_bundle": ca_bundle}}),
            node_hosts=node_hosts,
        )
        run_servers(servers, args.parent_pid)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"lab servers: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if tls_dir is not None:
            shutil.rmtree(tls_dir, ignore_errors=True)
    return 0


def world_node_hosts(world: Path) -> list[str]:
    """A loopback ip of its own for each node of the world (``--node-ips``)."""
    return loopback_hosts(len(WorldState(world).nodes))


def lab_servers(
    world: Path,
    *,
    ring: str,
    srebuildd_port: int,
    bucketd_port: int,
    size_reading: str,
    faults: dict[str, Faults],
    node_faults: dict,
    ssl_context: ssl.SSLContext | None,
    ready: Callable[[dict[str, Any]], None],
    ring_ready: Callable[[dict[str, Any]], None],
    node_hosts: list[str] | None = None,
) -> list[Coroutine[Any, Any, None]]:
    """The lab's servers of a world, to pass to :func:`run_servers`: srebuildd and bucketd (``ready`` gets
    their URLs), the supervisor and the nodes (``ring_ready`` gets theirs); with ``node_hosts``, a srebuildd
    on each node's ip. One srebuildd RING for all: a key deleted through one is gone through every one."""
    state = WorldState(world)
    srebuildd = SrebuilddServer(state, ring, faults["srebuildd_faults"], size_reading=size_reading)
    return [
        serve(
            world,
            ring=ring,
            srebuildd_port=srebuildd_port,
            bucketd_port=bucketd_port,
            size_reading=size_reading,
            ready=ready,
            srebuildd=srebuildd,
            **faults,
        ),
        serve_ring(
            world,
            ring=ring,
            faults=node_faults,
            ssl_context=ssl_context,
            state=state,
            ready=ring_ready,
            node_hosts=node_hosts,
            srebuildd=srebuildd,
        ),
    ]


def run_servers(servers: list, parent_pid: int | None = None) -> None:  # servers: coroutines
    """Serve until SIGTERM or SIGINT, or until process ``parent_pid`` is gone; the first server error ends all."""

    async def watch_parent(task: asyncio.Future) -> None:
        # A killed test runner cannot stop its servers: they notice they were orphaned.
        while os.getppid() == parent_pid:
            await asyncio.sleep(0.5)
        task.cancel()

    async def main() -> None:
        task = asyncio.gather(*servers)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        watcher = asyncio.ensure_future(watch_parent(task)) if parent_pid else None
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            if watcher is not None:
                watcher.cancel()

    asyncio.run(main())


if __name__ == "__main__":
    sys.exit(main())
