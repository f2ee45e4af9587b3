"""srebuildd's X-Scal-Attr-Is-Split: absent for a plain key, and any value not understood is no answer."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from ringfsck.lab import LabServers
from ringfsck.remote.http import Endpoint, HttpPolicy, RateLimiter, RequestFailed
from ringfsck.remote.srebuildd import SplitAnswer, lookup_split
from ringfsck.split_index import encode_split_index
from test_http import Scripted

POLICY = HttpPolicy(concurrency=1, timeout=2, retries=1, backoff_base=0.001, backoff_max=0.01)
SUBKEY = "00A3F1C2B4D5E6F708192A3B4C5D6E7F80915920"
INPUT_KEY = "BDE4B9BBEB45711EC2F1A9C78F6BCD59E02C6220"


async def _lookup(url: str, key: str) -> SplitAnswer:
    endpoint = Endpoint(url, POLICY)
    try:
        return await lookup_split(endpoint, "rebuild/arc-DATA", key, policy=POLICY, limiter=RateLimiter(None))
    finally:
        await endpoint.aclose()


def lookup(url: str, key: str) -> SplitAnswer:
    return asyncio.run(_lookup(url, key))


def lookup_with_header(value: str | None) -> SplitAnswer:
    """lookup_split against a server on 127.0.0.1 that answers the HEAD with ``value`` (None: no header)."""
    async def answer(n, method, target, headers):
        if method == "HEAD":
            return 200, ({} if value is None else {"X-Scal-Attr-Is-Split": value}), b""
        return 200, {}, encode_split_index([SUBKEY])

    async def main() -> SplitAnswer:
        async with Scripted(answer) as url:
            return await _lookup(url, INPUT_KEY)

    return asyncio.run(main())


@pytest.mark.parametrize("value", [None, "false", "0", "no", "False", " NO "])
def test_absent_or_false_header_is_not_split(value):
    assert lookup_with_header(value) == SplitAnswer("ok", False, [])


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE", " Yes "])
def test_true_header_is_split_and_its_index_is_read(value):
    assert lookup_with_header(value) == SplitAnswer("ok", True, [SUBKEY])


@pytest.mark.parametrize("value", ["", "maybe", "2", "split", "truee"])
def test_a_value_not_understood_is_a_failed_lookup_not_a_guess(value):
    with pytest.raises(RequestFailed, match="X-Scal-Attr-Is-Split"):
        lookup_with_header(value)


def test_the_lab_omits_the_header_for_plain_keys(lab_world, lab_servers):
    truth = lab_world.truth
    split = next(iter(truth["splits"]))
    plain = next(k for k in truth["sproxyd_keys"] if k not in truth["splits"])
    subkey = truth["splits"][split][0]
    client = httpx.Client(base_url=lab_servers.srebuildd_url, timeout=10)
    for key in (plain, subkey):
        for method in ("HEAD", "GET"):
            answer = client.request(method, f"/rebuild/arc-DATA/{key}")
            assert answer.status_code == 200 and "X-Scal-Attr-Is-Split" not in answer.headers, (method, key)
    assert client.head(f"/rebuild/arc-DATA/{split}").headers["X-Scal-Attr-Is-Split"] == "true"
    assert lookup(lab_servers.srebuildd_url, plain) == SplitAnswer("ok", False, [])
    assert lookup(lab_servers.srebuildd_url, split) == SplitAnswer("ok", True, truth["splits"][split])
