-- Raw orphan bytes per disk, from where listkeys saw each orphan chunk:
-- an ARC stripe holds size/k bytes, a COS replica holds the whole size.
WITH orphan_chunks AS (
    SELECT DISTINCT l.disk, l.chunk_key, o.protection, o.schema, o.size
    FROM orphan_sizes AS o
    JOIN listkeys AS l ON l.main_chunk = o.ring_key
)
SELECT
    disk,
    count(*) AS chunks,
    coalesce(sum(CASE WHEN protection = 'arc' THEN size / CAST(split_part(schema, '+', 1) AS DOUBLE) ELSE size END), 0)::BIGINT AS raw_bytes
FROM orphan_chunks
GROUP BY disk
ORDER BY raw_bytes DESC, disk
