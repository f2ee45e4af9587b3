"""How fast the lab is, so client benchmarks measure the client, not the lab.

Prints the world generation rate (listkeys rows/s) and the lab srebuildd's
request rate (HEAD on the arc path) for raw keep-alive connections and for
httpx clients, without and with 2 ms of added latency.

    python benchmarks/bench_lab_server.py [--objects 200000] [--connections 200] [--requests 40000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from ringfsck.lab import LabServers, generate_world


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
    context = httpx.create_ssl_context()
    remaining = iter(range(requests))

    async def connection() -> None:
        async with httpx.AsyncClient(base_url=url, verify=context, timeout=30) as client:
            for i in remaining:
                await client.head(f"/rebuild/arc-DATA/{keys[i % len(keys)]}")

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=200_000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--requests", type=int, default=40_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        started = time.perf_counter()
        world = generate_world(Path(tmp) / "world", objects=args.objects, seed=1)
        seconds = time.perf_counter() - started
        rows = world.truth["counts"]["listkeys_rows"]
        print(f"generate (with server state): {rows:,} listkeys rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
        started = time.perf_counter()
        bulk = generate_world(Path(tmp) / "bulk", objects=args.objects, seed=1, server_state=False)
        seconds = time.perf_counter() - started
        rows = bulk.truth["counts"]["listkeys_rows"]
        print(f"generate (benchmark world):   {rows:,} listkeys rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
        keys = world.truth["sproxyd_keys"]
        for latency in (0, 2):
            faults = f"latency_ms={latency}" if latency else None
            with LabServers(world.path, srebuildd_faults=faults) as lab:
                raw = asyncio.run(_raw_rate(lab.srebuildd_url, keys, args.connections, args.requests))
                client = asyncio.run(_httpx_rate(lab.srebuildd_url, keys, args.connections, args.requests // 4))
            print(f"srebuildd HEAD, {args.connections} keep-alive connections, {latency} ms latency: "
                  f"{raw:,.0f} req/s (raw sockets), {client:,.0f} req/s (httpx clients)")


if __name__ == "__main__":
    main()
