"""``resolve``: which S3 input keys are split objects, and which subkeys their indexes list.

Results land in the ``splits`` table. ``ok`` and ``not_found`` are final;
``error`` (every retry failed) is retried by the next run and makes the
analysis incomplete, because the subkeys of an unread index are unknown.
"""

from __future__ import annotations

from collections.abc import Sequence

from ringfsck.remote.batches import JobReport, run_job
from ringfsck.remote.http import Endpoint, HttpPolicy
from ringfsck.remote.srebuildd import SplitAnswer, lookup_split, srebuildd_pool
from ringfsck.store import Store, arrow_schema, scalar, utc_now

SPLITS_SCHEMA = arrow_schema("splits")


def todo_query(store: Store) -> str:
    """Distinct input keys without a final answer that need one (s3_input_keys.below_split_threshold says which)."""
    return (
        "SELECT k.sproxyd_key FROM s3_input_keys AS k LEFT JOIN splits AS s ON s.input_key = k.sproxyd_key "
        "WHERE NOT lookup_is_final(s.status) AND NOT k.below_split_threshold ORDER BY k.sproxyd_key"
    )


def resolve_splits(
    store: Store, *, base_url: str | Sequence[str] | None = None, policy: HttpPolicy | None = None, processes: int | None = None
) -> JobReport:
    """Ask srebuildd (one endpoint or several) about every input key not resolved yet (resumable, failures stay ``error``).

    ``processes``: client processes sharing the keys by key range (default one per core for big runs, see run_job).
    """
    policy = policy or HttpPolicy.from_settings(store.settings)
    endpoints = srebuildd_pool(store, base_url, policy)
    arc_path = store.settings.arc_path
    con = store.connect()
    already = scalar(con, "SELECT count(*) FROM splits WHERE lookup_is_final(status)")

    async def ask(client: Endpoint, key: str) -> SplitAnswer:
        return await lookup_split(client, arc_path, key, policy=policy)

    def to_row(key: str, answer: SplitAnswer) -> dict:
        return {
            "input_key": key,
            "status": answer.status,
            "is_split": answer.is_split,
            "subkeys": answer.subkeys,
            "error": None,
            "resolved_at": utc_now(),
        }

    def failed_row(key: str, reason: str) -> dict:
        return {"input_key": key, "status": "error", "is_split": None, "subkeys": [], "error": reason, "resolved_at": utc_now()}

    report = run_job(
        store,
        table="splits",
        schema=SPLITS_SCHEMA,
        todo_query=todo_query(store),
        endpoints=endpoints,
        policy=policy,
        ask=ask,
        to_row=to_row,
        failed_row=failed_row,
        description="resolve",
        processes=processes,
    )
    report.already_final = already
    return report
