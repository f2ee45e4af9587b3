-- The orphans with their sizes. Logical bytes = X-Scal-Size x logical_multiplier: k for ARC when the
-- header is one chunk's size (the run's size reading, ringfsck.sizing), else 1.
-- Raw bytes = logical x schema_raw_multiplier: (k+m)/k for ARC, cos+1 for COS.
SELECT ring_key, protection, schema, x_scal_size * logical_multiplier AS size,
    x_scal_size * logical_multiplier * schema_raw_multiplier(protection, schema) AS raw_size,
    status, x_scal_size, logical_multiplier
FROM (
    SELECT o.ring_key, o.protection, o.schema, s.size AS x_scal_size, coalesce(s.status, 'unsized') AS status,
        CASE WHEN o.protection = 'arc' AND getvariable('size_reading') = 'chunk' THEN schema_min_chunks(o.protection, o.schema) ELSE 1 END
            AS logical_multiplier
    FROM orphans AS o
    LEFT JOIN sizes AS s USING (ring_key)
)
