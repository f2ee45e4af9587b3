-- Orphans: candidates whose digkey no S3 input key, split index or subkey matches.
-- The 26-char digkey is used for every candidate, service 50 included (the reference
-- compared service-50 ARC keys whole, so they never matched and were always orphans).
SELECT c.ring_key, c.digkey, c.protection, c.chunks, c.service_id, c.schema
FROM candidates AS c
ANTI JOIN s3_references AS r ON r.digkey = c.digkey
