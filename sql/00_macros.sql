-- Key rules shared by the steps (docs/domain.md sections 2 and 3), as DuckDB macros.
-- Positions below are 1-based (SQL substr); docs/domain.md counts from 0.

-- md5 prefix of an sproxyd input key: strip leading '0' hex digits, left-pad to
-- an even length, hash the bytes (so leading zero bytes are not hashed), keep 22 hex chars.
CREATE OR REPLACE MACRO input_key_md5_prefix(k) AS
    upper(left(md5(unhex(CASE WHEN length(ltrim(k, '0')) % 2 = 1 THEN '0' || ltrim(k, '0') ELSE ltrim(k, '0') END)), 22));

-- The 26-char digkey S3 references match on: md5 prefix + '0000' (volume id chars 22-25).
CREATE OR REPLACE MACRO input_key_digkey(k) AS input_key_md5_prefix(k) || '0000';

-- RING key fields.
CREATE OR REPLACE MACRO key_service_id(k) AS substr(k, 31, 2);
CREATE OR REPLACE MACRO key_class(k) AS substr(k, 39, 1);
CREATE OR REPLACE MACRO key_protection(k) AS
    CASE WHEN key_class(k) = '7' THEN 'arc' WHEN key_class(k) BETWEEN '0' AND '5' THEN 'cos' ELSE 'other' END;
-- ARC: chars 32-34 hold k<<6|m. COS: the class digit is the COS level.
CREATE OR REPLACE MACRO key_schema(k) AS
    CASE key_protection(k)
        WHEN 'arc' THEN CAST((('0x' || substr(k, 33, 3))::INTEGER >> 6) AS VARCHAR) || '+' || CAST((('0x' || substr(k, 33, 3))::INTEGER & 63) AS VARCHAR)
        WHEN 'cos' THEN key_class(k)
    END;
-- Chunks needed to read the data (ARC k, COS 1) and chunks of a healthy key (ARC k+m, COS cos+1).
CREATE OR REPLACE MACRO schema_min_chunks(protection, schema) AS
    CASE protection WHEN 'arc' THEN CAST(split_part(schema, '+', 1) AS BIGINT) ELSE 1 END;
CREATE OR REPLACE MACRO schema_full_chunks(protection, schema) AS
    CASE protection
        WHEN 'arc' THEN CAST(split_part(schema, '+', 1) AS BIGINT) + CAST(split_part(schema, '+', 2) AS BIGINT)
        ELSE CAST(schema AS BIGINT) + 1
    END;
-- Raw bytes on disk per logical byte: ARC k+m stores (k+m)/k, COS n stores n+1 copies.
CREATE OR REPLACE MACRO schema_raw_multiplier(protection, schema) AS
    CAST(schema_full_chunks(protection, schema) AS DOUBLE) / schema_min_chunks(protection, schema);

-- Split lookups (resolve: splits; size: sizes) that need no retry: an answer, or the key is
-- gone. Anything else (error, never asked) is asked again, and a split lookup left so keeps the
-- analysis incomplete.
CREATE OR REPLACE MACRO lookup_is_final(status) AS coalesce(status IN ('ok', 'not_found'), false);
-- Aggregate over every S3 row naming one input key: true when sproxyd cannot have split the key
-- (below its split threshold), so it needs no split lookup. Only when every row gives a size under
-- the threshold: a row without a size (file exports, rejected rows) or no threshold needs the lookup.
CREATE OR REPLACE MACRO key_below_split_threshold(size, threshold) AS
    coalesce(bool_and(size IS NOT NULL AND size < threshold), false);

-- Packed RING keys. The listkeys table stores each 40-hex key as three integers,
-- hi = chars 0-15, mid = chars 16-31, lo = chars 32-39 (integers group and join
-- several times faster than strings); these read the same fields as bit fields.
CREATE OR REPLACE MACRO key_hex(hi, mid, lo) AS printf('%016X%016X%08X', hi, mid, lo);
CREATE OR REPLACE MACRO key_hi(k) AS ('0x' || substr(k, 1, 16))::UBIGINT;
CREATE OR REPLACE MACRO key_mid(k) AS ('0x' || substr(k, 17, 16))::UBIGINT;
CREATE OR REPLACE MACRO key_lo(k) AS ('0x' || substr(k, 33, 8))::UINTEGER;
-- Service id (chars 30-31): the low byte of mid. 80 and 81 are 0x50 and 0x51.
CREATE OR REPLACE MACRO packed_is_s3_service(mid) AS (mid & 255) IN (80, 81);
-- Chars 22-27 of the volume id: bits 16-39 of mid.
CREATE OR REPLACE MACRO packed_volume_is_zero(mid) AS ((mid >> 16) & 16777215) = 0;
-- Main chunks: ARC ends in '70' (0x70 = 112), COS in '<0-5>0'.
CREATE OR REPLACE MACRO packed_is_main_chunk(lo) AS (lo & 255) = 112 OR ((lo & 15) = 0 AND ((lo >> 4) & 15) <= 5);
-- Main chunks that may hold S3 data (docs/domain.md section 6): all three above.
CREATE OR REPLACE MACRO packed_is_s3_main_chunk(mid, lo) AS packed_is_s3_service(mid) AND packed_volume_is_zero(mid) AND packed_is_main_chunk(lo);
-- Listkeys flag bit 0 (docs/domain.md section 5): a deleted chunk, a tombstone kept until the node
-- purges it. It holds no data: never a chunk of its main chunk.
CREATE OR REPLACE MACRO flag_is_tombstone(flag) AS (flag & 1) = 1;
-- A slot per chunk of a main chunk (0-63), from the chunk key's lo: the ARC stripe index
-- (char 37 high nibble, char 39 low nibble) or the COS replica (char 39). Only a shortcut for
-- counting distinct chunks (02_ring_main_chunks): two different chunks may share a slot.
CREATE OR REPLACE MACRO packed_chunk_slot(lo) AS ((lo >> 4) & 48) | (lo & 15);
-- Protection and schema of a main chunk from lo alone (the hex rules above, as bit fields):
-- ARC (class 7, char 38) keeps k<<6|m in chars 32-34, the top 12 bits of lo; COS is its class digit.
CREATE OR REPLACE MACRO packed_protection(lo) AS
    CASE WHEN ((lo >> 4) & 15) = 7 THEN 'arc' WHEN ((lo >> 4) & 15) <= 5 THEN 'cos' ELSE 'other' END;
CREATE OR REPLACE MACRO packed_schema(lo) AS
    CASE packed_protection(lo)
        WHEN 'arc' THEN CAST((lo >> 26) AS VARCHAR) || '+' || CAST(((lo >> 20) & 63) AS VARCHAR)
        WHEN 'cos' THEN CAST(((lo >> 4) & 15) AS VARCHAR)
    END;
-- Chunks of a healthy main chunk (ARC k+m, COS cos+1), from lo alone.
CREATE OR REPLACE MACRO packed_full_chunks(lo) AS
    CASE packed_protection(lo) WHEN 'arc' THEN (lo >> 26) + ((lo >> 20) & 63) ELSE ((lo >> 4) & 15) + 1 END;
-- The 26-char digkey as two integers: chars 0-15 (hi), chars 16-25 (the top 40 bits of mid).
CREATE OR REPLACE MACRO packed_digkey_lo(mid) AS mid >> 24;
-- A 26-char digkey string as the same two integers (for S3 references and small outputs).
CREATE OR REPLACE MACRO digkey_hi(d) AS ('0x' || left(d, 16))::UBIGINT;
CREATE OR REPLACE MACRO digkey_lo(d) AS ('0x' || substr(d, 17, 10))::UBIGINT;
