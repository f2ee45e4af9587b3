"""The reference model of benchmarks/spark_baseline.py reads what the lab serves (no Spark needed).

Its p0 reads split indexes the way docs/domain.md section 4 describes them; were it to misread the
lab's, the subkeys would look orphaned on the reference side and the whole-job benchmark's orphan
comparison would blame the reference for a bug of ours.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from ringfsck.keys import input_key_digkey
from ringfsck.split_index import MARKER_FAMILIES, encode_split_index

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "spark_baseline.py"
_spec = importlib.util.spec_from_file_location("spark_baseline", _PATH)
assert _spec is not None and _spec.loader is not None
spark_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(spark_baseline)


@pytest.mark.parametrize("family", range(len(MARKER_FAMILIES)))
def test_the_reference_p0_reads_every_marker_family_and_short_keys(family):
    rng = random.Random(family)
    full = [f"{rng.getrandbits(160) | 1 << 159:040X}" for _ in range(5)]
    short = [f"{rng.getrandbits(152) | 1 << 151:040X}", f"{rng.getrandbits(144) | 1 << 143:040X}"]  # 19 and 18 bytes
    subkeys = full + short
    assert spark_baseline._subkeys(encode_split_index(subkeys, family=family)) == subkeys


def test_the_reference_p0_reads_the_lab_default_index_cycling_families():
    rng = random.Random(7)
    subkeys = [f"{rng.getrandbits(160) | 1 << 159:040X}" for _ in range(9)]
    assert spark_baseline._subkeys(encode_split_index(subkeys)) == subkeys


def test_the_reference_digkey_is_the_domain_one():
    for key in ("BDE4B9BBEB45711EC2F1A9C78F6BCD59E02C6220", "00A3F1C2B4D5E6F708192A3B4C5D6E7F80915920", "0A3F1C2B4D5E6F708192A3B4C5D6E7F809159200"):
        assert spark_baseline._digkey(key) == input_key_digkey(key)
