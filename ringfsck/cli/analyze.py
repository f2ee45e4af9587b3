"""``ringfsck analyze``: candidates, orphans, gaps, debris and duplicates."""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime

import click

from ringfsck.analysis import AnalysisOptions, analyze
from ringfsck.cli._common import open_store, settings_options


def _format_summary(summary: dict) -> list[str]:
    counts = summary["counts"]
    gaps = counts["gaps"]
    lines = [
        f"run {summary['run_id']} ({summary['duration_s']:.1f} s)",
        f"  RING listkeys rows     {counts['listkeys_rows']:>14,}",
        f"  RING main chunks       {counts['ring_main_chunks']:>14,}",
        f"  S3 references          {counts['s3_references']:>14,}",
        f"  candidates             {counts['candidates']:>14,}",
        f"  orphans                {counts['orphans']:>14,}  ({summary['orphan_share']:.2%} of candidates"
        + ("" if summary["reclaimable"] else "; unconfirmed: some references are unknown")
        + ")",
        f"  gaps                   {sum(gaps.values()):>14,}  (unrecoverable {gaps['unrecoverable']:,}: data loss; missing {gaps['missing']:,}, degraded {gaps['degraded']:,})",
        f"  debris                 {counts['debris']:>14,}",
        f"  tombstones             {counts['tombstones']:>14,}  (deleted, awaiting purge; {counts['tombstoned_main_chunks']:,} S3 main chunks hold only tombstones)",
        f"  duplicate keys         {counts['duplicates']:>14,}",
        f"  rejected input rows    {counts['rejects']:>14,}",
    ]
    if summary["complete"]:
        lines.append("Analysis complete.")
    else:
        lines.append("Analysis INCOMPLETE (deletion is refused, and no option overrides it):")
        lines.extend(f"  - {reason}" for reason in summary["incomplete_reasons"])
    return lines


def analysis_options(func):
    """The options of an analysis (shared by analyze and check); the command gets ``options``."""

    @click.option(
        "--arc",
        default=None,
        metavar="K+M",
        help="ARC schema the S3 data is written with, e.g. 8+4 (config: arc_protection, default 8+4). It predicts missing "
        "data: the ARC main chunk and chunk count expected for an S3 key found nowhere on the RING (missing gaps). "
        "It does not change which keys are orphans or how they are sized: each RING key is judged by the schema "
        "its own key encodes (a warning names candidates with another schema).",
    )
    @click.option(
        "--cos",
        default=None,
        type=int,
        metavar="N",
        help="COS level of the S3 data, 0-5 (config: cos_protection). Checked against the keys: a warning names other replica "
        "counts; each key is judged and sized by its own.",
    )
    @click.option(
        "--min-chunks",
        default=None,
        type=int,
        metavar="N",
        help="ARC main chunks need at least N distinct chunks to be candidates (default 4).",
    )
    @click.option("--assume-no-splits", is_flag=True, help="State that no object is split, so no 'ringfsck resolve' is needed.")
    @click.option(
        "--listing-time",
        type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
        default=None,
        help="When the RING listing was taken (UTC if no offset); default: the earliest listkeys file time.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
    @settings_options(arc="arc_protection", cos="cos_protection", min_chunks="min_chunks")
    @functools.wraps(func)
    def wrapper(*args, arc, cos, min_chunks, assume_no_splits: bool, listing_time: datetime | None, **kwargs):
        if listing_time is not None and listing_time.tzinfo is None:
            listing_time = listing_time.replace(tzinfo=UTC)
        return func(*args, options=AnalysisOptions(assume_no_splits=assume_no_splits, listing_time=listing_time), **kwargs)

    return wrapper


def print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for line in _format_summary(summary):
        click.echo(line)
    for warning in summary["warnings"]:
        click.echo(f"Warning: {warning}", err=True)


@click.command("analyze")
@analysis_options
def analyze_command(options: AnalysisOptions, as_json: bool, settings) -> None:
    """Find orphans, gaps, debris and duplicate keys with the SQL steps.

    Candidates are RING main chunks of services 50/51 (ARC with at least
    --min-chunks chunks, and COS); orphans are candidates no S3 key, split index
    or subkey references; gaps are S3 keys whose RING data is missing,
    unrecoverable (ARC: fewer than k chunks) or degraded. Results land in the
    store as a run; query them with 'ringfsck sql'.

    \b
    Examples:
      ringfsck analyze --arc 8+4 --cos 2
      ringfsck analyze --config config.yml --assume-no-splits
      ringfsck analyze --json | jq .counts
    """
    print_summary(analyze(open_store(settings), options).summary, as_json)


COMMANDS = [analyze_command]
