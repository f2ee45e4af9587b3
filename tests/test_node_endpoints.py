"""srebuildd on every node: the native listing's node ips as the default srebuildd endpoints (issue 18).

Without a srebuildd in the settings, ``resolve``, ``size`` and ``delete`` ask
``http://{node ip}:{srebuildd_port}`` for every node of the store's RING listing; the lab's nodes
have ips of their own (127.0.0.2 …) with a srebuildd on each, whose request logs show the spread.
"""

from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ringfsck.analysis import analyze
from ringfsck.cli import main
from ringfsck.commands import printed_command
from ringfsck.config import Settings, SupSettings, load_settings, srebuildd_endpoints
from ringfsck.ingest import ingest_listkeys, ingest_s3keys
from ringfsck.ingest.ring import ingest_ring, listing_node_ips
from ringfsck.lab import LabServers
from ringfsck.manifest import write_manifest
from ringfsck.remote.http import HttpPolicy
from ringfsck.remote.supervisor import Credentials
from ringfsck.store import Store

FAST = HttpPolicy(concurrency=4, timeout=5, retries=2, backoff_base=0.005, backoff_max=0.05)


@pytest.fixture(scope="module")
def node_world(make_world):
    return make_world(objects=300, seed=3)


@pytest.fixture
def node_lab(node_world):
    with LabServers(node_world.path, node_ips=True) as lab:
        yield lab


def node_port(lab: LabServers) -> int:
    ports = {int(url.rsplit(":", 1)[1]) for url in lab.node_srebuildd_urls.values()}
    assert len(ports) == 1, ports  # one port on every node, as srebuildd's 81
    return ports.pop()


def listed_store(tmp_path: Path, world, lab: LabServers) -> Store:
    """The world's S3 export and the RING listed natively from the lab's nodes; no srebuildd configured."""
    sup = SupSettings(url=lab.supervisor_url, login=lab.sup_login, password=lab.sup_password, ca_bundle=lab.ca_bundle)
    store = Store.open(Settings(store=str(tmp_path / "store"), sup=sup, srebuildd_port=node_port(lab)))
    ingest_ring(store, supervisor=lab.supervisor_url, credentials=Credentials(lab.sup_login, lab.sup_password), policy=FAST)
    ingest_s3keys(store, [str(world.s3keys_dir)])
    return store


def write_config(tmp_path: Path, store: Store, lab: LabServers, extra: str = "") -> Path:
    config = tmp_path / "ringfsck.yml"
    config.write_text(f"store: {store.root}\nsrebuildd_port: {node_port(lab)}\nretries: 2\n{extra}")
    return config


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def splits_of(store: Store) -> dict[str, tuple]:
    rows = store.connect().execute("SELECT input_key, status, is_split, subkeys FROM splits").fetchall()
    return {key: (status, is_split, sorted(subkeys)) for key, status, is_split, subkeys in rows}


def asked_keys(counts: dict[str, int]) -> set[str]:
    return {path.rsplit("/", 1)[1] for path in counts if path.startswith("HEAD /rebuild/arc-DATA/")}


def test_the_settings_win_and_else_each_distinct_node_ip_is_an_endpoint():
    ips = ["10.0.0.5", "10.0.0.6", "10.0.0.5", "fd00::7", ""]
    derived = srebuildd_endpoints(Settings(), ips)
    assert derived.urls == ["http://10.0.0.5:81", "http://10.0.0.6:81", "http://[fd00::7]:81"]
    assert derived.note == "srebuildd: 3 endpoints from the RING listing's nodes (port 81)"
    assert srebuildd_endpoints(Settings(srebuildd_port=8181), ips[:1]).urls == ["http://10.0.0.5:8181"]
    for explicit, expected in [
        ({"srebuildd_urls": ("10.0.0.9:81",)}, ["http://10.0.0.9:81"]),
        ({"srebuildd_url": "http://10.0.0.9:8181"}, ["http://10.0.0.9:8181"]),
        ({"srebuildd_ip": "10.0.0.9"}, ["http://10.0.0.9:81"]),
    ]:
        settings = load_settings(None, explicit, env={}, cwd=None)
        assert srebuildd_endpoints(settings, ips) == srebuildd_endpoints(settings, [])
        assert srebuildd_endpoints(settings, ips).urls == expected and srebuildd_endpoints(settings, ips).note is None
    assert srebuildd_endpoints(Settings(), []).urls == []


def test_resolve_spreads_the_keys_over_the_listing_nodes_srebuildd(tmp_path, node_world, node_lab):
    store = listed_store(tmp_path, node_world, node_lab)
    assert listing_node_ips(store) == [f"127.0.0.{2 + i}" for i in range(len(node_lab.node_urls))]
    node_lab.reset_stats()
    result = run("resolve", "--config", str(write_config(tmp_path, store, node_lab)))
    assert result.exit_code == 0, result.output
    assert f"srebuildd: 6 endpoints from the RING listing's nodes (port {node_port(node_lab)})" in result.output.splitlines()
    per_node = node_lab.node_srebuildd_request_counts()
    assert node_lab.request_counts("srebuildd") == {}  # the lab's own srebuildd URL was never named
    asked = [asked_keys(counts) for counts in per_node.values()]
    everything = {row[0] for row in store.connect().execute("SELECT sproxyd_key FROM s3_input_keys").fetchall()}
    assert set().union(*asked) == everything and sum(map(len, asked)) == len(everything)  # each key asked once, somewhere
    assert all(len(keys) >= len(everything) / 12 for keys in asked), [len(k) for k in asked]  # each node took a share
    found = splits_of(store)
    assert {k: v for k, v in found.items() if v[1]} == {k: ("ok", True, sorted(v)) for k, v in node_world.truth["splits"].items() if k in everything}
    assert {v[0] for v in found.values()} <= {"ok", "not_found"}


def test_the_python_api_takes_the_same_default_as_the_commands(tmp_path, node_world, node_lab):
    from ringfsck.resolve import resolve_splits

    store = listed_store(tmp_path, node_world, node_lab)
    api = Store.open(dataclasses.replace(store.settings, srebuildd_port=node_port(node_lab)))
    node_lab.reset_stats()
    report = resolve_splits(api, policy=FAST)  # no base_url: one endpoint per node of the listing
    assert report.errors == 0 and len(report.endpoints) == len(node_lab.node_urls)
    assert all(sum(counts.values()) for counts in node_lab.node_srebuildd_request_counts().values())


def test_a_node_srebuildd_killed_mid_run_leaves_its_keys_to_the_others(tmp_path, node_world):
    # Slow answers, few in flight: the node cannot have answered its whole share before it is killed.
    with LabServers(node_world.path, node_ips=True, srebuildd_faults={"latency_ms": 5}) as node_lab:
        store = listed_store(tmp_path, node_world, node_lab)
        node_lab.set_node_faults("node-02", srebuildd_down_after=15)  # killed after 15 requests: its port closed, connections cut
        result = run("resolve", "--config", str(write_config(tmp_path, store, node_lab, "concurrency: 2\n")))
        faults = node_lab.set_node_faults("node-02")
        victim = node_lab.node_srebuildd_urls["node-02"]
        victim_requests = sum(node_lab.node_srebuildd_request_counts()["node-02"].values())
        from ringfsck.resolve import resolve_splits

        one = Store.open(Settings(store=str(tmp_path / "one")))
        ingest_listkeys(one, [str(node_world.listkeys_dir)])
        ingest_s3keys(one, [str(node_world.s3keys_dir)])
        resolve_splits(one, base_url=node_lab.srebuildd_url, policy=FAST)
    assert result.exit_code == 0, result.output
    assert faults["node-02"]["srebuildd_down"]  # it was killed
    assert f"{victim} " in result.output and "set aside" in result.output, result.output  # per-endpoint figures: the victim set aside
    assert victim_requests >= 15
    multi = splits_of(store)
    assert {status for status, *_ in multi.values()} <= {"ok", "not_found"}  # nothing answered from a failure
    assert multi == splits_of(one)  # what one healthy endpoint answers


def test_size_and_delete_find_the_nodes_and_a_deletion_is_gone_on_every_node(tmp_path, node_world, node_lab):
    store = listed_store(tmp_path, node_world, node_lab)
    config = write_config(tmp_path, store, node_lab)
    assert run("resolve", "--config", str(config)).exit_code == 0
    analyze(store)
    sized = run("size", "--config", str(config))
    assert sized.exit_code == 0, sized.output
    assert "srebuildd: 6 endpoints from the RING listing's nodes" in sized.output
    write_manifest(store, tmp_path / "m.csv", force=["listing-order"])
    dry = run("delete", "--config", str(config), "--manifest", str(tmp_path / "m.csv"))
    assert "srebuildd:" not in dry.output  # a dry run asks nothing
    node_lab.reset_stats()
    deleted = run("delete", "--config", str(config), "--manifest", str(tmp_path / "m.csv"), "--execute", "--force", "retention")
    assert deleted.exit_code == 0, deleted.output
    assert "srebuildd: 6 endpoints from the RING listing's nodes" in deleted.output
    orphans = set(node_world.truth["orphans"])
    assert node_lab.deleted() == orphans  # one RING: what the nodes' srebuildds deleted, the lab's srebuildd lost too
    per_node = node_lab.node_srebuildd_request_counts()
    deletes = [{p.rsplit("/", 1)[1] for p in counts if p.startswith("DELETE ")} for counts in per_node.values()]
    assert set().union(*deletes) == orphans and sum(map(len, deletes)) == len(orphans)
    assert sum(1 for keys in deletes if keys) >= 3  # spread over the nodes


def test_without_a_listing_or_a_setting_the_error_says_how_to_name_one(tmp_path, node_world):
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(node_world.listkeys_dir)])  # files: no node is known
    ingest_s3keys(store, [str(node_world.s3keys_dir)])
    result = run("resolve", "--store", str(store.root))
    assert result.exit_code == 2  # a usage error (ConfigError)
    assert "no srebuildd URL: pass --srebuildd URL" in result.output and "ingest ring" in result.output


def test_a_store_written_before_the_ip_was_recorded_gives_the_admin_urls_hosts(tmp_path, node_world, node_lab):
    store = listed_store(tmp_path, node_world, node_lab)
    before = listing_node_ips(store)
    sources = json.loads((store.root / "sources.json").read_text())
    for source in sources:
        source["details"].pop("ip", None)
    (store.root / "sources.json").write_text(json.dumps(sources))
    assert listing_node_ips(Store.open(store.settings)) == before


def test_printed_commands_leave_srebuildd_to_the_listing(tmp_path, node_world, node_lab):
    store = listed_store(tmp_path, node_world, node_lab)
    printed = printed_command(store, "resolve", srebuildd=True)
    assert "--srebuildd" not in printed
    files_only = Store.open(Settings(store=str(tmp_path / "files")))
    assert "--srebuildd '<SREBUILDD_URL>'" in printed_command(files_only, "resolve", srebuildd=True)
