"""``python -m ringfsck.lab.serve``: the lab servers as a process of their own.

Prints one JSON line with the servers' URLs once they listen, then serves until
SIGTERM or SIGINT. :class:`ringfsck.lab.LabServers` starts it for the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

from ringfsck.lab.servers import Faults, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ringfsck.lab.serve")
    parser.add_argument("--world", required=True, type=Path)
    parser.add_argument("--ring", default="DATA")
    parser.add_argument("--srebuildd-port", type=int, default=0)
    parser.add_argument("--bucketd-port", type=int, default=0)
    parser.add_argument("--srebuildd-faults", default=None)
    parser.add_argument("--bucketd-faults", default=None)
    args = parser.parse_args(argv)

    def ready(urls: dict[str, str]) -> None:
        print(json.dumps(urls), flush=True)

    async def run() -> None:
        task = asyncio.ensure_future(
            serve(args.world, ring=args.ring, srebuildd_port=args.srebuildd_port, bucketd_port=args.bucketd_port,
                  srebuildd_faults=Faults.parse(args.srebuildd_faults), bucketd_faults=Faults.parse(args.bucketd_faults), ready=ready)
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
