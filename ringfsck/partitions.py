"""Key-prefix partitions of the listkeys table.

Listkeys row groups are partitioned by the first hex digit of the main chunk (the
top bits of ``main_chunk_hi``): a partitioned analysis step reads a range of
partitions per pass, so its aggregation stays in memory. Plain arithmetic, kept
apart from ``packed_keys`` so that the analysis needs no numpy.
"""

from __future__ import annotations

PARTITION_BITS = 4
PARTITIONS = 1 << PARTITION_BITS


def partition_bounds(index: int) -> tuple[int, int]:
    """The range of ``hi`` in partition ``index``, both ends included."""
    width = 1 << (64 - PARTITION_BITS)
    return index * width, (index + 1) * width - 1


def pass_bounds(passes: int) -> list[tuple[int, int]]:
    """The partitions cut into ``passes`` (a power of two up to PARTITIONS) contiguous ranges of ``hi``."""
    if passes < 1 or passes > PARTITIONS or passes & (passes - 1):
        raise ValueError(f"passes must be a power of two from 1 to {PARTITIONS}, not {passes}")
    per_pass = PARTITIONS // passes
    return [(partition_bounds(i * per_pass)[0], partition_bounds((i + 1) * per_pass - 1)[1]) for i in range(passes)]
