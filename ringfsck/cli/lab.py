"""``ringfsck lab``: the simulated RING and S3 connector."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ringfsck.cli._common import RingfsckGroup
from ringfsck.errors import ConfigError


@click.group(cls=RingfsckGroup)
def lab() -> None:
    """A simulated RING and S3 connector, for tests, benchmarks and demos.

    'generate' writes a world (RING listings, S3 exports, server state and the
    truth of what was planted); 'serve' serves its srebuildd, bucketd, RING
    supervisor and node admin endpoints on 127.0.0.1 with injectable faults.

    \b
    Examples:
      ringfsck lab generate --out /tmp/world --objects 5000 --seed 7
      ringfsck lab serve --world /tmp/world --srebuildd-port 8181 --bucketd-port 9000
    """


_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """``MIN-MAX`` in bytes, with binary K, M, G, T suffixes: ``4K-1G``."""
    parts = [_SIZE.fullmatch(part) for part in value.split("-")]
    if len(parts) != 2 or not all(parts):
        raise click.BadParameter(f"{value!r}: expected MIN-MAX such as 1K-256M")
    low, high = (int(m.group(1)) * _UNITS[m.group(2).upper()] for m in parts)  # type: ignore[union-attr]  # every part matched the pattern above
    if not 1 <= low <= high:
        raise click.BadParameter(f"{value!r}: expected 1 <= MIN <= MAX")
    return low, high


@lab.command("generate")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Directory to write the world into; a world already there is replaced. Example: --out /tmp/world",
)
@click.option(
    "--objects",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="S3 objects to plant, about 14 listkeys rows each with 8+4 (700,000 objects: ~10 M rows). Example: --objects 700000",
)
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Random seed: the same seed and options write the same world. Example: --seed 7"
)
@click.option("--arc", default="8+4", show_default=True, metavar="K+M", help="ARC schema of the data. Example: --arc 4+2")
@click.option(
    "--cos",
    default=2,
    show_default=True,
    type=click.IntRange(0, 5),
    help="COS level of the replicated data (COS N keeps N+1 copies). Example: --cos 3",
)
@click.option(
    "--orphans",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Orphan main chunks, as a share of --objects (at least 6 unless 0). Example: --orphans 0.2",
)
@click.option(
    "--gaps",
    default=0.02,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of objects missing, unrecoverable or degraded on the RING. Example: --gaps 0",
)
@click.option(
    "--splits",
    default=0.05,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of objects stored as split indexes with subkeys. Example: --splits 0",
)
@click.option(
    "--nodes", default=6, show_default=True, type=click.IntRange(min=1), help="RING nodes, one listkeys file each. Example: --nodes 12"
)
@click.option(
    "--buckets",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="S3 buckets, spread over raft sessions 1 and 2. Example: --buckets 20",
)
@click.option(
    "--sizes",
    default="1K-256M",
    show_default=True,
    callback=_sizes,
    metavar="MIN-MAX",
    help="Logical sizes of main chunks (X-Scal-Size), log-uniform, binary units. Example: --sizes 4K-1G",
)
@click.option(
    "--server-state/--no-server-state",
    default=True,
    show_default=True,
    help="Write what 'lab serve' needs (lab/); skip it for worlds that are only ingested. Example: --no-server-state",
)
@click.option(
    "--export-error",
    is_flag=True,
    help="Log one 'error fetching object locations array' in the first bucket's JSON-lines export (it is then incomplete). Example: --export-error",
)
def generate_command(
    out: str,
    objects: int,
    seed: int,
    arc: str,
    cos: int,
    orphans: float,
    gaps: float,
    splits: float,
    nodes: int,
    buckets: int,
    sizes: tuple[int, int],
    server_state: bool,
    export_error: bool,
) -> None:
    """Write a world: listkeys per node, S3 exports (CSV and JSON lines), server state and truth.json.

    \b
    DIR/listkeys/node-NN.csv          ringsh listKeys rows: chunk,main chunk,disk,flag
    DIR/s3-bucketd/<bucket>_keys.txt  "bucket","encoded object key","sproxyd key" (jq over the log)
    DIR/s3-bucketd-jsonl/<bucket>.log s3utils verifyBucketSproxydKeys.js's JSON-lines log
    DIR/lab/                          what 'ringfsck lab serve' serves
    DIR/truth.json                    what was planted: orphans with sizes, gaps, debris,
                                      duplicates, splits, every sproxyd key, counts

    \b
    Examples:
      ringfsck lab generate --out /tmp/world
      ringfsck lab generate --out /tmp/big --objects 700000 --splits 0 --seed 3 --no-server-state
      ringfsck lab generate --out /tmp/w42 --arc 4+2 --cos 1 --orphans 0.2 --nodes 3 --buckets 2
    """
    from ringfsck.lab import generate_world

    try:
        world = generate_world(
            out,
            objects=objects,
            seed=seed,
            arc=arc,
            cos=cos,
            orphans=orphans,
            gaps=gaps,
            splits=splits,
            nodes=nodes,
            buckets=buckets,
            sizes=sizes,
            server_state=server_state,
            export_error=export_error,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    counts = world.truth["counts"]
    click.echo(f"world in {world.path}: " + ", ".join(f"{name} {value:,}" for name, value in counts.items()))


@lab.command("serve")
@click.option(
    "--world",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="A directory written by 'ringfsck lab generate'. Example: --world /tmp/world",
)
@click.option(
    "--ring",
    default="DATA",
    show_default=True,
    help="RING name in the srebuildd paths (rebuild/arc-RING, rebuild/arcdata-RING, rebuild/chord-RING). Example: --ring DATA2",
)
@click.option(
    "--srebuildd-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of srebuildd on 127.0.0.1 (0: any free port). Example: --srebuildd-port 8181",
)
@click.option(
    "--bucketd-port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of bucketd on 127.0.0.1 (0: any free port). Example: --bucketd-port 9000",
)
@click.option(
    "--srebuildd-faults",
    default=None,
    metavar="SPEC",
    help="Faults of srebuildd. Example: --srebuildd-faults 'error_rate=0.1,drop_rate=0.05,latency_ms=2,hang_rate=0.01,fail_keys=K1;K2'",
)
@click.option(
    "--bucketd-faults",
    default=None,
    metavar="SPEC",
    help="Faults of bucketd, same syntax (fail_keys may name buckets). Example: --bucketd-faults error_rate=0.05",
)
@click.option(
    "--size-reading",
    type=click.Choice(["object", "chunk"]),
    default="object",
    show_default=True,
    help="What srebuildd's X-Scal-Size measures on the arcdata path: the object's size, or one ARC chunk's "
    "(ceil(size / k); COS keys answer the object's size either way). Example: --size-reading chunk",
)
@click.option(
    "--node-faults",
    multiple=True,
    metavar="NODE:SPEC",
    help="Faults of one RING node (or 'supervisor'), repeatable: unreachable, bad_login, cut_at, cut_on_line, slow_ms, "
    "fail_requests, chunked, unframed. Example: --node-faults node-02:cut_at=0.5",
)
@click.option(
    "--ring-tls",
    is_flag=True,
    help="Serve the supervisor and nodes over HTTPS with a generated certificate (needs the cryptography package). Example: --ring-tls",
)
@click.option(
    "--node-ips",
    is_flag=True,
    help="Give each node a loopback ip of its own (127.0.0.2, 127.0.0.3, ...) with a srebuildd on it, at one port for all "
    "(what 'resolve' finds from the listing when no srebuildd is set). Example: --node-ips --srebuildd-port 8181",
)
def serve_command(
    world: str,
    ring: str,
    srebuildd_port: int,
    bucketd_port: int,
    srebuildd_faults: str | None,
    bucketd_faults: str | None,
    size_reading: str,
    node_faults: tuple[str, ...],
    ring_tls: bool,
    node_ips: bool,
) -> None:
    """Serve a world's srebuildd, bucketd, RING supervisor and nodes on 127.0.0.1 until interrupted.

    The supervisor answers the ring's XML configuration, each node its
    listkeys behind the daemons' cookie login; the lab's login is printed
    with a password file for 'ringfsck ingest ring' (removed at exit).

    Faults apply to every request but the admin ones: latency_ms (added delay),
    error_rate (503 or 500), drop_rate (connection closed with no answer),
    hang_rate (answer only after hang_seconds, default 60), fail_keys (always
    503 for these keys or buckets, ';'-separated), fail_after (503 for every
    request after the first N: a deterministic outage). Admin endpoints on both
    servers: GET /_lab/health, GET /_lab/requests, POST /_lab/reset-stats,
    GET|POST /_lab/faults (JSON); on srebuildd GET /_lab/deleted.

    \b
    Examples:
      ringfsck lab serve --world /tmp/world
      ringfsck lab serve --world /tmp/world --srebuildd-port 8181 --srebuildd-faults error_rate=0.1
      ringfsck lab serve --world /tmp/world --size-reading chunk
      ringfsck lab serve --world /tmp/world --ring-tls --node-faults node-02:cut_at=0.5
      ringfsck lab serve --world /tmp/world --node-ips --srebuildd-port 8181
      curl -s -X POST localhost:8181/_lab/faults -d '{"drop_rate": 0.05, "fail_keys": []}'
      curl -s localhost:8181/_lab/deleted
    """
    import tempfile

    from ringfsck.lab.ring_nodes import LAB_LOGIN, LAB_PASSWORD, generated_tls, parse_node_faults
    from ringfsck.lab.serve import lab_servers, run_servers, world_node_hosts
    from ringfsck.lab.servers import Faults

    try:
        node_hosts = world_node_hosts(Path(world)) if node_ips else None
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc)) from None

    with tempfile.TemporaryDirectory(prefix="ringfsck-lab-") as scratch:
        password_file = Path(scratch) / "sup-password"
        password_file.write_text(LAB_PASSWORD + "\n")
        password_file.chmod(0o600)
        ssl_context, ca_bundle = None, None
        if ring_tls:
            try:
                ssl_context, ca_bundle = generated_tls(Path(scratch), node_hosts or ())
            except ImportError:
                raise ConfigError("--ring-tls needs the cryptography package (pip install cryptography)") from None
        urls: dict = {}

        def ready(part: dict) -> None:
            urls.update(part)
            if "srebuildd" not in urls or "ring" not in urls:
                return
            click.echo(f"srebuildd  {urls['srebuildd']}  (rebuild/arc-{ring}, rebuild/arcdata-{ring}, rebuild/chord-{ring})")
            click.echo(f"bucketd    {urls['bucketd']}  (raft sessions 1 and 2)")
            click.echo(f"supervisor {urls['ring']['supervisor']}  (ring {ring}, login {LAB_LOGIN}, password in {password_file})")
            node_srebuildd = urls["ring"].get("srebuildd", {})
            for name, url in urls["ring"]["nodes"].items():
                click.echo(f"  {name:10s} {url}" + (f"  srebuildd {node_srebuildd[name]}" if name in node_srebuildd else ""))
            tls = f" --ca-bundle {ca_bundle}" if ca_bundle else ""
            click.echo(
                f"List it: ringfsck ingest ring --supervisor {urls['ring']['supervisor']} --ring {ring} --login {LAB_LOGIN} "
                f"--password-file {password_file}{tls}"
            )
            click.echo("Press Ctrl-C to stop.")

        faults = {"srebuildd_faults": Faults.parse(srebuildd_faults), "bucketd_faults": Faults.parse(bucketd_faults)}
        try:
            run_servers(
                lab_servers(
                    Path(world),
                    ring=ring,
                    srebuildd_port=srebuildd_port,
                    bucketd_port=bucketd_port,
                    size_reading=size_reading,
                    faults=faults,
                    node_faults=parse_node_faults(list(node_faults)),
                    ssl_context=ssl_context,
                    ready=ready,
                    ring_ready=lambda urls: ready({"ring": urls}),
                    node_hosts=node_hosts,
                )
            )
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(f"cannot listen on 127.0.0.1: {exc.strerror}") from None


COMMANDS = [lab]
