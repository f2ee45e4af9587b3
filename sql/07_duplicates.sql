-- sproxyd keys referenced by more than one object version: deleting one of those
-- objects through S3 would delete data the other still needs.
WITH shared AS (
    -- cheap first pass: keys on more than one row (rows of one version can repeat a key)
    SELECT sproxyd_key FROM s3_references WHERE role = 'key' GROUP BY sproxyd_key HAVING count(*) > 1
)
SELECT r.sproxyd_key,
       count(DISTINCT (r.bucket, r.object_key, coalesce(r.version_id, ''))) AS reference_count,
       list(DISTINCT r.bucket || '/' || r.object_key ORDER BY r.bucket || '/' || r.object_key)[1:10] AS objects
FROM s3_references AS r
SEMI JOIN shared AS s ON s.sproxyd_key = r.sproxyd_key
WHERE r.role = 'key'
GROUP BY r.sproxyd_key
HAVING count(DISTINCT (r.bucket, r.object_key, coalesce(r.version_id, ''))) > 1
