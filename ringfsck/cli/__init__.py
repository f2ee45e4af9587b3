"""The ``ringfsck`` command line: a thin layer over the Python API."""

from __future__ import annotations

import click

from ringfsck import __version__
from ringfsck.cli._common import RingfsckGroup, global_store_options


@click.group(cls=RingfsckGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ringfsck")
@global_store_options
def main() -> None:
    """Check a Scality RING against its S3 metadata: find orphans and gaps, size and delete orphans safely.

    \b
    The offline job in one command (listing first, then the S3 export):
      ringfsck check --listkeys /data/DATA/listkeys.csv/ --s3keys /data/DATA/s3-bucketd/ --arc 8+4

    \b
    A typical run, step by step:
      ringfsck ingest listkeys /data/DATA/listkeys.csv/
      ringfsck ingest bucketd --url http://127.0.0.1:9000 --raft-session 1
      ringfsck resolve --srebuildd http://10.0.0.5:81
      ringfsck analyze --arc 8+4 --cos 2
      ringfsck size --srebuildd http://10.0.0.5:81 && ringfsck report
      ringfsck manifest -o orphans.csv && ringfsck delete --manifest orphans.csv

    Try it all on a simulated RING first: ringfsck demo

    \b
    --config, --store and --cache-dir go before the command or after it:
      ringfsck --store /data/fsck/DATA analyze
      ringfsck --config /etc/ringfsck/config.yml check
    Precedence: the option after the command > the option before it >
    RINGFSCK_* environment (RINGFSCK_STORE, RINGFSCK_CONFIG...) > config file > defaults.

    Exit codes: 0 ok, 1 some items failed, 2 usage or config error, 3 bad input,
    4 refused by a safety check, 5 remote service error, 6 no space left on a disk,
    130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
    """


# Each command's module is imported only when the command runs (or help lists it),
# so a command pays for its own imports only.
_COMMAND_MODULES = {
    "ingest": "ingest",
    "resolve": "remote",
    "analyze": "analyze",
    "check": "check",
    "size": "remote",
    "report": "report",
    "manifest": "manifest",
    "delete": "delete",
    "forget": "forget",
    "verify": "delete",
    "sql": "query",
    "demo": "demo",
    "lab": "lab",
}


def _list_commands(ctx: click.Context) -> list[str]:
    return list(_COMMAND_MODULES)


def _get_command(ctx: click.Context, name: str) -> click.Command | None:
    import importlib

    module = _COMMAND_MODULES.get(name)
    if module is None:
        return None
    commands = {command.name: command for command in importlib.import_module(f"ringfsck.cli.{module}").COMMANDS}
    return commands[name]


main.list_commands = _list_commands  # type: ignore[method-assign]  # commands load on first use
main.get_command = _get_command  # type: ignore[method-assign, assignment]  # commands load on first use
