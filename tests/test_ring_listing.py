"""``ingest ring``: the native listing from the lab's supervisor and nodes (issue 14).

A full listing equals the world's dumps (every chunk older than the retention window), in-flight
keys are never listed so never orphans, every node fault leaves the listing incomplete with one
line naming the node, a killed listing resumes without listing finished nodes again or publishing
a partial one, and the password appears in nothing written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ringfsck.analysis import AnalysisOptions, analyze
from ringfsck.config import Settings, SupSettings, load_settings
from ringfsck.errors import ConfigError, RefusedError, RemoteError
from ringfsck.ingest import ingest_s3keys
from ringfsck.ingest.ring import RING_FORMAT, ingest_ring
from ringfsck.lab import LabServers
from ringfsck.manifest import write_manifest
from ringfsck.remote.http import HttpPolicy
from ringfsck.remote.supervisor import Credentials
from ringfsck.store import Store
from test_lab_check import read_listkeys

ROOT = Path(__file__).resolve().parents[1]
FAST = HttpPolicy(concurrency=4, timeout=10, retries=2, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture(scope="module")
def ring_world(make_world):
    return make_world(objects=300, seed=3, splits=0.0)


@pytest.fixture(scope="module")
def ring_lab(ring_world):
    with LabServers(ring_world.path) as lab:
        yield lab


def _store(tmp_path: Path, lab: LabServers, **settings) -> Store:
    sup = SupSettings(url=lab.supervisor_url, login=lab.sup_login, password=lab.sup_password, ca_bundle=lab.ca_bundle)
    return Store.open(Settings(store=str(tmp_path / "store"), sup=sup, **settings))


def _list(store: Store, lab: LabServers, **options):
    options.setdefault("policy", FAST)
    return ingest_ring(store, supervisor=lab.supervisor_url, credentials=Credentials(lab.sup_login, lab.sup_password), **options)


def _listed_rows(store: Store) -> Counter:
    con = store.connect()
    return Counter(con.execute("SELECT chunk_key, main_chunk, disk, flag::VARCHAR FROM listkeys").fetchall())


def _dump_rows(world) -> Counter:
    return Counter((chunk, main, disk, flag) for _, chunk, main, disk, flag in read_listkeys(world))


def test_a_full_listing_is_the_worlds_chunks_older_than_the_window(tmp_path, ring_world, ring_lab):
    store = _store(tmp_path, ring_lab)
    report = _list(store, ring_lab)
    assert [n.status for n in report.nodes] == ["listed"] * 6 and report.rows == ring_world.truth["counts"]["listkeys_rows"]
    assert _listed_rows(store) == _dump_rows(ring_world)  # exactly: every dumped row, as often, and nothing else
    in_flight = set(ring_world.truth["in_flight"])
    assert in_flight and not in_flight & {main for _, main, _, _ in _listed_rows(store)}
    sources = [s for s in store.sources() if s.format == RING_FORMAT]
    assert len(sources) == 6 and all(s.kind == "listkeys" and not s.incomplete and s.rows > 0 for s in sources)
    assert {s.details["node"] for s in sources} == set(ring_lab.node_urls)
    assert all(s.details["mtime_max"] == report.mtime_max for s in sources)


def test_in_flight_keys_are_never_orphans(tmp_path, ring_world, ring_lab):
    truth = ring_world.truth
    store = _store(tmp_path, ring_lab)
    _list(store, ring_lab)
    ingest_s3keys(store, [str(ring_world.s3keys_dir)])
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    assert summary["complete"], summary["incomplete_reasons"]
    orphans = {row[0] for row in store.connect().execute("SELECT ring_key FROM orphans").fetchall()}
    assert orphans == set(truth["orphans"])
    # The control: a listing that ignores the retention window takes them, and they look orphaned.
    careless = _store(tmp_path / "careless", ring_lab, retention=0)
    _list(careless, ring_lab)
    ingest_s3keys(careless, [str(ring_world.s3keys_dir)])
    analyze(careless, AnalysisOptions(assume_no_splits=True))
    careless_orphans = {row[0] for row in careless.connect().execute("SELECT ring_key FROM orphans").fetchall()}
    assert set(truth["in_flight"]) <= careless_orphans


def test_nodes_listed_completely_are_kept_unless_refreshed(tmp_path, ring_lab):
    store = _store(tmp_path, ring_lab)
    _list(store, ring_lab)
    ring_lab.reset_stats()
    assert {n.status for n in _list(store, ring_lab).nodes} == {"kept"}
    assert not any(counts.get("listkeys") for name, counts in ring_lab.ring_request_counts().items() if name != "supervisor")
    assert {n.status for n in _list(store, ring_lab, refresh=True).nodes} == {"listed"}


@pytest.mark.parametrize(("fault", "said"), [
    ({"unreachable": True}, "ConnectError"),
    ({"bad_login": True}, "login refused"),
    ({"cut_at": 0.5}, "broke off"),
])
def test_a_node_fault_leaves_the_listing_incomplete(tmp_path, ring_world, fault, said):
    with LabServers(ring_world.path, node_faults={"node-02": fault}) as lab:
        store = _store(tmp_path, lab)
        with pytest.raises(RemoteError) as raised:
            _list(store, lab)
    message = str(raised.value)
    assert "node-02" in message and said in message and "\n" not in message
    assert lab.sup_password not in message
    by_node = {s.details["node"]: s for s in store.sources()}
    failed = by_node["node-02"]
    assert failed.incomplete and "node-02" in failed.incomplete[0] and failed.rows == 0
    assert not store.part_names("listkeys", failed.id)  # its partial rows were never published
    assert all(not s.incomplete for name, s in by_node.items() if name != "node-02")
    listed = {main for _, main, _, _ in _listed_rows(store)}
    assert listed and len(_listed_rows(store)) < len(_dump_rows(ring_world))
    ingest_s3keys(store, [str(ring_world.s3keys_dir)])
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    assert not summary["complete"]
    assert [r for r in summary["incomplete_reasons"] if "node-02" in r] == failed.incomplete
    with pytest.raises(RefusedError):
        write_manifest(store, tmp_path / "orphans.csv")


@pytest.mark.parametrize("framing", [{}, {"chunked": True}])
def test_a_stream_cut_at_a_line_end_is_told_by_its_framing(tmp_path, ring_world, framing):
    # The bytes received end with a whole line: only the Content-Length not reached, or the last
    # chunk never sent, says the listing was cut.
    with LabServers(ring_world.path, node_faults={"node-02": {"cut_at": 0.5, "cut_on_line": True, **framing}}) as lab:
        store = _store(tmp_path, lab)
        with pytest.raises(RemoteError, match="node-02.*broke off"):
            _list(store, lab)
        failed = next(s for s in store.sources() if s.details["node"] == "node-02")
        assert failed.incomplete and not store.part_names("listkeys", failed.id)
        lab.set_node_faults("node-02", cut_at=None)  # the same framing, uncut: listed whole
        assert {n.name: n.status for n in _list(store, lab).nodes}["node-02"] == "listed"
    assert _listed_rows(store) == _dump_rows(ring_world)


def test_a_listing_without_framing_is_never_published_as_complete(tmp_path, ring_world):
    # Neither a Content-Length nor chunks: the body ends when the connection closes, whole or cut alike.
    with LabServers(ring_world.path, node_faults={"node-04": {"unframed": True}}) as lab:
        store = _store(tmp_path, lab)
        with pytest.raises(RemoteError, match="node-04.*neither a Content-Length nor chunked") as raised:
            _list(store, lab)
    assert "\n" not in str(raised.value)
    failed = next(s for s in store.sources() if s.details["node"] == "node-04")
    assert failed.incomplete and "node-04" in failed.incomplete[0] and failed.rows == 0
    assert not store.part_names("listkeys", failed.id)
    ingest_s3keys(store, [str(ring_world.s3keys_dir)])
    assert not analyze(store, AnalysisOptions(assume_no_splits=True)).summary["complete"]


def test_nodes_are_listed_in_forked_workers_with_one_bar_in_rows(tmp_path, ring_world, ring_lab, monkeypatch):
    import ringfsck.ingest.ring as ring_module

    forked, bars = [], []

    class RecordingBar:
        def __init__(self, *, total, **options) -> None:
            self.total, self.n = total, 0
            bars.append(self)

        def update(self, rows: int) -> None:
            self.n += rows

        def close(self) -> None:
            pass

    def recording_pool(work, workers):
        forked.append(workers)
        return real_pool(work, workers)

    real_pool = ring_module.forked_pool
    monkeypatch.setattr(ring_module, "forked_pool", recording_pool)
    # Other tests load polars in this process, which makes ingest stay on threads; the node
    # workers never use polars, so the forked path is tested here whatever ran before.
    monkeypatch.setattr(ring_module, "fork_is_safe", lambda store: True)
    monkeypatch.setattr(ring_module, "bar", RecordingBar)
    store = _store(tmp_path, ring_lab)
    report = _list(store, ring_lab, concurrency=3)
    assert forked == [3]
    assert _listed_rows(store) == _dump_rows(ring_world)
    # One bar over all nodes: the supervisor's chunk counts as its total, rows (not keep-alive lines) as its count.
    truth = ring_world.truth["counts"]
    [progress] = bars
    assert progress.total == truth["listkeys_rows"] + truth["in_flight_rows"]
    assert progress.n == report.rows == truth["listkeys_rows"]


def test_a_cut_stream_is_listed_again_and_a_failed_node_listed_later_completes(tmp_path, ring_world):
    with LabServers(ring_world.path, node_faults={"node-01": {"cut_at": 0.3}, "node-04": {"fail_requests": 2}}) as lab:
        store = _store(tmp_path, lab)
        with pytest.raises(RemoteError, match="node-01"):
            _list(store, lab)
        assert lab.ring_request_counts()["node-01"]["listkeys"] >= 2  # one more attempt from the start
        assert not next(s for s in store.sources() if s.details.get("node") == "node-04").incomplete  # 5xx retried
        lab.set_node_faults("node-01", cut_at=None)
        lab.reset_stats()
        report = _list(store, lab)
        assert {n.name: n.status for n in report.nodes}["node-01"] == "listed"
        assert sum(1 for n in report.nodes if n.status == "kept") == 5
        assert set(lab.ring_request_counts()["node-01"]) and not lab.ring_request_counts()["node-00"].get("listkeys")
    assert _listed_rows(store) == _dump_rows(ring_world)
    assert not any(s.incomplete for s in store.sources())


def test_a_slow_stream_completes_and_a_stalled_one_fails(tmp_path, ring_world):
    with LabServers(ring_world.path, node_faults={"node-03": {"slow_ms": 20}}) as lab:
        store = _store(tmp_path, lab)
        _list(store, lab)
        assert _listed_rows(store) == _dump_rows(ring_world)
        lab.set_node_faults("node-03", slow_ms=3000)
        with pytest.raises(RemoteError, match="node-03.*(ReadTimeout|broke off)"):
            _list(store, lab, refresh=True, policy=dataclasses.replace(FAST, timeout=0.5, retries=0))


def test_plain_http_and_certificates(tmp_path, ring_world):
    with LabServers(ring_world.path, ring_tls=False) as lab:
        assert lab.supervisor_url.startswith("http://") and lab.ca_bundle is None
        store = _store(tmp_path / "http", lab)
        assert _list(store, lab).rows == ring_world.truth["counts"]["listkeys_rows"]
    with LabServers(ring_world.path, ring_tls=True) as lab:
        unchecked = Store.open(Settings(store=str(tmp_path / "no-ca"), sup=SupSettings()))
        with pytest.raises(RemoteError, match="CERTIFICATE_VERIFY_FAILED|certificate"):
            _list(unchecked, lab)
        insecure = Store.open(Settings(store=str(tmp_path / "insecure"), sup=SupSettings(verify_tls=False)))
        assert _list(insecure, lab).rows == ring_world.truth["counts"]["listkeys_rows"]


def test_supervisor_errors_are_one_line_without_the_password(tmp_path, ring_lab):
    store = _store(tmp_path, ring_lab)
    with pytest.raises(RemoteError, match="authentication failed") as bad:
        ingest_ring(store, supervisor=ring_lab.supervisor_url, credentials=Credentials(ring_lab.sup_login, "wrong-password-123"), policy=FAST)
    assert "wrong-password-123" not in str(bad.value)
    other = Store.open(dataclasses.replace(store.settings, ring="OTHER"))
    with pytest.raises(RemoteError, match="OTHER"):
        _list(other, ring_lab)
    assert not store.sources()


def test_nodes_given_by_url_without_a_supervisor(tmp_path, ring_world, ring_lab):
    store = _store(tmp_path, ring_lab)
    urls = [f"{url}?vnode={4244 + i}" for i, url in enumerate(ring_lab.node_urls.values())]
    report = ingest_ring(store, node_urls=urls, credentials=Credentials(ring_lab.sup_login, ring_lab.sup_password), policy=FAST)
    assert report.rows == ring_world.truth["counts"]["listkeys_rows"]
    wrong = [f"{next(iter(ring_lab.node_urls.values()))}?vnode=9999"]
    with pytest.raises(RemoteError, match="HTTP 404"):
        ingest_ring(Store.open(Settings(store=str(tmp_path / "wrong"), sup=store.settings.sup)), node_urls=wrong,
                    credentials=Credentials(ring_lab.sup_login, ring_lab.sup_password), policy=FAST)


def test_sup_settings_from_the_reference_config_and_the_environment(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("ring: DATA\nretention: 86400\nsup:\n  url: https://10.0.0.2:2443\n  login: root\n  password: 's3cr3t-in-file'\n"
                      "  ca_bundle: /etc/ssl/sup.pem\n  verify_tls: false\n")
    settings = load_settings(config, env={})
    assert settings.sup == SupSettings("https://10.0.0.2:2443", "root", "s3cr3t-in-file", "/etc/ssl/sup.pem", False)
    assert "s3cr3t-in-file" not in repr(settings) and "s3cr3t-in-file" not in json.dumps(settings.public_dict())
    from_env = load_settings(config, env={"RINGFSCK_SUP_PASSWORD": "from-env", "RINGFSCK_SUP_URL": "http://127.0.0.1:1"})
    assert (from_env.sup.password, from_env.sup.url, from_env.sup.login) == ("from-env", "http://127.0.0.1:1", "root")
    with pytest.raises(ConfigError, match="sup.verify_tls"):
        load_settings(None, {"sup": {"verify_tls": "maybe"}}, env={}, cwd=tmp_path)


def _ringfsck(*args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)} | env
    return subprocess.run([sys.executable, "-m", "ringfsck", *args], env=full_env, capture_output=True, text=True, timeout=300, **kwargs)


def test_no_credential_in_anything_written(tmp_path, ring_world):
    with LabServers(ring_world.path, node_faults={"node-05": {"bad_login": True}}) as lab:
        env = {"RINGFSCK_SUP_LOGIN": lab.sup_login, "RINGFSCK_SUP_CA_BUNDLE": lab.ca_bundle}
        password_file = tmp_path / "sup-password"
        password_file.write_text(lab.sup_password + "\n")
        store = str(tmp_path / "store")
        outputs = [_ringfsck("ingest", "ring", "--supervisor", lab.supervisor_url, "--password-file", str(password_file), "--store", store, env=env)]
        assert outputs[0].returncode == 5 and "node-05" in outputs[0].stderr
        # The password in the URL's userinfo and in the environment: used, never shown.
        with_userinfo = lab.supervisor_url.replace("://", f"://{lab.sup_login}:{lab.sup_password}@")
        outputs.append(_ringfsck("ingest", "ring", "--supervisor", with_userinfo, "--store", store, env=env))
        outputs.append(_ringfsck("ingest", "ring", "--store", store, "--refresh",
                                 env=env | {"RINGFSCK_SUP_URL": lab.supervisor_url, "RINGFSCK_SUP_PASSWORD": lab.sup_password}))
        outputs.append(_ringfsck("ingest", "ring", "--store", store, "--ring", "NOPE",
                                 env=env | {"RINGFSCK_SUP_URL": lab.supervisor_url, "RINGFSCK_SUP_PASSWORD": lab.sup_password}))
        outputs.append(_ringfsck("ingest", "s3keys", str(ring_world.s3keys_dir), "--store", store, env={}))
        outputs.append(_ringfsck("analyze", "--assume-no-splits", "--json", "--store", store, env={}))
        outputs.append(_ringfsck("report", "-o", str(tmp_path / "store" / "report.html"), "--store", store, env={}))
        outputs.append(_ringfsck("manifest", "-o", str(tmp_path / "store" / "orphans.csv"), "--store", store, env={}))
    assert "incomplete" not in outputs[5].stdout or '"complete": false' in outputs[5].stdout
    secret = lab.sup_password
    for output in outputs:
        assert secret not in output.stdout and secret not in output.stderr, output.args
    written = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in written) and any(p.name == "summary.json" for p in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


def test_a_killed_listing_resumes_without_relisting_finished_nodes(tmp_path, ring_world):
    with LabServers(ring_world.path, node_faults={"node-03": {"slow_ms": 400}}) as lab:
        env = {"RINGFSCK_SUP_URL": lab.supervisor_url, "RINGFSCK_SUP_LOGIN": lab.sup_login, "RINGFSCK_SUP_PASSWORD": lab.sup_password,
               "RINGFSCK_SUP_CA_BUNDLE": lab.ca_bundle, "PYTHONPATH": str(ROOT)}
        store_dir = tmp_path / "store"
        process = subprocess.Popen([sys.executable, "-m", "ringfsck", "ingest", "ring", "--store", str(store_dir)],
                                   env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        store = Store(store_dir)
        while time.monotonic() < deadline:
            sources = store.sources() if (store_dir / "sources.json").exists() else []
            if sum(1 for s in sources if not s.incomplete) == 5:
                break
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        by_node = {s.details["node"]: s for s in Store(store_dir).sources()}
        assert "unfinished" in by_node["node-03"].incomplete[0] and not store.part_names("listkeys", by_node["node-03"].id)
        assert sum(1 for s in by_node.values() if not s.incomplete) == 5
        ingest_s3keys(Store.open(Settings(store=str(store_dir))), [str(ring_world.s3keys_dir)])
        summary = analyze(Store.open(Settings(store=str(store_dir))), AnalysisOptions(assume_no_splits=True)).summary
        assert any("node-03" in reason and "unfinished" in reason for reason in summary["incomplete_reasons"])
        lab.set_node_faults("node-03", slow_ms=0)
        lab.reset_stats()
        resumed = _ringfsck("ingest", "ring", "--store", str(store_dir), env=env)
        assert resumed.returncode == 0, resumed.stderr
        requested = {name: counts.get("listkeys", 0) for name, counts in lab.ring_request_counts().items() if name != "supervisor"}
        assert requested["node-03"] >= 1 and sum(requested.values()) == requested["node-03"]
    assert _listed_rows(Store.open(Settings(store=str(store_dir)))) == _dump_rows(ring_world)
    assert not any(s.incomplete for s in Store(store_dir).sources() if s.kind == "listkeys")


def test_check_takes_the_native_listing_when_a_supervisor_is_configured(tmp_path, ring_world, ring_lab):
    config = tmp_path / "config.yml"
    config.write_text(f"ring: DATA\nsup:\n  url: {ring_lab.supervisor_url}\n  login: {ring_lab.sup_login}\n"
                      f"  password: {ring_lab.sup_password}\n  ca_bundle: {ring_lab.ca_bundle}\n")
    store = tmp_path / "store"
    done = _ringfsck("check", "--config", str(config), "--s3keys", str(ring_world.s3keys_dir), "--assume-no-splits", "--store", str(store), "--json", env={})
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["analysis"]
    assert summary["complete"] and summary["counts"]["orphans"] == len(ring_world.truth["orphans"])
    assert {s.format for s in Store(store).sources() if s.kind == "listkeys"} == {RING_FORMAT}
    assert ring_lab.sup_password not in done.stdout + done.stderr


def test_the_demo_lists_the_ring_natively(tmp_path):
    from ringfsck.demo import run_demo

    result = run_demo(tmp_path, objects=200, seed=2, faults="error_rate=0.02", echo=lambda line: None)
    assert result.matches_truth
    assert {s.format for s in Store(result.store).sources() if s.kind == "listkeys"} == {RING_FORMAT}
