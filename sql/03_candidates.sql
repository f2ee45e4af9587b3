-- RING keys that could be S3 orphans: COS main chunks, and ARC main chunks with at
-- least min_chunks distinct chunks (fewer is RING-level debris, see 06_debris).
SELECT ring_key, digkey, protection, chunks, service_id, schema
FROM ring_main_chunks
WHERE protection = 'cos'
   OR (protection = 'arc' AND chunks >= getvariable('min_chunks'))
