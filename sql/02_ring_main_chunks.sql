-- RING main chunks that may hold S3 data (docs/domain.md section 6): service id 50 or 51,
-- volume-id chars 22-27 all zero, ARC main chunks (ending 70) or COS main chunks (ending <cos>0).
-- Chunks are counted DISTINCT: a chunk listed by two nodes counts once (the reference counts rows).
-- Tombstones (flag bit 0, see flag_is_tombstone) are not chunks: a main chunk listed with only
-- tombstones gets no row, so a reference to it is a missing gap and it is neither orphan nor debris
-- (the summary counts them). Other flags are kept (the reference keeps only flag 0, for service 50).
-- candidate: COS main chunks, and ARC main chunks with at least min_chunks distinct chunks
-- (fewer is RING-level debris, see 06_debris). healthy: all its chunks are there (ARC k+m, COS cos+1).
-- Everything here stays packed (keys as integers, see key_hex in 00_macros.sql): on a full
-- RING this table has tens of millions of rows; the outputs turn their few keys back into hex.
-- It runs once per range of key-prefix partitions (partition_low..partition_high of
-- main_chunk_hi): the listkeys row groups hold one partition each, so each run reads only
-- its rows and its aggregation fits in memory.
-- listed is read twice rather than kept (10 M rows are 400 MB): DuckDB filters the second
-- read with the semi join's keys as it scans, so it passes on a fifth of the rows.
WITH listed AS NOT MATERIALIZED (
    SELECT main_chunk_hi AS hi, main_chunk_mid AS mid, main_chunk_lo AS lo, chunk_key_hi, chunk_key_mid, chunk_key_lo
    FROM listkeys_packed
    WHERE main_chunk_hi BETWEEN getvariable('partition_low') AND getvariable('partition_high')
      AND packed_is_s3_main_chunk(main_chunk_mid, main_chunk_lo)
      AND NOT flag_is_tombstone(flag)
),
per_main AS (
    -- One pass over the rows, grouped by main chunk only (a DISTINCT over every listed chunk
    -- costs a hash table as big as the listing): the rows, and the chunk slots they fill.
    -- Rows all in different slots are different chunks: the row count is exact.
    SELECT hi, mid, lo, count(*) AS listed_rows,
           bit_count(bit_or(1::UBIGINT << packed_chunk_slot(chunk_key_lo))) AS filled_slots
    FROM listed
    GROUP BY ALL
),
recounted AS (
    -- Rows sharing a slot: a chunk listed twice, or two chunks in one slot. Only those main
    -- chunks are counted DISTINCT over their chunk keys.
    SELECT hi, mid, lo, count(*) AS chunks
    FROM (
        SELECT DISTINCT l.*
        FROM listed AS l
        SEMI JOIN (SELECT DISTINCT hi FROM per_main WHERE listed_rows > filled_slots) AS shared USING (hi)
    )
    GROUP BY ALL
),
counted AS (
    SELECT p.hi, p.mid, p.lo, coalesce(r.chunks, p.listed_rows) AS chunks
    FROM per_main AS p
    LEFT JOIN recounted AS r USING (hi, mid, lo)
)
SELECT
    hi, mid, lo,
    hi AS dig_hi,
    packed_digkey_lo(mid) AS dig_lo,
    packed_protection(lo) AS protection,
    packed_schema(lo) AS schema,
    chunks,
    packed_protection(lo) = 'cos' OR chunks >= getvariable('min_chunks') AS candidate,
    chunks >= packed_full_chunks(lo) AS healthy
FROM counted
