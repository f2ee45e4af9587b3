"""The ``ringfsck`` command line: a thin layer over the Python API."""

from __future__ import annotations

import click

from ringfsck import __version__
from ringfsck.cli._common import RingfsckGroup


@click.group(cls=RingfsckGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ringfsck")
def main() -> None:
    """Check a Scality RING against its S3 metadata: find orphans and gaps, size and delete orphans safely.

    \b
    A typical run (listing first, then the S3 export):
      ringfsck ingest listkeys /data/DATA/listkeys.csv/
      ringfsck ingest bucketd --url http://127.0.0.1:9000 --raft-session 1
      ringfsck resolve --srebuildd http://10.0.0.5:81
      ringfsck analyze --arc 8+4 --cos 2
      ringfsck size --srebuildd http://10.0.0.5:81 && ringfsck report
      ringfsck manifest -o orphans.csv && ringfsck delete --manifest orphans.csv

    Try it all on a simulated RING first: ringfsck demo

    Exit codes: 0 ok, 1 some items failed, 2 usage or config error, 3 bad input,
    4 refused by a safety check, 5 remote service error, 130 interrupted.
    """


def _register() -> None:
    import importlib

    for name in ("ingest", "analyze", "query", "remote", "delete", "demo", "lab"):
        module = importlib.import_module(f"ringfsck.cli.{name}")
        for command in module.COMMANDS:
            main.add_command(command)


_register()
