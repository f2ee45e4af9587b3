"""The per-key HTTP client: one keep-alive connection per worker, failures that stay failures."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import pytest

from ringfsck.remote.http import Endpoint, HttpPolicy, RequestFailed, send

Answer = tuple[int, dict[str, str], bytes]


class Scripted:
    """An HTTP/1.1 server on 127.0.0.1 whose answers a test scripts; it records what it was sent.

    ``answer(n, method, target, headers)`` is called for the n-th request (from 0) and
    returns an answer, or None to never answer. ``close_idle`` closes each connection
    right after its answer, without saying so, like a server whose keep-alive expired.
    """

    def __init__(self, answer: Callable[[int, str, str, dict[str, str]], Awaitable[Answer | None]], *,
                 close_idle: bool = False, tls: ssl.SSLContext | None = None) -> None:
        self._answer = answer
        self._close_idle = close_idle
        self._tls = tls
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.connections = 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        port = self._server.sockets[0].getsockname()[1]
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                self.requests.append((method, target, headers))
                answer = await self._answer(len(self.requests) - 1, method, target, headers)
                if answer is None:
                    await asyncio.sleep(3600)
                status, out, body = answer
                fields = "".join(f"{k}: {v}\r\n" for k, v in out.items())
                writer.write(f"HTTP/1.1 {status} X\r\n{fields}Content-Length: {len(body)}\r\n\r\n".encode() + (b"" if method == "HEAD" else body))
                await writer.drain()
                if self._close_idle:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


POLICY = HttpPolicy(concurrency=1, timeout=0.5, retries=2, backoff_base=0.001, backoff_max=0.01)


def test_requests_go_under_the_base_path_with_their_headers():
    async def answer(n, method, target, headers):
        return 200, {"X-Scal-Attr-Is-Split": "true"}, b"raw index"

    async def main():
        server = Scripted(answer)
        async with server as url:
            endpoint = Endpoint(url + "/srebuildd/", POLICY)
            head = await endpoint.request("HEAD", "/rebuild/arc-DATA/ABC")
            raw = await endpoint.request("GET", "/rebuild/arc-DATA/ABC", headers={"x-scal-split-policy": "raw"})
            await endpoint.aclose()
        return server, head, raw

    server, head, raw = asyncio.run(main())
    assert (head.status_code, head.headers["x-scal-attr-is-split"], head.content) == (200, "true", b"")
    assert (raw.status_code, raw.content) == (200, b"raw index")
    (m1, t1, h1), (m2, t2, h2) = server.requests
    assert (m1, t1, m2, t2) == ("HEAD", "/srebuildd/rebuild/arc-DATA/ABC", "GET", "/srebuildd/rebuild/arc-DATA/ABC")
    assert h1["host"] == h2["host"] and h1["host"].startswith("127.0.0.1:")
    assert h2["x-scal-split-policy"] == "raw" and "x-scal-split-policy" not in h1
    assert server.connections == 1  # kept alive


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_failure():
    async def answer(n, method, target, headers):
        return 404, {}, b""

    async def main():
        server = Scripted(answer, close_idle=True)
        async with server as url:
            endpoint = Endpoint(url, POLICY)
            statuses = []
            for _ in range(3):
                statuses.append((await endpoint.request("HEAD", "/k")).status_code)  # no retries here
                await asyncio.sleep(0.05)  # the server's FIN arrives
            await endpoint.aclose()
        return server, statuses

    server, statuses = asyncio.run(main())
    assert statuses == [404, 404, 404]
    assert server.connections == 3


def test_a_request_without_an_answer_times_out_and_is_retried_on_a_new_connection():
    async def answer(n, method, target, headers):
        return None if n == 0 else (200, {}, b"late but fine")

    async def main():
        server = Scripted(answer)
        async with server as url:
            endpoint = Endpoint(url, POLICY)
            response = await send(endpoint, "GET", "/k", policy=POLICY)
            await endpoint.aclose()
        return server, response

    server, response = asyncio.run(main())
    assert (response.status_code, response.content) == (200, b"late but fine")
    assert len(server.requests) == 2 and server.connections == 2


def test_a_server_that_never_answers_is_a_failure_never_an_answer():
    async def answer(n, method, target, headers):
        return None

    async def main():
        async with Scripted(answer) as url:
            endpoint = Endpoint(url, POLICY)
            try:
                with pytest.raises(RequestFailed, match=r"ReadTimeout: no answer within 0.5 s \(after 3 attempts\)") as failed:
                    await send(endpoint, "HEAD", "/k", policy=POLICY)
            finally:
                await endpoint.aclose()
        return failed.value

    assert asyncio.run(main()).attempts == 3


def test_nothing_listening_is_a_connection_failure():
    async def main():
        endpoint = Endpoint("http://127.0.0.1:9", POLICY)
        with pytest.raises(RequestFailed, match="ConnectError") as failed:
            await send(endpoint, "HEAD", "/k", policy=POLICY)
        return failed.value

    assert asyncio.run(main()).attempts == 3


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1: (cert.pem, key.pem)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_https_is_verified_against_the_given_authority(certificate):
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


class Raw:
    """A server on 127.0.0.1 that answers each request head with the bytes a test gives, then maybe hangs up."""

    def __init__(self, answers: list[bytes], *, hang_up: bool = False) -> None:
        self._answers = answers
        self._hang_up = hang_up
        self.requests = 0
        self.connections = 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                answer = self._answers[min(self.requests, len(self._answers) - 1)]
                self.requests += 1
                writer.write(answer)
                await writer.drain()
                if self._hang_up:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ask_raw(answers: list[bytes], method: str = "GET", *, hang_up: bool = False):
    """What ``send`` makes of a server's raw answers (retries included): the reply, or the RequestFailed."""

    async def main():
        server = Raw(answers, hang_up=hang_up)
        async with server as url:
            endpoint = Endpoint(url, POLICY)
            try:
                return await send(endpoint, method, "/k", policy=POLICY), server.requests
            except RequestFailed as failed:
                return failed, server.requests
            finally:
                await endpoint.aclose()

    return asyncio.run(main())


def test_an_answer_cut_mid_body_is_a_failure_never_an_answer():
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 60
    failed, asked = ask_raw([cut], hang_up=True)
    assert isinstance(failed, RequestFailed) and "ReadError" in failed.reason
    assert asked == POLICY.retries + 1


def test_a_bad_status_line_is_a_failure():
    failed, asked = ask_raw([b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"])
    assert isinstance(failed, RequestFailed) and "RemoteProtocolError" in failed.reason
    assert asked == POLICY.retries + 1


def test_a_body_framed_by_nothing_but_the_hang_up_is_a_failure():
    """Without Content-Length or chunks, a body cut short would look whole: it is never taken as an answer."""
    failed, _ = ask_raw([b"HTTP/1.1 200 OK\r\n\r\nwhole or cut?"], hang_up=True)
    assert isinstance(failed, RequestFailed)


def test_content_length_chunks_and_head_frame_the_answers():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Scal-Attr-Is-Split: true\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    reply, _ = ask_raw([chunked])
    assert (reply.status_code, reply.content, reply.headers.get("x-scal-attr-is-split")) == (200, b"hello world", "true")
    # A HEAD's Content-Length is the GET's body size: no body follows, and the connection stays usable.
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Scal-Size: 1234\r\n\r\n"

    async def main():
        server = Raw([head, head])
        async with server as url:
            endpoint = Endpoint(url, POLICY)
            replies = [await endpoint.request("HEAD", "/k"), await endpoint.request("HEAD", "/k")]
            await endpoint.aclose()
        return replies, server.requests

    replies, asked = asyncio.run(main())
    assert [(r.status_code, r.headers["X-Scal-Size"], r.content) for r in replies] == [(200, "1234", b"")] * 2 and asked == 2


def test_a_body_longer_than_its_content_length_is_not_read_into_the_next_answer():
    """Bytes after a framed answer, sent out of turn, drop the connection: the next request gets a fresh one."""
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"

    async def main():
        server = Raw([extra, b"HTTP/1.1 204 No Content\r\n\r\n"])
        async with server as url:
            endpoint = Endpoint(url, POLICY)
            first = await endpoint.request("GET", "/k")
            await asyncio.sleep(0.05)
            second = await send(endpoint, "GET", "/k", policy=POLICY)
            await endpoint.aclose()
        return first, second, server.connections

    first, second, connections = asyncio.run(main())
    assert (first.status_code, first.content) == (200, b"ok")
    assert second.status_code == 204  # never the 404 that came out of turn
    assert connections == 2
