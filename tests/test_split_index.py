"""Split index parsing (docs/domain.md section 4)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ringfsck.split_index import MARKERS, encode_split_index, parse_split_index

# 20-, 19- and 18-byte keys: 0-2 leading zero bytes, then a non-zero byte.
subkeys = st.tuples(st.integers(0, 2), st.binary(min_size=18, max_size=18).filter(lambda b: b[0] != 0)).map(
    lambda t: (b"\x00" * t[0] + b"\x07" * (2 - t[0]) + t[1]).hex().upper()
)


def test_the_nine_markers_of_the_domain():
    for family in ("200000000000014", "20100000014", "51d68800000014"):
        for suffix in ("14", "13", "12"):
            assert family[:-2] + suffix in MARKERS


@given(st.lists(subkeys, max_size=30), st.sampled_from([None, 0, 1, 2]))
def test_round_trip_every_family_and_key_length(keys, family):
    assert parse_split_index(encode_split_index(keys, family=family)) == keys


def test_uppercase_hex_markers_match():
    key = "AB" * 20
    body = bytes.fromhex("0" + "20100000014".upper() + key)
    assert parse_split_index(body) == [key]


def test_keys_with_three_leading_zero_bytes_cannot_be_encoded():
    import pytest

    with pytest.raises(ValueError, match="leading zero bytes"):
        encode_split_index(["000000" + "11" * 17])


def test_marker_off_a_byte_boundary_is_not_a_key():
    key = "CD" * 20
    # The marker starts on a byte boundary here, so the key would start mid-byte.
    body = bytes.fromhex("20100000014" + key + "0")
    assert parse_split_index(body) == []


def test_truncated_key_at_the_end_is_ignored():
    body = bytes.fromhex("0" + "20100000014" + "EF" * 10)
    assert parse_split_index(body) == []


def test_short_keys_are_left_padded():
    body = bytes.fromhex("51d68800000012" + "11" * 18)
    assert parse_split_index(body) == ["0000" + "11" * 18]
