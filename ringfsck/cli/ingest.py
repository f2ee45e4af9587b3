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


def inputs_or_reference(paths: tuple[str, ...], settings, kind: str, *, required: bool = True) -> tuple[str, ...]:
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
    return {
        "kind": report.kind,
        "rows": report.rows,
        "rejected": report.rejected,
        "files": [asdict(f) for f in report.files],
        "overlaps": report.overlaps,
    }


# What the parsers' skip counts are, said in words ("2 noise" reads "2 ringsh noise lines").
_SKIPPED_WORDS = {"noise": "ringsh noise line", "blank": "blank line", "header": "header line"}


def _skipped(what: str, count: int) -> str:
    words = _SKIPPED_WORDS.get(what)
    if words is None:
        return f"{count:,} {what}"
    return f"{count:,} {words}" + ("" if count == 1 else "s")


def store_location(store) -> str:
    """The store, as every ingest and check says where it put the data (absolute: it means the same anywhere)."""
    from ringfsck.commands import absolute_location

    return absolute_location(store.location)


def print_ingest_report(report: IngestReport, as_json: bool, store) -> None:
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
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="bucketd base URL, http://HOST:PORT or HOST:PORT, e.g. http://127.0.0.1:9000 (config: bucketd_url; no default).",
)
@click.option(
    "--raft-session",
    "raft_sessions",
    multiple=True,
    type=int,
    metavar="N",
    help="Export every bucket of this raft session (repeatable; no default: give sessions or buckets).",
)
@click.option("--bucket", "buckets", multiple=True, metavar="NAME", help="Export this bucket (repeatable).")
@click.option("--skip-complete", is_flag=True, help="Keep buckets whose earlier export completed (finish a partly failed run).")
@click.option("--page-size", default=1000, show_default=True, type=click.IntRange(1, 10_000), help="Keys per listing request.")
# The default is BUCKET_CONCURRENCY of ringfsck.ingest.bucketd, not imported here: it would load httpx at every start.
@click.option(
    "--bucket-concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Buckets listed at once (their requests share --concurrency connections).",
)
@policy_options
@settings_options(url="bucketd_url", **POLICY_SETTINGS)
def ingest_bucketd_command(url, raft_sessions, buckets, skip_complete, page_size, bucket_concurrency, settings, **_: Any) -> None:
    """Export S3 keys straight from bucketd (no Docker image, no jq).

    Keeps every version's RING locations, reads big MPU objects in full when a
    listing omits their location, counts parts of unfinished uploads
    (mpuShadowBucket…) as live, skips placeholders, delete markers and replay
    entries, and records locations on other backends in s3_other_locations.
    Take the RING listing BEFORE starting the export. An interrupted export
    resumes after the last pages it wrote (pages are written together, every
    20,000 keys or 5 s; a crash lists at most those again, never skips them);
    exporting a finished bucket again replaces it (--skip-complete keeps it, to
    finish a partly failed run).

    Buckets are listed 8 at a time (--bucket-concurrency), their requests
    sharing the connections; within a bucket the next page is asked for while
    the last one is read and written.

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
    report = ingest_bucketd(
        store,
        settings.bucketd_url,
        raft_sessions=raft_sessions,
        buckets=buckets,
        policy=HttpPolicy.from_settings(settings),
        page_size=page_size,
        skip_complete=skip_complete,
        bucket_concurrency=bucket_concurrency,
    )
    for outcome in report.buckets:
        skipped = ", ".join(f"{n:,} {what}" for what, n in sorted(outcome.skipped.items()))
        resumed = " (resumed)" if outcome.resumed else ""
        click.echo(
            f"  {outcome.bucket}: {outcome.rows:,} RING keys in {outcome.pages} page(s){resumed}"
            + (f"; skipped {skipped}" if skipped else "")
        )
        if outcome.other_locations:
            click.echo(f"    {outcome.other_locations:,} locations on other backends (see s3_other_locations)")
    click.echo(f"bucketd: {len(report.buckets)} bucket(s), {report.rows:,} RING keys; store {store_location(store)}")
    print_overlaps(report.overlaps)


def sup_overrides(settings, *, supervisor: str | None, login: str | None, password_file: str | None, ca_bundle: str | None, insecure: bool):
    """Settings with the supervisor options applied (they win over the config and the environment)."""
    import dataclasses

    from ringfsck.errors import ConfigError

    values: dict[str, Any] = {"url": supervisor, "login": login, "ca_bundle": ca_bundle}
    if password_file is not None:
        try:
            values["password"] = open(password_file, encoding="utf-8").read().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{password_file}: cannot read the password file: {exc.strerror}") from None
    if insecure:
        values["verify_tls"] = False
    changed = {k: v for k, v in values.items() if v is not None}
    return dataclasses.replace(settings, sup=dataclasses.replace(settings.sup, **changed)) if changed else settings


def ring_options(func):
    """The options that reach the supervisor and nodes (never a password: config, environment or a file)."""
    for option in reversed(
        [
            click.option(
                "--supervisor",
                default=None,
                metavar="URL",
                help="The supervisor, e.g. https://10.0.0.2:2443 (config: sup.url, env RINGFSCK_SUP_URL).",
            ),
            click.option(
                "--node",
                "node_urls",
                multiple=True,
                metavar="URL",
                help="List this node's admin endpoint without a supervisor, e.g. https://10.0.0.5:6444?vnode=4244 (repeatable).",
            ),
            click.option("--ring", default=None, metavar="NAME", help="The ring (DSO) to list (config: ring)."),
            click.option(
                "--login", default=None, metavar="USER", help="Supervisor and node login (config: sup.login, env RINGFSCK_SUP_LOGIN)."
            ),
            click.option(
                "--password-file",
                type=click.Path(dir_okay=False),
                default=None,
                metavar="FILE",
                help="Read the password from this file (else sup.password in the config, or env RINGFSCK_SUP_PASSWORD).",
            ),
            click.option(
                "--ca-bundle",
                type=click.Path(dir_okay=False),
                default=None,
                metavar="FILE",
                help="PEM file the supervisor's and nodes' certificates are checked against (config: sup.ca_bundle).",
            ),
            click.option(
                "--no-verify-tls", "insecure", is_flag=True, help="Do not check certificates (config: sup.verify_tls: false). Warned about."
            ),
            click.option(
                "--retention",
                type=click.IntRange(min=0),
                default=None,
                metavar="SECONDS",
                help="Chunks written in the last SECONDS are not listed (config: retention; default 604800, 7 days).",
            ),
            click.option("--refresh", is_flag=True, help="List again the nodes a previous run listed completely."),
        ]
    ):
        func = option(func)
    return func


def node_line(outcome, echo=click.echo) -> None:
    """The closing line of one node of a native listing."""
    where = f"  {outcome.name} ({outcome.address})"
    if outcome.status == "failed":
        echo(f"{where}: FAILED after {outcome.seconds:.1f} s: {outcome.error}")
    elif outcome.status == "kept":
        echo(f"{where}: {outcome.rows:,} rows, listed before (--refresh lists it again)")
    else:
        rate = f", {outcome.rows / outcome.seconds:,.0f} rows/s" if outcome.seconds else ""
        echo(f"{where}: {outcome.rows:,} rows in {outcome.seconds:.1f} s{rate}")


def run_ring_listing(
    settings, store, *, node_urls: tuple[str, ...] = (), refresh: bool = False, concurrency: int | None = None, echo=click.echo
):
    """``ingest ring`` on the configured supervisor (or the given nodes): a closing line per node, then totals."""
    from ringfsck.ingest.ring import ingest_ring, sup_credentials
    from ringfsck.remote.http import HttpPolicy

    if not settings.sup.url and not node_urls:
        raise click.UsageError("give the supervisor with --supervisor (or sup.url in the config), or the nodes with --node URL")
    if not settings.sup.verify_tls:
        click.echo("Warning: TLS certificates of the supervisor and nodes are not checked (verify_tls: false)", err=True)
    credentials = sup_credentials(settings, [u for u in (settings.sup.url, *node_urls) if u])
    report = ingest_ring(
        store,
        supervisor=settings.sup.url if not node_urls else None,
        node_urls=node_urls,
        credentials=credentials,
        policy=HttpPolicy.from_settings(settings),
        concurrency=concurrency,
        refresh=refresh,
        on_node=lambda outcome: node_line(outcome, echo),
    )
    echo(f"ring {report.ring}: {len(report.nodes)} node(s), {report.rows:,} rows (chunks written up to mtime {report.mtime_max})")
    return report


@ingest.command("ring")
@ring_options
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Nodes listed at once, each by a process of its own (default: one per core, at least 2; at most 16). Example: --concurrency 6",
)
@settings_options(ring="ring", retention="retention", concurrency="concurrency")
def ingest_ring_command(
    supervisor, node_urls, ring, login, password_file, ca_bundle, insecure, retention, refresh, concurrency, settings
) -> None:
    """List every node of the RING natively: the supervisor names them, each streams its keys.

    What the reference's listkey.py (Spark) does, straight into the store: no
    CSV on disk, memory flat whatever the size of a node. Chunks written in the
    last 'retention' seconds (default 7 days) are not listed, so in-flight
    writes can never look orphaned. Nodes already listed completely are kept
    (--refresh lists them again); a node that cannot be listed is recorded as
    failed and leaves the analysis incomplete until it is listed. Take this
    listing BEFORE the S3 export starts. Credentials: sup.login and sup.password
    in the config (the reference's config.yml works), RINGFSCK_SUP_LOGIN and
    RINGFSCK_SUP_PASSWORD, or --login and --password-file; never printed.

    \b
    Examples:
      ringfsck ingest ring --config config.yml
      ringfsck ingest ring --supervisor https://10.0.0.2:2443 --ring DATA --login root --password-file ~/.sup-password --ca-bundle sup-ca.pem
      ringfsck ingest ring --node https://10.0.0.5:6444?vnode=4244 --ring DATA --password-file ~/.sup-password
    """
    settings = sup_overrides(
        settings, supervisor=supervisor, login=login, password_file=password_file, ca_bundle=ca_bundle, insecure=insecure
    )
    run_ring_listing(settings, open_store(settings), node_urls=node_urls, refresh=refresh, concurrency=concurrency)


COMMANDS = [ingest]
