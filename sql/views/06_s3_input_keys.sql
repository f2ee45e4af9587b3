-- Every input key S3 names directly (rejected rows' tokens included): the keys whose split status
-- matters, and whether they need a lookup (key_below_split_threshold; the threshold is a setting).
SELECT sproxyd_key, key_below_split_threshold(size, getvariable('split_threshold')) AS below_split_threshold
FROM (
    SELECT sproxyd_key, size FROM s3keys
    UNION ALL SELECT unnest(keys) AS sproxyd_key, NULL::BIGINT AS size FROM s3_rejects
)
GROUP BY sproxyd_key
