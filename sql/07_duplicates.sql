-- sproxyd keys referenced by more than one object version: deleting one of those
-- objects through S3 would delete data the other still needs.
SELECT sproxyd_key,
       count(DISTINCT (bucket, object_key, coalesce(version_id, ''))) AS reference_count,
       list(DISTINCT bucket || '/' || object_key ORDER BY bucket || '/' || object_key)[1:10] AS objects
FROM s3_references
WHERE role = 'key'
GROUP BY sproxyd_key
HAVING count(DISTINCT (bucket, object_key, coalesce(version_id, ''))) > 1
