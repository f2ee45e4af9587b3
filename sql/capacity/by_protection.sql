-- Orphan capacity per protection schema, with the raw multiplier stated:
-- ARC k+m stores size x (k+m)/k, COS n stores size x (n+1).
SELECT
    protection,
    schema,
    count(*) AS orphans,
    count(*) FILTER (WHERE status = 'ok') AS sized,
    coalesce(sum(size), 0) AS logical_bytes,
    coalesce(sum(raw_size), 0)::BIGINT AS raw_bytes,
    CASE WHEN protection = 'arc'
         THEN round((CAST(split_part(schema, '+', 1) AS DOUBLE) + CAST(split_part(schema, '+', 2) AS DOUBLE)) / CAST(split_part(schema, '+', 1) AS DOUBLE), 4)
         ELSE CAST(schema AS DOUBLE) + 1 END AS raw_multiplier
FROM orphan_sizes
GROUP BY ALL
ORDER BY raw_bytes DESC
