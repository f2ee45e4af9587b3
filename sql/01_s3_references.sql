-- Every RING input key that S3 references, with the digkey RING main chunks match on.
-- A split object references its split index (stored under the input key itself:
-- the reference forgot it) and every subkey listed in the index.
WITH input_keys AS (
    SELECT bucket, object_key, version_id, sproxyd_key, NULL::VARCHAR AS parent_key, 'key' AS role, last_modified
    FROM s3keys
),
subkeys AS (
    SELECT k.bucket, k.object_key, k.version_id, unnest(s.subkeys) AS sproxyd_key, k.sproxyd_key AS parent_key,
           'subkey' AS role, k.last_modified
    FROM s3keys AS k
    JOIN splits AS s ON s.input_key = k.sproxyd_key
    WHERE s.status = 'ok' AND s.is_split
),
referenced AS (
    SELECT *, input_key_digkey(sproxyd_key) AS digkey
    FROM (SELECT * FROM input_keys UNION ALL SELECT * FROM subkeys)
)
-- dig_hi, dig_lo: the digkey as integers, what the joins with RING main chunks use.
SELECT *, digkey_hi(digkey) AS dig_hi, digkey_lo(digkey) AS dig_lo
FROM referenced
