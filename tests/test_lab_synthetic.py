"""The synthetic RING of the capacity benchmark (issue 18 point 4): its nodes render their listings
from the world's main chunks, and ``ingest ring`` + ``analyze`` over them find exactly the planted
orphans (the truth comes from generation, never from an analysis)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ringfsck import keys
from ringfsck.analysis import AnalysisOptions, analyze
from ringfsck.config import Settings, SupSettings
from ringfsck.ingest import ingest_s3keys
from ringfsck.ingest.ring import ingest_ring
from ringfsck.lab import synthetic
from ringfsck.lab.synthetic import SyntheticListing, SyntheticRingServers, SyntheticSettings, generate_synthetic_world
from ringfsck.remote.supervisor import Credentials
from ringfsck.store import Store


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return generate_synthetic_world(tmp_path_factory.mktemp("synthetic") / "world", SyntheticSettings(main_chunks=19_000, seed=5))


def test_ingest_ring_and_analyze_find_exactly_the_planted_orphans(tmp_path, world):
    truth = world.truth["counts"]
    assert 180_000 < truth["listkeys_rows"] < 220_000 and 0 < truth["orphans"] < truth["main_chunks"] / 10
    with SyntheticRingServers(world) as lab:
        sup = SupSettings(url=lab.supervisor_url, login=lab.sup_login, password=lab.sup_password)
        store = Store.open(Settings(store=str(tmp_path / "store"), sup=sup))
        report = ingest_ring(store, supervisor=lab.supervisor_url, credentials=Credentials(lab.sup_login, lab.sup_password))
    assert [n.status for n in report.nodes] == ["listed"] * 6
    assert [n.rows for n in sorted(report.nodes, key=lambda n: n.name)] == truth["node_rows"]
    assert sum(n.rejected for n in report.nodes) == 0
    ingest_s3keys(store, [str(world.s3keys_dir)])
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    assert summary["complete"], summary["incomplete_reasons"]
    orphans = {row[0] for row in store.connect().execute("SELECT ring_key FROM orphans").fetchall()}
    assert orphans == set(world.orphans()) and len(orphans) == truth["orphans"]
    assert summary["counts"]["orphans"] == truth["orphans"]


def test_exported_input_keys_translate_to_the_main_chunks_their_nodes_list(world):
    mains = np.load(world.path / "mains.npy")
    rows = (world.s3keys_dir / "bucket-03_keys.txt").read_text().splitlines()
    assert len(rows) > 1000
    for row in rows[:200]:
        _, name, key = (field.strip('"') for field in row.split(","))
        assert keys.input_key_md5_prefix(key) == mains[int(name.removeprefix("obj-"))].decode()


def test_a_listing_rendered_in_blocks_holds_every_chunk_once(world, monkeypatch):
    """Over all nodes and blocks: each main chunk with every chunk of its layout, once, in bodies of the announced length."""
    monkeypatch.setattr(synthetic, "RENDER_BLOCK", 4096)
    chunks_per_main: Counter[str] = Counter()
    chunk_keys: set[str] = set()
    for node in range(world.settings.nodes):
        listing = SyntheticListing(world, node)
        assert listing.blocks == 5
        bodies = [b"\n" + listing.render(block).tobytes() for block in range(listing.blocks)]
        assert sum(map(len, bodies)) == listing.length(True)
        assert bodies == [b"\n" + listing.render(block).tobytes() for block in range(listing.blocks)]  # the same bytes every time
        for line in b"".join(bodies).decode().split("\n"):
            if line:
                chunk, main, disk, flag = line.split(",")
                assert keys.is_valid_key(chunk) and keys.RingKey.parse(main).is_main_chunk and disk == f"g{node + 1}disk{disk[-1]}"
                chunks_per_main[main] += 1
                chunk_keys.add(chunk)
    widths = {"70": 12, "20": 3}
    assert len(chunks_per_main) == world.truth["counts"]["main_chunks"]
    assert all(count == widths[main[-2:]] for main, count in chunks_per_main.items())
    assert len(chunk_keys) == world.truth["counts"]["listkeys_rows"]
