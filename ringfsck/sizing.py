"""``size``: the logical size of every orphan of the latest analysis, from srebuildd.

Results land in the ``sizes`` table; ``orphan_sizes`` joins them to the orphans
with raw sizes. An orphan whose size could not be read stays unsized: it is
counted and shown, never guessed.
"""

from __future__ import annotations

from ringfsck.errors import InputError
from ringfsck.remote.batches import JobReport, require_srebuildd, run_job
from ringfsck.remote.http import HttpPolicy, RateLimiter
from ringfsck.remote.srebuildd import main_chunk_size
from ringfsck.store import Store, arrow_schema, utc_now

SIZES_SCHEMA = arrow_schema("sizes")
TODO = (
    "SELECT o.ring_key FROM orphans AS o LEFT JOIN sizes AS s USING (ring_key) "
    "WHERE s.status IS NULL OR s.status NOT IN ('ok', 'not_found') ORDER BY o.ring_key"
)


def size_orphans(store: Store, *, base_url: str | None = None, policy: HttpPolicy | None = None) -> JobReport:
    """HEAD every unsized orphan on the arcdata path (resumable, failures stay ``error``)."""
    if store.latest_run_id() is None:
        raise InputError(f"{store.location}: no analysis yet (run 'ringfsck analyze' first)")
    url = require_srebuildd(store, base_url)
    policy = policy or HttpPolicy.from_settings(store.settings)
    limiter = RateLimiter(policy.max_rps)
    arcdata_path = store.settings.arcdata_path
    already = store.connect().execute("SELECT count(*) FROM orphans JOIN sizes USING (ring_key) WHERE sizes.status IN ('ok', 'not_found')").fetchone()[0]

    async def ask(client, key: str) -> int | None:
        return await main_chunk_size(client, arcdata_path, key, policy=policy, limiter=limiter)

    def to_row(key: str, size: int | None) -> dict:
        return {"ring_key": key, "size": size, "status": "ok" if size is not None else "not_found", "error": None, "sized_at": utc_now()}

    def failed_row(key: str, reason: str) -> dict:
        return {"ring_key": key, "size": None, "status": "error", "error": reason, "sized_at": utc_now()}

    report = run_job(store, table="sizes", schema=SIZES_SCHEMA, todo_query=TODO, base_url=url, policy=policy,
                     ask=ask, to_row=to_row, failed_row=failed_row, description="size")
    report.already_final = already
    return report
