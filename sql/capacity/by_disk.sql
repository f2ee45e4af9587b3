-- Raw orphan bytes per disk, from where listkeys saw each orphan chunk:
-- an ARC stripe holds size/k bytes, a COS replica holds the whole size (schema_min_chunks: k, or 1).
-- Tombstones hold no data (see flag_is_tombstone). The join runs on the packed keys (see key_hex in 00_macros.sql).
WITH orphan_chunks AS (
    SELECT DISTINCT l.disk, l.chunk_key_hi, l.chunk_key_mid, l.chunk_key_lo, o.protection, o.schema, o.size
    FROM orphan_sizes AS o
    JOIN listkeys_packed AS l
      ON l.main_chunk_hi = key_hi(o.ring_key) AND l.main_chunk_mid = key_mid(o.ring_key) AND l.main_chunk_lo = key_lo(o.ring_key)
    WHERE NOT flag_is_tombstone(l.flag)
)
SELECT
    disk,
    count(*) AS chunks,
    coalesce(sum(size / schema_min_chunks(protection, schema)), 0)::BIGINT AS raw_bytes
FROM orphan_chunks
GROUP BY disk
ORDER BY raw_bytes DESC, disk
