"""``ringfsck ingest``: land inputs in the store."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from ringfsck.cli._common import POLICY_SETTINGS, RingfsckGroup, open_store, policy_options, settings_options
from ringfsck.ingest import IngestReport, ingest_listkeys, ingest_s3keys


@click.group(cls=RingfsckGroup)
def ingest() -> None:
    """Land RING listkeys and S3 key exports in the store as Parquet.

    Re-ingesting a file that did not change does nothing; a changed file replaces
    what it brought before. Rows that cannot be parsed go to the rejects table.
    """


def inputs_or_reference(paths: tuple[str, ...], settings, kind: str, *, required: bool = True) -> tuple[str, ...]:  # noqa: ANN001
    """The given paths, else the reference's place for this input under {path}/{ring}/ (else none, if not required)."""
    if paths:
        return paths
    default = settings.reference_input(kind)
    if default is None:
        if not required:
            return ()
        raise click.UsageError("give the input PATH (or set path and ring in the config for the reference's layout)")
    return (default,)


def ingest_report_data(report: IngestReport) -> dict:
    """An ingest report as JSON-ready data."""
    return {"kind": report.kind, "rows": report.rows, "rejected": report.rejected, "files": [asdict(f) for f in report.files],
            "overlaps": report.overlaps}


# What the parsers' skip counts are, said in words ("2 noise" reads "2 ringsh noise lines").
_SKIPPED_WORDS = {"noise": "ringsh noise line", "blank": "blank line", "header": "header line"}


def _skipped(what: str, count: int) -> str:
    words = _SKIPPED_WORDS.get(what)
    if words is None:
        return f"{count:,} {what}"
    return f"{count:,} {words}" + ("" if count == 1 else "s")


def store_location(store) -> str:  # noqa: ANN001
    """The store, as every ingest and check says where it put the data (absolute: it means the same anywhere)."""
    from ringfsck.commands import absolute_location

    return absolute_location(store.location)


def print_ingest_report(report: IngestReport, as_json: bool, store) -> None:  # noqa: ANN001
    if as_json:
        click.echo(json.dumps(ingest_report_data(report), indent=2))
        return
    from ringfsck.commands import printed_command

    parts = [f"{report.count('ingested')} ingested"]
    for status in ("unchanged", "duplicate"):
        if report.count(status):
            parts.append(f"{report.count(status)} {status}")
    click.echo(f"{report.kind}: {len(report.files)} file(s): {', '.join(parts)}; {report.rows:,} rows; store {store_location(store)}")
    for outcome in report.files:
        if outcome.status == "ingested" and outcome.skipped:
            skipped = ", ".join(_skipped(what, count) for what, count in sorted(outcome.skipped.items()))
            click.echo(f"  {outcome.location}: skipped {skipped}")
    if report.rejected:
        click.echo(f"{report.rejected:,} row(s) rejected; see them with:", err=True)
        click.echo(f"Next: {printed_command(store, 'sql', 'select * from rejects')}", err=True)
    for warning in report.warnings:
        click.echo(f"Warning: {warning}", err=True)
    print_overlaps(report.overlaps)


def print_overlaps(notes: list[str]) -> None:
    for note in notes:
        click.echo(f"Note: {note}", err=True)


@ingest.command("listkeys")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option("--json", "as_json", is_flag=True, help="Print the ingest report as JSON.")
@settings_options()
def ingest_listkeys_command(paths: tuple[str, ...], as_json: bool, settings) -> None:
    """Ingest RING listkeys dumps: files, directories, globs, gzip, S3 prefixes.

    Accepts ringsh 'node listKeys' dumps (one per node) and Spark output
    directories (listkeys.csv/ with part-* files), local or on S3
    (s3://BUCKET/PREFIX/, read as streams). Columns: chunk key, main chunk key,
    disk, flag; extra columns are ignored, ringsh 'Use ...' lines and a
    '_1,_2,_3,_4' header are skipped. Without PATH: PATH/RING/listkeys.csv/ of
    the reference's config (path, ring, protocol).

    \b
    Examples:
      ringfsck ingest listkeys /var/tmp/listkeys/node-*.csv
      ringfsck ingest listkeys /spark/DATA/listkeys.csv/
      ringfsck ingest listkeys --store /data/fsck dump-node1.csv.gz
      ringfsck ingest listkeys s3://fsck/DATA/listkeys.csv/ --store s3://fsck/DATA
      ringfsck ingest listkeys --config config.yml
    """
    store = open_store(settings)
    print_ingest_report(ingest_listkeys(store, inputs_or_reference(paths, settings, "listkeys")), as_json, store)


@ingest.command("s3keys")
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option("--json", "as_json", is_flag=True, help="Print the ingest report as JSON.")
@settings_options()
def ingest_s3keys_command(paths: tuple[str, ...], as_json: bool, settings) -> None:
    """Ingest S3 key exports: per-bucket CSV files or JSON-lines export logs.

    CSV: "bucket","object key","sproxyd key" with proper quoting. JSON lines:
    records with "message": "sproxyd key", "objectUrl" and "sproxydKey". The
    format is detected per file; gzip is detected too. Local files or S3
    prefixes; without PATH: PATH/RING/s3-bucketd/ of the reference's config.

    \b
    Examples:
      ringfsck ingest s3keys /spark/DATA/s3-bucketd/
      ringfsck ingest s3keys 'exports/*_keys.txt' export.log.gz
      ringfsck ingest s3keys s3://fsck/DATA/s3-bucketd/ --store s3://fsck/DATA
    """
    store = open_store(settings)
    print_ingest_report(ingest_s3keys(store, inputs_or_reference(paths, settings, "s3keys")), as_json, store)


@ingest.command("bucketd")
@click.option("--url", default=None, metavar="URL",
              help="bucketd base URL, http://HOST:PORT or HOST:PORT, e.g. http://127.0.0.1:9000 (config: bucketd_url; no default).")
@click.option("--raft-session", "raft_sessions", multiple=True, type=int, metavar="N",
              help="Export every bucket of this raft session (repeatable; no default: give sessions or buckets).")
@click.option("--bucket", "buckets", multiple=True, metavar="NAME", help="Export this bucket (repeatable).")
@click.option("--skip-complete", is_flag=True, help="Keep buckets whose earlier export completed (finish a partly failed run).")
@click.option("--page-size", default=1000, show_default=True, type=click.IntRange(1, 10_000), help="Keys per listing request.")
@policy_options
@settings_options(url="bucketd_url", **POLICY_SETTINGS)
def ingest_bucketd_command(url, raft_sessions, buckets, skip_complete, page_size, settings, **_: Any) -> None:
    """Export S3 keys straight from bucketd (no Docker image, no jq).

    Keeps every version's RING locations, reads big MPU objects in full when a
    listing omits their location, counts parts of unfinished uploads
    (mpuShadowBucket…) as live, skips placeholders, delete markers and replay
    entries, and records locations on other backends in s3_other_locations.
    Take the RING listing BEFORE starting the export. An interrupted export
    resumes from its last completed page; exporting a finished bucket again
    replaces it (--skip-complete keeps it, to finish a partly failed run).

    Defaults: 1,000 keys per listing page, 64 requests in flight, no rate
    ceiling, 30 s per request, 5 retries (the config's concurrency, max_rps,
    timeout and retries, as for resolve, size and delete).

    \b
    Examples:
      ringfsck ingest bucketd --url http://127.0.0.1:9000 --raft-session 1 --raft-session 2
      ringfsck ingest bucketd --url http://127.0.0.1:9000 --bucket video --bucket photos
      ringfsck ingest bucketd --url 127.0.0.1:9000 --raft-session 1 --timeout 60 --retries 10 --max-rps 300
    """
    from ringfsck.ingest.bucketd import ingest_bucketd
    from ringfsck.remote.http import HttpPolicy

    if not settings.bucketd_url:
        raise click.UsageError("give the bucketd URL with --url (or bucketd_url in the config)")
    store = open_store(settings)
    report = ingest_bucketd(store, settings.bucketd_url, raft_sessions=raft_sessions, buckets=buckets,
                            policy=HttpPolicy.from_settings(settings), page_size=page_size, skip_complete=skip_complete)
    for outcome in report.buckets:
        skipped = ", ".join(f"{n:,} {what}" for what, n in sorted(outcome.skipped.items()))
        resumed = " (resumed)" if outcome.resumed else ""
        click.echo(f"  {outcome.bucket}: {outcome.rows:,} RING keys in {outcome.pages} page(s){resumed}" + (f"; skipped {skipped}" if skipped else ""))
        if outcome.other_locations:
            click.echo(f"    {outcome.other_locations:,} locations on other backends (see s3_other_locations)")
    click.echo(f"bucketd: {len(report.buckets)} bucket(s), {report.rows:,} RING keys; store {store_location(store)}")
    print_overlaps(report.overlaps)


COMMANDS = [ingest]
