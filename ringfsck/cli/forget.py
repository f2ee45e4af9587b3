"""``ringfsck forget``: drop one ingested source from the store."""

from __future__ import annotations

import click

from ringfsck.cli._common import open_store, settings_options


@click.command("forget")
@click.argument("source", metavar="SOURCE")
@click.option(
    "--drop-unique-references",
    is_flag=True,
    help="Forget an S3 source even though some of its sproxyd keys are in no other source (their data would look orphaned).",
)
@settings_options()
def forget_command(source: str, drop_unique_references: bool, settings) -> None:
    """Remove one ingested source (a listkeys file, an S3 export, a bucketd bucket) from the store.

    SOURCE is its id or its location, as 'ringfsck sql "select id, kind, location
    from sources"' lists them. Its rows, rejects and progress marker are removed, and
    the next analysis does not count it. Use it when two exports of the same buckets
    were ingested (each reference is counted once anyway), or to drop an old export.

    An S3 source holding sproxyd keys that no other source holds is refused: without
    them, their data would look orphaned. Pass --drop-unique-references only when that
    is what you want (an export of objects deleted since, replaced by a newer one).

    An S3 source whose references are not all known (rows rejected, a file that could
    not be read whole, an export that logged errors) is always refused: nothing can say
    its unknown references are held elsewhere, and no option turns them into orphans.
    Ingest the complete export at the same location (it replaces this one), or start a
    new store.

    \b
    Examples:
      ringfsck sql "select id, kind, location, rows from sources"
      ringfsck forget /data/DATA/s3-bucketd/video_keys.txt
      ringfsck forget 3f2a9c0d41b7e815 --store /data/fsck/DATA
    """
    from ringfsck.analysis import AnalysisOptions, check_completeness
    from ringfsck.errors import RefusedError
    from ringfsck.store import Store

    Store.open(settings, create=False)  # a mistyped --store is an error, never a new store
    store = open_store(settings)
    record = store.find_source(source)
    if record.kind != "listkeys" and (record.incomplete or record.rejected):
        what = f"{record.rejected:,} rejected row(s)" if record.rejected else record.incomplete[0]
        raise RefusedError(
            f"{record.location}: its references are not all known ({what}); forgetting it could make live data look orphaned. "
            "Ingest the complete export at the same location (it replaces this one), or start a new store"
        )
    con = store.connect()
    try:
        unique = _unique_keys(con, record.location) if record.kind != "listkeys" else 0
        if unique and not drop_unique_references:
            raise RefusedError(
                f"{record.location}: {unique:,} of its sproxyd keys are in no other source; forgotten, their data would look orphaned "
                "(pass --drop-unique-references if that is what you want)"
            )
    finally:
        con.close()
    removed = store.forget_source(record)
    latest = store.latest_run_id()
    # The split lookups count as the last analysis counted them (--assume-no-splits or not).
    assume_no_splits = bool(store.run_summary(latest)["settings"].get("assume_no_splits")) if latest else False
    con = store.connect()
    try:
        state = check_completeness(con, store, store.settings, AnalysisOptions(assume_no_splits=assume_no_splits))
    finally:
        con.close()
    click.echo(
        f"Forgot {record.kind} source {record.id}: {record.location} ({record.rows:,} rows, {record.rejected:,} rejected; "
        f"{len(removed)} file(s) removed from {store.location})."
    )
    if unique:
        click.echo(f"{unique:,} sproxyd keys only it named are no longer references.")
    click.echo("The next analysis will not count it (run 'ringfsck analyze'); earlier runs and their reports are unchanged.")
    if state.incomplete:
        click.echo("The store's references are still incomplete:")
        for reason in state.incomplete:
            click.echo(f"  - {reason}")


def _unique_keys(con, location: str) -> int:
    """The sproxyd keys (rows and rejected rows' tokens) of one S3 source that no other source names."""
    return con.execute(
        """
        WITH named AS (
            SELECT source, sproxyd_key FROM s3keys
            UNION ALL SELECT source, unnest(keys) AS sproxyd_key FROM s3_rejects
        )
        SELECT count(DISTINCT sproxyd_key) FROM named
        WHERE source = ? AND sproxyd_key NOT IN (SELECT sproxyd_key FROM named WHERE source <> ? AND sproxyd_key IS NOT NULL)
        """,
        [location, location],
    ).fetchone()[0]


COMMANDS = [forget_command]
