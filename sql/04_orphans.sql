-- Orphans: candidates whose digkey no S3 input key, split index or subkey matches.
-- The 26-char digkey is used for every candidate, service 50 included (the reference
-- compared service-50 ARC keys whole, so they never matched and were always orphans).
SELECT key_hex(m.hi, m.mid, m.lo) AS ring_key, left(ring_key, 26) AS digkey, m.protection, m.chunks,
       key_service_id(ring_key) AS service_id, m.schema
FROM ring_main_chunks AS m
ANTI JOIN s3_references AS r ON r.dig_hi = m.dig_hi AND r.dig_lo = m.dig_lo
WHERE m.candidate
