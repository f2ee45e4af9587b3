-- RING main chunks that may hold S3 data (DOMAIN.md section 6): service id 50 or 51,
-- volume-id chars 22-27 all zero, ARC main chunks (ending 70) or COS main chunks (ending <cos>0).
-- Chunks are counted DISTINCT: a chunk listed by two nodes counts once (the reference counts rows).
-- Flags are not filtered (the reference keeps only flag 0, and only for service 50).
SELECT
    main_chunk AS ring_key,
    left(main_chunk, 26) AS digkey,
    key_service_id(main_chunk) AS service_id,
    key_protection(main_chunk) AS protection,
    key_schema(main_chunk) AS schema,
    count(DISTINCT chunk_key) AS chunks
FROM listkeys
WHERE key_service_id(main_chunk) IN ('50', '51')
  AND substr(main_chunk, 23, 6) = '000000'
  AND (
        (key_protection(main_chunk) = 'arc' AND right(main_chunk, 2) = '70')
     OR (key_protection(main_chunk) = 'cos' AND right(main_chunk, 1) = '0')
  )
GROUP BY main_chunk
