"""bucketd's connections (the per-key Endpoint, pooled): every framing read as HTTP/1.1 says, failures that stay failures."""

from __future__ import annotations

import asyncio
import base64
import ssl

import httpx
import pytest
from test_http import POLICY, Scripted, certificate  # noqa: F401  # certificate: a fixture used below

from ringfsck.remote.bucketd import ConnectionPool
from ringfsck.remote.http import Endpoint, RequestFailed, send



class RawServer:
    """A server on 127.0.0.1 that answers each request with the next bytes a test gives, then closes if told."""

    def __init__(self, answers: list[tuple[bytes, bool]]) -> None:
        self._answers = list(answers)  # (the raw answer, close after it)
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self._answers:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                raw, close = self._answers.pop(0)
                writer.write(raw)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


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
        server = RawServer([(raw, close), (ANSWERS["content-length"][0], False)])
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


def test_a_cut_answer_is_a_failure_never_a_shorter_answer():
    async def main():
        async with RawServer([(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + BODY, True)] * 3) as url:
            connection = Endpoint(url, POLICY)
            with pytest.raises(RequestFailed, match=r"ReadError: the server closed the connection before the answer ended \(after 3 attempts\)"):
                await send(connection, "GET", "/k", policy=POLICY)

    asyncio.run(main())


def test_a_malformed_answer_is_a_retried_failure():
    async def main():
        async with RawServer([(b"SSH-2.0-OpenSSH\r\n\r\n", True), (ANSWERS["content-length"][0], False)]) as url:
            connection = Endpoint(url, POLICY)
            response = await send(connection, "GET", "/k", policy=POLICY)
            await connection.aclose()
        return response

    assert asyncio.run(main()).content == BODY


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


def test_a_connection_closed_while_idle_is_replaced_and_silence_times_out():
    async def answer(n, method, target, headers):
        return None if n == 2 else (200, {}, BODY)

    async def main():
        server = Scripted(answer, close_idle=True)
        async with server as url:
            connection = Endpoint(url, POLICY)
            for _ in range(2):
                assert (await connection.request("GET", "/k")).content == BODY
                await asyncio.sleep(0.05)  # the server's FIN arrives
            response = await send(connection, "GET", "/k", policy=POLICY)  # the third gets no answer: retried
            await connection.aclose()
        return server, response

    server, response = asyncio.run(main())
    assert response.content == BODY and server.connections == 4


def test_https_is_verified_against_the_given_authority(certificate):  # noqa: F811  # the imported fixture
    cert, key = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    async def answer(n, method, target, headers):
        return 200, {}, b"over tls"

    async def main():
        async with Scripted(answer, tls=tls) as url:
            trusting = Endpoint(url, POLICY, ssl_context=ssl.create_default_context(cafile=str(cert)))
            response = await send(trusting, "GET", "/k", policy=POLICY)
            await trusting.aclose()
            default = Endpoint(url, POLICY)  # the system's authorities do not know this certificate
            with pytest.raises(RequestFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await send(default, "GET", "/k", policy=POLICY)
            await default.aclose()
        return response

    assert asyncio.run(main()).content == b"over tls"


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
