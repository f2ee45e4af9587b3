"""``python -m ringfsck.lab.serve``: the lab servers as a process of their own.

Prints one JSON line with the servers' URLs once both listen (what
:class:`ringfsck.lab.LabServers` waits for), then serves until SIGTERM or SIGINT.
A world that cannot be served is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ringfsck.errors import ConfigError
from ringfsck.lab.servers import SIZE_READINGS, Faults, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ringfsck.lab.serve", description=__doc__)
    parser.add_argument("--world", required=True, type=Path, help="a directory written by 'ringfsck lab generate'")
    parser.add_argument("--ring", default="DATA", help="RING name in the srebuildd paths")
    parser.add_argument("--srebuildd-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--bucketd-port", type=int, default=0, help="0: any free port")
    parser.add_argument("--srebuildd-faults", default=None, help="e.g. error_rate=0.1,drop_rate=0.05")
    parser.add_argument("--bucketd-faults", default=None)
    parser.add_argument("--size-reading", choices=SIZE_READINGS, default="object",
                        help="what srebuildd's X-Scal-Size measures: the object's size, or one ARC chunk's (ceil(size / k))")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is no longer our parent")
    args = parser.parse_args(argv)
    try:
        faults = {"srebuildd_faults": Faults.parse(args.srebuildd_faults), "bucketd_faults": Faults.parse(args.bucketd_faults)}
        run(args.world, ring=args.ring, srebuildd_port=args.srebuildd_port, bucketd_port=args.bucketd_port, parent_pid=args.parent_pid,
            size_reading=args.size_reading, ready=lambda urls: print(json.dumps(urls), flush=True), **faults)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"lab servers: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
