-- Gaps: S3 references whose RING data is missing (no main chunk), unrecoverable
-- (ARC: fewer than k chunks) or degraded (fewer than k+m chunks; COS: fewer than cos+1).
-- The schema comes from the RING key itself; a missing key is predicted with the
-- configured ARC schema. Objects modified after the listing was taken cannot be in
-- it and are left out (counted in the run summary). Only RING locations are judged: keys of
-- other backends (on_ring = false) and tokens of rejected rows are references for orphans only.
WITH suspects AS (
    -- A reference whose digkey has a healthy main chunk is no gap: only the others are judged.
    SELECT r.*
    FROM s3_references AS r
    ANTI JOIN (SELECT dig_hi, dig_lo FROM ring_main_chunks WHERE healthy) AS h
           ON h.dig_hi = r.dig_hi AND h.dig_lo = r.dig_lo
    WHERE r.role <> 'rejected' AND r.on_ring IS DISTINCT FROM false
      AND (getvariable('listing_time') IS NULL
       OR r.last_modified IS NULL
       OR r.last_modified < getvariable('listing_time'))
),
best AS (
    -- Several main chunks can share a digkey (service 50 and 51 copies): judge the best one
    -- (one row's key, protection and schema together, even on a tie).
    SELECT m.dig_hi, m.dig_lo, max(m.chunks) AS chunks,
           arg_max({'hi': m.hi, 'mid': m.mid, 'lo': m.lo, 'protection': m.protection, 'schema': m.schema}, m.chunks) AS chunk
    FROM ring_main_chunks AS m
    SEMI JOIN suspects AS s ON s.dig_hi = m.dig_hi AND s.dig_lo = m.dig_lo
    GROUP BY m.dig_hi, m.dig_lo
),
judged AS (
    SELECT
        r.bucket, r.object_key, r.version_id, r.sproxyd_key, r.parent_key,
        coalesce(key_hex(b.chunk.hi, b.chunk.mid, b.chunk.lo), left(r.digkey, 22) || '00000000' || '51' || getvariable('arc_app_specific') || '70') AS ring_key,
        coalesce(b.chunks, 0) AS chunks_found,
        CASE WHEN b.dig_hi IS NULL THEN getvariable('arc_stripes') ELSE schema_full_chunks(b.chunk.protection, b.chunk.schema) END AS chunks_expected,
        CASE
            WHEN b.dig_hi IS NULL THEN 'missing'
            WHEN b.chunks < schema_min_chunks(b.chunk.protection, b.chunk.schema) THEN 'unrecoverable'
            WHEN b.chunks < schema_full_chunks(b.chunk.protection, b.chunk.schema) THEN 'degraded'
        END AS status
    FROM suspects AS r
    LEFT JOIN best AS b ON b.dig_hi = r.dig_hi AND b.dig_lo = r.dig_lo
)
SELECT * FROM judged WHERE status IS NOT NULL
