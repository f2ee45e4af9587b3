-- Orphan sizes are appended in batches (sizes_log): the newest result per key wins.
SELECT * FROM sizes_log
QUALIFY row_number() OVER (PARTITION BY ring_key ORDER BY sized_at DESC) = 1
