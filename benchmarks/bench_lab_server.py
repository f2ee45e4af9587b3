"""How fast the lab is, so that client benchmarks measure the client, not the lab.

Prints the world generation rate (listkeys rows/s, with and without server
state, and the peak memory of each) and the lab srebuildd's request rate (HEAD
on the arc path) from 200 concurrent keep-alive connections, both as raw
sockets (the server's own ceiling) and as httpx clients, without and with 2 ms
of added latency.

    python benchmarks/bench_lab_server.py [--rows 10000000] [--connections 200] [--requests 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from ringfsck.lab import LabServers, World

ROWS_PER_OBJECT = 14.4  # 8+4 default world: 12 stripes, splits, versions, MPU parts, orphans, noise

_GENERATE = """
import json, resource, sys, time
from ringfsck.lab import generate_world
started = time.perf_counter()
generate_world(sys.argv[1], objects=int(sys.argv[2]), seed=1, server_state=sys.argv[3] == "1")
print(json.dumps({"seconds": time.perf_counter() - started, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _generate(path: Path, objects: int, server_state: bool) -> World:
    """Generate in a child process, so that its peak memory is measured alone."""
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _GENERATE, str(path), str(objects), "1" if server_state else "0"],
                         check=True, capture_output=True, text=True, env={"PYTHONPATH": root, "PATH": ""})
    figures = json.loads(out.stdout)
    world = World(path)
    rows = world.truth["counts"]["listkeys_rows"]
    label = "with server state" if server_state else "without server state"
    print(f"generate {label:22} {rows:>12,} listkeys rows in {figures['seconds']:6.1f} s = {rows / figures['seconds']:>10,.0f} rows/s,"
          f" peak {figures['peak_mib']:,.0f} MiB")
    return world


async def _raw_rate(url: str, keys: list[str], connections: int, requests: int) -> float:
    host, port = url.removeprefix("http://").split(":")
    remaining = iter(range(requests))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        for i in remaining:
            writer.write(f"HEAD /rebuild/arc-DATA/{keys[i % len(keys)]} HTTP/1.1\r\nHost: lab\r\n\r\n".encode())
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return requests / (time.perf_counter() - started)


async def _httpx_rate(url: str, keys: list[str], connections: int, requests: int) -> float:
    remaining = iter(range(requests))

    async def connection() -> None:
        # One small client per connection: httpcore's pool is quadratic in its connections.
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=1)) as client:
            for i in remaining:
                await client.head(f"/rebuild/arc-DATA/{keys[i % len(keys)]}")

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="listkeys rows of the generated world (default 10 M)")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100_000, help="requests per raw measurement (httpx: a quarter)")
    args = parser.parse_args()
    objects = max(1, round(args.rows / ROWS_PER_OBJECT))
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        world = _generate(Path(tmp) / "world", objects, server_state=True)
        _generate(Path(tmp) / "bare", objects, server_state=False)
        truth = world.truth
        keys = sorted(set(truth["sproxyd_keys"]) - set(truth["gaps"]["missing"]))[: 200_000]
        for latency in (0, 2):
            started = time.perf_counter()
            with LabServers(world.path, srebuildd_faults=f"latency_ms={latency}") as lab:
                ready = time.perf_counter() - started
                raw = asyncio.run(_raw_rate(lab.srebuildd_url, keys, args.connections, args.requests))
                client = asyncio.run(_httpx_rate(lab.srebuildd_url, keys, args.connections, args.requests // 4))
            print(f"srebuildd HEAD arc, {args.connections} keep-alive connections, {latency} ms latency: {raw:>8,.0f} req/s raw sockets,"
                  f" {client:>7,.0f} req/s httpx clients (servers ready in {ready:.1f} s)")


if __name__ == "__main__":
    main()
