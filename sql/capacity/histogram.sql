-- Orphans by logical size, in powers of 4 from 1 KiB (sized orphans only).
WITH bucketed AS (
    SELECT size, greatest(0, least(10, floor(log(4, greatest(size, 1) / 1024.0))))::INTEGER AS step
    FROM orphan_sizes
    WHERE status = 'ok'
)
SELECT
    step,
    CASE WHEN step = 0 THEN 0 ELSE 1024 * pow(4, step) END::BIGINT AS lower,
    CASE WHEN step = 10 THEN NULL ELSE 1024 * pow(4, step + 1) END::BIGINT AS upper,
    count(*) AS orphans,
    sum(size) AS logical_bytes
FROM bucketed
GROUP BY step
ORDER BY step
