"""The store and the inputs on S3 (moto's server on 127.0.0.1): the whole job, same results as a local store, no secret anywhere."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from _s3 import bucket_objects, closed_port, upload_tree
from ringfsck import Store, load_settings
from ringfsck.cli import main
from ringfsck.deleter import read_journal
from ringfsck.lab import LabServers

CONFIG_ACCESS_KEY = "AKIACONFIGKEY7Q2W9E4R"
CONFIG_SECRET_KEY = "cfg-Secret/Zq8+wV3nT5yL1mK0pR7sU2xB6"


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, f"ringfsck {' '.join(args)}\n{result.output}\n{result.exception!r}"
    return result


def pipeline(options: list[str], listkeys: str, s3keys: str, report: str, manifest: str, lab: LabServers) -> list:
    """The operator's whole job through the CLI, as the README tells it."""
    srebuildd = ["--srebuildd", lab.srebuildd_url]
    steps = [
        ["ingest", "listkeys", *([listkeys] if listkeys else [])],
        ["ingest", "s3keys", s3keys],
        ["resolve", *srebuildd],
        ["analyze"],
        ["size", *srebuildd],
        ["report", "-o", report],
        ["manifest", "-o", manifest],
        ["delete", "--manifest", manifest],
        ["delete", "--manifest", manifest, "--execute", *srebuildd],
        ["delete", "--manifest", manifest],
    ]
    return [cli(*step, *options) for step in steps]


def results(store: Store) -> dict:
    con = store.connect()
    query = lambda sql: sorted(con.execute(sql).fetchall())  # noqa: E731
    summary = store.run_summary()
    return {
        "counts": summary["counts"],
        "complete": summary["complete"],
        "orphans": query("SELECT ring_key, protection, schema, chunks FROM orphans"),
        "sizes": query("SELECT ring_key, size, raw_size, status FROM orphan_sizes"),
        "gaps": query("SELECT bucket, object_key, sproxyd_key, ring_key, status FROM gaps"),
        "debris": query("SELECT ring_key FROM debris"),
        "splits": query("SELECT input_key, status, is_split, subkeys FROM splits"),
    }


@pytest.fixture(scope="module")
def runs(lab_world, s3_server, tmp_path_factory):
    """The same job twice: inputs and store in a local directory, then inputs and store on S3."""
    from _pytest.monkeypatch import MonkeyPatch
    from conftest import S3Sandbox

    tmp = tmp_path_factory.mktemp("s3-pipeline")
    local = tmp / "local"
    (local / "config.yml").parent.mkdir()
    (local / "config.yml").write_text(f"store: {local / 'store'}\narc_protection: 8+4\ncos_protection: 2\n")
    with LabServers(lab_world.path) as lab:
        local_out = pipeline(["--config", str(local / "config.yml")], str(lab_world.listkeys_dir), str(lab_world.s3keys_dir),
                             str(local / "report.html"), str(local / "orphans.csv"), lab)
        local_deleted = lab.deleted()

    with MonkeyPatch.context() as patch:
        for name, value in {"AWS_ACCESS_KEY_ID": S3Sandbox.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3Sandbox.SECRET_KEY,
                            "AWS_CONFIG_FILE": str(tmp / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "none"),
                            "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1",
                            # The config's endpoint must win over the environment's, which leads nowhere.
                            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"}.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "RINGFSCK_CACHE_DIR", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        sandbox = S3Sandbox(s3_server, "fsck-pipeline", {})
        # The reference's layout: listkeys.csv/ (Spark parts, a _SUCCESS marker, a .crc, one part gzipped) and s3-bucketd/.
        nodes = sorted(lab_world.listkeys_dir.iterdir())
        for path in nodes[:-1]:
            sandbox.client.upload_file(str(path), sandbox.bucket, f"DATA/listkeys.csv/{path.name}")
        sandbox.client.put_object(Bucket=sandbox.bucket, Key=f"DATA/listkeys.csv/{nodes[-1].name}.gz", Body=gzip.compress(nodes[-1].read_bytes()))
        sandbox.client.put_object(Bucket=sandbox.bucket, Key="DATA/listkeys.csv/_SUCCESS", Body=b"")
        sandbox.client.put_object(Bucket=sandbox.bucket, Key="DATA/listkeys.csv/.node-00.csv.crc", Body=b"not a listing")
        upload_tree(sandbox.client, lab_world.s3keys_dir, sandbox.bucket, "DATA/s3-bucketd")
        config = tmp / "config.yml"
        config.write_text(
            "# the reference's config.yml\n"
            f"ring: DATA\npath: {sandbox.bucket}\nprotocol: s3a\narc_protection: '8+4'\ncos_protection: 2\n"
            f"cache_dir: {tmp / 'cache'}\n"
            f"s3:\n  endpoint: {s3_server.removeprefix('http://')}\n  access_key: {CONFIG_ACCESS_KEY}\n  secret_key: {CONFIG_SECRET_KEY}\n"
        )
        records: list[logging.LogRecord] = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = records.append  # type: ignore[method-assign]
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with LabServers(lab_world.path) as lab:
                s3_out = pipeline(["--config", str(config)], "", sandbox.url("DATA/s3-bucketd/"),
                                  sandbox.url("DATA/report.html"), sandbox.url("DATA/orphans.csv"), lab)
                s3_deleted = lab.deleted()
            # Another machine: nothing but the bucket.
            fresh = Store.open(load_settings(config, {"cache_dir": str(tmp / "fresh-cache")}, env={}), create=False)
            s3_results = results(fresh)
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
        yield {
            "local": results(Store.open(load_settings(local / "config.yml", env={}), create=False)),
            "local_deleted": local_deleted,
            "local_out": local_out,
            "s3": s3_results,
            "s3_deleted": s3_deleted,
            "s3_out": s3_out,
            "fresh": fresh,
            "sandbox": sandbox,
            "config": config,
            "records": records,
            "cache_dirs": [tmp / "cache", tmp / "fresh-cache"],
        }


def test_the_whole_job_on_s3_gives_the_local_results(runs, lab_world):
    local, remote = runs["local"], runs["s3"]
    assert remote["complete"] and local["complete"]
    assert remote == local
    orphans = {row[0] for row in remote["orphans"]}
    assert orphans == set(lab_world.truth["orphans"])
    assert runs["s3_deleted"] == runs["local_deleted"] == orphans
    assert sum(size for _, size, _, _ in remote["sizes"]) == sum(lab_world.truth["orphan_sizes"].values())


def test_everything_lives_in_the_bucket_in_the_reference_layout(runs):
    sandbox = runs["sandbox"]
    keys = sandbox.keys("DATA/")
    run_id = runs["fresh"].latest_run_id()
    for expected in ("DATA/store.json", "DATA/sources.json", "DATA/runs/LATEST", f"DATA/runs/{run_id}/summary.json",
                     f"DATA/runs/{run_id}/orphans.parquet", "DATA/report.html", "DATA/orphans.csv", "DATA/orphans.csv.parquet"):
        assert expected in keys
    for table in ("listkeys", "s3keys", "splits", "sizes"):
        assert any(k.startswith(f"DATA/tables/{table}/") for k in keys), table
    journal = [k for k in keys if k.startswith("DATA/journal/")]
    assert journal and all(k.endswith(".jsonl") and k.count("/") == 3 for k in journal)  # DATA/journal/<manifest>/<segment>
    # The journal read back by another machine confirms every deletion.
    outcomes = read_journal(runs["fresh"].root / "journal" / journal[0].split("/")[2])
    assert set(outcomes) == runs["s3_deleted"] and set(outcomes.values()) == {"deleted"}
    # The inputs: markers and hidden files skipped, the gzip part read, locations are s3:// URLs.
    sources = runs["fresh"].sources()
    assert sorted(s.location for s in sources if s.kind == "listkeys") == [
        sandbox.url(k) for k in keys if k.startswith("DATA/listkeys.csv/node-")
    ]
    assert all(s.checksum.startswith("s3etag:") for s in sources)
    assert "s3://fsck-pipeline/DATA/journal/" in runs["s3_out"][-2].output
    assert "nothing left to delete" in runs["s3_out"][-1].output
    html = sandbox.client.get_object(Bucket=sandbox.bucket, Key="DATA/report.html")["Body"].read()
    assert html.startswith(b"<!DOCTYPE html>") or b"<html" in html[:200]


def test_no_credential_appears_in_any_output_log_or_file(runs):
    from conftest import S3Sandbox

    needles = [n.encode() for n in (CONFIG_SECRET_KEY, CONFIG_ACCESS_KEY, S3Sandbox.SECRET_KEY, S3Sandbox.ACCESS_KEY)]

    def leaks(data: bytes) -> list[bytes]:
        return [n for n in needles if n in data]

    assert leaks(runs["config"].read_bytes()), "the scan must find what the config holds"
    for result in runs["s3_out"]:
        assert not leaks((result.output + result.stderr).encode()), result.output
    records = runs["records"]
    assert any(r.name.startswith("urllib3") for r in records), "the S3 traffic was logged at DEBUG, and scanned"
    for record in records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        assert not leaks(text.encode()), (record.name, text[:200])
    files = [p for directory in runs["cache_dirs"] for p in directory.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        assert not leaks(path.read_bytes()), path
    sandbox = runs["sandbox"]
    objects = 0
    for key, data in bucket_objects(sandbox.client, sandbox.bucket):
        assert not leaks(data), key
        objects += 1
    assert objects > 20


def test_reingesting_unchanged_objects_reads_nothing_and_a_changed_object_replaces_its_part(s3, lab_world, tmp_path):
    store = f"--store={s3.url('DATA')}"
    node = sorted(lab_world.listkeys_dir.iterdir())[0]
    s3.client.upload_file(str(node), s3.bucket, "DATA/listkeys.csv/part-00000")
    first = cli("ingest", "listkeys", s3.url("DATA/listkeys.csv"), store, "--json")
    assert '"status": "ingested"' in first.output
    again = cli("ingest", "listkeys", s3.url("DATA/listkeys.csv/"), store, "--json")
    assert '"status": "unchanged"' in again.output
    lines = node.read_text().splitlines(keepends=True)
    s3.client.put_object(Bucket=s3.bucket, Key="DATA/listkeys.csv/part-00000", Body="".join(lines[: len(lines) // 2]).encode())
    changed = cli("ingest", "listkeys", s3.url("DATA/listkeys.csv/part-00000"), store, "--json")
    assert '"status": "ingested"' in changed.output
    # The same content under another key is a duplicate, as for local files.
    s3.client.copy_object(Bucket=s3.bucket, Key="DATA/copy/part-00000", CopySource={"Bucket": s3.bucket, "Key": "DATA/listkeys.csv/part-00000"})
    duplicate = cli("ingest", "listkeys", s3.url("DATA/copy/"), store, "--json")
    assert '"status": "duplicate"' in duplicate.output
    rows = cli("sql", "select count(*) as n from listkeys", store, "--format", "csv").output.split()
    assert rows == ["n", str(sum(1 for line in lines[: len(lines) // 2] if not line.startswith("Use")))]


def test_the_mirror_follows_s3_which_is_the_truth(s3, lab_world, tmp_path):
    mirror_a = load_settings(None, {"store": s3.url("DATA"), "cache_dir": str(tmp_path / "a")}, env={})
    cli("ingest", "listkeys", str(lab_world.listkeys_dir), f"--store={s3.url('DATA')}", f"--cache-dir={tmp_path / 'a'}")
    parts = s3.keys("DATA/tables/listkeys/")
    assert len(parts) == len(list(lab_world.listkeys_dir.iterdir()))
    # Another machine removes a part and rewrites sources.json: both changes reach S3.
    store_b = Store.open(load_settings(None, {"store": s3.url("DATA"), "cache_dir": str(tmp_path / "b")}, env={}))
    store_b.remove_part("listkeys", Path(parts[0]).stem)
    assert parts[0] not in s3.keys("DATA/tables/listkeys/")
    changed = store_b.sources()[0]
    changed.rows = 1
    store_b.save_source(changed)
    # In the first mirror: a part written but never published (a crash before the upload),
    # and a journal segment whose upload the crash prevented.
    stray = tmp_path / "a" / "tables" / "listkeys" / "stray.parquet"
    stray.write_bytes(b"PAR1")
    segment = tmp_path / "a" / "journal" / "0123abcd" / "20260101T000000000000-deadbeef.jsonl"
    segment.parent.mkdir(parents=True)
    segment.write_text('{"ring_key": "' + "A" * 40 + '", "outcome": "deleted"}\n')
    reopened = Store.open(mirror_a)
    assert not stray.exists()
    assert sorted(p.name for p in (reopened.root / "tables" / "listkeys").glob("*.parquet")) == sorted(Path(k).name for k in parts[1:])
    assert {s.id: s.rows for s in reopened.sources()}[changed.id] == 1
    assert "DATA/journal/0123abcd/20260101T000000000000-deadbeef.jsonl" in s3.keys("DATA/journal/")
    # Nothing changed since: the next open downloads nothing.
    before = {p: p.stat().st_mtime_ns for p in reopened.root.rglob("*.parquet")}
    Store.open(mirror_a)
    assert {p: p.stat().st_mtime_ns for p in reopened.root.rglob("*.parquet")} == before


def test_a_cache_dir_holding_a_local_store_is_refused(s3, tmp_path):
    local = tmp_path / "local-store"
    Store.open(load_settings(None, {"store": str(local)}, env={}))  # a local store (sql no longer creates one)
    result = CliRunner().invoke(main, ["sql", "select 1", f"--store={s3.url('DATA')}", f"--cache-dir={local}"])
    assert result.exit_code == 2 and "not a mirror of" in result.stderr
