-- Orphan capacity per protection schema, with the multipliers stated. Logical bytes are
-- X-Scal-Size x x_scal_size_to_logical (k for ARC when the header is one chunk's size, else 1,
-- see orphan_sizes); raw bytes are logical x raw_multiplier: ARC k+m (k+m)/k, COS n (n+1).
SELECT
    protection,
    schema,
    count(*) AS orphans,
    count(*) FILTER (WHERE status = 'ok') AS sized,
    coalesce(sum(size), 0) AS logical_bytes,
    coalesce(sum(raw_size), 0)::BIGINT AS raw_bytes,
    round(schema_raw_multiplier(protection, schema), 4) AS raw_multiplier,
    any_value(logical_multiplier) AS x_scal_size_to_logical,
    round(any_value(logical_multiplier) * schema_raw_multiplier(protection, schema), 4) AS x_scal_size_to_raw
FROM orphan_sizes
GROUP BY protection, schema
ORDER BY raw_bytes DESC
