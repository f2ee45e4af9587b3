-- Gaps: S3 references whose RING data is missing (no main chunk), unrecoverable
-- (ARC: fewer than k chunks) or degraded (fewer than k+m chunks; COS: fewer than cos+1).
-- The schema comes from the RING key itself; a missing key is predicted with the
-- configured ARC schema. Objects modified after the listing was taken cannot be in
-- it and are left out (counted in the run summary).
WITH best AS (
    -- Several main chunks can share a digkey (service 50 and 51 copies): judge the best one
    -- (one row's key, protection and schema together, even on a tie).
    SELECT dig_hi, dig_lo, max(chunks) AS chunks,
           arg_max({'hi': hi, 'mid': mid, 'lo': lo, 'protection': protection, 'schema': schema}, chunks) AS chunk
    FROM ring_main_chunks
    GROUP BY dig_hi, dig_lo
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
    FROM s3_references AS r
    LEFT JOIN best AS b ON b.dig_hi = r.dig_hi AND b.dig_lo = r.dig_lo
    WHERE getvariable('listing_time') IS NULL
       OR r.last_modified IS NULL
       OR r.last_modified < getvariable('listing_time')
)
SELECT * FROM judged WHERE status IS NOT NULL
