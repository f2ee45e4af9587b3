-- Every S3 key row named as a reference: (bucket, object_key, version_id, sproxyd_key), whichever
-- source gave it (docs/domain.md section 5). The reference's CSV keeps objectUrl's percent-encoded last
-- segment ("name%00versionId" for a version): decoded and split here (JSON lines and bucketd are
-- decoded at ingest; a name that does not decode stays as written). s3utils names an object's
-- current version by its master entry (no version id), bucketd by its version: a row without a
-- version id takes the version id of a row of the same object naming the same key.
SELECT bucket, object_key,
    coalesce(version_id, min(version_id) OVER (PARTITION BY bucket, object_key, sproxyd_key)) AS version_id,
    sproxyd_key, size, last_modified, on_ring, source
FROM (
    SELECT bucket, sproxyd_key, size, last_modified, on_ring, source,
        CASE WHEN versioned THEN regexp_extract(decoded, '(?s)^(.*)\x00', 1) ELSE decoded END AS object_key,
        CASE WHEN versioned THEN regexp_extract(decoded, '(?s)\x00([^\x00]*)$', 1) ELSE version_id END AS version_id
    FROM (
        SELECT *, encoded AND contains(decoded, chr(0)) AS versioned
        FROM (
            SELECT *, CASE WHEN encoded THEN coalesce(try(url_decode(object_key)), object_key) ELSE object_key END AS decoded
            FROM (
                SELECT *, version_id IS NULL AND contains(object_key, '%')
                    AND source IN (SELECT location FROM sources WHERE format = getvariable('csv_export_format')) AS encoded
                FROM s3keys
            )
        )
    )
)
