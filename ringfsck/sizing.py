"""``size``: the size of every orphan of the latest analysis, from srebuildd, and what that size means.

Results land in the ``sizes`` table; ``orphan_sizes`` joins them to the orphans
with logical and raw sizes. An orphan whose size could not be read stays
unsized: it is counted and shown, never guessed.

What ``X-Scal-Size`` measures on the arcdata path is not settled (docs/domain.md
section 7): the object's size, or one ARC chunk's (about size / k, a k-fold
difference in the capacity). ``size`` settles it on the cluster being checked:
it HEADs a sample of *referenced* ARC main chunks whose S3 sizes bucketd gave,
and compares. The measurement is saved with the run (``size_reading.json``);
capacity uses its decision, or the assumed reading, stated as such, when there is
none (file exports carry no sizes, too few answers, no clear majority).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ringfsck.capacity import MIN_SAMPLE_SIZE, SizeReading, capacity_summary
from ringfsck.errors import InputError
from ringfsck.remote.batches import JobReport, run_job
from ringfsck.remote.http import Endpoint, EndpointPool, HttpPolicy, Result, run_batched
from ringfsck.remote.srebuildd import main_chunk_size, srebuildd_pool
from ringfsck.store import Store, arrow_schema, iso, scalar, utc_now

SIZES_SCHEMA = arrow_schema("sizes")
TODO = "SELECT o.ring_key FROM orphans AS o LEFT JOIN sizes AS s USING (ring_key) WHERE NOT lookup_is_final(s.status) ORDER BY o.ring_key"


def sample_query(sample: int) -> str:
    """Referenced, healthy, not split ARC main chunks with one known S3 size: (sproxyd_key, ring_key, k, size).

    A split index's main chunk holds the index, not the object's data, so only keys known not to
    be split count: resolved as plain, or needing no lookup (``s3_input_keys.below_split_threshold``).
    The sample is spread over the key space by a hash of the key, the same on every run.
    """
    return f"""
        WITH sized AS (
            -- One S3 size per input key: a key referenced with two sizes tells nothing.
            SELECT upper(sproxyd_key) AS sproxyd_key, min(size) AS size
            FROM s3keys
            WHERE size IS NOT NULL AND coalesce(on_ring, true) AND regexp_full_match(sproxyd_key, '[0-9A-Fa-f]{{40}}')
            GROUP BY upper(sproxyd_key)
            HAVING min(size) = max(size) AND min(size) >= {MIN_SAMPLE_SIZE}
        ),
        unsplit AS (
            SELECT u.sproxyd_key, u.size, input_key_digkey(u.sproxyd_key) AS digkey
            FROM sized AS u
            LEFT JOIN splits AS s ON upper(s.input_key) = u.sproxyd_key
            WHERE (s.status = 'ok' AND NOT s.is_split)
               OR u.sproxyd_key IN (SELECT upper(sproxyd_key) FROM s3_input_keys GROUP BY ALL HAVING bool_and(below_split_threshold))
        )
        SELECT u.sproxyd_key, key_hex(m.hi, m.mid, m.lo) AS ring_key, CAST(split_part(m.schema, '+', 1) AS BIGINT) AS k, u.size
        FROM unsplit AS u
        JOIN ring_main_chunks AS m ON m.dig_hi = digkey_hi(u.digkey) AND m.dig_lo = digkey_lo(u.digkey)
        WHERE m.healthy AND m.protection = 'arc' AND CAST(split_part(m.schema, '+', 1) AS BIGINT) >= 2
        QUALIFY row_number() OVER (PARTITION BY u.sproxyd_key ORDER BY m.chunks DESC, m.hi, m.mid, m.lo) = 1
        ORDER BY hash(u.sproxyd_key), u.sproxyd_key
        LIMIT {int(sample)}
    """


def _no_sample_reason(store: Store) -> str:
    with_sizes = scalar(store.connect(), "SELECT count(*) FROM s3keys WHERE size IS NOT NULL")
    if not with_sizes:
        return "no S3 sizes"
    return f"no referenced, healthy, unsplit ARC main chunk of at least {MIN_SAMPLE_SIZE // 1024} KiB with a known S3 size"


def measure_size_reading(store: Store, run_id: str, *, endpoints: EndpointPool, policy: HttpPolicy, sample: int) -> SizeReading:
    """HEAD a sample of referenced ARC main chunks and compare X-Scal-Size with their S3 sizes; save the result."""
    rows = store.connect(run_id=run_id).execute(sample_query(sample)).fetchall()
    if not rows:
        reading = SizeReading("not_measured", reason=_no_sample_reason(store), measured_at=iso(utc_now()))
        store.save_size_reading(run_id, reading.to_json())
        return reading
    endpoints.preflight()
    expected = {ring_key: (size, k) for _, ring_key, k, size in rows}
    answers: list[tuple[int, int, int]] = []
    failed = not_found = 0

    async def ask(client: Endpoint, key: str) -> int | None:
        return await main_chunk_size(client, store.settings.arcdata_path, key, policy=policy)

    def count(batch: list[Result[str, int | None]]) -> None:
        nonlocal failed, not_found
        for result in batch:
            if result.failure is not None:
                failed += 1
            elif result.value is None:
                not_found += 1
            else:
                answers.append((*expected[result.item], result.value))

    run_batched(list(expected), ask, policy=policy, base_url=endpoints, on_batch=count)
    reading = SizeReading.decide(len(expected), answers, failed, not_found)
    # The endpoints that answered the sample, beside the reading (SizeReading.from_json ignores them).
    store.save_size_reading(run_id, reading.to_json() | {"endpoints": endpoints.to_json()})
    return reading


@dataclass
class SizeReport(JobReport):
    size_reading: SizeReading | None = None


def size_orphans(
    store: Store,
    *,
    base_url: str | Sequence[str] | None = None,
    policy: HttpPolicy | None = None,
    sample: int | None = None,
    processes: int | None = None,
) -> SizeReport:
    """Measure what X-Scal-Size means (once per analysis), then HEAD every unsized orphan (resumable, failures stay ``error``).

    ``base_url``: one srebuildd endpoint or several sharing the keys (default: the configured ones).
    ``processes``: client processes sharing the keys by key range (see run_job).
    """
    run_id = store.latest_run_id()
    if run_id is None:
        raise InputError(f"{store.location}: no analysis yet (run 'ringfsck analyze' first)")
    policy = policy or HttpPolicy.from_settings(store.settings)
    endpoints = srebuildd_pool(store, base_url, policy)
    reading = SizeReading.from_json(store.size_reading(run_id))
    if not reading.measured:  # a decided measurement stands; anything else is measured again
        reading = measure_size_reading(store, run_id, endpoints=endpoints, policy=policy, sample=sample or store.settings.size_sample)
    arcdata_path = store.settings.arcdata_path
    already = scalar(store.connect(), "SELECT count(*) FROM orphans JOIN sizes USING (ring_key) WHERE lookup_is_final(sizes.status)")

    async def ask(client: Endpoint, key: str) -> int | None:
        return await main_chunk_size(client, arcdata_path, key, policy=policy)

    def to_row(key: str, size: int | None) -> dict:
        return {"ring_key": key, "size": size, "status": "ok" if size is not None else "not_found", "error": None, "sized_at": utc_now()}

    def failed_row(key: str, reason: str) -> dict:
        return {"ring_key": key, "size": None, "status": "error", "error": reason, "sized_at": utc_now()}

    job = run_job(
        store,
        table="sizes",
        schema=SIZES_SCHEMA,
        todo_query=TODO,
        endpoints=endpoints,
        policy=policy,
        ask=ask,
        to_row=to_row,
        failed_row=failed_row,
        description="size",
        processes=processes,
    )
    report = SizeReport(**{name: getattr(job, name) for name in JobReport.__dataclass_fields__}, size_reading=reading)
    report.already_final = already
    store.write_json(store.run_dir(run_id) / "capacity.json", capacity_summary(store, run_id))
    return report
