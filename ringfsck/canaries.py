"""Canaries: live keys asked while deleting, so that a deletion gone wrong stops early (docs/domain.md section 8).

A canary is an input key S3 references and the resolve step found present on the
arc path. Before the first DELETE a random sample of them is asked (``HEAD`` on the
arc path); the ones that answer as the store says (present, same split state) are
the canaries. They are asked again after the first deletions and at least every
``every`` deletions: a canary that now answers 404 or another split state means
live data is disappearing, and deletion stops at once (exit 4). A canary that
cannot be asked (5xx, timeout after the retries) pauses deletion until it answers,
for ``wait_seconds`` at most, then the run stops (exit 5): deleting on while the
guard is blind is not an option. Every asking is journaled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ringfsck.config import CanarySettings
from ringfsck.errors import RefusedError, RemoteError
from ringfsck.remote.http import BatchSession, Endpoint, EndpointPool, HttpPolicy, Result
from ringfsck.remote.srebuildd import arc_split_state
from ringfsck.store import Store, iso, utc_now

# What an arc HEAD answered: "split", "plain", "not_found", or "failed" (no answer).
Answer = str


def _answer_of(is_split: bool | None) -> Answer:
    return "not_found" if is_split is None else "split" if is_split else "plain"


@dataclass
class CanaryRound:
    """One asking of the canaries, as journaled."""

    after_deletions: int
    asked: int
    at: str


class Canaries:
    """The canaries of one ``delete --execute`` run; ``journal`` receives one record per asking."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        settings: CanarySettings,
        *,
        base_url: str | EndpointPool,
        policy: HttpPolicy,
        journal: Callable[[dict[str, Any]], None],
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._settings = settings
        self._url = base_url
        # A few at a time: canaries must not compete with the deletions for the server.
        self._policy = HttpPolicy(
            concurrency=min(8, policy.concurrency),
            timeout=policy.timeout,
            retries=policy.retries,
            backoff_base=policy.backoff_base,
            backoff_max=policy.backoff_max,
            max_rps=policy.max_rps,
        )
        self._session: BatchSession | None = None  # opened at the first asking, kept for the run's every round
        self._journal = journal
        self._arc_path = store.settings.arc_path
        self.expected: dict[str, Answer] = {}  # canary key -> the answer it must keep giving
        self.rounds: list[CanaryRound] = []

    def _sample(self) -> dict[str, Answer]:
        """A random sample of referenced input keys the resolve step found present, with their split state."""
        con = self._store.connect(run_id=self._run_id)
        try:
            rows = con.execute(
                "SELECT input_key, is_split FROM (SELECT s.input_key, s.is_split FROM splits AS s "
                "SEMI JOIN s3_input_keys AS k ON k.sproxyd_key = s.input_key WHERE s.status = 'ok') "
                f"USING SAMPLE reservoir({int(self._settings.sample)} ROWS)"
            ).fetchall()
        finally:
            con.close()
        return {key: _answer_of(bool(is_split)) for key, is_split in rows}

    def _ask(self, keys: list[str]) -> dict[str, Answer]:
        answers: dict[str, Answer] = {}

        async def ask(client: Endpoint, key: str) -> Answer:
            return _answer_of(await arc_split_state(client, self._arc_path, key, policy=self._policy, limiter=None))

        def collect(batch: list[Result[str, Answer]]) -> None:
            for result in batch:
                answers[result.item] = "failed" if result.failure is not None else result.value  # type: ignore[assignment]  # value is set whenever failure is None

        if self._session is None:
            self._session = BatchSession(self._url, self._policy)
        self._session.run(keys, ask, on_batch=collect)
        return answers

    def close(self) -> None:
        """Close the canaries' connections (the deletion run is over)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def _ask_until_answered(self, keys: list[str], deletions: int) -> dict[str, Answer]:
        """Ask until every key answered; pause between attempts, for wait_seconds at most (then RemoteError)."""
        deadline = time.monotonic() + self._settings.wait_seconds
        delay = max(self._policy.backoff_base, 0.01)
        answers: dict[str, Answer] = {}
        pending = keys
        while True:
            answers |= self._ask(pending)
            pending = [key for key in pending if answers[key] == "failed"]
            if not pending:
                return answers
            self._journal({"event": "canaries_unanswered", "keys": pending, "after_deletions": deletions, "at": iso(utc_now())})
            left = deadline - time.monotonic()
            if left <= 0:
                raise RemoteError(
                    f"deletion stopped after {deletions:,} deletions: canary {pending[0]} cannot be asked "
                    f"({len(pending)} unanswered for {self._settings.wait_seconds:g} s); rerun once srebuildd answers"
                )
            time.sleep(min(delay, left))
            delay = min(delay * 2, 30.0)

    def start(self) -> None:
        """Sample and ask the canaries before the first DELETE; refuse when the server disagrees with the store."""
        if self._settings.sample <= 0:
            self._journal(
                {
                    "event": "canaries",
                    "asked": 0,
                    "after_deletions": 0,
                    "note": "canaries disabled (canaries.sample = 0)",
                    "at": iso(utc_now()),
                }
            )
            return
        sampled = self._sample()
        answers = self._ask_until_answered(sorted(sampled), 0)
        changed = sorted(key for key, answer in answers.items() if answer not in (sampled[key], "not_found"))
        missing = sorted(key for key, answer in answers.items() if answer == "not_found")
        self._record(0, answers, missing=missing, changed=changed)
        if changed:
            raise RefusedError(
                f"canary {changed[0]} answers {answers[changed[0]]!r} on the arc path, not {sampled[changed[0]]!r} as resolved: "
                "the store's split lookups no longer hold; resolve and analyze again before deleting"
            )
        # An S3 object deleted since the analysis explains a few; most of them gone means this is not the RING analysed.
        if sampled and len(missing) * 2 > len(sampled):
            raise RefusedError(
                f"{len(missing)} of {len(sampled)} canaries (referenced keys found present by resolve) answer 404 on "
                f"{self._url}/{self._arc_path}: is this the srebuildd of the RING analysed?"
            )
        self.expected = {key: sampled[key] for key, answer in answers.items() if answer != "not_found"}

    def check(self, deletions: int) -> None:
        """Ask every canary again; stop (RefusedError) at the first that no longer answers as before."""
        if not self.expected:
            return
        keys = sorted(self.expected)
        answers = self._ask_until_answered(keys, deletions)
        lost = [key for key in keys if answers[key] != self.expected[key]]
        self._record(
            deletions,
            answers,
            missing=[k for k in lost if answers[k] == "not_found"],
            changed=[k for k in lost if answers[k] != "not_found"],
        )
        if lost:
            key = lost[0]
            raise RefusedError(
                f"deletion stopped after {deletions:,} deletions: canary {key} (a live referenced key) answered "
                f"{answers[key]!r}, not {self.expected[key]!r} as before; live data may be disappearing: investigate before any rerun"
            )

    def _record(self, deletions: int, answers: dict[str, Answer], *, missing: list[str], changed: list[str]) -> None:
        at = iso(utc_now())
        self.rounds.append(CanaryRound(deletions, len(answers), at))
        self._journal(
            {
                "event": "canaries",
                "asked": len(answers),
                "keys": sorted(answers),
                "missing": missing,
                "changed": changed,
                "after_deletions": deletions,
                "at": at,
            }
        )
