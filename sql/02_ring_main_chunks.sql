-- RING main chunks that may hold S3 data (DOMAIN.md section 6): service id 50 or 51,
-- volume-id chars 22-27 all zero, ARC main chunks (ending 70) or COS main chunks (ending <cos>0).
-- Chunks are counted DISTINCT: a chunk listed by two nodes counts once (the reference counts rows).
-- Flags are not filtered (the reference keeps only flag 0, and only for service 50).
-- candidate: COS main chunks, and ARC main chunks with at least min_chunks distinct chunks
-- (fewer is RING-level debris, see 06_debris).
-- listkeys_packed holds the keys as integers (see key_hex in 00_macros.sql): the filters and the
-- grouping run on them, and only the main chunks kept are turned back into hex.
WITH counted AS (
    SELECT main_chunk_hi AS hi, main_chunk_mid AS mid, main_chunk_lo AS lo,
           count(DISTINCT (chunk_key_hi, chunk_key_mid, chunk_key_lo)) AS chunks
    FROM listkeys_packed
    WHERE packed_is_s3_service(main_chunk_mid)
      AND packed_volume_is_zero(main_chunk_mid)
      AND packed_is_main_chunk(main_chunk_lo)
    GROUP BY ALL
),
described AS (
    SELECT key_hex(hi, mid, lo) AS ring_key, hi AS dig_hi, packed_digkey_lo(mid) AS dig_lo, chunks
    FROM counted
)
SELECT
    ring_key,
    left(ring_key, 26) AS digkey,
    key_service_id(ring_key) AS service_id,
    key_protection(ring_key) AS protection,
    key_schema(ring_key) AS schema,
    chunks,
    key_protection(ring_key) = 'cos' OR chunks >= getvariable('min_chunks') AS candidate,
    dig_hi,
    dig_lo
FROM described
