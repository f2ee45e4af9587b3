-- The RING listing with its keys in hex: listkeys_packed is the table as stored (keys as integers, see key_hex).
SELECT
    key_hex(chunk_key_hi, chunk_key_mid, chunk_key_lo) AS chunk_key,
    key_hex(main_chunk_hi, main_chunk_mid, main_chunk_lo) AS main_chunk,
    disk, flag, source
FROM listkeys_packed
