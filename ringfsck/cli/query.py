"""``ringfsck sql``: ad-hoc DuckDB SQL over the store."""

from __future__ import annotations

import csv
import datetime
import decimal
import json
import sys

import click
import duckdb
import polars as pl

from ringfsck.cli._common import open_store, settings_options
from ringfsck.errors import InputError

_FETCH = 10_000
# The views ``ringfsck sql`` offers (the README's table lists the same; a test checks both, and the store's).
VIEWS = (
    "listkeys",
    "listkeys_packed",
    "s3keys",
    "s3_objects",
    "ring_main_chunks",
    "candidates",
    "orphans",
    "gaps",
    "debris",
    "duplicates",
    "rejects",
    "s3_rejects",
    "s3_input_keys",
    "splits",
    "sizes",
    "orphan_sizes",
    "s3_other_locations",
    "sources",
)
# Statements that only read: anything else (COPY … TO, ATTACH, CREATE, SET, PRAGMA, INSTALL…) could
# write a file, even over the store's own, and is refused before it runs.
_READING_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})


def _jsonable(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex().upper()
    return value


def _print_table(result: duckdb.DuckDBPyConnection, columns: list[str], max_rows: int) -> None:
    rows = result.fetchmany(max_rows + 1)
    more = len(rows) > max_rows
    frame = pl.DataFrame([list(r) for r in rows[:max_rows]], schema=columns, orient="row", infer_schema_length=None)
    with pl.Config(tbl_rows=max_rows, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=250, tbl_hide_dataframe_shape=True):
        click.echo(frame)
    click.echo(f"({len(rows[:max_rows])} rows shown; more rows exist, use --format csv for all)" if more else f"({len(rows)} rows)")


def _reading_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse a query with a statement that is not a read, before anything runs."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise InputError(f"query failed: {str(exc).splitlines()[0]}") from None
    for statement in statements:
        if statement.type not in _READING_STATEMENTS:
            raise InputError(
                f"ringfsck sql only reads: a {statement.type.name} statement is refused (write results with --format csv > FILE)"
            )


def _failure(exc: duckdb.Error) -> InputError:
    message = str(exc).splitlines()[0]
    if isinstance(exc, duckdb.CatalogException):
        message += f" Views: {', '.join(VIEWS)}"
    return InputError(f"query failed: {message}")


@click.command(
    "sql",
    help=f"""Run a DuckDB query over the store's views (it only reads: COPY, ATTACH, CREATE… are refused).

    Views: {", ".join(VIEWS)}.

    Keys are 40-char uppercase hex. listkeys_packed and ring_main_chunks keep
    them as stored (hi/mid/lo integers: faster on a full RING). The key rules
    are functions: input_key_digkey(k), key_schema(k), key_hex(hi, mid, lo), ...

    \b
    Examples:
      ringfsck sql "select protection, count(*) from orphans group by all"
      ringfsck sql "select disk, count(*) from listkeys_packed group by all"
      ringfsck sql "select sproxyd_key, input_key_digkey(sproxyd_key) from s3keys limit 5"
      ringfsck sql "select * from gaps where status = 'missing'" --format csv > missing.csv
      ringfsck sql "select reason, count(*) from rejects group by all" --format json
    """,
)
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "ndjson"]),
    default="table",
    show_default=True,
    help="Output format; csv, json and ndjson print every row.",
)
@click.option("--max-rows", type=int, default=40, show_default=True, help="Rows shown by --format table.")
@click.option("--run", "run_id", default=None, metavar="RUN_ID", help="Query an older analysis run instead of the latest.")
@settings_options()
def sql_command(query: str, fmt: str, max_rows: int, run_id: str | None, settings) -> None:
    store = open_store(settings, writes=False)
    con = store.connect(run_id=run_id, read_only=True)
    _reading_only(con, query)
    try:
        result = con.execute(query)
    except duckdb.Error as exc:
        raise _failure(exc) from None
    if result.description is None:
        return
    columns = [d[0] for d in result.description]
    if fmt == "table":
        _print_table(result, columns, max_rows)
        return
    out = sys.stdout
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        while rows := result.fetchmany(_FETCH):
            writer.writerows(rows)
    else:
        first = True
        if fmt == "json":
            out.write("[")
        while rows := result.fetchmany(_FETCH):
            for row in rows:
                text = json.dumps({c: _jsonable(v) for c, v in zip(columns, row)}, ensure_ascii=False, default=str)
                if fmt == "json":
                    out.write(("\n" if first else ",\n") + text)
                else:
                    out.write(text + "\n")
                first = False
        if fmt == "json":
            out.write("\n]\n" if not first else "]\n")


COMMANDS = [sql_command]
