"""``ringfsck resolve`` and ``ringfsck size``: the srebuildd lookups."""

from __future__ import annotations

from typing import Any

import click

from ringfsck.cli._common import SREBUILDD_SETTINGS, open_store, settings_options, srebuildd_endpoints_of, srebuildd_options
from ringfsck.errors import EXIT_FAILURES
from ringfsck.remote.batches import JobReport
from ringfsck.remote.http import HttpPolicy


def _remember_srebuildd(store, settings) -> None:
    """The URL that answered, for the commands printed later (report, manifest) to carry."""
    from ringfsck.commands import remember_srebuildd

    if settings.srebuildd_base_url:
        remember_srebuildd(store, settings.srebuildd_base_url)


_PROCESSES_OPTION = click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Client processes sharing the keys by key range, each with its share of --concurrency and the --max-rps "
    "ceilings (default: one per core when there are 100,000 keys or more; 1: this process only).",
)


def _print(report: JobReport, what: str) -> None:
    outcomes = ", ".join(f"{count:,} {status}" for status, count in sorted(report.outcomes.items())) or "nothing to ask"
    processes = f" by {report.processes} processes" if report.processes > 1 else ""
    click.echo(
        f"{what}: {report.requested:,} keys asked in {report.seconds:.1f} s ({report.rate:,.0f} keys/s{processes}): {outcomes}; "
        f"{report.already_final:,} already final{endpoint_figures(report.endpoints)}"
    )
    if report.errors:
        click.echo(f"{report.errors:,} lookups failed after every retry and stay unknown; run the command again to retry them.", err=True)
        for reason in report.first_errors:
            click.echo(f"  {reason}", err=True)


def endpoint_figures(endpoints: list[dict[str, Any]]) -> str:
    """Per-endpoint figures for a closing line, when there was more than one endpoint."""
    if len(endpoints) < 2:
        return ""
    parts = [
        f"{e['url']} {e['requests']:,} requests, {e['failures']:,} failed" + (f", set aside: {e['set_aside']}" if e["set_aside"] else "")
        for e in endpoints
    ]
    return "; endpoints: " + "; ".join(parts)


@click.command("resolve")
@srebuildd_options
@_PROCESSES_OPTION
@settings_options(**SREBUILDD_SETTINGS)
def resolve_command(settings, processes, **_: Any) -> None:
    """Find split objects: HEAD every S3 input key on the arc path, read split indexes.

    Split indexes and their subkeys count as referenced by the analysis. Answers
    land in the splits table batch by batch: an interrupted run resumes where it
    stopped, and a re-run only asks keys whose lookup failed or never happened.
    A failed lookup is never read as "not split": it keeps the analysis
    incomplete, so nothing is deleted. Exit code 1 if lookups still failed.

    \b
    Examples:
      ringfsck resolve --srebuildd http://10.0.0.5:81
      ringfsck resolve --config config.yml --concurrency 32 --max-rps 500
    """
    from ringfsck.resolve import resolve_splits

    store = open_store(settings)
    report = resolve_splits(store, base_url=srebuildd_endpoints_of(store), policy=HttpPolicy.from_settings(settings), processes=processes)
    _remember_srebuildd(store, settings)
    _print(report, "resolve")
    if report.errors:
        raise SystemExit(EXIT_FAILURES)


@click.command("size")
@srebuildd_options
@click.option(
    "--sample",
    "size_sample",
    type=click.IntRange(min=1),
    default=None,
    help="Referenced ARC main chunks to HEAD to measure what X-Scal-Size means (config: size_sample, default 200).",
)
@_PROCESSES_OPTION
@settings_options(**SREBUILDD_SETTINGS, size_sample="size_sample")
def size_command(settings, processes, **_: Any) -> None:
    """Size the orphans of the latest analysis: HEAD each on the arcdata path (X-Scal-Size).

    What X-Scal-Size measures is not documented: the object's size, or one ARC
    chunk's (about size / k, a k-fold difference). Once per analysis, size first
    HEADs a sample of referenced ARC main chunks whose S3 sizes bucketd gave and
    compares: the reading that 90 % of the answers agree with is used. Without a
    measurement (file exports carry no sizes) capacity is computed reading it as
    the object's size, and says so.

    Prints orphan capacity, logical and raw, per protection with the multipliers
    stated (from X-Scal-Size, and raw per logical: ARC k+m (k+m)/k, COS n n+1),
    and writes it to the run's capacity.json. Orphans whose size could not be
    read are counted as unsized, never guessed; a re-run retries them.

    \b
    Examples:
      ringfsck size --srebuildd http://10.0.0.5:81
      ringfsck size --srebuildd http://10.0.0.5:81 --sample 500
      ringfsck sql "select * from orphan_sizes order by size desc limit 20"
    """
    from ringfsck.capacity import capacity_summary, human_bytes
    from ringfsck.sizing import size_orphans

    store = open_store(settings)
    report = size_orphans(store, base_url=srebuildd_endpoints_of(store), policy=HttpPolicy.from_settings(settings), processes=processes)
    _remember_srebuildd(store, settings)
    _print(report, "size")
    capacity = capacity_summary(store)
    totals = capacity["totals"]
    click.echo(
        f"orphans {totals['orphans']:,}: sized {totals['sized']:,}, unsized {totals['unsized']:,}, failed {totals['failed']:,}, already gone {totals['gone']:,}"
    )
    click.echo(f"X-Scal-Size {capacity['size_reading']['statement']}")
    click.echo(f"capacity: {human_bytes(totals['logical_bytes'])} logical, {human_bytes(totals['raw_bytes'])} raw")
    for row in capacity["by_protection"]:
        name = f"ARC {row['schema']}" if row["protection"] == "arc" else f"COS {row['schema']}"
        click.echo(
            f"  {name:10s} {row['orphans']:>10,} orphans  {human_bytes(row['logical_bytes']):>10} logical  x{row['raw_multiplier']:g} = {human_bytes(row['raw_bytes']):>10} raw"
            f"  (logical = X-Scal-Size x{row['x_scal_size_to_logical']:g}, raw = X-Scal-Size x{row['x_scal_size_to_raw']:g})"
        )
    if report.errors:
        raise SystemExit(EXIT_FAILURES)


COMMANDS = [resolve_command, size_command]
