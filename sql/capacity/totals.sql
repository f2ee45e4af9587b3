-- Orphan capacity in total: logical bytes (from X-Scal-Size, as orphan_sizes reads it) and raw bytes on disk.
-- Unsized orphans (lookup failed or never made) are counted, never guessed.
SELECT
    count(*) AS orphans,
    count(*) FILTER (WHERE status = 'ok') AS sized,
    count(*) FILTER (WHERE status = 'unsized') AS unsized,
    count(*) FILTER (WHERE status = 'error') AS failed,
    count(*) FILTER (WHERE status = 'not_found') AS gone,
    coalesce(sum(size), 0) AS logical_bytes,
    coalesce(sum(raw_size), 0)::BIGINT AS raw_bytes
FROM orphan_sizes
