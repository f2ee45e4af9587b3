"""``ringfsck lab``: the simulated RING and S3 connector."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from ringfsck.cli._common import RingfsckGroup


@click.group(cls=RingfsckGroup)
def lab() -> None:
    """A simulated RING and S3 connector, for tests, benchmarks and demos.

    \b
    Examples:
      ringfsck lab generate --out /tmp/world --objects 5000 --seed 7
      ringfsck lab serve --world /tmp/world --srebuildd-port 8181 --bucketd-port 9000
    """


@lab.command("generate")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write the world into.")
@click.option("--objects", default=1000, show_default=True, type=click.IntRange(min=1), help="S3 objects to plant (about 12 listkeys rows each).")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed: the same seed gives the same world.")
@click.option("--arc", default="8+4", show_default=True, metavar="K+M", help="ARC schema of the data.")
@click.option("--cos", default=2, show_default=True, type=click.IntRange(0, 5), help="COS level of the replicated data.")
@click.option("--orphans", default=0.05, show_default=True, type=click.FloatRange(0, 1), help="Orphan main chunks, as a share of --objects.")
@click.option("--gaps", default=0.03, show_default=True, type=click.FloatRange(0, 1), help="Objects missing, unrecoverable or degraded on the RING.")
@click.option("--splits", default=0.05, show_default=True, type=click.FloatRange(0, 1), help="Objects stored as split indexes with subkeys.")
@click.option("--nodes", default=6, show_default=True, type=click.IntRange(min=1), help="RING nodes (one listkeys file each).")
@click.option("--buckets", default=4, show_default=True, type=click.IntRange(min=1), help="S3 buckets.")
def generate_command(out: str, objects: int, seed: int, arc: str, cos: int, orphans: float, gaps: float, splits: float, nodes: int, buckets: int) -> None:
    """Write a world: listkeys per node, S3 exports (CSV and JSON lines), server state and truth.json.

    truth.json lists what was planted: orphans with their sizes, gaps by status,
    debris, duplicate keys, split indexes with their subkeys, every sproxyd key.

    \b
    Examples:
      ringfsck lab generate --out /tmp/world
      ringfsck lab generate --out /tmp/big --objects 1000000 --splits 0 --seed 3
      ringfsck lab generate --out /tmp/w42 --arc 4+2 --cos 1 --orphans 0.2 --nodes 3
    """
    from ringfsck.lab import generate_world

    try:
        world = generate_world(out, objects=objects, seed=seed, arc=arc, cos=cos, orphans=orphans, gaps=gaps, splits=splits, nodes=nodes, buckets=buckets)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    counts = world.truth["counts"]
    click.echo(f"world in {world.path}: " + ", ".join(f"{name} {value:,}" for name, value in counts.items()))


@lab.command("serve")
@click.option("--world", required=True, type=click.Path(exists=True, file_okay=False), help="A directory written by 'ringfsck lab generate'.")
@click.option("--ring", default="DATA", show_default=True, help="RING name in the srebuildd paths (rebuild/arc-DATA, …).")
@click.option("--srebuildd-port", default=0, show_default=True, type=int, help="Port for srebuildd on 127.0.0.1 (0: any free port).")
@click.option("--bucketd-port", default=0, show_default=True, type=int, help="Port for bucketd on 127.0.0.1 (0: any free port).")
@click.option("--srebuildd-faults", default=None, metavar="SPEC", help="Faults, e.g. 'error_rate=0.1,drop_rate=0.05,latency_ms=2,hang_rate=0.01,fail_keys=K1;K2'.")
@click.option("--bucketd-faults", default=None, metavar="SPEC", help="Faults for bucketd, same syntax.")
def serve_command(world: str, ring: str, srebuildd_port: int, bucketd_port: int, srebuildd_faults: str | None, bucketd_faults: str | None) -> None:
    """Serve a world's srebuildd and bucketd on 127.0.0.1 until interrupted.

    Faults apply per request: latency_ms (added delay), error_rate (503/500),
    drop_rate (connection closed with no answer), hang_rate (answer after
    hang_seconds, default 60), fail_keys (always 503 for these keys). Change
    them at run time with POST /_lab/faults; read GET /_lab/requests and, on
    srebuildd, GET /_lab/deleted.

    \b
    Examples:
      ringfsck lab serve --world /tmp/world
      ringfsck lab serve --world /tmp/world --srebuildd-port 8181 --srebuildd-faults error_rate=0.1
      curl -s localhost:8181/_lab/deleted
    """
    from ringfsck.lab.servers import Faults, serve

    def ready(urls: dict[str, str]) -> None:
        click.echo(f"srebuildd {urls['srebuildd']}  (paths rebuild/arc-{ring}, rebuild/arcdata-{ring}, rebuild/chord-{ring})")
        click.echo(f"bucketd   {urls['bucketd']}")
        click.echo("Press Ctrl-C to stop.")

    async def run() -> None:
        task = asyncio.ensure_future(
            serve(Path(world), ring=ring, srebuildd_port=srebuildd_port, bucketd_port=bucketd_port,
                  srebuildd_faults=Faults.parse(srebuildd_faults), bucketd_faults=Faults.parse(bucketd_faults), ready=ready)
        )
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            pass

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen: {exc.strerror}") from None


COMMANDS = [lab]
