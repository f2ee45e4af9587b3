-- Orphans: candidates whose digkey no S3 input key, split index or subkey matches.
-- The 26-char digkey is used for every candidate, service 50 included (the reference
-- compared service-50 ARC keys whole, so they never matched and were always orphans).
-- reclaimable: false when the reference set is incomplete (a failed split lookup, a rejected export
-- row, an unfinished export…): then any of these could still be referenced, and none may be deleted.
SELECT key_hex(m.hi, m.mid, m.lo) AS ring_key, left(ring_key, 26) AS digkey, m.protection, m.chunks,
       key_service_id(ring_key) AS service_id, m.schema, getvariable('references_complete') AS reclaimable
FROM ring_main_chunks AS m
ANTI JOIN s3_references AS r ON r.dig_hi = m.dig_hi AND r.dig_lo = m.dig_lo
WHERE m.candidate
