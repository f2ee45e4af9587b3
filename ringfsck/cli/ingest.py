"""``ringfsck ingest``: land inputs in the store."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from ringfsck.cli._common import RingfsckGroup, open_store, settings_options
from ringfsck.ingest import IngestReport, ingest_listkeys, ingest_s3keys


@click.group(cls=RingfsckGroup)
def ingest() -> None:
    """Land RING listkeys and S3 key exports in the store as Parquet.

    Re-ingesting a file that did not change does nothing; a changed file replaces
    what it brought before. Rows that cannot be parsed go to the rejects table.
    """


def _print_report(report: IngestReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"kind": report.kind, "rows": report.rows, "rejected": report.rejected, "files": [asdict(f) for f in report.files]}, indent=2))
        return
    parts = [f"{report.count('ingested')} ingested"]
    for status in ("unchanged", "duplicate"):
        if report.count(status):
            parts.append(f"{report.count(status)} {status}")
    click.echo(f"{report.kind}: {len(report.files)} file(s): {', '.join(parts)}; {report.rows:,} rows")
    for outcome in report.files:
        if outcome.status == "ingested" and outcome.skipped:
            skipped = ", ".join(f"{count:,} {what}" for what, count in sorted(outcome.skipped.items()))
            click.echo(f"  {outcome.location}: skipped {skipped}")
    if report.rejected:
        click.echo(
            f"{report.rejected:,} row(s) rejected; see them with: ringfsck sql \"select * from rejects\"", err=True
        )
    for warning in report.warnings:
        click.echo(f"Warning: {warning}", err=True)


@ingest.command("listkeys")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True, help="Print the ingest report as JSON.")
@settings_options()
def ingest_listkeys_command(paths: tuple[str, ...], as_json: bool, settings) -> None:
    """Ingest RING listkeys dumps: files, directories, globs, gzip.

    Accepts ringsh 'node listKeys' dumps (one per node) and Spark output
    directories (listkeys.csv/ with part-* files). Columns: chunk key, main
    chunk key, disk, flag; extra columns are ignored, ringsh 'Use ...' lines and
    a '_1,_2,_3,_4' header are skipped.

    \b
    Examples:
      ringfsck ingest listkeys /var/tmp/listkeys/node-*.csv
      ringfsck ingest listkeys /spark/DATA/listkeys.csv/
      ringfsck ingest listkeys --store /data/fsck dump-node1.csv.gz
    """
    _print_report(ingest_listkeys(open_store(settings), paths), as_json)


@ingest.command("s3keys")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True, help="Print the ingest report as JSON.")
@settings_options()
def ingest_s3keys_command(paths: tuple[str, ...], as_json: bool, settings) -> None:
    """Ingest S3 key exports: per-bucket CSV files or JSON-lines export logs.

    CSV: "bucket","object key","sproxyd key" with proper quoting. JSON lines:
    records with "message": "sproxyd key", "objectUrl" and "sproxydKey". The
    format is detected per file; gzip is detected too.

    \b
    Examples:
      ringfsck ingest s3keys /spark/DATA/s3-bucketd/
      ringfsck ingest s3keys 'exports/*_keys.txt' export.log.gz
    """
    _print_report(ingest_s3keys(open_store(settings), paths), as_json)


COMMANDS = [ingest]
