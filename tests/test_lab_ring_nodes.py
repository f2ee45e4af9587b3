"""The lab's supervisor and RING nodes: chunk mtimes, the login, mtime ranges, faults through the admin endpoint."""

from __future__ import annotations

import ssl
import time

import httpx
import pytest

from ringfsck.lab import LabServers
from ringfsck.lab._state import WorldState
from ringfsck.lab.world import IN_FLIGHT_AGES


def test_every_main_chunk_has_an_mtime_and_in_flight_ones_are_recent(lab_world):
    state = WorldState(lab_world.path, clock=2_000_000_000)
    truth = lab_world.truth
    dated = [state.chunk_mtime(key) for key in truth["orphans"] + truth["subkey_main_chunks"]]
    assert all(m is not None and 1_700_000_000 < m < 1_800_000_000 for m in dated)
    recent = {state.chunk_mtime(key) for key in truth["in_flight"]}
    assert recent == {2_000_000_000 - age for age in IN_FLIGHT_AGES}
    assert state.chunk_mtime("F" * 40) is None
    assert sum(node.rows for node in state.nodes) == truth["counts"]["listkeys_rows"] + truth["counts"]["in_flight_rows"]


def _client(lab: LabServers) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=lab.ca_bundle) if lab.ca_bundle else True, timeout=10)


def _login(client: httpx.Client, url: str, password: str) -> httpx.Response:
    return client.post(f"{url}/login", files={"url": (None, "/listkeys"), "login": (None, LabServers.sup_login), "password": (None, password)})


def test_nodes_want_the_login_and_honour_the_mtime_window(lab_world, lab_servers):
    url = lab_servers.node_urls["node-00"]
    client = _client(lab_servers)
    query = f"{url}/listkeys?dso=DATA&vnode=4244&mtime_min=0&mtime_max="
    assert client.get(query + "9999999999").status_code == 302  # no cookie: to the login page
    assert _login(client, url, "wrong").headers["location"] == "/login?loginerror=password"
    assert _login(client, url, lab_servers.sup_password).headers["location"] == "/listkeys"
    everything = client.get(query + str(int(time.time()) + 60)).content
    older = client.get(query + str(int(time.time()) - 86_400)).content
    nothing = client.get(query + "1000").content
    assert set(nothing) <= {ord("\n")} and len(older) < len(everything)
    assert everything.startswith(older.rstrip(b"\n")[:100]) and all(line.count(b",") == 3 for line in everything.split(b"\n") if line)
    assert client.get(f"{url}/listkeys?dso=OTHER&vnode=4244").status_code == 404


def test_node_faults_through_the_admin_endpoint(lab_world, lab_servers):
    with pytest.raises(ValueError, match="unknown node fault"):
        lab_servers.set_node_faults("node-01", explode=True)
    with pytest.raises(ValueError, match="no node named"):
        lab_servers.set_node_faults("node-99", unreachable=True)
    url = lab_servers.node_urls["node-01"]
    lab_servers.set_node_faults("node-01", unreachable=True)
    with pytest.raises(httpx.ConnectError):
        _client(lab_servers).get(f"{url}/listkeys")
    faults = lab_servers.set_node_faults("node-01", unreachable=False, cut_at=0.5)
    assert faults["node-01"]["cut_at"] == 0.5 and not faults["node-01"]["unreachable"]
    client = _client(lab_servers)
    _login(client, url, lab_servers.sup_password)
    with pytest.raises(httpx.RemoteProtocolError):
        client.get(f"{url}/listkeys?dso=DATA&mtime_max=9999999999")
