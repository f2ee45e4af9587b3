"""The lab servers: srebuildd and bucketd protocols, faults, admin endpoints, concurrency, process lifecycle."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from ringfsck.lab import LabServers
from ringfsck.lab.servers import Faults
from ringfsck.errors import ConfigError
from test_lab_check import bucketd_entries

ROOT = Path(__file__).resolve().parents[1]


# --- srebuildd ------------------------------------------------------------------

def test_srebuildd_paths(lab_world, lab_servers):
    truth = lab_world.truth
    client = httpx.Client(base_url=lab_servers.srebuildd_url, timeout=10)
    split = next(iter(truth["splits"]))
    plain = next(k for k in truth["sproxyd_keys"] if k not in truth["splits"])
    head = client.head(f"/rebuild/arc-DATA/{split.lower()}")  # keys are case-insensitive
    assert head.status_code == 200 and head.headers["X-Scal-Attr-Is-Split"] == "true"
    assert "X-Scal-Attr-Is-Split" not in client.head(f"/rebuild/arc-DATA/{plain}").headers  # absent: not split
    subkey = truth["splits"][split][0]
    assert "X-Scal-Attr-Is-Split" not in client.head(f"/rebuild/arc-DATA/{subkey}").headers
    assert client.head(f"/rebuild/arc-DATA/{truth['gaps']['missing'][0]}").status_code == 404
    raw = client.get(f"/rebuild/arc-DATA/{split}", headers={"x-scal-split-policy": "raw"})
    assert raw.status_code == 200 and bytes.fromhex(subkey.lstrip("0").rjust(36, "0")) in raw.content
    assert client.get(f"/rebuild/arc-DATA/{plain}").status_code == 200
    orphan = truth["orphans"][0]
    assert client.head(f"/rebuild/arcdata-DATA/{orphan}").headers["X-Scal-Size"] == str(truth["orphan_sizes"][orphan])
    assert client.head(f"/rebuild/arcdata-DATA/{truth['subkey_main_chunks'][0]}").status_code == 200
    assert client.head(f"/rebuild/arcdata-DATA/{'F' * 40}").status_code == 404
    assert client.head(f"/rebuild/arc-OTHER/{plain}").status_code == 400
    assert client.post(f"/rebuild/arc-DATA/{plain}").status_code == 405


def test_other_ring_name(lab_world):
    with LabServers(lab_world.path, ring="DATA2") as lab:
        key = lab_world.truth["sproxyd_keys"][0]
        assert httpx.head(f"{lab.srebuildd_url}/rebuild/arc-DATA2/{key}").status_code == 200
        assert httpx.head(f"{lab.srebuildd_url}/rebuild/arc-DATA/{key}").status_code == 400


def test_delete_and_admin_endpoints(lab_world, lab_servers):
    orphan, other = lab_world.truth["orphans"][:2]
    url = lab_servers.srebuildd_url
    assert httpx.delete(f"{url}/rebuild/chord-DATA/{orphan.lower()}").status_code == 200
    assert httpx.delete(f"{url}/rebuild/chord-DATA/{orphan}").status_code == 404  # already gone
    assert httpx.head(f"{url}/rebuild/arcdata-DATA/{orphan}").status_code == 404
    assert httpx.delete(f"{url}/rebuild/chord-DATA/{'E' * 40}").status_code == 404  # never there
    assert httpx.head(f"{url}/rebuild/arcdata-DATA/{other}").status_code == 200
    assert lab_servers.deleted() == {orphan}
    counts = lab_servers.request_counts("srebuildd")
    assert counts[f"DELETE /rebuild/chord-DATA/{orphan}"] == 2  # counted under the uppercase key
    assert counts[f"HEAD /rebuild/arcdata-DATA/{other}"] == 1
    assert not any("_lab" in path for path in counts), "admin requests are not counted"
    lab_servers.reset_stats()
    assert lab_servers.request_counts("srebuildd") == {} and lab_servers.request_counts("bucketd") == {}
    assert lab_servers.deleted() == {orphan}, "resetting the counts keeps the deletions"


# --- bucketd --------------------------------------------------------------------

def test_bucketd_paging_is_exact_for_any_page_size(lab_world, lab_servers):
    every = bucketd_entries(lab_servers.bucketd_url, page=10_000)
    assert bucketd_entries(lab_servers.bucketd_url, page=1) == every
    for bucket, entries in every.items():
        names = [key for key, _ in entries]
        assert names == sorted(names) and len(names) == len(set(names)), bucket


def test_bucketd_metadata_and_errors(lab_world, lab_servers):
    client = httpx.Client(base_url=lab_servers.bucketd_url, timeout=10)
    for bucket, listed in bucketd_entries(lab_servers.bucketd_url, page=1000).items():
        for key, meta in listed:
            response = client.get(f"/default/bucket/{quote(bucket, safe='')}/{quote(key, safe='')}")
            assert response.status_code == 200, (bucket, key)
            full = response.json()
            assert full == meta or ("location" not in meta and full["location"]), (bucket, key)
    listing = client.get("/default/bucket/bucket-00", params={"maxKeys": 5, "prefix": "photos/", "listingType": "Delimiter"}).json()
    assert listing["Contents"] and all(item["key"].startswith("photos/") for item in listing["Contents"])
    assert client.get("/default/bucket/bucket-00/no-such-key").status_code == 404
    assert client.get("/default/bucket/no-such-bucket").status_code == 404
    assert client.get("/_/raft_sessions/9/bucket").status_code == 404
    assert client.get("/default/bucket/bucket-00", params={"maxKeys": "x"}).status_code == 400


# --- faults ---------------------------------------------------------------------

def test_error_rate_one_fails_every_request_but_admin(lab_world, lab_servers):
    key, orphan = lab_world.truth["sproxyd_keys"][0], lab_world.truth["orphans"][0]
    lab_servers.set_faults("srebuildd", error_rate=1)
    lab_servers.set_faults("bucketd", error_rate=1)
    s, b = lab_servers.srebuildd_url, lab_servers.bucketd_url
    statuses = [httpx.head(f"{s}/rebuild/arc-DATA/{key}").status_code for _ in range(10)]
    statuses += [httpx.delete(f"{s}/rebuild/chord-DATA/{orphan}").status_code, httpx.get(f"{b}/_/raft_sessions/1/bucket").status_code]
    assert set(statuses) <= {500, 503} and len(set(statuses)) == 2, statuses
    assert httpx.get(f"{s}/_lab/health").status_code == 200 and lab_servers.deleted() == set()


def test_drop_hang_and_fail_keys(lab_world, lab_servers):
    url = lab_servers.srebuildd_url
    key, other = lab_world.truth["sproxyd_keys"][:2]
    lab_servers.set_faults("srebuildd", drop_rate=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.head(f"{url}/rebuild/arc-DATA/{key}")
    lab_servers.set_faults("srebuildd", drop_rate=0, hang_rate=1, hang_seconds=3)
    with pytest.raises(httpx.ReadTimeout):
        httpx.head(f"{url}/rebuild/arc-DATA/{key}", timeout=0.5)
    faults = lab_servers.set_faults("srebuildd", hang_rate=0, fail_keys=[key.lower()])
    assert faults["fail_keys"] == [key] and faults["latency_ms"] == 0
    assert {httpx.head(f"{url}/rebuild/arc-DATA/{key}").status_code for _ in range(5)} == {503}
    assert httpx.head(f"{url}/rebuild/arc-DATA/{other}").status_code == 200
    lab_servers.set_faults("srebuildd", fail_keys=[])
    assert httpx.head(f"{url}/rebuild/arc-DATA/{key}").status_code == 200


def test_faults_given_at_start_and_bad_faults(lab_world):
    with LabServers(lab_world.path, bucketd_faults={"fail_keys": ["bucket-01"]}, srebuildd_faults="latency_ms=1,error_rate=0") as lab:
        assert httpx.get(f"{lab.bucketd_url}/default/bucket/bucket-01").status_code == 503
        assert httpx.get(f"{lab.bucketd_url}/default/bucket/bucket-00").status_code == 200
        assert httpx.get(f"{lab.srebuildd_url}/_lab/faults").json()["latency_ms"] == 1
        response = httpx.post(f"{lab.srebuildd_url}/_lab/faults", json={"error_rate": 2})
        assert response.status_code == 400 and "out of range" in response.json()["error"]
        assert httpx.post(f"{lab.srebuildd_url}/_lab/faults", json={"typo": 1}).status_code == 400
        with pytest.raises(ValueError, match="unknown fault 'typo'"):
            lab.set_faults("bucketd", typo=1)
        with pytest.raises(RuntimeError, match="already running"):
            lab.start()
    with pytest.raises(RuntimeError, match="unknown fault 'eror_rate'"):
        LabServers(lab_world.path, srebuildd_faults="eror_rate=0.1").start()


def test_fault_spec_parsing():
    faults = Faults.parse("error_rate=0.1, drop_rate=0.05,latency_ms=2,hang_rate=0.01,fail_keys=ab;CD")
    assert (faults.error_rate, faults.drop_rate, faults.latency_ms, faults.hang_rate) == (0.1, 0.05, 2, 0.01)
    assert faults.fail_keys == {"AB", "CD"} and Faults.parse(None) == Faults()
    for bad in ("error_rate", "error_rate=x", "drop_rate=1.5", "nope=1"):
        with pytest.raises(ConfigError):
            Faults.parse(bad)


# --- concurrency and lifecycle --------------------------------------------------

def test_500_concurrent_requests(lab_world, lab_servers):
    truth = lab_world.truth
    keys = sorted(set(truth["sproxyd_keys"]) - set(truth["gaps"]["missing"]))

    async def client_burst(client: httpx.AsyncClient, first: int) -> list[int]:
        responses = await asyncio.gather(*(client.head(f"/rebuild/arc-DATA/{keys[(first + i) % len(keys)]}") for i in range(50)))
        return [r.status_code for r in responses]

    async def burst() -> list[int]:
        # 500 requests in flight at once on 500 connections. Ten clients of 50 connections
        # each: httpcore's pool is quadratic in its connections (500 in one pool takes seconds).
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        clients = [httpx.AsyncClient(base_url=lab_servers.srebuildd_url, limits=limits, timeout=30) for _ in range(10)]
        try:
            results = await asyncio.gather(*(client_burst(c, 50 * i) for i, c in enumerate(clients)))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))
        return [status for statuses in results for status in statuses]

    statuses = asyncio.run(burst())
    assert len(statuses) == 500 and set(statuses) == {200}


def test_a_world_without_state_fails_clearly(tmp_path):
    with pytest.raises(RuntimeError, match="no lab state"):
        LabServers(tmp_path).start()


def test_servers_stop_even_when_the_test_fails(lab_world):
    with pytest.raises(ZeroDivisionError):
        with LabServers(lab_world.path) as lab:
            proc = lab._proc
            1 / 0
    assert proc.poll() is not None


def test_servers_exit_when_their_parent_is_killed(lab_world):
    script = ("import sys, time; from ringfsck.lab import LabServers; lab = LabServers(sys.argv[1]).start(); "
              "print(lab._proc.pid, flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", script, str(lab_world.path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        server_pid = int(parent.stdout.readline())
        parent.send_signal(signal.SIGKILL)  # no stop(), no atexit: the servers must notice on their own
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(server_pid):
            time.sleep(0.1)
        assert not _alive(server_pid)
    finally:
        parent.kill()
        parent.stdout.close()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
