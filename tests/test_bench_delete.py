"""benchmarks/bench_delete.py on a tiny world: its figures come from the lab's request log and add up."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_delete import run  # the benchmarks folder is not a package


def test_the_delete_benchmark_counts_every_request_of_the_guards(tmp_path, capsys):
    guarded, bare = run(objects=300, orphans=0.2, latency_ms=0, concurrency=8, root=tmp_path)
    keys = guarded.keys
    assert keys == bare.keys >= 60
    assert guarded.requests["DELETE"] == keys and guarded.requests["re-check HEAD"] == keys  # a HEAD before each DELETE
    assert guarded.requests["canary HEAD"] > 0
    assert bare.requests == {"DELETE": keys}  # the minimum: one request per key
    out = capsys.readouterr().out
    assert "guards' overhead: x" in out and f"canaries: {guarded.requests['canary HEAD']:,} HEADs in" in out
