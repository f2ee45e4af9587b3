-- Split lookups are appended in batches (splits_log): the newest answer per key wins, an answer over a failure at the same time.
SELECT * FROM splits_log
QUALIFY row_number() OVER (PARTITION BY input_key ORDER BY resolved_at DESC, status = 'ok' DESC) = 1
