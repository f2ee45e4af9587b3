-- RING keys that could be S3 orphans (the rule is in 02_ring_main_chunks: COS main
-- chunks, and ARC main chunks with at least min_chunks distinct chunks).
SELECT ring_key, digkey, protection, chunks, service_id, schema
FROM ring_main_chunks
WHERE candidate
