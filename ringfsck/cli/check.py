"""``ringfsck check``: ingest the listing and the S3 export, then analyze, in one command."""

from __future__ import annotations

import json

import click

from ringfsck.analysis import AnalysisOptions
from ringfsck.check import check
from ringfsck.cli._common import open_store
from ringfsck.cli.analyze import analysis_options, print_summary
from ringfsck.cli.ingest import ingest_report_data, inputs_or_reference, node_line, print_ingest_report, store_location


@click.command("check")
@click.option(
    "--listkeys",
    "listkeys",
    multiple=True,
    metavar="PATH",
    help="RING listkeys dumps: file, directory, glob or s3:// prefix (repeatable; default: PATH/RING/listkeys.csv/ of the config).",
)
@click.option(
    "--s3keys",
    "s3keys",
    multiple=True,
    metavar="PATH",
    help="S3 key exports: file, directory, glob or s3:// prefix (repeatable; default: PATH/RING/s3-bucketd/ of the config).",
)
@analysis_options
def check_command(listkeys: tuple[str, ...], s3keys: tuple[str, ...], options: AnalysisOptions, as_json: bool, settings) -> None:
    """Ingest the RING listing and the S3 export, then analyze: the whole offline job.

    The same as 'ringfsck ingest listkeys', 'ringfsck ingest s3keys' and
    'ringfsck analyze' in a row (what the reference's three Spark jobs do), in one
    process whose cores share the files of both inputs. Files ingested before and
    unchanged are skipped. Split objects still need 'ringfsck resolve' (or
    --assume-no-splits) for a complete analysis. Either input may be left out to
    keep what the store holds: after 'ringfsck ingest bucketd', give --listkeys only.

    \b
    With a supervisor configured (sup.url, sup.login, sup.password: the
    reference's config.yml) and no --listkeys, the listing is taken natively
    from every node first, as 'ringfsck ingest ring' does.

    \b
    Examples:
      ringfsck check --config config.yml --s3keys /var/tmp/s3-bucketd/    # sup: in config.yml: native listing
      ringfsck check --listkeys /var/tmp/listkeys/ --s3keys /var/tmp/s3-bucketd/ --arc 8+4 --cos 2
      ringfsck check --config config.yml --assume-no-splits
      ringfsck check --listkeys s3://fsck/DATA/listkeys.csv/ --s3keys s3://fsck/DATA/s3-bucketd/ --store s3://fsck/DATA --json
    """
    native = not listkeys and bool(settings.sup.url)  # the supervisor's nodes, listed natively
    listkeys = () if native else inputs_or_reference(listkeys, settings, "listkeys", required=False)
    s3keys = inputs_or_reference(s3keys, settings, "s3keys", required=False)
    if not listkeys and not s3keys and not native:
        raise click.UsageError(
            "nothing to ingest: give --listkeys and --s3keys (or path and ring in the config); 'ringfsck analyze' analyzes the store as it is"
        )
    store = open_store(settings)
    result = check(store, listkeys, s3keys, options, on_node=None if as_json else node_line)
    if as_json:
        ingested = {report.kind: ingest_report_data(report) for report in (result.listkeys, result.s3keys)}
        click.echo(json.dumps({"store": store_location(store), "ingest": ingested, "analysis": result.analysis.summary}, indent=2))
        return
    if result.ring is not None:
        click.echo(f"ring {result.ring.ring}: {len(result.ring.nodes)} node(s), {result.ring.rows:,} rows")
    for report in (result.listkeys, result.s3keys):
        if report.files:
            print_ingest_report(report, as_json=False, store=store)
    print_summary(result.analysis.summary, as_json=False)
    click.echo(f"store {store_location(store)}")


COMMANDS = [check_command]
