"""A small hand-planted RING + S3 export, each case named, for ingest/analyze tests.

Independent of the lab generator on purpose: every planted case is spelled out
here, so a test failure points at one docs/domain.md rule.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

from ringfsck import keys

ARC = keys.ArcSchema(8, 4)
COS = 2
WEIRD_NAMES = [
    "plain.txt",
    "comma,in,name",
    'quote"in"name',
    "new\nline",
    "crlf\r\nline",
    "été/ünïcödé/日本語/😀",
    "  spaces around  ",
    "100%25 percent%",
    "back\\slash",
    "",
]


def _rand_hex(rng: random.Random, nbytes: int) -> str:
    return rng.randbytes(nbytes).hex().upper()


@dataclass
class Planted:
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    nodes: dict[str, list[str]] = field(default_factory=lambda: {f"node{i}": [] for i in range(3)})
    exports: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    orphans: set[str] = field(default_factory=set)
    gaps: dict[str, set[str]] = field(default_factory=lambda: {"missing": set(), "unrecoverable": set(), "degraded": set()})
    debris: set[str] = field(default_factory=set)
    duplicates: set[str] = field(default_factory=set)
    _name_index: int = 0

    # --- RING side -------------------------------------------------------
    def _chunk_rows(self, main: str, chunk_keys: list[str], *, twice: int = 0, flag: int = 0) -> None:
        node_names = sorted(self.nodes)
        for i, chunk in enumerate(chunk_keys):
            node = node_names[i % len(node_names)]
            self.nodes[node].append(f"{chunk},{main},g1disk{i % 4 + 1},{flag}")
        for chunk in chunk_keys[:twice]:  # the same chunk listed by a second node
            self.nodes[node_names[-1]].append(f"{chunk},{main},g2disk1,{flag}")

    def store_arc(self, md5_prefix: str, stripes: int, *, service: str = "51", twice: int = 0, flag: int = 0) -> str:
        main = keys.arc_chunk_key(md5_prefix, ARC, 0, service=service)
        chunks = [_rand_hex(self.rng, 16)[:32] + keys.arc_chunk_key(md5_prefix, ARC, s)[32:] for s in range(stripes)]
        self._chunk_rows(main, chunks, twice=twice, flag=flag)
        return main

    def store_cos(self, md5_prefix: str, replicas: int = COS + 1, *, service: str = "51") -> str:
        main = keys.cos_chunk_key(md5_prefix, COS, service=service)
        chunks = [_rand_hex(self.rng, 16)[:32] + keys.cos_chunk_key(md5_prefix, COS, r)[32:] for r in range(replicas)]
        self._chunk_rows(main, chunks)
        return main

    # --- S3 side ---------------------------------------------------------
    def new_input_key(self, leading_zero_bytes: int = 0) -> str:
        return ("00" * leading_zero_bytes + _rand_hex(self.rng, 20 - leading_zero_bytes)).upper()

    def reference(self, input_key: str, bucket: str = "bucket-a", name: str | None = None) -> None:
        if name is None:
            name = WEIRD_NAMES[self._name_index % len(WEIRD_NAMES)] + f"#{self._name_index}"
            self._name_index += 1
        self.exports.setdefault(bucket, []).append((bucket, name, input_key))

    # --- files -----------------------------------------------------------
    def write(self, root: Path) -> tuple[Path, Path]:
        listkeys = root / "listkeys"
        exports = root / "s3-bucketd"
        listkeys.mkdir(parents=True)
        exports.mkdir(parents=True)
        for node, rows in self.nodes.items():
            (listkeys / f"{node}.csv").write_text("Use ringsh noise line\n" + "\n".join(rows) + "\n")
        for bucket, rows in self.exports.items():
            with open(exports / f"{bucket}_keys.txt", "w", newline="", encoding="utf-8") as handle:
                csv.writer(handle, quoting=csv.QUOTE_ALL).writerows(rows)
        return listkeys, exports


def build() -> Planted:
    """Every case of docs/domain.md sections 5-7, once or twice."""
    p = Planted()
    prefix = keys.input_key_md5_prefix

    # Healthy referenced objects: ARC (incl. leading zero bytes), COS, chunks listed twice.
    for zeros in (0, 1, 2, 0):
        key = p.new_input_key(zeros)
        p.store_arc(prefix(key), ARC.stripes, twice=2)
        p.reference(key)
    cos_key = p.new_input_key()
    p.store_cos(prefix(cos_key))
    p.reference(cos_key, bucket="bucket-b")
    # Referenced through service 50 (older sproxyd): matched by digkey too.
    s50_key = p.new_input_key()
    p.store_arc(prefix(s50_key), ARC.stripes, service="50")
    p.reference(s50_key)
    # Non-zero flags are kept.
    flagged = p.new_input_key()
    p.store_arc(prefix(flagged), ARC.stripes, flag=16)
    p.reference(flagged)

    # Orphans: ARC (service 51 and 50), COS, ARC with exactly 4 chunks, ARC with leading-zero input key.
    for service, stripes, zeros in (("51", 12, 0), ("50", 12, 0), ("51", 4, 0), ("51", 12, 1), ("51", 7, 2)):
        p.orphans.add(p.store_arc(prefix(p.new_input_key(zeros)), stripes, service=service))
    p.orphans.add(p.store_cos(prefix(p.new_input_key())))
    p.orphans.add(p.store_cos(prefix(p.new_input_key()), replicas=1))

    # Debris: 1-3 distinct chunks, one of them listed by two nodes (4 rows, 3 chunks).
    for stripes, twice in ((1, 0), (3, 1)):
        p.debris.add(p.store_arc(prefix(p.new_input_key()), stripes, twice=twice))

    # Gaps.
    missing = p.new_input_key(1)
    p.reference(missing, bucket="bucket-b")
    p.gaps["missing"].add(missing)
    degraded = p.new_input_key()
    p.store_arc(prefix(degraded), ARC.stripes - 2)
    p.reference(degraded, bucket="bucket-b")
    p.gaps["degraded"].add(degraded)
    unrecoverable = p.new_input_key()
    p.store_arc(prefix(unrecoverable), 5)
    p.reference(unrecoverable)
    p.gaps["unrecoverable"].add(unrecoverable)
    unrecoverable_debris = p.new_input_key()  # referenced, 2 chunks: a gap and debris
    p.debris.add(p.store_arc(prefix(unrecoverable_debris), 2))
    p.reference(unrecoverable_debris)
    p.gaps["unrecoverable"].add(unrecoverable_debris)
    cos_degraded = p.new_input_key()
    p.store_cos(prefix(cos_degraded), replicas=2)
    p.reference(cos_degraded)
    p.gaps["degraded"].add(cos_degraded)

    # Duplicates: one sproxyd key referenced by two objects.
    shared = p.new_input_key()
    p.store_arc(prefix(shared), ARC.stripes)
    p.reference(shared, name="copy-1")
    p.reference(shared, bucket="bucket-b", name="copy-2")
    p.duplicates.add(shared)

    # Never candidates: other services, a non-zero volume id, non-main chunk endings.
    other = prefix(p.new_input_key())
    p._chunk_rows(other + "00000000" + "10" + "000000" + "20", [_rand_hex(p.rng, 20) for _ in range(3)])
    p._chunk_rows(other + "00000000" + "59" + "2040C0" + "70", [_rand_hex(p.rng, 20) for _ in range(12)])
    p._chunk_rows(other + "00010000" + "51" + "2040C0" + "70", [_rand_hex(p.rng, 20) for _ in range(12)])
    p._chunk_rows(other + "00000000" + "51" + "2040C0" + "71", [_rand_hex(p.rng, 20) for _ in range(12)])
    return p


def analyzed(root: Path, store_name: str = "store"):  # noqa: ANN201 - (Planted, Store, AnalysisResult)
    """The planted world written under ``root``, ingested into ``root/store_name`` and analysed."""
    from ringfsck.analysis import AnalysisOptions, analyze
    from ringfsck.config import Settings
    from ringfsck.ingest import ingest_listkeys, ingest_s3keys
    from ringfsck.store import Store

    world = build()
    listkeys, exports = world.write(root)
    store = Store.open(Settings(store=str(root / store_name)))
    ingest_listkeys(store, [str(listkeys)])
    ingest_s3keys(store, [str(exports)])
    return world, store, analyze(store, AnalysisOptions(assume_no_splits=True))
