-- Rejected rows of S3 exports (files and bucketd): references ringfsck does not know. A listing's
-- rejects hold chunk keys, not references; a reject of no recorded source counts as an export's.
SELECT r.* FROM rejects AS r
ANTI JOIN sources AS s ON s.location = r.source AND s.kind = 'listkeys'
