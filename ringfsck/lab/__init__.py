"""The lab: a simulated RING and S3 connector for tests, benchmarks and the demo.

``generate_world`` writes a consistent world (RING listings, S3 exports, bucketd
metadata) with a ``truth.json`` of what was planted; ``LabServers`` serves it as
a real srebuildd and bucketd on 127.0.0.1, with faults injected on demand::

    world = generate_world(tmp / "world", objects=500, seed=1)
    with LabServers(world.path, srebuildd_faults="error_rate=0.1,drop_rate=0.05") as lab:
        ...  # point ringfsck at lab.srebuildd_url and lab.bucketd_url
        assert lab.deleted() == expected
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from ringfsck.lab.world import World, generate_world

__all__ = ["LabServers", "World", "generate_world"]

_STARTUP_SECONDS = 30


class LabServers:
    """The lab srebuildd and bucketd, served by a child process for as long as the context lasts."""

    def __init__(self, world: str | Path, *, ring: str = "DATA", srebuildd_faults: str | None = None, bucketd_faults: str | None = None) -> None:
        self.world = Path(world)
        self.ring = ring
        self._args = [sys.executable, "-m", "ringfsck.lab.serve", "--world", str(self.world), "--ring", ring]
        if srebuildd_faults:
            self._args += ["--srebuildd-faults", srebuildd_faults]
        if bucketd_faults:
            self._args += ["--bucketd-faults", bucketd_faults]
        self._proc: subprocess.Popen[str] | None = None
        self.srebuildd_url = ""
        self.bucketd_url = ""

    def start(self) -> "LabServers":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
        self._proc = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(_STARTUP_SECONDS)
        if not line or not line[0].strip():
            self.stop()
            stderr = self._proc.stderr.read() if self._proc.stderr else ""
            raise RuntimeError(f"lab servers did not start: {stderr.strip()[-2000:]}")
        urls = json.loads(line[0])
        self.srebuildd_url, self.bucketd_url = urls["srebuildd"], urls["bucketd"]
        return self

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> "LabServers":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _url(self, server: str) -> str:
        if server not in ("srebuildd", "bucketd"):
            raise ValueError("server is 'srebuildd' or 'bucketd'")
        return self.srebuildd_url if server == "srebuildd" else self.bucketd_url

    def _admin(self, server: str, method: str, path: str, payload: Any = None) -> Any:
        response = httpx.request(method, f"{self._url(server)}/_lab/{path}", json=payload, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_faults(self, server: str, **faults: Any) -> dict[str, Any]:
        """Change a server's faults at run time (latency_ms, error_rate, drop_rate, hang_rate, hang_seconds, fail_keys)."""
        if "fail_keys" in faults:
            faults["fail_keys"] = sorted(faults["fail_keys"])
        return self._admin(server, "POST", "faults", faults)

    def deleted(self) -> list[str]:
        """Main chunks deleted through the chord path, in order (a key twice means deleted twice)."""
        return self._admin("srebuildd", "GET", "deleted")

    def request_counts(self, server: str) -> dict[str, int]:
        """Requests received per "METHOD path", faulted ones included, admin ones excluded."""
        return self._admin(server, "GET", "requests")

    def reset_stats(self) -> None:
        for server in ("srebuildd", "bucketd"):
            self._admin(server, "POST", "reset-stats")
