"""bucketd's connections: the per-key Endpoint (tests/test_http.py) with the framings a bucketd may use, basic auth, pooled."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from test_http import POLICY, Raw, Scripted

from ringfsck.remote.bucketd import ConnectionPool
from ringfsck.remote.http import Endpoint

BODY = b'{"Contents": [], "IsTruncated": false}'
ANSWERS = {
    "content-length": (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY), False),
    "chunked, with trailers": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n" + BODY[:5] + b"\r\n"
                               + b"%x\r\n" % (len(BODY) - 5) + BODY[5:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n", False),
    "connection close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY), True),
    "no length, ends at close": (b"HTTP/1.1 200 OK\r\n\r\n" + BODY, True),
    "HTTP/1.0": (b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\n{}", True),
    "empty 204": (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    "after an interim 100": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY), False),
}


EXPECTED = {  # the first answer as read; the second always arrives whole, on the same connection or a new one
    "content-length": (200, BODY),
    "chunked, with trailers": (200, BODY),
    "connection close": (200, BODY),
    "HTTP/1.0": (404, b"{}"),
    "empty 204": (204, b""),
    "after an interim 100": (200, BODY),
}


@pytest.mark.parametrize("name", ANSWERS)
def test_every_framing_reads_as_http_1_1_says(name):
    async def ask():
        raw, close = ANSWERS[name]
        server = Raw([raw, ANSWERS["content-length"][0]], hang_up=close)
        async with server as url:
            connection = Endpoint(url, POLICY)
            try:
                first = await connection.request("GET", "/default/bucket/b")
                read = (first.status_code, first.content)
            except httpx.TransportError as failure:  # retried by send(), never an answer
                read = failure
            second = await connection.request("GET", "/default/bucket/b")  # on the same connection, or a new one if closed
            await connection.aclose()
        return read, (second.status_code, second.content)

    first, second = asyncio.run(ask())
    assert second == (200, BODY)
    if name == "no length, ends at close":  # nothing says the body is whole: a failure, so a cut page is never read
        assert isinstance(first, httpx.TransportError)
    else:
        assert first == EXPECTED[name]


def test_base_path_basic_auth_and_keep_alive():
    async def answer(n, method, target, headers):
        return 200, {}, BODY

    async def main():
        server = Scripted(answer)
        async with server as url:
            connection = Endpoint(url.replace("http://", "http://ops:s%40cret@") + "/bucketd/", POLICY)
            replies = [await connection.request("GET", "/default/bucket/a%2Fb?marker=k%00v") for _ in range(2)]
            await connection.aclose()
        return server, replies

    server, replies = asyncio.run(main())
    assert [(r.status_code, r.content) for r in replies] == [(200, BODY)] * 2
    assert [target for _, target, _ in server.requests] == ["/bucketd/default/bucket/a%2Fb?marker=k%00v"] * 2
    assert server.requests[0][2]["authorization"] == "Basic " + base64.b64encode(b"ops:s@cret").decode()
    assert server.connections == 1


def test_the_pool_bounds_the_requests_in_flight():
    in_flight, most = 0, 0

    async def answer(n, method, target, headers):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return 200, {}, BODY

    async def main():
        server = Scripted(answer)
        async with server as url:
            pool = ConnectionPool(url, POLICY, 3)
            replies = await asyncio.gather(*(pool.request("GET", "/k") for _ in range(12)))
            await pool.aclose()
        return server, replies

    server, replies = asyncio.run(main())
    assert [r.content for r in replies] == [BODY] * 12
    assert most == 3 and server.connections == 3
