"""ingest + analyze on planted data: exactly the planted orphans, gaps, debris and duplicates."""

from __future__ import annotations

import json

import pytest

import _planted
from ringfsck.analysis import AnalysisOptions, analyze
from ringfsck.config import Settings
from ringfsck.ingest import ingest_listkeys, ingest_s3keys
from ringfsck.store import Store


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    return _planted.analyzed(tmp_path_factory.mktemp("planted"))


def column(store, query):
    return {row[0] for row in store.connect().execute(query).fetchall()}


def test_exactly_the_planted_orphans(planted_run):
    world, store, result = planted_run
    assert column(store, "SELECT ring_key FROM orphans") == world.orphans
    assert result.summary["counts"]["orphans"] == len(world.orphans)


def test_exactly_the_planted_gaps(planted_run):
    world, store, _ = planted_run
    for status, expected in world.gaps.items():
        assert column(store, f"SELECT sproxyd_key FROM gaps WHERE status = '{status}'") == expected, status


def test_debris_is_never_an_orphan(planted_run):
    world, store, _ = planted_run
    assert column(store, "SELECT ring_key FROM debris") == world.debris
    assert not world.debris & column(store, "SELECT ring_key FROM orphans")


def test_duplicates(planted_run):
    world, store, _ = planted_run
    assert column(store, "SELECT sproxyd_key FROM duplicates") == world.duplicates


def test_chunks_are_counted_distinct(planted_run):
    _, store, _ = planted_run
    # The 3-chunk debris key is listed in 4 rows; the reference would count 4 and call it a candidate.
    rows = store.connect().execute(
        "SELECT d.ring_key, d.chunks, count(*) FROM debris d JOIN listkeys l ON l.main_chunk = d.ring_key GROUP BY ALL"
    ).fetchall()
    assert any(chunks == 3 and listed == 4 for _, chunks, listed in rows)


def test_view_contracts(planted_run):
    _, store, _ = planted_run
    con = store.connect()
    expected = {
        "listkeys": ["chunk_key", "main_chunk", "disk", "flag", "source"],
        "s3keys": ["bucket", "object_key", "sproxyd_key", "source"],
        "candidates": ["ring_key", "digkey", "protection", "chunks"],
        "orphans": ["ring_key", "digkey", "protection", "chunks"],
        "gaps": ["bucket", "object_key", "sproxyd_key", "ring_key", "chunks_found", "status"],
        "debris": ["ring_key", "chunks"],
        "rejects": ["source", "line", "reason", "raw", "keys"],
    }
    for view, columns in expected.items():
        names = [d[0] for d in con.execute(f"SELECT * FROM {view} LIMIT 0").description]
        assert set(columns) <= set(names), view
    for view, col in [("listkeys", "chunk_key"), ("listkeys", "main_chunk"), ("s3keys", "sproxyd_key"), ("candidates", "ring_key"), ("gaps", "ring_key")]:
        bad = con.execute(f"SELECT count(*) FROM {view} WHERE NOT regexp_full_match({col}, '[0-9A-F]{{40}}')").fetchone()[0]
        assert bad == 0, f"{view}.{col}"


def test_weird_object_names_survive(planted_run):
    _, store, _ = planted_run
    names = column(store, "SELECT object_key FROM s3keys")
    for weird in ("comma,in,name", 'quote"in"name', "new\nline", "crlf\r\nline", "été/ünïcödé/日本語/😀", "  spaces around  "):
        assert any(n.startswith(weird + "#") for n in names), weird


def test_summary_records_inputs_and_settings(planted_run):
    _, store, result = planted_run
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["settings"]["arc_protection"] == "8+4"
    assert {i["kind"] for i in summary["inputs"]} == {"listkeys", "s3keys"}
    assert all(i["checksum"].startswith("xxh3-128:") and len(i["checksum"]) == 9 + 32 for i in summary["inputs"])
    assert summary["counts"]["gaps"]["missing"] == 1
    assert store.latest_run_id() == result.run_id


def test_unresolved_splits_make_the_analysis_incomplete(planted_run):
    _, store, _ = planted_run
    result = analyze(store)
    assert result.summary["complete"] is False
    assert any("never checked for split objects" in r for r in result.summary["incomplete_reasons"])


def test_orphan_share_warning(tmp_path):
    world = _planted.build()
    listkeys, _ = world.write(tmp_path)
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(listkeys)])
    # Only one bucket exported out of two: many keys look orphaned.
    only = tmp_path / "one.csv"
    only.write_text('"bucket-b","x","' + next(iter(world.duplicates)) + '"\n')
    ingest_s3keys(store, [str(only)])
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    assert summary["orphan_share"] > 0.5
    assert any("of candidates" in w for w in summary["warnings"])


@pytest.mark.parametrize("exports", ["csv", "jsonl"])
def test_lab_world_without_splits_gives_exactly_the_truth(make_world, tmp_path, exports):
    world = make_world(objects=400, seed=21, splits=0.0)
    truth = world.truth
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(world.listkeys_dir)])
    ingest_s3keys(store, [str(world.s3keys_dir if exports == "csv" else world.jsonl_dir)])
    result = analyze(store, AnalysisOptions(assume_no_splits=True))
    counts = result.summary["counts"]
    assert counts["rejects"] == 0
    assert (counts["tombstones"], counts["tombstoned_main_chunks"]) == (truth["counts"]["tombstone_rows"], truth["counts"]["tombstoned_main_chunks"])
    assert column(store, "SELECT ring_key FROM orphans") == set(truth["orphans"])
    # A file export cannot say which keys are on other backends: their 40-hex keys are judged as RING keys, absent.
    judged = truth["gaps"] | {"missing": truth["gaps"]["missing"] + truth["other_backend_keys"]}
    for status, expected in judged.items():
        assert column(store, f"SELECT sproxyd_key FROM gaps WHERE status = '{status}'") == set(expected), status
    assert column(store, "SELECT ring_key FROM debris") == set(truth["debris"])
    assert column(store, "SELECT sproxyd_key FROM duplicates") == set(truth["duplicates"])
    assert column(store, "SELECT sproxyd_key FROM s3keys") == set(truth["sproxyd_keys"]) | set(truth["other_backend_keys"])


def test_unresolved_split_subkeys_look_orphaned_and_the_run_says_so(lab_world, tmp_path):
    # Without 'ringfsck resolve', subkeys are unknown: their main chunks show up as
    # orphans, which is exactly why such an analysis is incomplete and never deletes.
    truth = lab_world.truth
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_s3keys(store, [str(lab_world.s3keys_dir)])
    result = analyze(store)
    assert result.summary["complete"] is False
    assert column(store, "SELECT ring_key FROM orphans") == set(truth["orphans"]) | set(truth["subkey_main_chunks"])


@pytest.mark.parametrize(("rows_per_pass", "seed"), [(None, 11), (1, 11), (None, 12), (None, 13)])
def test_chunk_counts_are_exact_when_chunks_share_a_slot(tmp_path, monkeypatch, rows_per_pass, seed):
    """Distinct chunk keys in one stripe slot, listed once, twice or three times by several nodes, in one or 16 passes,
    beside tombstones that share their slots.

    02_ring_main_chunks counts rows when every row of a main chunk fills its own slot and
    recounts DISTINCT otherwise: the counts must equal a plain distinct count either way.
    """
    import random

    from ringfsck import analysis, keys

    if rows_per_pass is not None:
        monkeypatch.setattr(analysis, "ROWS_PER_PASS", rows_per_pass)  # 16 passes, one per partition
    rng = random.Random(seed)
    expected: dict[str, int] = {}
    lines = []
    for n in range(300):
        prefix = rng.randbytes(11).hex().upper()
        main = keys.arc_chunk_key(prefix, "8+4") if n % 3 else keys.cos_chunk_key(prefix, 2)
        # Few stripe endings for many chunks: chunks collide in slots; some are listed twice.
        endings = [main[32:]] + [keys.arc_chunk_key(prefix, "8+4", s)[32:] for s in range(1, 3)]
        chunk_keys = {rng.randbytes(16).hex().upper() + rng.choice(endings) for _ in range(rng.randint(1, 9))}
        # Tombstones (flag bit 0) count for nothing: under a live chunk's key or another key; every
        # tenth main chunk has only tombstones, and no row at all.
        deleted = {rng.randbytes(16).hex().upper() + rng.choice(endings) for _ in range(rng.randint(0, 3))}
        if n % 10 == 0:
            deleted, chunk_keys = deleted | chunk_keys, set()
        else:
            expected[main] = len(chunk_keys)
            deleted |= set(rng.sample(sorted(chunk_keys), rng.randint(0, len(chunk_keys))))
        for chunk, flags in [*((c, [0, 16, 32, 48]) for c in chunk_keys), *((c, [1, 17, 33, 49]) for c in deleted)]:
            for _ in range(rng.choice([1, 1, 2, 3])):
                lines.append(f"{chunk},{main},g{rng.randint(1, 3)}disk1,{rng.choice(flags)}")
    rng.shuffle(lines)
    listing = tmp_path / "listkeys.csv"
    listing.write_text("\n".join(lines) + "\n")
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(listing)])
    analyze(store, AnalysisOptions(assume_no_splits=True))
    counted = dict(store.connect().execute("SELECT key_hex(hi, mid, lo), chunks FROM ring_main_chunks").fetchall())
    assert counted == expected
    candidates = column(store, "SELECT ring_key FROM candidates")
    assert candidates == {main for main, chunks in expected.items() if main.endswith("20") or chunks >= 4}


def test_partitioned_steps_make_enough_passes_to_stay_under_rows_per_pass():
    from ringfsck.analysis import ROWS_PER_PASS, partition_passes
    from ringfsck.partitions import PARTITIONS, pass_bounds

    assert [partition_passes(rows) for rows in (0, ROWS_PER_PASS, ROWS_PER_PASS + 1, 100_000_000, 250_000_000, 10**12)] == [1, 1, 2, 4, 8, PARTITIONS]
    for passes in (1, 2, 4, 8, 16):
        bounds = pass_bounds(passes)
        assert bounds[0][0] == 0 and bounds[-1][1] == 2**64 - 1
        assert all(high + 1 == low for (_, high), (low, _) in zip(bounds, bounds[1:]))
    with pytest.raises(ValueError):
        pass_bounds(3)
