"""Say when an S3 source just stored holds references another source already gave.

Two exports of the same buckets (bucketd and its CSV, a CSV and its JSON-lines log)
are counted once by the analysis (``sql/01_s3_references.sql``), but the operator
should know the store holds them twice, and how to drop one (``ringfsck forget``).
A reference is the same whichever source gave it: the ``s3_objects`` view names it.
"""

from __future__ import annotations

from ringfsck.store import Store, scalar

# Sources named one by one; beyond, one line counts the others.
_NAMED = 5


def overlap_notes(store: Store, locations: list[str]) -> list[str]:
    """One line per source of ``locations`` (in ingest order) whose references another source already holds:
    "N of M references of X are already in Y", then a line on what it means."""
    if not locations:
        return []
    con = store.connect()
    try:
        con.execute("CREATE TEMP TABLE new_sources (location VARCHAR, ordinal INTEGER)")
        con.executemany("INSERT INTO new_sources VALUES (?, ?)", [[location, i] for i, location in enumerate(locations)])
        # Cheap first pass on the raw rows: keys of one bucket that more than one source gives, one of
        # them new (the same reference is in the same bucket; one key in two buckets is a duplicate).
        con.execute(
            """
            CREATE TEMP TABLE shared AS
            SELECT DISTINCT sproxyd_key FROM s3keys GROUP BY sproxyd_key, bucket
            HAVING count(DISTINCT source) > 1 AND bool_or(source IN (SELECT location FROM new_sources))
            """
        )
        if not scalar(con, "SELECT count(*) FROM shared"):
            return []  # the usual case, and the names (a view over every row) need not be compared
        rows = con.execute(
            """
            WITH refs AS (
                SELECT DISTINCT source, bucket, object_key, version_id, sproxyd_key FROM s3_objects
                WHERE sproxyd_key IN (SELECT sproxyd_key FROM shared)
            ),
            pairs AS (
                -- A pair of two new sources is told once: the later one overlaps the earlier.
                SELECT x.source AS source, y.source AS other, count(*) AS overlapping
                FROM refs AS x
                JOIN new_sources AS nx ON nx.location = x.source
                JOIN refs AS y ON y.sproxyd_key = x.sproxyd_key AND y.bucket = x.bucket AND y.object_key = x.object_key
                              AND y.version_id IS NOT DISTINCT FROM x.version_id AND y.source <> x.source
                LEFT JOIN new_sources AS ny ON ny.location = y.source
                WHERE ny.ordinal IS NULL OR ny.ordinal < nx.ordinal
                GROUP BY ALL
            ),
            totals AS (
                SELECT source, count(*) AS references_ FROM (SELECT DISTINCT source, bucket, object_key, version_id, sproxyd_key FROM s3keys
                WHERE source IN (SELECT location FROM new_sources)) GROUP BY source
            )
            SELECT p.source, arg_max(p.other, p.overlapping), max(p.overlapping), count(*) - 1, t.references_
            FROM pairs AS p JOIN totals AS t USING (source) JOIN new_sources AS n ON n.location = p.source
            GROUP BY p.source, t.references_, n.ordinal ORDER BY n.ordinal
            """
        ).fetchall()
    finally:
        con.close()
    if not rows:
        return []
    notes = []
    for source, other, overlapping, more, references in rows[:_NAMED]:
        also = f" (and in {more} other source{'s' if more > 1 else ''})" if more else ""
        notes.append(f"{overlapping:,} of {references:,} references of {source} are already in {other}{also}")
    if len(rows) > _NAMED:
        notes.append(f"… and {len(rows) - _NAMED} more sources just ingested hold references already in the store")
    notes.append(
        'each reference is counted once by the analysis; to drop a source: ringfsck forget SOURCE (see ringfsck sql "select id, location from sources")'
    )
    return notes
