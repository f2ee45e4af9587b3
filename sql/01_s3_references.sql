-- Every RING input key that S3 references, with the digkey RING main chunks match on.
-- The set over-approximates (docs/domain.md sections 5 and 8): whatever might be a reference is one.
-- * key: every 40-hex key of every export row, whatever its backend (on_ring = false: another
--   backend's key, a reference for the orphan check only; NULL: a file export, backend unknown).
--   The same (bucket, object key, version, sproxyd key) from several sources (bucketd and a file
--   export of the same buckets, a CSV and its JSON-lines log) is ONE reference, so duplicates and
--   gaps are counted once; grouping by the sproxyd key never drops one.
-- * index: a split object's index is stored under the input key itself (the reference forgot it):
--   it is the 'key' row; 'subkey': every subkey its index lists.
-- * rejected: every 40-hex token of an S3 export row ringfsck could not parse (the analysis is
--   incomplete anyway, but nothing it shows may call that key's data unreferenced).
WITH input_keys AS (
    SELECT bucket, object_key, version_id, sproxyd_key, NULL::VARCHAR AS parent_key, 'key' AS role,
           max(last_modified) AS last_modified,
           -- A RING location if any source says so, another backend's if one says so and none says
           -- RING; unknown (file exports only) otherwise.
           CASE WHEN bool_or(on_ring) THEN true ELSE bool_and(on_ring) END AS on_ring
    FROM s3_objects
    GROUP BY bucket, object_key, version_id, sproxyd_key
),
rejected AS (
    SELECT DISTINCT NULL::VARCHAR AS bucket, NULL::VARCHAR AS object_key, NULL::VARCHAR AS version_id, unnest(r.keys) AS sproxyd_key,
           NULL::VARCHAR AS parent_key, 'rejected' AS role, NULL::TIMESTAMPTZ AS last_modified, NULL::BOOLEAN AS on_ring
    FROM s3_rejects AS r
),
named AS (
    SELECT * FROM input_keys UNION ALL SELECT * FROM rejected
),
subkeys AS (
    -- A rejected row's token is resolved like any input key (s3_input_keys): a split index's subkeys count.
    SELECT k.bucket, k.object_key, k.version_id, unnest(s.subkeys) AS sproxyd_key, k.sproxyd_key AS parent_key,
           'subkey' AS role, k.last_modified, k.on_ring
    FROM named AS k
    JOIN splits AS s ON s.input_key = k.sproxyd_key
    WHERE s.status = 'ok' AND s.is_split
),
referenced AS (
    SELECT *, input_key_digkey(sproxyd_key) AS digkey
    FROM (SELECT * FROM named UNION ALL SELECT * FROM subkeys)
)
-- dig_hi, dig_lo: the digkey as integers, what the joins with RING main chunks use.
SELECT *, digkey_hi(digkey) AS dig_hi, digkey_lo(digkey) AS dig_lo
FROM referenced
