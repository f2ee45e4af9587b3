"""Orphan capacity from ``orphan_sizes``: the SQL files in ``sql/capacity/``, one aggregate each.

``capacity_summary(store)`` returns::

    {"totals": {orphans, sized, unsized, failed, gone, logical_bytes, raw_bytes},
     "by_protection": [{protection, schema, orphans, sized, logical_bytes, raw_bytes, raw_multiplier,
                        x_scal_size_to_logical, x_scal_size_to_raw}],
     "by_disk": [{disk, chunks, raw_bytes}],
     "histogram": [{step, label, lower, upper, orphans, logical_bytes}],
     "size_reading": {decision, sampled, answered, object_matches, chunk_matches, failed, not_found,
                      reason, measured_at, measured, applied, statement}}

The figures depend on what X-Scal-Size measures (:class:`SizeReading`): every place
that prints them also prints ``size_reading["statement"]``, measured or assumed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ringfsck._resources import resource_dir
from ringfsck.store import ASSUMED_SIZE_READING, SIZE_READINGS, Store, applied_size_reading, iso, utc_now

# A header fits a reading when it is within max(4 KiB, 1 %) of what that reading predicts:
# room for padding of a chunk to the RING's alignment, far less than the k-fold difference.
MATCH_SLACK_BYTES = 4096
MATCH_SLACK_SHARE = 0.01
# Only keys of at least 64 KiB are sampled: below ~20 KiB the two predictions (size and
# size / k, k >= 2) are within each other's slack, and such a key would agree with both.
MIN_SAMPLE_SIZE = 64 * 1024
# A decision needs this share of the answered sample to agree with one reading (and less with
# the other), at least MIN_ANSWERED answers, and answers from at least half the sample.
AGREEMENT = 0.9
MIN_ANSWERED = 20

READING_MEANS = {"object": "the object's size", "chunk": "one ARC chunk's size, about the object's size / k"}


def _fits(header: int, predicted: int) -> bool:
    return abs(header - predicted) <= max(MATCH_SLACK_BYTES, predicted * MATCH_SLACK_SHARE)


@dataclass
class SizeReading:
    """One measurement of what X-Scal-Size measures (saved as the run's ``size_reading.json``).

    decision: ``object`` or ``chunk`` (measured), ``undecided`` (measured, no clear majority or
    too few answers) or ``not_measured`` (nothing to sample: ``reason`` says why).
    """

    decision: str
    sampled: int = 0
    answered: int = 0
    object_matches: int = 0
    chunk_matches: int = 0
    failed: int = 0  # every retry failed: unknown, agrees with nothing
    not_found: int = 0  # 404 on a key the listing had: no answer either
    reason: str | None = None
    measured_at: str | None = None

    @classmethod
    def decide(cls, sampled: int, answers: list[tuple[int, int, int]], failed: int, not_found: int) -> SizeReading:
        """From ``(s3 size, k, X-Scal-Size)`` per answered key."""
        object_matches = sum(1 for size, _, header in answers if _fits(header, size))
        chunk_matches = sum(1 for size, k, header in answers if _fits(header, -(-size // k)))
        answered = len(answers)
        decision = "undecided"
        if answered >= MIN_ANSWERED and 2 * answered >= sampled:
            needed = AGREEMENT * answered
            if object_matches >= needed > chunk_matches:
                decision = "object"
            elif chunk_matches >= needed > object_matches:
                decision = "chunk"
        return cls(decision, sampled, answered, object_matches, chunk_matches, failed, not_found, measured_at=iso(utc_now()))

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SizeReading:
        if not data:
            return cls("not_measured", reason="'ringfsck size' has not measured it for this analysis")
        values: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def measured(self) -> bool:
        return self.decision in SIZE_READINGS

    @property
    def applied(self) -> str:
        return applied_size_reading(self.to_json())

    def statement(self) -> str:
        """One line for every place that prints capacity: the measured reading, or the assumption and why."""
        if self.measured:
            other = "chunk" if self.decision == "object" else "object"
            agree = self.object_matches if self.decision == "object" else self.chunk_matches
            disagree = self.chunk_matches if self.decision == "object" else self.object_matches
            return (
                f"measured on {self.answered:,} referenced keys: {agree:,} agree with the {self.decision} reading "
                f"({READING_MEANS[self.decision]}), {disagree:,} with the {other} reading"
            )
        if self.decision == "undecided":
            why = (
                f"undecided: {self.answered:,} of {self.sampled:,} sampled keys answered, {self.object_matches:,} agree with "
                f"the object reading, {self.chunk_matches:,} with the chunk reading"
            )
        else:
            why = f"not measured: {self.reason}"
        return f"assumed: X-Scal-Size read as {READING_MEANS[ASSUMED_SIZE_READING]} ({why})"


_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def _rows(con, name: str) -> list[dict[str, Any]]:
    result = con.execute((resource_dir("sql") / "capacity" / f"{name}.sql").read_text())
    columns = [d[0] for d in result.description]
    return [dict(zip(columns, row)) for row in result.fetchall()]


def capacity_summary(store: Store, run_id: str | None = None) -> dict[str, Any]:
    run_id = run_id or store.latest_run_id()
    con = store.connect(run_id=run_id)
    histogram = _rows(con, "histogram")
    for row in histogram:
        row["label"] = f"{human_bytes(row['lower'])} - {human_bytes(row['upper'])}" if row["upper"] else f">= {human_bytes(row['lower'])}"
    reading = SizeReading.from_json(store.size_reading(run_id) if run_id else None)
    return {
        "totals": _rows(con, "totals")[0],
        "by_protection": _rows(con, "by_protection"),
        "by_disk": _rows(con, "by_disk"),
        "histogram": histogram,
        "size_reading": reading.to_json() | {"measured": reading.measured, "applied": reading.applied, "statement": reading.statement()},
    }
