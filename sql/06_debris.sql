-- RING debris: ARC main chunks with fewer than min_chunks distinct chunks. Never
-- orphans and never deleted by ringfsck; a referenced one is also an S3 gap.
SELECT key_hex(m.hi, m.mid, m.lo) AS ring_key, left(ring_key, 26) AS digkey, m.chunks,
       EXISTS (SELECT 1 FROM s3_references AS r WHERE r.dig_hi = m.dig_hi AND r.dig_lo = m.dig_lo) AS referenced,
       key_service_id(ring_key) AS service_id, m.schema
FROM ring_main_chunks AS m
WHERE m.protection = 'arc' AND m.chunks < getvariable('min_chunks')
