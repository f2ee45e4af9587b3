"""``ringfsck demo``: the whole job on a built-in simulated RING."""

from __future__ import annotations

import click

from ringfsck.errors import EXIT_FAILURES


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=None,
    help="Where to put the world and the store (default: a new temp dir).",
)
@click.option("--objects", default=2000, show_default=True, type=click.IntRange(min=50), help="S3 objects in the simulated world.")
@click.option("--seed", default=7, show_default=True, type=int, help="Random seed of the world.")
@click.option(
    "--faults",
    default="error_rate=0.05,drop_rate=0.02",
    show_default=True,
    metavar="SPEC",
    help="Faults the lab servers inject (5xx and dropped connections), to show they change nothing.",
)
def demo_command(directory: str | None, objects: int, seed: int, faults: str) -> None:
    """Run the whole job on a simulated RING and S3 connector, on 127.0.0.1 only.

    Generates a world with planted orphans, gaps, split objects and odd object
    names, serves it as srebuildd and bucketd with faults injected, then runs
    ingest, bucketd export, resolve, analyze, size, report, manifest and
    delete --execute, and checks the results against what was planted.
    Needs no network and no external service.

    \b
    Examples:
      ringfsck demo
      ringfsck demo --dir /tmp/demo --objects 20000
      ringfsck sql "select * from orphan_sizes limit 5" --store /tmp/demo/store
    """
    import shlex

    from ringfsck.capacity import human_bytes
    from ringfsck.commands import absolute_location
    from ringfsck.demo import run_demo

    result = run_demo(directory, objects=objects, seed=seed, faults=faults, echo=click.echo)
    counts = result.summary["counts"]
    totals = result.capacity["totals"]
    gaps = counts["gaps"]
    click.echo("")
    click.echo(
        f"RING main chunks {counts['ring_main_chunks']:,}, S3 references {counts['s3_references']:,} ({counts['split_subkeys']:,} split subkeys)"
    )
    click.echo(
        f"orphans          {counts['orphans']:,} of {counts['candidates']:,} candidates: "
        f"{human_bytes(totals['logical_bytes'])} logical, {human_bytes(totals['raw_bytes'])} raw"
    )
    click.echo(f"  X-Scal-Size {result.capacity['size_reading']['statement']}")
    for row in result.capacity["by_protection"]:
        name = f"ARC {row['schema']}" if row["protection"] == "arc" else f"COS {row['schema']}"
        click.echo(f"  {name:9s} {row['orphans']:>6,} orphans  {human_bytes(row['raw_bytes']):>10} raw (x{row['raw_multiplier']:g})")
    click.echo(
        f"gaps             {sum(gaps.values()):,}: unrecoverable {gaps['unrecoverable']:,} (data loss), "
        f"missing {gaps['missing']:,}, degraded {gaps['degraded']:,}"
    )
    click.echo(f"debris {counts['debris']:,}, duplicate keys {counts['duplicates']:,}; took {sum(s for _, s in result.steps):.1f} s")
    o = result.deletion.outcomes
    click.echo(
        f"deleted          {o['deleted']:,} orphans ({human_bytes(result.deletion.bytes_reclaimed)} logical reclaimed), failed {o['failed']:,}"
    )
    click.echo(f"report: {result.report}")
    store = absolute_location(str(result.store))
    click.echo(f"store:  {store}")
    click.echo(f"Next: {shlex.join(['ringfsck', 'sql', 'select * from gaps', '--store', store])}")
    if result.matches_truth:
        click.echo("Everything matches what the lab planted.")
    else:
        click.echo("MISMATCH with what the lab planted: this installation is broken.", err=True)
        raise SystemExit(EXIT_FAILURES)


COMMANDS = [demo_command]
