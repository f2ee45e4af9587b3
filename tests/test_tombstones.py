"""Tombstones (listkeys flag bit 0: deleted, awaiting purge) hold no data: never chunks (docs/domain.md sections 5 and 6).

A small hand-written RING, each main chunk named after its case, analysed over and over
with one pass and with a pass per partition (the step's two code paths).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ringfsck import analysis, keys
from ringfsck.analysis import AnalysisOptions, analyze
from ringfsck.config import Settings
from ringfsck.ingest import ingest_listkeys, ingest_s3keys
from ringfsck.store import Store

ARC = keys.ArcSchema(8, 4)
COS = 2
TOMBSTONE_FLAGS = (1, 17, 33, 49)
LIVE_FLAGS = (0, 16, 32, 48)


@dataclass
class Ring:
    """Listkeys rows per node and S3 export rows, written by hand."""

    rng: random.Random = field(default_factory=lambda: random.Random(13))
    rows: list[list[str]] = field(default_factory=lambda: [[], [], []])
    exported: list[str] = field(default_factory=list)
    tombstones: int = 0

    def chunk_key(self, tail_of: str) -> str:
        """A fresh dispersed chunk key with the chars 32-39 of ``tail_of``."""
        return self.rng.randbytes(16).hex().upper() + tail_of[32:]

    def row(self, node: int, chunk: str, main: str, flag: int) -> None:
        self.rows[node % 3].append(f"{chunk},{main},g{node + 1}disk1,{flag}")
        self.tombstones += flag & 1

    def arc(self, prefix: str, live: range | list[int], dead: range | list[int] = (), *, service: str = "51",
            dead_same_key: bool = False) -> str:
        """An ARC main chunk with live stripes and tombstone stripes (``dead_same_key``: the live chunk's own key)."""
        main = keys.arc_chunk_key(prefix, ARC, 0, service=service)
        live_keys = {}
        for stripe in live:
            live_keys[stripe] = self.chunk_key(keys.arc_chunk_key(prefix, ARC, stripe))
            self.row(stripe, live_keys[stripe], main, LIVE_FLAGS[stripe % 4])
        for i, stripe in enumerate(dead):
            chunk = live_keys[stripe] if dead_same_key else self.chunk_key(keys.arc_chunk_key(prefix, ARC, stripe))
            self.row(stripe + 1, chunk, main, TOMBSTONE_FLAGS[i % 4])
        return main

    def cos(self, prefix: str, live: range | list[int], dead: range | list[int] = ()) -> str:
        main = keys.cos_chunk_key(prefix, COS)
        for replica in live:
            self.row(replica, self.chunk_key(keys.cos_chunk_key(prefix, COS, replica)), main, 0)
        for i, replica in enumerate(dead):
            self.row(replica, self.chunk_key(keys.cos_chunk_key(prefix, COS, replica)), main, TOMBSTONE_FLAGS[i % 4])
        return main

    def input_key(self, *, referenced: bool) -> tuple[str, str]:
        """A fresh sproxyd input key (exported when ``referenced``) and its md5 prefix."""
        key = self.rng.randbytes(20).hex().upper()
        if referenced:
            self.exported.append(key)
        return key, keys.input_key_md5_prefix(key)

    def write(self, root: Path) -> tuple[Path, Path]:
        listkeys, export = root / "listkeys", root / "bucket-a_keys.txt"
        listkeys.mkdir(parents=True)
        for node, rows in enumerate(self.rows):
            (listkeys / f"node-{node}.csv").write_text("\n".join(rows) + "\n")
        with open(export, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(("bucket-a", f"object-{i}", key) for i, key in enumerate(self.exported))
        return listkeys, export


@dataclass
class Planted:
    ring: Ring
    keys: dict[str, str]  # case -> input key (referenced cases) or main chunk (unreferenced ones)
    mains: dict[str, str]  # case -> main chunk


def plant() -> Planted:
    ring = Ring()
    cases_keys, mains = {}, {}

    def referenced(case: str) -> str:
        key, prefix = ring.input_key(referenced=True)
        cases_keys[case] = key
        return prefix

    def unreferenced(case: str) -> str:
        return ring.input_key(referenced=False)[1]

    # Referenced, every chunk a tombstone: its data was deleted.
    mains["all_tombstones"] = ring.arc(referenced("all_tombstones"), [], range(ARC.stripes))
    # Referenced, healthy, with tombstones of re-written stripes: same chunk keys on another node, and other keys.
    mains["healthy_same_key"] = ring.arc(referenced("healthy_same_key"), range(12), range(4), dead_same_key=True)
    mains["healthy_other_key"] = ring.arc(referenced("healthy_other_key"), range(12), range(3, 9))
    # Referenced, its two missing stripes listed as tombstones: degraded, 10 chunks found.
    mains["degraded"] = ring.arc(referenced("degraded"), range(10), [10, 11])
    # Referenced, 7 live chunks (fewer than k = 8) beside 5 tombstones: unrecoverable.
    mains["unrecoverable"] = ring.arc(referenced("unrecoverable"), range(7), range(7, 12))
    # Referenced COS, one live replica and two tombstones: degraded.
    mains["cos_degraded"] = ring.cos(referenced("cos_degraded"), [0], [1, 2])
    # Unreferenced ARC, 3 live chunks and 5 tombstones (8 rows, 8 distinct keys): debris, not an orphan.
    mains["debris"] = ring.arc(unreferenced("debris"), range(3), range(3, 8))
    # Unreferenced ARC, 12 live chunks and tombstones: an orphan of 12 chunks.
    mains["orphan"] = ring.arc(unreferenced("orphan"), range(12), range(4))
    # Unreferenced main chunks with only tombstones: nothing (neither orphan nor debris nor candidate).
    mains["cos_tombstoned"] = ring.cos(unreferenced("cos_tombstoned"), [], range(COS + 1))
    mains["arc50_tombstoned"] = ring.arc(unreferenced("arc50_tombstoned"), [], range(5), service="50")
    mains["arc_few_tombstoned"] = ring.arc(unreferenced("arc_few_tombstoned"), [], [0, 1])
    # Tombstones outside S3's main chunks: counted as tombstones, not as tombstoned main chunks.
    other = keys.cos_chunk_key(unreferenced("service10"), COS, service="10")
    ring.row(0, ring.chunk_key(other), other, 1)
    return Planted(ring, cases_keys, mains)


TOMBSTONED_MAIN_CHUNKS = ("all_tombstones", "cos_tombstoned", "arc50_tombstoned", "arc_few_tombstoned")


@pytest.fixture(scope="module", params=[1, 4], ids=["one-pass", "four-passes"])
def analysed(request, tmp_path_factory):
    planted = plant()
    root = tmp_path_factory.mktemp("tombstones")
    listkeys, export = planted.ring.write(root)
    store = Store.open(Settings(store=str(root / "store"), arc_protection=ARC, cos_protection=COS))
    ingest_listkeys(store, [str(listkeys)])
    ingest_s3keys(store, [str(export)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analysis, "partition_passes", lambda rows: request.param)
        result = analyze(store, AnalysisOptions(assume_no_splits=True))
    return planted, store, result


def rows(store, query):
    return store.connect().execute(query).fetchall()


def test_a_referenced_key_whose_chunks_are_all_tombstones_is_missing(analysed):
    planted, store, _ = analysed
    gaps = {key: (status, found) for key, status, found in rows(store, "SELECT sproxyd_key, status, chunks_found FROM gaps")}
    assert gaps == {
        planted.keys["all_tombstones"]: ("missing", 0),
        planted.keys["degraded"]: ("degraded", 10),
        planted.keys["unrecoverable"]: ("unrecoverable", 7),
        planted.keys["cos_degraded"]: ("degraded", 1),
    }


def test_tombstones_count_toward_no_main_chunk(analysed):
    planted, store, _ = analysed
    chunks = dict(rows(store, "SELECT key_hex(hi, mid, lo), chunks FROM ring_main_chunks"))
    assert chunks == {
        planted.mains["healthy_same_key"]: 12, planted.mains["healthy_other_key"]: 12, planted.mains["degraded"]: 10,
        planted.mains["unrecoverable"]: 7, planted.mains["cos_degraded"]: 1, planted.mains["debris"]: 3, planted.mains["orphan"]: 12,
    }


def test_a_candidate_whose_live_chunks_drop_below_min_chunks_is_debris(analysed):
    planted, store, _ = analysed
    assert rows(store, "SELECT ring_key, chunks, referenced FROM debris") == [(planted.mains["debris"], 3, False)]
    assert [orphan for (orphan,) in rows(store, "SELECT ring_key FROM orphans")] == [planted.mains["orphan"]]


def test_main_chunks_with_only_tombstones_are_not_candidates(analysed):
    planted, store, _ = analysed
    candidates = {key for (key,) in rows(store, "SELECT ring_key FROM candidates")}
    assert not candidates & {planted.mains[case] for case in TOMBSTONED_MAIN_CHUNKS}
    assert planted.mains["cos_degraded"] in candidates  # one live replica is enough for COS


def test_the_summary_counts_tombstones_apart(analysed):
    planted, _, result = analysed
    counts = result.summary["counts"]
    assert counts["tombstones"] == planted.ring.tombstones == 51
    assert counts["tombstoned_main_chunks"] == len(TOMBSTONED_MAIN_CHUNKS)
    assert counts["listkeys_rows"] == sum(len(node) for node in planted.ring.rows)
    assert (counts["orphans"], counts["debris"], counts["candidates"]) == (1, 1, 6)


@pytest.mark.parametrize("flag", ["-1", "1.0", "", " ", "0x1", "one", "1e3", "9999999999"])
def test_a_flag_that_is_not_an_integer_is_rejected_so_flag_is_never_null(tmp_path, flag):
    chunk, main = keys.arc_chunk_key("A" * 22, ARC, 1), keys.arc_chunk_key("A" * 22, ARC, 0)
    path = tmp_path / "node.csv"
    path.write_text(f"{chunk},{main},g1disk1,{flag}\n{chunk},{main},g1disk1,1\n")
    store = Store.open(Settings(store=str(tmp_path / "store")))
    report = ingest_listkeys(store, [str(path)])
    assert (report.rows, report.rejected) == (1, 1)
    assert rows(store, "SELECT flag FROM listkeys") == [(1,)]
    assert rows(store, "SELECT line, reason LIKE '%flag%' FROM rejects") == [(1, True)]


def test_the_analyze_output_and_the_report_show_tombstones(analysed):
    from ringfsck.cli.analyze import _format_summary
    from ringfsck.report import render_report

    _, store, result = analysed
    [line] = [line for line in _format_summary(result.summary) if "tombstones" in line]
    assert line.split()[:2] == ["tombstones", "51"] and "deleted, awaiting purge" in line and "4 S3 main chunks" in line
    html = render_report(store, result.run_id)
    assert 'data-testid="tombstones">51<' in html and "deleted, awaiting purge" in html
    assert 'data-testid="tombstoned-main-chunks">4<' in html
