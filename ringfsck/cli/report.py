"""``ringfsck report``: the capacity report of an analysis, one self-contained HTML file."""

from __future__ import annotations

import click

from ringfsck.cli._common import open_store, settings_options


@click.command("report")
@click.option(
    "-o",
    "--output",
    default="ringfsck-report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="HTML file to write, or s3://BUCKET/KEY.",
)
@click.option("--run", "run_id", default=None, metavar="RUN_ID", help="Report an older analysis run instead of the latest.")
@settings_options()
def report_command(output: str, run_id: str | None, settings) -> None:
    """Write the capacity report: one self-contained HTML file to open or print.

    Headline figures, orphan capacity (logical and raw) by protection, by disk
    and by size, gaps per bucket, warnings, the inputs with their fingerprints,
    and the exact next commands. No external scripts, fonts or styles.

    \b
    Examples:
      ringfsck report
      ringfsck report -o /tmp/DATA-fsck.html --store /data/fsck/DATA
      ringfsck report -o s3://fsck/DATA/report.html --store s3://fsck/DATA
    """
    from ringfsck.report import write_report

    click.echo(f"report: {write_report(open_store(settings, writes=False), output, run_id)}")


COMMANDS = [report_command]
