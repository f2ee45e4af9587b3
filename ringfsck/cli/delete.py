"""``ringfsck delete`` and ``ringfsck verify``: deleting a manifest's orphans, and checking them on a node first."""

from __future__ import annotations

from typing import Any

import click

from ringfsck.cli._common import SREBUILDD_SETTINGS, open_store, settings_options, srebuildd_endpoints_of, srebuildd_options
from ringfsck.deleter import DELETE_FORCES
from ringfsck.errors import EXIT_FAILURES


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from ringfsck.config import parse_size

    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _existing_or_s3(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from pathlib import Path

    from ringfsck.s3 import is_s3_url

    if not is_s3_url(value) and not Path(value).is_file():
        raise click.BadParameter(f"{value}: no such file", ctx=ctx, param=param)
    return value


# The manifest a command acts on (delete, verify).
_MANIFEST_OPTION = click.option(
    "--manifest",
    "manifest_path",
    required=True,
    callback=_existing_or_s3,
    metavar="FILE",
    help="A manifest written by 'ringfsck manifest': a file or s3://BUCKET/KEY.",
)


@click.command("delete")
@_MANIFEST_OPTION
@click.option("--execute", is_flag=True, help="Really delete. Without it, nothing is sent: a dry run.")
@click.option(
    "--only-keys",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Delete only these keys (one per line), all of which must be in the manifest.",
)
@click.option(
    "--max-keys",
    type=click.IntRange(min=1),
    default=None,
    help="Send at most N DELETEs this run (config: delete_budget.keys); the next run continues.",
)
@click.option(
    "--max-bytes",
    callback=_size,
    default=None,
    metavar="SIZE",
    help="Delete at most SIZE logical bytes this run, e.g. 10GiB or 500GB (config: delete_budget.bytes); the next run continues.",
)
@click.option(
    "--force",
    "force",
    multiple=True,
    type=click.Choice(DELETE_FORCES),
    help="retention: delete keys whose age is unknown (no usable X-Scal-Mtime, no listing mtime_max); journaled and reported.",
)
@srebuildd_options
@settings_options(**SREBUILDD_SETTINGS)
def delete_command(
    manifest_path: str,
    execute: bool,
    only_keys: str | None,
    max_keys: int | None,
    max_bytes: int | None,
    force: tuple[str, ...],
    settings,
    **_: Any,
) -> None:
    """Delete the orphans of a manifest on the chord path (dry run unless --execute).

    The manifest's checksum and its store and inputs are verified first, then
    the store itself: every key must be a reclaimable orphan of the manifest's
    run and match none of the S3 references the store holds now. Just before
    its DELETE each key is HEADed on the arcdata path: gone (404) is recorded
    as already gone; written after the S3 export's start minus retention
    (X-Scal-Mtime) it is kept as too recent; with no usable X-Scal-Mtime it is
    kept unless --force retention; a failed HEAD sends no DELETE. Canaries
    (referenced keys, HEADed on the arc path before the first DELETE, after 10
    and every 100 deletions) stop the run at once if one vanishes (exit 4), or
    after waiting if they cannot be asked (exit 5). Every outcome is journaled
    and fsync'ed before it counts; rerun the same command to continue (after a
    crash or a budget): confirmed keys are skipped, the others tried again.
    Exit code 1 if any key failed.

    \b
    Examples:
      ringfsck delete --manifest orphans.csv
      ringfsck delete --manifest orphans.csv --execute --max-rps 200
      ringfsck delete --manifest orphans.csv --execute --max-keys 1000 --max-bytes 10GiB
      ringfsck delete --manifest orphans.csv --execute --only-keys first-100.txt
      ringfsck delete --manifest s3://fsck/DATA/orphans.csv --config config.yml
    """
    from ringfsck.capacity import human_bytes
    from ringfsck.deleter import delete_from_manifest
    from ringfsck.remote.http import HttpPolicy

    store = open_store(settings)
    report = delete_from_manifest(
        store,
        manifest_path,
        execute=execute,
        only_keys=only_keys,
        policy=HttpPolicy.from_settings(settings),
        base_url=srebuildd_endpoints_of(store) if execute else None,  # a dry run sends nothing
        max_keys=max_keys,
        max_bytes=max_bytes,
        force=force,
    )
    todo = report.selected - report.already_confirmed
    if not todo:  # a rerun after every key was confirmed: nothing was sent, with --execute or not
        click.echo(
            f"{'' if execute else 'dry run: '}nothing left to delete: all {report.selected:,} selected of {report.manifest_keys:,} manifest keys "
            f"are already confirmed (deleted or already gone) in {report.journal_location}"
        )
        return
    if not report.executed:
        click.echo(
            f"dry run: would delete {todo:,} of {report.manifest_keys:,} manifest keys "
            f"({human_bytes(report.bytes_selected)} logical, {report.unsized_selected:,} unsized); "
            f"{report.already_confirmed:,} already confirmed in {report.journal_location}"
        )
        click.echo("Nothing was sent. Add --execute to delete.")
        return
    o = report.outcomes
    click.echo(
        f"deleted {o['deleted']:,}, already gone {o['already_gone']:,}, kept {report.kept:,} "
        f"({o['kept_too_recent']:,} too recent, {o['kept_no_mtime']:,} of unknown age), failed {o['failed']:,} in {report.seconds:.1f} s; "
        f"{human_bytes(report.bytes_reclaimed)} reclaimed; canaries asked {report.canary_rounds:,} times; journal {report.journal_location}"
    )
    for name in report.forced:
        click.echo(f"Warning: guard '{name}' overridden (recorded in the journal)", err=True)
    for kept in report.first_kept:
        click.echo(f"  kept: {kept}", err=True)
    stopped = f"stopped at the budget ({report.budget_reached}); " if report.budget_reached else ""
    if report.left_keys:
        click.echo(
            f"{stopped}left: {report.left_keys:,} keys ({human_bytes(report.left_bytes)} logical): rerun the same command to continue"
        )
    else:
        click.echo("left: nothing; every selected key is confirmed deleted or gone")
    if report.failed:
        for failure in report.first_failures:
            click.echo(f"  failed: {failure}", err=True)
        click.echo("Rerun the same command to retry the failed keys.", err=True)
        raise SystemExit(EXIT_FAILURES)


@click.command("verify")
@_MANIFEST_OPTION
@click.option("--sample", type=click.IntRange(min=1), default=None, help="Look up N random keys of the manifest (default: all).")
@settings_options(reverse_lookup_command="reverse_lookup_command")
@click.option(
    "--command",
    "reverse_lookup_command",
    default=None,
    metavar="TEMPLATE",
    help="The reverse-lookup command (config: reverse_lookup_command); placeholders {key}, {node}, {ip}, {port} "
    "(config: reverse_lookup_node, reverse_lookup_ip, reverse_lookup_port).",
)
def verify_command(manifest_path: str, sample: int | None, settings, **_: Any) -> None:
    """Reverse-look-up a manifest's keys on a node: which input key wrote each orphan.

    Runs the configured command for each key (no shell; a timeout,
    reverse_lookup_timeout, default 60 s; the exit status checked) and reads
    the one 40-hex input key it prints other than the queried key. A found
    input key that S3 references proves the analysis wrong: the manifest is
    refused (exit 4), and 'delete' refuses it too from then on. Lookups that
    fail or print something else are reported as unverified, never verified.
    Results are kept in STORE/verify/.

    \b
    Examples:
      ringfsck verify --manifest orphans.csv --sample 50
      ringfsck verify --manifest orphans.csv --command 'ssh {node} scalarcrevlookupid -b {ip}:{port} {key}'
      ringfsck verify --manifest orphans.csv --command 'python -m ringfsck.lab.revlookup --world lab-world {key}'
    """
    from ringfsck.reverse_lookup import verify_manifest

    report = verify_manifest(open_store(settings), manifest_path, sample=sample)
    o = report.outcomes
    click.echo(
        f"verify: {report.asked:,} keys looked up: {o['verified']:,} verified (written by an input key S3 does not reference), "
        f"{o['unverified']:,} unverified; results {report.results}"
    )
    for line in report.first_unverified:
        click.echo(f"  unverified: {line}", err=True)


COMMANDS = [delete_command, verify_command]
