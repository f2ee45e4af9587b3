"""``ringfsck manifest``: the deletion manifest of the latest analysis, refused while it is incomplete."""

from __future__ import annotations

import click

from ringfsck.cli._common import open_store, settings_options
from ringfsck.manifest import CHECKS


@click.command("manifest")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Manifest CSV to write, a file or s3://BUCKET/KEY (a Parquet copy goes to OUTPUT.parquet).",
)
@click.option(
    "--force", multiple=True, type=click.Choice(CHECKS), help="Override one named safety check (repeatable); recorded in the manifest."
)
@settings_options()
def manifest_command(output: str, force: tuple[str, ...], settings) -> None:
    """Write the deletion manifest of the latest analysis: its orphans, tied to its inputs.

    Refuses (exit 4) when the analysis is incomplete (failed or missing split
    lookups, rejected export rows, export errors, unreadable or unfinished
    exports): nothing overrides that, since an unknown reference could be any
    orphan. Also refuses when orphans are more than max_orphan_share of the
    candidates (default 10 %), or when the RING listing is newer than the S3
    export; --force CHECK overrides one of these two: orphan-share,
    listing-order.

    \b
    Examples:
      ringfsck manifest -o orphans.csv
      ringfsck manifest -o orphans.csv --force listing-order
      ringfsck manifest -o s3://fsck/DATA/orphans.csv --config config.yml
    """
    from ringfsck.capacity import human_bytes
    from ringfsck.commands import absolute_location, printed_command
    from ringfsck.manifest import write_manifest

    store = open_store(settings)
    manifest = write_manifest(store, output, force=force)
    header = manifest.header
    click.echo(
        f"{output}: {header['key_count']:,} orphan main chunks of run {header['run_id']}, "
        f"{human_bytes(header['logical_bytes'])} logical ({header['unsized']:,} unsized); sha256 {header['keys_sha256'][:16]}…"
    )
    for name, reason in header["forced"].items():
        click.echo(f"Warning: check '{name}' overridden: {reason}", err=True)
    manifest_location = absolute_location(output)
    click.echo(f"Next: {printed_command(store, 'delete', '--manifest', manifest_location)}   # dry run")
    click.echo(f"      {printed_command(store, 'delete', '--manifest', manifest_location, '--execute', srebuildd=True)}")


COMMANDS = [manifest_command]
