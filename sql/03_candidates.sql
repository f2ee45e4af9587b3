-- RING keys that could be S3 orphans (the rule is in 02_ring_main_chunks: COS main
-- chunks, and ARC main chunks with at least min_chunks distinct chunks).
-- A view, not a file: the run keeps ring_main_chunks (keys packed) and the hex is made when read.
SELECT key_hex(hi, mid, lo) AS ring_key, left(ring_key, 26) AS digkey, protection, chunks,
       key_service_id(ring_key) AS service_id, schema
FROM ring_main_chunks
WHERE candidate
