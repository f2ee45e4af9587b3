"""The RING's supervisor and node admin endpoints (docs/domain.md section 9), as the vendor's library speaks them.

- The supervisor's XML configuration of a ring (``GET /do?cmd=supervisor config dso…`` with the
  credentials as ``suser``/``spass`` query parameters) names its nodes: :func:`ring_nodes`.
- A node's ``GET /listkeys`` is behind the daemons' cookie login (``302 /login``, then a
  multipart ``POST /login`` with ``url``, ``login``, ``password``): :class:`NodeClient` logs in
  when asked to and streams the listing.

Credentials never leave this module in text: every message goes through :meth:`Credentials.redact`
(the password and its URL-encoded forms become ``***``), URLs are shown without userinfo or query,
and httpx's own request log lines are filtered the same way while a client is open.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

import httpx

from ringfsck.errors import ConfigError, RemoteError
from ringfsck.remote.http import RETRYABLE_STATUS, HttpPolicy

REDACTED = "***"
DSO_COMMAND = "supervisor config dso"
_REDIRECTS = (301, 302, 303, 307, 308)


class NodeFailed(Exception):
    """A node (or the supervisor) could not be listed; ``reason`` is safe to print."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str = field(repr=False)

    def redact(self, text: str) -> str:
        """``text`` with the password (as typed and URL-encoded) replaced by ``***``."""
        if self.password:
            for form in {self.password, quote(self.password, safe=""), quote_plus(self.password)}:
                text = text.replace(form, REDACTED)
        return text


def split_userinfo(url: str) -> tuple[str, Credentials | None]:
    """A URL without its userinfo, and the credentials it held (``https://user:pass@host``), if any."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{public_url(url)}: expected an http:// or https:// URL")
    if "@" not in parts.netloc:
        return url.strip().rstrip("/"), None
    userinfo, _, host = parts.netloc.rpartition("@")
    login, _, password = userinfo.partition(":")
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)).rstrip("/"), Credentials(
        unquote(login), unquote(password)
    )


def public_url(url: str) -> str:
    """A URL as messages may show it: scheme, host, port and path only (no userinfo, no query)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


@functools.cache
def tls_verify(ca_bundle: str | None, verify_tls: bool) -> ssl.SSLContext | bool:
    """What httpx checks the supervisor's and nodes' certificates against, made once per process (loading CAs costs)."""
    if not verify_tls:
        return False
    if ca_bundle:
        try:
            return ssl.create_default_context(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{ca_bundle}: cannot load the CA bundle (sup.ca_bundle): {exc}") from None
    return ssl.create_default_context()  # the system's CAs; a context reused by every client (httpx would load its own for each)


@dataclass(frozen=True)
class RingNode:
    """One node of a ring, as the supervisor lists it (or as given by ``--node``)."""

    name: str
    address: str  # the supervisor's addr (admin address:port), or host:port of a given URL
    admin_url: str  # where its admin endpoint answers
    chord_port: int | None  # the vnode listkeys asks for; None: not known (a node given by URL without ?vnode=)
    chunks: int | None = None  # stats/chunks/nb: a progress total
    ip: str = ""  # the chord ip (config/ip; a given URL's host), where the node's other daemons (srebuildd) answer


class _RedactingFilter(logging.Filter):
    """Rewrites httpx's request log lines (they hold the URL, and the supervisor's has the password)."""

    def __init__(self, credentials: Credentials) -> None:
        super().__init__()
        self._credentials = credentials

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._credentials.redact(record.getMessage()), None
        return True


@contextmanager
def _client(base_url: str, credentials: Credentials, verify: ssl.SSLContext | bool, policy: HttpPolicy) -> Iterator[httpx.Client]:
    log = logging.getLogger("httpx")
    guard = _RedactingFilter(credentials)
    log.addFilter(guard)
    try:
        with httpx.Client(base_url=base_url, verify=verify, timeout=policy.timeout, follow_redirects=False) as client:
            yield client
    finally:
        log.removeFilter(guard)


def _backoff(policy: HttpPolicy, attempts: int) -> None:
    time.sleep(random.uniform(0, min(policy.backoff_max, policy.backoff_base * 2 ** (attempts - 1))))


def _describe(exc: BaseException, credentials: Credentials) -> str:
    text = str(exc)
    return credentials.redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def ring_nodes(url: str, ring: str, credentials: Credentials, *, verify: ssl.SSLContext | bool, policy: HttpPolicy) -> list[RingNode]:
    """The nodes of ``ring`` from the supervisor at ``url``; RemoteError (one line, no credentials) if it cannot say."""
    where = f"supervisor {public_url(url)}"
    params = {
        "cmd": DSO_COMMAND,
        "action": "view",
        "mergedisks": "1",
        "dsoname": ring,
        "suser": credentials.login,
        "spass": credentials.password,
        "output": "xml",
    }
    attempts = 0
    with _client(url, credentials, verify, policy) as client:
        while True:
            attempts += 1
            try:
                response = client.get("/do", params=params)
                if response.status_code not in RETRYABLE_STATUS:
                    break
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                last = _describe(exc, credentials)
            if attempts > policy.retries:
                raise RemoteError(f"{where}: cannot get the configuration of ring {ring}: {last} (after {attempts} attempts)")
            _backoff(policy, attempts)
    if response.status_code in _REDIRECTS and "/login" in response.headers.get("location", ""):
        raise RemoteError(f"{where}: login refused for user {credentials.login!r} (check sup.login and sup.password)")
    if response.status_code != 200:
        raise RemoteError(f"{where}: HTTP {response.status_code} for the configuration of ring {ring}")
    return parse_dso_config(response.content, ring, where, scheme=urlsplit(url).scheme, credentials=credentials)


def parse_dso_config(body: bytes, ring: str, where: str, *, scheme: str, credentials: Credentials) -> list[RingNode]:
    """The nodes of the supervisor's ``<xcommand>`` answer; its ``<reserror>`` (or nonsense) is a RemoteError."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise RemoteError(f"{where}: the answer for ring {ring} is not XML ({exc})") from None
    error = root.find(".//reserror")
    if error is not None:
        parts = [error.findtext(tag) for tag in ("type", "msg", "param")]
        text = " ".join(p.strip() for p in parts if p and p.strip()) or (error.text or "").strip() or "unspecified error"
        raise RemoteError(credentials.redact(f"{where}: ring {ring}: {text}"))
    res = root.find("res")
    result = res[0] if res is not None and len(res) else None
    if result is None:
        raise RemoteError(f"{where}: the answer for ring {ring} has no result")
    nodes = []
    for element in result.findall("dso/nodes/node"):
        name = (element.findtext("name") or "").strip()
        ip, admin_port = (element.findtext("config/ip") or "").strip(), (element.findtext("config/adminport") or "").strip()
        chord_port, chunks = (element.findtext("config/port") or "").strip(), (element.findtext("stats/chunks/nb") or "").strip()
        if not name or not ip or not admin_port.isdigit() or not chord_port.isdigit():
            raise RemoteError(
                f"{where}: ring {ring}: a node without name, config/ip, config/adminport or config/port ({name or 'unnamed'})"
            )
        host = f"[{ip}]" if ":" in ip else ip
        nodes.append(
            RingNode(
                name,
                (element.findtext("addr") or f"{ip}:{admin_port}").strip(),
                f"{scheme}://{host}:{admin_port}",
                int(chord_port),
                int(chunks) if chunks.isdigit() else None,
                ip,
            )
        )
    if not nodes:
        raise RemoteError(f"{where}: ring {ring} has no nodes")
    return nodes


def node_from_url(url: str) -> tuple[RingNode, Credentials | None]:
    """A node given by its admin URL (``--node https://10.0.0.5:6444?vnode=4244``): the vnode is the chord port, when known."""
    clean, credentials = split_userinfo(url)
    parts = urlsplit(clean)
    vnode = dict(item.partition("=")[::2] for item in parts.query.split("&") if item).get("vnode")
    if vnode is not None and not vnode.isdigit():
        raise ConfigError(f"{public_url(clean)}: vnode={vnode!r} is not a port number")
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")).rstrip("/")
    return RingNode(parts.netloc, parts.netloc, base, int(vnode) if vnode else None, ip=parts.hostname or ""), credentials


def framed(response: httpx.Response) -> bool:
    """Whether the body's end is said by its framing (a length, or chunks) rather than by the connection closing.

    A body read until the connection closes ends the same way whether it was complete or cut.
    """
    chunked = "chunked" in response.headers.get("transfer-encoding", "").lower()
    return chunked or "content-length" in response.headers


class NodeClient:
    """One node's admin endpoint: the cookie login, and listkeys streamed."""

    def __init__(self, node: RingNode, credentials: Credentials, *, verify: ssl.SSLContext | bool, policy: HttpPolicy) -> None:
        self.node, self.credentials, self.policy, self.verify = node, credentials, policy, verify
        self.where = f"node {node.name} ({public_url(node.admin_url)})"

    @contextmanager
    def listkeys(self, ring: str, mtime_min: int, mtime_max: int) -> Iterator[httpx.Response]:
        """The listing's response, status 200, body not read yet; NodeFailed if the node cannot be asked, or its body is not framed.

        Connection errors and 5xx are retried with backoff; a redirect to the login page is followed
        by one login. What goes wrong while the body is read is the caller's (httpx errors).
        """
        params = {"dso": ring, "mtime_min": str(mtime_min), "mtime_max": str(mtime_max), "loadmetadata": "browse"}
        if self.node.chord_port is not None:
            params = {"dso": ring, "vnode": str(self.node.chord_port)} | params
        target = "/listkeys?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        with _client(self.node.admin_url, self.credentials, self.verify, self.policy) as client:
            response = self._open(client, target)
            try:
                if not framed(response):
                    raise NodeFailed(
                        f"{self.where}: the listing has neither a Content-Length nor chunked encoding, "
                        "so a cut connection would look like its end"
                    )
                yield response
            finally:
                response.close()

    def _open(self, client: httpx.Client, target: str) -> httpx.Response:
        attempts, logged_in = 0, False
        while True:
            attempts += 1
            try:
                response = client.send(client.build_request("GET", target), stream=True)
                if response.status_code in _REDIRECTS and urlsplit(response.headers.get("location", "")).path == "/login":
                    response.close()
                    if logged_in:
                        raise NodeFailed(f"{self.where}: still sent to the login page after logging in")
                    self._login(client, target)
                    logged_in = True
                    attempts -= 1  # the login is part of this attempt
                    continue
                if response.status_code == 200:
                    return response
                response.close()
                if response.status_code not in RETRYABLE_STATUS:
                    raise NodeFailed(f"{self.where}: HTTP {response.status_code} for listkeys")
                last = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                last = _describe(exc, self.credentials)
            if attempts > self.policy.retries:
                raise NodeFailed(f"{self.where}: {last} (after {attempts} attempts)")
            _backoff(self.policy, attempts)

    def _login(self, client: httpx.Client, target: str) -> None:
        fields = {"url": (None, target), "login": (None, self.credentials.login), "password": (None, self.credentials.password)}
        response = client.post("/login", files=fields)  # multipart/form-data, as the daemons' login form
        location = response.headers.get("location", "")
        if response.status_code in RETRYABLE_STATUS:
            raise httpx.RemoteProtocolError(f"login answered HTTP {response.status_code}")  # retried like any 5xx
        if "loginerror" in location or response.status_code not in _REDIRECTS:
            raise NodeFailed(f"{self.where}: login refused for user {self.credentials.login!r} (check sup.login and sup.password)")
