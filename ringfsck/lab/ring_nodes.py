"""The lab's supervisor and RING node admin endpoints (docs/domain.md section 9), over a generated world.

The supervisor answers ``GET /do?cmd=supervisor config dso&action=view&dsoname=RING`` with the
XML configuration of the ring (credentials as the ``suser``/``spass`` query parameters); each
node answers ``GET /listkeys?dso=RING&vnode=PORT&mtime_min=…&mtime_max=…`` behind the daemons'
cookie login (``302 /login``, a multipart ``POST /login``, a cookie), streaming its listing: the
world's dump of that node (``lab/state.json`` gives it as byte ranges, one per chunk mtime) and
its in-flight chunks, with keep-alive empty lines. A listing is selected by mtime as whole byte
ranges and sent with ``sendfile``: no per-row work, so a benchmark measures the client.

Per-node faults (:class:`NodeFaults`, keyed by node name, or ``supervisor``), settable at start
(``--node-faults``) or through ``POST /_lab/node-faults`` on the supervisor: ``unreachable`` (the
node's port is closed), ``bad_login`` (every login refused), ``cut_at`` (the connection dies after
that share of the body; with ``cut_on_line``, at the end of the line it falls in, so the bytes sent
end with a whole line), ``slow_ms`` (a pause per 64 KiB sent), ``fail_requests`` (the next N
requests answer 503), ``srebuildd_down`` (the node's srebuildd is killed: its port closed, its
connections cut; cleared, it listens again), ``srebuildd_down_after`` (killed once it has received
that many requests: mid-run, deterministically), ``chunked`` (the listing in chunked transfer encoding rather than with a
Content-Length: a cut then lacks the last, empty chunk), ``unframed`` (the listing with neither, ended
by closing the connection, as an HTTP/1.0 server may: a cut cannot be told from its end). Admin endpoints on the supervisor, never faulted: ``GET /_lab/health``,
``GET /_lab/requests`` (per node: listkeys requests, logins), ``GET /_lab/srebuildd-requests``
(per node: its srebuildd's requests per "METHOD path"), ``POST /_lab/reset-stats``,
``GET|POST /_lab/node-faults``.

With ``node_hosts`` (:func:`loopback_hosts`), each node has an ip of its own (127.0.0.2, 127.0.0.3, …: all
loopback), which the supervisor gives as its chord ip (``config/ip``), and with a srebuildd (sharing
the lab srebuildd's RING: a key deleted on one node is gone on all) listening on that ip at one port
for all nodes, as srebuildd runs on every node of a real RING (docs/domain.md section 5).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import secrets
import ssl
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

from ringfsck.errors import ConfigError
from ringfsck.lab._state import NodeListing, WorldState
from ringfsck.lab.servers import SrebuilddServer, read_request_head

HOST = "127.0.0.1"
# The lab's credentials (what a test scans every output for: they must never be printed).
LAB_LOGIN = "lab-admin"
LAB_PASSWORD = "lab-Sup3r-secret-never-printed"
COOKIE = "ringsession"
CHORD_PORT_BASE = 4244
SUPERVISOR = "supervisor"
_SLOW_BLOCK = 64 * 1024
_TLS_BLOCK = 1024 * 1024
_FIRST_NODE_HOST = 2  # node i listens on 127.0.0.(2 + i): 127.0.0.1 stays the supervisor's and the lab servers'
_SREBUILDD_DOWN_POLL = 0.002  # seconds between checks of srebuildd_down_after
_REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


@dataclass
class NodeFaults:
    """What goes wrong on one node (or the supervisor). See the module docstring."""

    unreachable: bool = False
    bad_login: bool = False
    cut_at: float | None = None
    cut_on_line: bool = False
    slow_ms: float = 0.0
    fail_requests: int = 0
    chunked: bool = False
    unframed: bool = False
    srebuildd_down: bool = False
    srebuildd_down_after: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name in ("unreachable", "bad_login", "cut_on_line", "chunked", "unframed", "srebuildd_down"):
                setattr(self, name, str(value).lower() in ("1", "true", "yes", "on"))
            elif name == "srebuildd_down_after":
                number = None if value in (None, "", "none") else _number(name, value)
                if number is not None and number < 0:
                    raise ConfigError(f"fault {name}: {value!r} out of range")
                self.srebuildd_down_after = None if number is None else int(number)
            elif name == "cut_at":
                number = None if value in (None, "", "none") else _number(name, value)
                if number is not None and not 0 <= number < 1:
                    raise ConfigError(f"fault cut_at: {value!r} out of range (a share of the body, 0 to 1)")
                self.cut_at = number
            elif name in ("slow_ms", "fail_requests"):
                number = _number(name, value)
                if number < 0:
                    raise ConfigError(f"fault {name}: {value!r} out of range")
                setattr(self, name, int(number) if name == "fail_requests" else number)
            else:
                raise ConfigError(f"unknown node fault {name!r} (known: {', '.join(f.name for f in fields(self))})")


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"fault {name}: expected a number, got {value!r}") from None


def parse_node_faults(specs: list[str] | None) -> dict[str, NodeFaults]:
    """From ``["node-02:cut_at=0.5", "node-03:unreachable=1,slow_ms=5"]``."""
    faults: dict[str, NodeFaults] = {}
    for spec in specs or []:
        name, sep, rest = spec.partition(":")
        if not sep or not name.strip():
            raise ConfigError(f"node faults {spec!r}: expected NODE:name=value[,name=value], e.g. node-02:cut_at=0.5")
        values = {}
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"node fault {item!r}: expected name=value")
            values[key.strip()] = value.strip()
        faults.setdefault(name.strip(), NodeFaults()).update(values)
    return faults


def loopback_hosts(count: int) -> list[str]:
    """An ip of its own for each of ``count`` lab nodes: 127.0.0.2, 127.0.0.3, … (loopback, never another machine)."""
    if count > 254 - _FIRST_NODE_HOST:
        raise ConfigError(f"{count} nodes: the lab gives distinct loopback ips to {254 - _FIRST_NODE_HOST} nodes at most")
    return [f"127.0.0.{_FIRST_NODE_HOST + i}" for i in range(count)]


def make_certificate(directory: Path, hosts: list[str] | tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, localhost and ``hosts`` (ips; its own CA bundle): (certificate, key).

    Needs the ``cryptography`` package (imported here only: without it the lab serves plain HTTP).
    """
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ringfsck lab")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys([HOST, *hosts])), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "lab-ca.pem", directory / "lab-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return cert_path, key_path


class _Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.headers, self.body = method, headers, body
        parts = urlsplit(target)
        self.path, self.target = parts.path, target
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}

    @property
    def cookies(self) -> dict[str, str]:
        found = {}
        for item in self.headers.get("cookie", "").split(";"):
            name, sep, value = item.strip().partition("=")
            if sep:
                found[name] = value
        return found


def response_head(status: int, headers: dict[str, str], length: int | None) -> bytes:
    """The status line and headers; ``length`` None: no Content-Length (the headers say how the body ends)."""
    framing = [] if length is None else [f"Content-Length: {length}"]
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", *(f"{k}: {v}" for k, v in headers.items()), *framing]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Daemon:
    """One HTTP/1.1 keep-alive listener; subclasses answer requests."""

    def __init__(self, name: str, faults: NodeFaults, ssl_context: ssl.SSLContext | None, host: str = HOST) -> None:
        self.name, self.faults, self.ssl_context, self.host = name, faults, ssl_context, host
        self.requests: Counter[str] = Counter()
        self.port = 0
        self._listener: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    async def listen(self) -> None:
        self._listener = await asyncio.start_server(
            self._connection, self.host, self.port, ssl=self.ssl_context, backlog=256, limit=1 << 20
        )
        self.port = self._listener.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def set_reachable(self, reachable: bool) -> None:
        """Close the port (the node is unreachable: connections are refused) or open it again."""
        if reachable and self._listener is None:
            await self.listen()
        elif not reachable:
            self.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request_head(reader)
                if request is None:
                    return
                method, target, _, headers = request
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                try:
                    keep = await self.respond(_Request(method, target, headers, body), writer)
                except (ConnectionError, ssl.SSLError):
                    return
                except Exception as exc:  # noqa: BLE001 - a lab bug: say so on stderr, which LabServers forwards
                    traceback.print_exc()
                    await self.send(writer, 500, {}, json.dumps({"error": f"lab bug: {exc!r}"}).encode())
                    keep = True
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            return
        except asyncio.CancelledError:
            writer.transport.abort()
            return
        finally:
            if not writer.is_closing():
                writer.close()

    @staticmethod
    async def send(writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes) -> bool:
        writer.write(response_head(status, {"Content-Type": "text/plain"} | headers, len(body)) + body)
        await writer.drain()
        return True

    def injected_failure(self) -> bool:
        """Whether this request is one of the next ``fail_requests`` (answered 503)."""
        if self.faults.fail_requests > 0:
            self.faults.fail_requests -= 1
            return True
        return False

    async def respond(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        raise NotImplementedError


class NodeSrebuildd:
    """A node's srebuildd: the lab srebuildd's RING served on the node's own ip, killed and revived by its node's faults."""

    def __init__(self, server: SrebuilddServer, host: str) -> None:
        self.server, self.host, self.port = server, host, 0
        self._listener: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # its open connections, cut when it is killed

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> int:
        return sum(self.server.requests.values())

    async def listen(self, port: int) -> None:
        self._listener = await asyncio.start_server(self._connection, self.host, port, backlog=2048, limit=1 << 20)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self.server.handle_connection(reader, writer)
        finally:
            self._writers.discard(writer)

    def kill(self) -> None:
        """As a killed process: the port closed (connections refused) and every open connection cut."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for writer in list(self._writers):
            writer.transport.abort()

    async def set_up(self, up: bool) -> None:
        if up and self._listener is None:
            await self.listen(self.port)
        elif not up:
            self.kill()


async def _listen_at_one_port(daemons: list[NodeSrebuildd]) -> None:
    """Every node's srebuildd on its own ip at one port, as on a RING (the first free port that is free on every ip)."""
    for _ in range(20):
        try:
            await daemons[0].listen(0)
            for daemon in daemons[1:]:
                await daemon.listen(daemons[0].port)
            return
        except OSError:  # that port is taken on another node's ip: another one
            for daemon in daemons:
                daemon.kill()
    raise OSError("no port free on every lab node's ip for their srebuildd")


class NodeServer(_Daemon):
    """One node's admin endpoint: cookie login and streamed listkeys (and, with ``srebuildd``, its srebuildd)."""

    def __init__(
        self,
        listing: NodeListing,
        index: int,
        state: WorldState,
        ring: str,
        faults: NodeFaults,
        ssl_context: ssl.SSLContext | None,
        host: str = HOST,
    ) -> None:
        super().__init__(listing.name, faults, ssl_context, host)
        self.listing, self.state, self.ring = listing, state, ring
        self.srebuildd: NodeSrebuildd | None = None
        self.chord_port = CHORD_PORT_BASE + index
        self._sessions: set[str] = set()

    async def respond(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        if request.path == "/login" and request.method == "POST":
            return await self._login(request, writer)
        if request.path != "/listkeys":
            return await self.send(writer, 404, {}, b"unknown path")
        self.requests["listkeys"] += 1
        if request.cookies.get(COOKIE) not in self._sessions:
            return await self.send(writer, 302, {"Location": "/login"}, b"")
        if self.injected_failure():
            return await self.send(writer, 503, {}, b"injected failure")
        query = request.query
        if query.get("dso") != self.ring or query.get("vnode", str(self.chord_port)) != str(self.chord_port):
            return await self.send(writer, 404, {}, f"no vnode {query.get('vnode')} of dso {query.get('dso')} here".encode())
        try:
            low, high = int(query.get("mtime_min", "0")), int(query.get("mtime_max", str(1 << 62)))
        except ValueError:
            return await self.send(writer, 400, {}, b"bad mtime_min or mtime_max")
        return await self.send_listing(writer, low, high)

    async def send_listing(self, writer: asyncio.StreamWriter, low: int, high: int) -> bool:
        """Answer a listkeys request: the chunks whose mtime is within [low, high]; whether the connection stays open."""
        return await self._stream(writer, self.ranges(low, high))

    def ranges(self, low: int, high: int) -> list[tuple[str, int, int]]:
        """(file, start, end) of the rows whose chunk mtime is within [low, high]."""
        dated = [(self.listing.dump, start, end) for mtime, start, end in self.listing.runs if low <= mtime <= high]
        clock = self.state.clock
        recent = [(self.listing.recent, start, end) for age, start, end in self.listing.recent_runs if low <= clock - age <= high]
        return dated + recent

    async def _stream(self, writer: asyncio.StreamWriter, ranges: list[tuple[str, int, int]]) -> bool:
        keepalive = b"\n"  # one before each range: the daemons send empty lines while they work
        length = sum(end - start for _, start, end in ranges) + len(keepalive) * len(ranges)
        faults = self.faults
        if faults.unframed:
            writer.write(response_head(200, {"Content-Type": "text/plain", "Connection": "close"}, None))
        elif faults.chunked:
            writer.write(response_head(200, {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"}, None))
        else:
            writer.write(response_head(200, {"Content-Type": "text/plain"}, length))
        cut = None if faults.cut_at is None else int(length * faults.cut_at)
        if cut is not None and faults.cut_on_line:
            cut = self._line_end_after(ranges, keepalive, cut)
        sent = 0
        loop = asyncio.get_running_loop()
        for path, start, end in ranges:
            if cut is not None and sent >= cut:
                writer.transport.abort()
                return False
            await self._send(writer, keepalive)
            sent += len(keepalive)
            with open(self.state.world / path, "rb") as handle:
                while start < end:
                    step = end - start
                    if faults.slow_ms:
                        step = min(step, _SLOW_BLOCK)
                        await asyncio.sleep(faults.slow_ms / 1000)
                    if cut is not None:
                        step = min(step, cut - sent)
                        if step <= 0:
                            writer.transport.abort()  # the stream breaks off: no more bytes, no clean end
                            return False
                    if faults.chunked:
                        writer.write(f"{step:x}\r\n".encode())
                    await self._send_range(writer, loop, handle, start, step)
                    if faults.chunked:
                        writer.write(b"\r\n")
                    start += step
                    sent += step
        if cut is not None and sent >= cut:
            writer.transport.abort()  # cut at the very end: the last chunk (chunked) is never sent
            return False
        if faults.chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        return not faults.unframed  # an unframed body ends when the connection closes

    async def _send_range(self, writer: asyncio.StreamWriter, loop: asyncio.AbstractEventLoop, handle, start: int, size: int) -> None:
        """``size`` bytes of ``handle`` from ``start``: sendfile in plain HTTP; over TLS, blocks written
        (asyncio's own fallback for TLS trips an assertion when the reader is slow)."""
        if self.ssl_context is None:
            await loop.sendfile(writer.transport, handle, start, size)
            return
        handle.seek(start)
        while size > 0:
            block = handle.read(min(size, _TLS_BLOCK))
            writer.write(block)
            await writer.drain()
            size -= len(block)

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n" if self.faults.chunked else data)
        await writer.drain()

    def _line_end_after(self, ranges: list[tuple[str, int, int]], keepalive: bytes, offset: int) -> int:
        """The body offset just after the line end at or after ``offset`` (the body's length if none)."""
        body = 0
        for path, start, end in ranges:
            body += len(keepalive)  # a keep-alive is a whole line
            if offset < body + end - start:
                with open(self.state.world / path, "rb") as handle:
                    handle.seek(start + max(offset - body, 0))
                    tail = handle.read(end - start - max(offset - body, 0))
                newline = tail.find(b"\n")
                if newline >= 0:
                    return body + max(offset - body, 0) + newline + 1
            body += end - start
        return body

    async def _login(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        self.requests["login"] += 1
        form = _multipart_fields(request)
        good = form.get("login") == LAB_LOGIN and form.get("password") == LAB_PASSWORD and not self.faults.bad_login
        if not good:
            return await self.send(writer, 302, {"Location": "/login?loginerror=password"}, b"")
        token = secrets.token_hex(16)
        self._sessions.add(token)
        return await self.send(writer, 302, {"Location": form.get("url") or "/", "Set-Cookie": f"{COOKIE}={token}; Path=/; HttpOnly"}, b"")


def _multipart_fields(request: _Request) -> dict[str, str]:
    """The plain fields of a multipart/form-data body (what the daemons' login form takes)."""
    content_type = request.headers.get("content-type", "")
    marker = "boundary="
    if "multipart/form-data" not in content_type or marker not in content_type:
        return {}
    boundary = content_type.split(marker, 1)[1].split(";")[0].strip().strip('"').encode()
    found = {}
    for part in request.body.split(b"--" + boundary):
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-disposition") and 'name="' in line:
                found[line.split('name="', 1)[1].split('"', 1)[0]] = value.removesuffix(b"\r\n").decode("utf-8", "replace")
    return found


class SupervisorServer(_Daemon):
    """The supervisor's XML configuration of the ring, and the lab's admin endpoints for every node."""

    def __init__(self, nodes: list[NodeServer], ring: str, faults: NodeFaults, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(SUPERVISOR, faults, ssl_context)
        self.nodes, self.ring = nodes, ring

    async def respond(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        if request.path.startswith("/_lab/"):
            status, body = await self._admin(request)
            return await self.send(writer, status, {"Content-Type": "application/json"}, json.dumps(body).encode())
        if request.path != "/do":
            return await self.send(writer, 404, {}, b"unknown path")
        self.requests["do"] += 1
        if self.injected_failure():
            return await self.send(writer, 503, {}, b"injected failure")
        query = request.query
        command = query.get("cmd", "")
        if query.get("suser") != LAB_LOGIN or query.get("spass") != LAB_PASSWORD or self.faults.bad_login:
            return await self._xml(writer, command, _error("auth", "authentication failed"))
        if command != "supervisor config dso" or query.get("action") != "view":
            return await self._xml(writer, command, _error("command", f"unknown command {command!r}"))
        if query.get("dsoname") != self.ring:
            return await self._xml(writer, command, _error("param", f"no dso named {query.get('dsoname')!r}", "dsoname"))
        nodes = "".join(self._node_xml(node) for node in self.nodes)
        return await self._xml(writer, command, f"<config><dso><name>{escape(self.ring)}</name><nodes>{nodes}</nodes></dso></config>")

    def _node_xml(self, node: NodeServer) -> str:
        reachable = 0 if node.faults.unreachable else 1
        return (
            f"<node><name>{escape(node.name)}</name><addr>{node.host}:{node.port}</addr><vnodeid>{node.chord_port - CHORD_PORT_BASE}</vnodeid>"
            f"<reachable>{reachable}</reachable><key>{node.chord_port:040X}</key>"
            f"<config><ip>{node.host}</ip><port>{node.chord_port}</port><adminport>{node.port}</adminport></config>"
            f"<stats><chunks><nb>{node.listing.rows}</nb></chunks></stats><ring><dsoname>{escape(self.ring)}</dsoname></ring>"
            f"<states><state>{'RUN' if reachable else 'OUT_OF_SERVICE'}</state></states></node>"
        )

    async def _xml(self, writer: asyncio.StreamWriter, command: str, result: str) -> bool:
        body = f'<?xml version="1.0"?><xcommand><name>{escape(command)}</name><res>{result}</res></xcommand>'.encode()
        return await self.send(writer, 200, {"Content-Type": "text/xml"}, body)

    async def _admin(self, request: _Request) -> tuple[int, Any]:
        by_name: dict[str, _Daemon] = {node.name: node for node in self.nodes} | {SUPERVISOR: self}
        if request.path == "/_lab/health":
            return 200, {"ok": True, "server": SUPERVISOR}
        srebuildds = {node.name: node.srebuildd.server for node in self.nodes if node.srebuildd is not None}
        if request.path == "/_lab/requests":
            return 200, {name: dict(daemon.requests) for name, daemon in by_name.items()}
        if request.path == "/_lab/srebuildd-requests":
            return 200, {name: dict(server.requests) for name, server in srebuildds.items()}
        if request.path == "/_lab/reset-stats" and request.method == "POST":
            for requests in [*(d.requests for d in by_name.values()), *(s.requests for s in srebuildds.values())]:
                requests.clear()
            return 200, {}
        if request.path == "/_lab/node-faults":
            if request.method == "POST":
                try:
                    values = json.loads(request.body or b"{}")
                    if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
                        raise ConfigError("expected a JSON object of node name -> faults")
                    unknown = sorted(set(values) - set(by_name))
                    if unknown:
                        raise ConfigError(f"no node named {unknown[0]!r} (known: {', '.join(by_name)})")
                    changed = {name: replace(by_name[name].faults) for name in values}
                    for name, faults in values.items():
                        changed[name].update(faults)  # all or nothing: a bad value changes no node
                except (ConfigError, ValueError) as exc:
                    return 400, {"error": str(exc)}
                for name, faults in changed.items():
                    daemon = by_name[name]
                    daemon.faults = faults
                    await daemon.set_reachable(not faults.unreachable)
                    if isinstance(daemon, NodeServer) and daemon.srebuildd is not None:
                        await daemon.srebuildd.set_up(not faults.srebuildd_down)
            return 200, {name: asdict(daemon.faults) for name, daemon in by_name.items()}
        return 404, {"error": "unknown admin endpoint"}


def _error(kind: str, message: str, param: str | None = None) -> str:
    extra = f"<param>{escape(param)}</param>" if param else ""
    return f"<reserror><type>{escape(kind)}</type><msg>{escape(message)}</msg>{extra}</reserror>"


def generated_tls(directory: Path, hosts: list[str] | tuple[str, ...] = ()) -> tuple[ssl.SSLContext, str]:
    """A server TLS context with a certificate generated in ``directory`` (see make_certificate), and its CA bundle's path."""
    certificate, key = make_certificate(directory, hosts)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context, str(certificate)


async def serve_ring(
    world: Path,
    *,
    ring: str = "DATA",
    faults: dict[str, NodeFaults] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    state: WorldState | None = None,
    ready: Callable[[dict[str, Any]], None] | None = None,
    node_hosts: list[str] | None = None,
    srebuildd: SrebuilddServer | None = None,
) -> None:
    """Serve the supervisor and one admin endpoint per node until cancelled; ``ready`` gets their URLs.

    ``node_hosts``: each node's own ip (:func:`loopback_hosts`; default: all on 127.0.0.1). With
    them, ``srebuildd`` is also served on every node's ip, at one port (its RING shared).
    """
    state = state or WorldState(world)
    faults = dict(faults or {})
    unknown = sorted(set(faults) - {n.name for n in state.nodes} - {SUPERVISOR})
    if unknown:
        raise ConfigError(f"node faults: no node named {unknown[0]!r} in this world")
    hosts = node_hosts or [HOST] * len(state.nodes)
    nodes = [
        NodeServer(listing, i, state, ring, faults.get(listing.name, NodeFaults()), ssl_context, hosts[i])
        for i, listing in enumerate(state.nodes)
    ]
    if srebuildd is not None and node_hosts:
        for node in nodes:
            node.srebuildd = NodeSrebuildd(srebuildd.on_the_same_ring(), node.host)
    supervisor = SupervisorServer(nodes, ring, faults.get(SUPERVISOR, NodeFaults()), ssl_context)
    node_srebuildds = [node.srebuildd for node in nodes if node.srebuildd is not None]
    watchers = [asyncio.ensure_future(_kill_when_due(node)) for node in nodes if node.srebuildd is not None]
    try:
        for daemon in [supervisor, *nodes]:
            await daemon.listen()
        for node in nodes:
            await node.set_reachable(not node.faults.unreachable)  # the port stays known: it opens again when the fault is cleared
        if node_srebuildds:
            await _listen_at_one_port(node_srebuildds)
        for node in nodes:
            if node.srebuildd is not None:
                await node.srebuildd.set_up(not node.faults.srebuildd_down)
        if ready is not None:
            urls = {"supervisor": supervisor.url, "nodes": {node.name: node.url for node in nodes}}
            ready(urls | {"srebuildd": {node.name: node.srebuildd.url for node in nodes if node.srebuildd is not None}})
        await asyncio.Event().wait()
    finally:
        for watcher in watchers:
            watcher.cancel()
        for daemon in [supervisor, *nodes]:
            daemon.close()
        for node_srebuildd in node_srebuildds:
            node_srebuildd.kill()


async def _kill_when_due(node: NodeServer) -> None:
    """Kill the node's srebuildd once it has received ``srebuildd_down_after`` requests (mid-run, whatever the timing)."""
    assert node.srebuildd is not None
    while True:
        limit = node.faults.srebuildd_down_after
        if limit is not None and not node.faults.srebuildd_down and node.srebuildd.requests >= limit:
            node.faults.srebuildd_down = True
            node.srebuildd.kill()
        await asyncio.sleep(_SREBUILDD_DOWN_POLL if limit is not None else 0.05)
