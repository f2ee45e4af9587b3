"""The lab: a simulated RING and S3 connector for tests, benchmarks and the demo.

:func:`generate_world` writes a consistent world (RING listings, S3 exports,
server state) with a ``truth.json`` of what was planted; :class:`LabServers`
serves it as a real srebuildd, bucketd, supervisor and RING nodes on 127.0.0.1
(``lab.supervisor_url``, ``lab.sup_login``/``lab.sup_password``, ``lab.ca_bundle``),
with faults on demand::

    world = generate_world(tmp / "world", objects=500, seed=1)
    with LabServers(world.path, srebuildd_faults="error_rate=0.1,drop_rate=0.05") as lab:
        ...  # point ringfsck at lab.srebuildd_url and lab.bucketd_url
        lab.set_faults("srebuildd", error_rate=0, fail_keys=[some_key])
        assert lab.deleted() == set(world.truth["orphans"])
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

import httpx

from ringfsck.lab.ring_nodes import LAB_LOGIN, LAB_PASSWORD
from ringfsck.lab.servers import Faults
from ringfsck.lab.world import World, generate_world

__all__ = ["Faults", "LabServers", "World", "generate_world", "tls_available"]

Server = Literal["srebuildd", "bucketd"]
_STARTUP_SECONDS = 30
_STOP_SECONDS = 5


class LabServers:
    """The lab srebuildd and bucketd, served by a child process on free ports of 127.0.0.1.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`). Faults are a
    spec string (``"error_rate=0.1,drop_rate=0.05"``) or a mapping, see
    :class:`ringfsck.lab.servers.Faults`. ``size_reading`` is what srebuildd's
    X-Scal-Size measures: ``object`` (the object's size) or ``chunk`` (one ARC
    chunk's, ceil(size / k)). The child exits with this process even
    when :meth:`stop` is never reached.

    The RING's supervisor and nodes (``ringfsck.lab.ring_nodes``) serve HTTPS with a generated
    certificate (``ca_bundle``) when ``ring_tls`` is true, or by default when the ``cryptography``
    package is there (else plain HTTP); ``node_faults`` maps a node name (or ``supervisor``)
    to its faults, see :class:`ringfsck.lab.ring_nodes.NodeFaults`. With ``node_ips``, each node has an
    ip of its own (127.0.0.2, 127.0.0.3, …: loopback) that the supervisor gives as its chord ip, and a
    srebuildd on it (``node_srebuildd_urls``, one port for all, the RING shared with ``srebuildd_url``:
    a key deleted on one is gone on all), as srebuildd runs on every node of a real RING.
    """

    sup_login = LAB_LOGIN
    sup_password = LAB_PASSWORD

    def __init__(
        self,
        world: str | Path | World,
        *,
        ring: str = "DATA",
        srebuildd_faults: str | Mapping[str, Any] | None = None,
        bucketd_faults: str | Mapping[str, Any] | None = None,
        size_reading: str = "object",
        node_faults: Mapping[str, str | Mapping[str, Any]] | None = None,
        ring_tls: bool | None = None,
        node_ips: bool = False,
    ) -> None:
        self.world = world.path if isinstance(world, World) else Path(world)
        self.ring = ring
        self._args = [
            sys.executable,
            "-m",
            "ringfsck.lab.serve",
            "--world",
            str(self.world),
            "--ring",
            ring,
            "--size-reading",
            size_reading,
            "--parent-pid",
            str(os.getpid()),
        ]
        for flag, faults in (("--srebuildd-faults", srebuildd_faults), ("--bucketd-faults", bucketd_faults)):
            if faults:
                self._args += [flag, faults if isinstance(faults, str) else _spec(faults)]
        for node, faults in (node_faults or {}).items():
            self._args += ["--node-faults", f"{node}:{faults if isinstance(faults, str) else _spec(faults)}"]
        if tls_available() if ring_tls is None else ring_tls:
            self._args.append("--ring-tls")
        if node_ips:
            self._args.append("--node-ips")
        self._proc: subprocess.Popen[str] | None = None
        self._finalizer: weakref.finalize | None = None
        self.srebuildd_url = ""
        self.bucketd_url = ""
        self.supervisor_url = ""
        self.node_urls: dict[str, str] = {}
        self.node_srebuildd_urls: dict[str, str] = {}  # with node_ips: each node's srebuildd
        self.ca_bundle: str | None = None

    def start(self) -> LabServers:
        """Start the servers and wait until both answer; RuntimeError with the server's stderr if not."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError("the lab servers are already running")
        # The package may be used from a checkout that is not installed: the child must import it too.
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        # A file, not a pipe: a chatty server can never block on it. What it holds is
        # forwarded to our stderr when the servers stop (pytest shows it with the test).
        stderr = tempfile.TemporaryFile("w+")
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        self._finalizer = weakref.finalize(self, _terminate, self._proc, stderr)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]  # started with stdout=PIPE
        reader.start()
        reader.join(_STARTUP_SECONDS)
        try:
            if not line or not line[0].strip():
                raise RuntimeError("no ready line")
            urls = json.loads(line[0])
            self.srebuildd_url, self.bucketd_url = urls["srebuildd"], urls["bucketd"]
            ring = urls["ring"]
            self.supervisor_url, self.node_urls, self.ca_bundle = ring["supervisor"], ring["nodes"], ring["ca_bundle"]
            self.node_srebuildd_urls = ring["srebuildd"]
            for server in ("srebuildd", "bucketd", "supervisor"):
                self._admin(server, "GET", "health")
        except (RuntimeError, ValueError, KeyError, httpx.HTTPError) as exc:
            self._finalizer.detach()
            _terminate(self._proc, None)
            stderr.seek(0)
            detail = stderr.read().strip()[-2000:] or f"{exc} (exit status {self._proc.returncode})"
            stderr.close()
            raise RuntimeError(f"lab servers did not start: {detail}") from None
        return self

    @property
    def pid(self) -> int | None:
        """The servers' process id while they run (e.g. to measure their CPU)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def stop(self) -> None:
        """Terminate the servers (kill them if they do not exit within a few seconds)."""
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> LabServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _admin(self, server: Server | Literal["supervisor"], method: str, path: str, payload: Any = None) -> Any:
        urls = {"srebuildd": self.srebuildd_url, "bucketd": self.bucketd_url, "supervisor": self.supervisor_url}
        if server not in urls:
            raise ValueError(f"server is 'srebuildd' or 'bucketd', not {server!r}")
        verify = ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else True
        response = httpx.request(method, f"{urls[server]}/_lab/{path}", json=payload, timeout=10, verify=verify)
        if response.status_code == 400:  # a bad fault: the server says which
            raise ValueError(response.json()["error"])
        response.raise_for_status()
        return response.json()

    def set_faults(self, server: Server, **faults: Any) -> dict[str, Any]:
        """Change some of a server's faults at run time; returns all of them.

        ``latency_ms``, ``error_rate``, ``drop_rate``, ``hang_rate``, ``hang_seconds``,
        ``fail_keys`` (an iterable of keys or bucket names; empty to clear), for bucketd
        ``common_prefixes`` and ``unknown_shape`` (a bucket name; None to clear), for srebuildd
        ``mtime_format``, ``recent_keys``, ``recent_share`` and ``vanish_after_deletes``.
        """
        for name in ("fail_keys", "recent_keys"):
            if name in faults:
                faults[name] = sorted(faults[name])
        return self._admin(server, "POST", "faults", faults)

    def deleted(self) -> set[str]:
        """Main chunks deleted through the chord path (each can be deleted once: then it is gone)."""
        return set(self._admin("srebuildd", "GET", "deleted"))

    def request_counts(self, server: Server) -> dict[str, int]:
        """Requests received per ``"METHOD path"`` (srebuildd keys uppercased), faulted ones included, admin ones not."""
        return self._admin(server, "GET", "requests")

    def request_times(self, server: Server) -> list[float]:
        """When each request (faulted ones included, admin ones not) reached the server: Unix seconds, in order.

        Several LabServers over one world are several srebuildd endpoints, each with its own log.
        """
        return self._admin(server, "GET", "request-times")

    def connection_count(self, server: Server) -> int:
        """Connections the server accepted (admin ones included: one per call like this one)."""
        return self._admin(server, "GET", "connections")

    def reset_stats(self) -> None:
        """Forget the request counts of every server."""
        for server in ("srebuildd", "bucketd", "supervisor"):
            self._admin(server, "POST", "reset-stats")

    def set_node_faults(self, node: str, **faults: Any) -> dict[str, Any]:
        """Change a RING node's (or the ``supervisor``'s) faults at run time: ``unreachable``, ``bad_login``,
        ``cut_at`` (a share of the body, None to clear), ``slow_ms``, ``fail_requests``. Returns every node's faults."""
        return self._admin("supervisor", "POST", "node-faults", {node: faults})

    def ring_request_counts(self) -> dict[str, dict[str, int]]:
        """Per node (and ``supervisor``): requests received (``listkeys``, ``login``; ``do``)."""
        return self._admin("supervisor", "GET", "requests")

    def node_srebuildd_request_counts(self) -> dict[str, dict[str, int]]:
        """With ``node_ips``, per node: the requests its srebuildd received per ``"METHOD path"``, as ``request_counts``."""
        return self._admin("supervisor", "GET", "srebuildd-requests")


def tls_available() -> bool:
    """Whether the lab can generate a certificate (the ``cryptography`` package is a test extra)."""
    import importlib.util

    return importlib.util.find_spec("cryptography") is not None


def _spec(faults: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={';'.join(map(str, v)) if k in ('fail_keys', 'recent_keys') else v}" for k, v in faults.items())


def _terminate(proc: subprocess.Popen[str], stderr: IO[str] | None) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(_STOP_SECONDS)
    if proc.stdout is not None:
        proc.stdout.close()
    if stderr is not None:
        stderr.seek(0)
        if text := stderr.read().strip():
            print(f"lab servers' stderr:\n{text}", file=sys.stderr)
        stderr.close()
