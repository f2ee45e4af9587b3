"""Key rules (docs/domain.md sections 2 and 3), checked against the vectors and by properties."""

from __future__ import annotations

import hashlib

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfsck import keys
from ringfsck.errors import InvalidKeyError
from ringfsck.packed_keys import key_hex, pack_keys
from ringfsck.steps import load_macros

VECTORS = [
    ("BDE4B9BBEB45711EC2F1A9C78F6BCD59E02C6220", "7359114991482315D0A5890000", "8+4", "7359114991482315D0A58900000000512040C070"),
    ("00A3F1C2B4D5E6F708192A3B4C5D6E7F80915920", "FDF07EBE5251BA50E548C50000", "4+2", "FDF07EBE5251BA50E548C5000000005110206070"),
    ("0A3F1C2B4D5E6F708192A3B4C5D6E7F809159200", "C49E27C5117087F95753690000", None, None),
]
ARC_TABLE = {"4+2": "102060", "8+4": "2040C0", "9+3": "2430C0", "7+5": "1C50C0", "5+7": "1470C0", "6+3": "183090", "10+4": "2840E0"}

hex_keys = st.binary(min_size=20, max_size=20).map(lambda b: b.hex().upper())
# Keys with 0, 1 or 2 leading zero bytes (the 20-, 19- and 18-byte forms).
zero_led_keys = st.tuples(st.integers(0, 2), st.binary(min_size=18, max_size=18)).map(
    lambda t: (b"\x00" * t[0] + b"\x01" * (2 - t[0]) + t[1]).hex().upper()
)


@pytest.mark.parametrize("input_key,digkey,arc,main_chunk", VECTORS)
def test_domain_vectors(input_key, digkey, arc, main_chunk):
    assert keys.input_key_digkey(input_key) == digkey
    if arc:
        assert keys.input_key_main_chunk(input_key, arc) == main_chunk
        assert keys.digkey(main_chunk) == digkey


@pytest.mark.parametrize("schema,expected", sorted(ARC_TABLE.items()))
def test_arc_app_specific_table(schema, expected):
    assert keys.arc_app_specific(schema) == expected


@given(st.integers(1, 63), st.integers(1, 63))
def test_arc_schema_round_trips_through_a_key(k, m):
    if k + m > 255:
        return
    key = keys.arc_chunk_key("0" * 22, f"{k}+{m}")
    assert keys.arc_schema_of(key) == keys.ArcSchema(k, m)
    assert key.endswith("70")


@given(st.integers(1, 20), st.integers(1, 20), st.integers(0, 39))
def test_arc_stripe_index_high_nibble_in_char_37(k, m, stripe):
    if stripe >= k + m:
        return
    key = keys.RingKey.parse(keys.arc_chunk_key("A" * 22, f"{k}+{m}", stripe))
    assert key.is_arc and key.index == stripe
    assert key.is_main_chunk == (stripe == 0)


@given(hex_keys)
def test_digkey_is_md5_of_bytes_without_leading_zero_bytes(key):
    expected = hashlib.md5(bytes.fromhex(key).lstrip(b"\x00")).hexdigest()[:22].upper()
    # A lone leading zero nibble stays (0A.. hashes byte 0x0A), matching "strip 0 digits, pad to even".
    assert keys.input_key_digkey(key) == expected + "0000"


@given(zero_led_keys)
def test_leading_zero_bytes_do_not_change_the_digkey(key):
    stripped = bytes.fromhex(key).lstrip(b"\x00")
    assert keys.input_key_md5_prefix(key) == hashlib.md5(stripped).hexdigest()[:22].upper()


@settings(max_examples=200)
@given(st.lists(st.one_of(hex_keys, zero_led_keys), min_size=1, max_size=20))
def test_sql_macro_agrees_with_python(batch):
    con = duckdb.connect()
    load_macros(con)
    rows = con.execute("SELECT k, input_key_digkey(k) FROM unnest(?::VARCHAR[]) AS t(k)", [batch]).fetchall()
    assert {k: d for k, d in rows} == {k: keys.input_key_digkey(k) for k in batch}


def test_sql_schema_macro_agrees_with_python():
    con = duckdb.connect()
    load_macros(con)
    for schema in ARC_TABLE:
        key = keys.arc_chunk_key("B" * 22, schema)
        assert con.execute("SELECT key_schema(?), key_protection(?)", [key, key]).fetchone() == (schema, "arc")
    cos_key = keys.cos_chunk_key("C" * 22, 2)
    assert con.execute("SELECT key_schema(?), key_protection(?)", [cos_key, cos_key]).fetchone() == ("2", "cos")


# RING keys shaped like S3 main chunks or not: service 50/51 or other, zero volume or not, ARC/COS/other endings.
ring_keys = st.tuples(
    st.binary(min_size=11, max_size=11).map(lambda b: b.hex().upper()),
    st.sampled_from(["000000", "000001", "A00000"]),
    st.sampled_from(["00", "01"]),
    st.sampled_from(["50", "51", "52", "5A"]),
    st.sampled_from(["2040C070", "2040C07A", "10206070", "00000020", "00000021", "00000060", "2040C0F0"]),
).map("".join)


@given(st.lists(hex_keys, max_size=30), st.randoms())
def test_packed_keys_round_trip_any_case(batch, rng):
    mixed = ["".join(c.lower() if rng.random() < 0.5 else c for c in k) for k in batch]
    packed = pack_keys(mixed)
    assert packed.valid.all()
    assert [key_hex(int(h), int(m), int(lo)) for h, m, lo in zip(packed.hi, packed.mid, packed.lo)] == batch


@pytest.mark.parametrize("bad", ["G" * 40, "A" * 39, "A" * 41, "0x" + "A" * 38, " " + "A" * 39, "é" * 40])
def test_packed_keys_flag_what_is_not_40_hex(bad):
    packed = pack_keys([keys.normalize_key("AB" * 20), bad])
    assert packed.valid.tolist() == [True, False]


@settings(max_examples=100)
@given(st.lists(ring_keys, min_size=1, max_size=30))
def test_packed_sql_macros_agree_with_the_hex_rules(batch):
    con = duckdb.connect()
    load_macros(con)
    mismatches = con.execute(
        """
        SELECT k FROM unnest(?::VARCHAR[]) AS t(k)
        WHERE key_hex(key_hi(k), key_mid(k), key_lo(k)) <> k
           OR packed_is_s3_service(key_mid(k)) <> (key_service_id(k) IN ('50', '51'))
           OR packed_volume_is_zero(key_mid(k)) <> (substr(k, 23, 6) = '000000')
           OR packed_is_main_chunk(key_lo(k)) <> ((key_protection(k) = 'arc' AND right(k, 2) = '70')
                                                  OR (key_protection(k) = 'cos' AND right(k, 1) = '0'))
           OR (packed_is_main_chunk(key_lo(k)) AND (packed_protection(key_lo(k)) <> key_protection(k)
                                                    OR packed_schema(key_lo(k)) <> key_schema(k)
                                                    OR packed_full_chunks(key_lo(k)) <> schema_full_chunks(key_protection(k), key_schema(k))))
           OR key_hi(k) <> digkey_hi(left(k, 26))
           OR packed_digkey_lo(key_mid(k)) <> digkey_lo(left(k, 26))
        """,
        [batch],
    ).fetchall()
    assert mismatches == []


def test_cos_keys():
    main = keys.cos_chunk_key("D" * 22, 2)
    assert main.endswith("20")
    assert keys.cos_chunk_key("D" * 22, 2, replica=2).endswith("22")
    parsed = keys.RingKey.parse(main)
    assert parsed.is_cos and parsed.is_main_chunk and parsed.protection == "cos"
    with pytest.raises(ValueError):
        keys.cos_chunk_key("D" * 22, 2, replica=3)


def test_ring_key_fields():
    key = keys.RingKey.parse("8000004F3F3A54FFEADF8C00000000511470C070")
    assert key.dispersion == "800000"
    assert key.service_id == "51"
    assert key.volume == "00000000"
    assert key.app_specific == "1470C0"
    assert key.is_s3_candidate_service and key.is_main_chunk
    assert keys.arc_schema_of(key.key) == keys.ArcSchema(5, 7)


@pytest.mark.parametrize("bad", ["", "XYZ", "A" * 39, "A" * 41, "G" * 40, "0x" + "A" * 38])
def test_invalid_keys_are_rejected(bad):
    assert not keys.is_valid_key(bad)
    with pytest.raises(InvalidKeyError):
        keys.normalize_key(bad)


def test_lowercase_keys_are_normalised():
    assert keys.normalize_key(" bde4b9bbeb45711ec2f1a9c78f6bcd59e02c6220 ") == VECTORS[0][0]


@pytest.mark.parametrize("text", ["8", "8+", "+4", "8-4", "0+4", "64+1", "eight+four"])
def test_invalid_arc_schemas(text):
    with pytest.raises(ValueError, match="ARC"):
        keys.parse_arc(text)


@pytest.mark.parametrize("value", [-1, 6, "x", None])
def test_invalid_cos(value):
    with pytest.raises(ValueError, match="COS"):
        keys.parse_cos(value)
