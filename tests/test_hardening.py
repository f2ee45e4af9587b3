"""Hardening seen under attack: credentials never shown nor stored, a read-only ``sql``, reading that never
writes, a full disk, a parent killed under its workers, SIGTERM (issue 15 point 5, issue 16, issue 17 point 4)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import _planted
from ringfsck.cli import main
from ringfsck.errors import EXIT_INPUT, EXIT_INTERRUPTED, EXIT_NO_SPACE, EXIT_TERMINATED, EXIT_USAGE
from ringfsck.redact import redact

ROOT = Path(__file__).resolve().parents[1]
USER, SECRET = "fsckadmin", "Sup3rSecretPw"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


# --- credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, shown", [
    ("http://user:pass@10.0.0.5:81", "http://10.0.0.5:81"),
    ("https://user:p@ss@host/x?y=1", "https://host/x?y=1"),  # a password holding an unencoded "@"
    ("http://user@host:81/path", "http://host:81/path"),
    ("cannot reach srebuildd at http://u:pw@127.0.0.1:9/: refused", "cannot reach srebuildd at http://127.0.0.1:9/: refused"),
    ("http://host/rebuild/arc?spass=hunter2&x=1", f"http://host/rebuild/arc?spass={'REDACTED'}&x=1"),
    ("https://b.s3/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc123", "https://b.s3/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"),
    ("/data/DATA/listkeys.csv/part-00000", "/data/DATA/listkeys.csv/part-00000"),
    ("s3://bucket/a@b/key", "s3://bucket/a@b/key"),  # an "@" in a path is no userinfo
])
def test_redact(text, shown):
    assert redact(text) == shown


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://{USER}:{SECRET}@")


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _leaks(text: str) -> bool:
    return SECRET in text or USER in text


def test_credentials_in_urls_are_never_shown_nor_stored(lab_world, lab_servers, tmp_path):
    store, report, manifest = tmp_path / "store", tmp_path / "report.html", tmp_path / "orphans.csv"
    srebuildd = ["--srebuildd", _with_credentials(lab_servers.srebuildd_url)]
    closed = f"http://{USER}:{SECRET}@127.0.0.1:{_closed_port()}"
    steps = [
        (["ingest", "listkeys", str(lab_world.listkeys_dir)], 0),
        (["ingest", "bucketd", "--url", _with_credentials(lab_servers.bucketd_url), "--raft-session", "1", "--raft-session", "2"], 0),
        (["resolve", *srebuildd], 0),
        (["analyze"], 0),
        (["size", *srebuildd], 0),
        (["report", "-o", str(report)], 0),
        (["manifest", "-o", str(manifest)], 0),
        (["delete", "--manifest", str(manifest)], 0),
        # Failures echo the URL they could not reach: without its credentials.
        (["ingest", "s3keys", str(lab_world.s3keys_dir), "--store", str(tmp_path / "other")], 0),
        (["resolve", "--srebuildd", closed, "--retries", "0", "--store", str(tmp_path / "other")], 5),
        (["ingest", "bucketd", "--url", closed, "--raft-session", "1"], 5),
        (["ingest", "s3keys", f"s3://AKIAEXAMPLE:{SECRET}@fsck/DATA/s3-bucketd/"], EXIT_USAGE),
        (["sql", "select 1", "--store", f"s3://fsck/DATA", "--cache-dir", str(tmp_path / "cache")], 5),
    ]
    env = {"RINGFSCK_S3_ENDPOINT": closed, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x", "RINGFSCK_STORE": None}
    for args, code in steps:
        result = CliRunner().invoke(main, [*args, *([] if "--store" in args else ["--store", str(store)])], env=env)
        assert result.exit_code == code, (args, result.output, result.exception)
        assert not _leaks(result.stdout + result.stderr), (args, result.output)
        if code:
            assert "127.0.0.1" in result.stderr or "s3://" in result.stderr, result.stderr  # the place is still named
    stored = [path for folder in (store, tmp_path / "other") for path in folder.rglob("*") if path.is_file()]
    stored += [report, manifest, Path(f"{manifest}.parquet")]
    assert any(path.suffix == ".parquet" for path in stored)
    for path in stored:
        assert not _leaks(path.read_bytes().decode("utf-8", "replace")), path
        if path.suffix == ".parquet":  # compressed pages hide text from a byte search
            assert not _leaks(json.dumps(pq.read_table(path).to_pylist(), default=str)), path
    sources = json.loads((store / "sources.json").read_text())
    assert {s["location"] for s in sources if s["kind"] == "bucketd"} >= {f"{lab_servers.bucketd_url}/default/bucket/{b}" for b in _buckets(store)}


def _buckets(store: Path) -> set[str]:
    return {json.loads(path.read_text())["bucket"] for path in (store / "bucketd").glob("*.json")}


# --- sql only reads, reading never writes --------------------------------------------------


@pytest.fixture
def analysed_store(tmp_path):
    _, store, _ = _planted.analyzed(tmp_path)
    return store.root


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_sql_cannot_write_files(analysed_store, tmp_path):
    orphans = next(analysed_store.glob("runs/*/orphans.parquet"))
    before = _tree(analysed_store)
    outside = tmp_path / "x.csv"
    for query in [f"COPY (SELECT 1) TO '{outside}'",
                  f"COPY (SELECT 1 AS ring_key) TO '{orphans}' (FORMAT parquet)",
                  f"select 1; COPY (SELECT 1) TO '{analysed_store / 'tables' / 'x.csv'}'",
                  f"ATTACH '{analysed_store / 'db.duckdb'}'",
                  "CREATE TABLE t AS SELECT 1",
                  "SET enable_external_access = true",
                  f"select * from read_csv('{ROOT / 'pyproject.toml'}')",  # reading outside the store, too
                  ]:
        line = one_error_line(run("sql", query, "--store", str(analysed_store)), EXIT_INPUT)
        assert "only reads" in line or "Permission" in line, line
    assert not outside.exists()
    assert _tree(analysed_store) == before
    assert run("sql", "select count(*) from orphans", "--store", str(analysed_store)).exit_code == 0


def test_read_only_commands_never_create_a_store(tmp_path):
    missing = tmp_path / "mistyped"
    for args in (["sql", "select 1"], ["report", "-o", str(tmp_path / "r.html")]):
        line = one_error_line(run(*args, "--store", str(missing)), EXIT_INPUT)
        assert f"no store at {missing}" in line
    assert not missing.exists() and not (tmp_path / "r.html").exists()


def test_reading_never_writes(analysed_store, tmp_path):
    from ringfsck import Store, load_settings

    before = _tree(analysed_store)
    store = Store.open(load_settings(None, {"store": str(analysed_store)}, env={}), create=False)
    assert len(store.store_id) == 32
    store.connect().execute("select count(*) from orphans").fetchall()
    assert run("report", "-o", str(tmp_path / "r.html"), "--store", str(analysed_store)).exit_code == 0
    assert run("sql", "select count(*) from gaps", "--store", str(analysed_store)).exit_code == 0
    assert _tree(analysed_store) == before


def test_an_unknown_view_lists_the_views(analysed_store):
    from ringfsck.cli.query import VIEWS

    line = one_error_line(run("sql", "select * from nosuchview", "--store", str(analysed_store)), EXIT_INPUT)
    assert "nosuchview" in line and f"Views: {', '.join(VIEWS)}" in line


def test_sql_help_the_readme_and_the_store_list_the_same_views(analysed_store):
    from ringfsck.cli.query import VIEWS

    help_text = " ".join(run("sql", "--help").stdout.split())
    listed = re.search(r"Views: ([a-z0-9_, ]+)\.", help_text).group(1).split(", ")
    readme = (ROOT / "README.md").read_text()
    table = re.search(r"\| view \| columns \|\n\|---\|---\|\n((?:\|.*\n)+)", readme).group(1)
    documented = [re.match(r"\| `(\w+)` \|", row).group(1) for row in table.splitlines()]
    con = run_catalog(analysed_store)
    assert sorted(listed) == sorted(documented) == sorted(VIEWS) == sorted(con)


def run_catalog(store: Path) -> list[str]:
    """The views and tables a ``ringfsck sql`` query sees (internal *_log views aside)."""
    from ringfsck import Store, load_settings

    con = Store.open(load_settings(None, {"store": str(store)}, env={}), create=False).connect(read_only=True)
    names = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal UNION SELECT table_name FROM duckdb_tables()").fetchall()
    return [name for (name,) in names if not name.endswith("_log")]


# --- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and the right to mount), and how to fill it up and free it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    filler = mount / "filler"

    def fill(leave: int = 8192) -> None:
        with open(filler, "ab") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        os.truncate(filler, max(0, filler.stat().st_size - leave))

    def free() -> None:
        filler.unlink()

    yield mount, fill, free
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _half_written(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.name.endswith(".tmp") or (p.parent.name == "runs" and p.is_dir() and not (p / "summary.json").exists())]


def test_a_full_disk_during_ingest_and_analyze(small_disk, tmp_path):
    mount, fill, free = small_disk
    world = _planted.build()
    listkeys, exports = world.write(tmp_path)
    store = mount / "store"
    assert run("ingest", "listkeys", str(listkeys), "--store", str(store)).exit_code == 0
    fill(leave=0)
    line = one_error_line(run("ingest", "s3keys", str(exports), "--store", str(store)), EXIT_NO_SPACE)
    assert f"{store}/tables/s3keys/" in line and "no space left on device" in line
    assert not _half_written(store) and not list((store / "tables").glob("s3keys/*.parquet"))
    assert {s["kind"] for s in json.loads((store / "sources.json").read_text())} == {"listkeys"}
    free()
    assert run("ingest", "s3keys", str(exports), "--store", str(store)).exit_code == 0
    assert run("analyze", "--assume-no-splits", "--store", str(store)).exit_code == 0
    latest = (store / "runs" / "LATEST").read_text()
    fill()
    line = one_error_line(run("analyze", "--assume-no-splits", "--store", str(store)), EXIT_NO_SPACE)
    assert f"{store}/runs/" in line and "no space left on device" in line
    assert not _half_written(store) and (store / "runs" / "LATEST").read_text() == latest
    assert len([p for p in (store / "runs").iterdir() if p.is_dir()]) == 1
    free()
    result = run("analyze", "--assume-no-splits", "--store", str(store), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["counts"]["orphans"] == len(world.orphans)


# --- processes: a parent killed under its workers, SIGTERM ------------------------------------


def _big_listings(tmp_path: Path, files: int = 3, rows: int = 400_000) -> list[Path]:
    """Node listings big enough that ingest forks its workers (32 MiB in all)."""
    import random

    rng = random.Random(5)
    paths = []
    for n in range(files):
        path = tmp_path / f"node-{n}.csv"
        with open(path, "w") as handle:
            for _ in range(rows):
                main_chunk = f"{rng.getrandbits(160):040X}"
                handle.write(f"{main_chunk},{main_chunk},disk{n},0\n")
        paths.append(path)
    return paths


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _start_ingest(store: Path, paths: list[Path]) -> tuple[subprocess.Popen, list[int]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RINGFSCK_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "ringfsck", "ingest", "listkeys", *map(str, paths), "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(workers := _children(proc.pid)) < 2:
        time.sleep(0.05)
    assert len(workers) >= 2, "ingest forked no workers"
    return proc, workers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers are used on Linux only")
def test_workers_exit_when_the_ingest_parent_is_killed(tmp_path):
    proc, workers = _start_ingest(tmp_path / "store", _big_listings(tmp_path))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(map(_alive, workers)):
        time.sleep(0.05)
    alive = [pid for pid in workers if _alive(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "workers outlived their parent"


def _lock_is_free(store: Path) -> bool:
    with open(store / ".lock", "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked workers are used on Linux only")
@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, EXIT_TERMINATED, "Terminated"), (signal.SIGINT, EXIT_INTERRUPTED, "Interrupted")])
def test_sigterm_stops_an_ingest_like_ctrl_c(tmp_path, signum, code, word):
    store = tmp_path / "store"
    proc, workers = _start_ingest(store, _big_listings(tmp_path))
    os.kill(proc.pid, signum)  # the parent only, as kill or a service manager does
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"{word}: ") and "ingested before the interrupt is recorded" in last, stderr
    assert "run the same command again" in last and str(store) in last, stderr
    assert "Traceback" not in stderr, stderr
    assert not any(map(_alive, workers))
    assert _lock_is_free(store)
    assert not [p for p in store.rglob("*.tmp")]


def test_sigterm_stops_resolve_with_its_answers_saved(lab_world, tmp_path):
    from ringfsck.lab import LabServers

    store = tmp_path / "store"
    assert run("ingest", "s3keys", str(lab_world.s3keys_dir), "--store", str(store)).exit_code == 0
    with LabServers(lab_world.path, srebuildd_faults={"latency_ms": 100}) as lab:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "RINGFSCK_PROGRESS": "0"}
        command = [sys.executable, "-m", "ringfsck", "resolve", "--store", str(store), "--srebuildd", lab.srebuildd_url, "--concurrency", "2"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(lab.request_counts("srebuildd").values()) < 20:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_TERMINATED, stderr
        assert "Traceback" not in stderr and "answers received are saved" in stderr, stderr
        assert _lock_is_free(store)
        asked = sum(lab.request_counts("srebuildd").values())
        saved = run("sql", "select count(*) from splits", "--store", str(store), "--format", "csv").stdout.split()[1]
        assert int(saved) > 0
        lab.set_faults("srebuildd", latency_ms=0)
        result = run("resolve", "--store", str(store), "--srebuildd", lab.srebuildd_url)
        assert result.exit_code == 0, result.output
        assert f"{int(saved):,} already final" in result.stdout
    assert asked >= int(saved)


def test_a_writer_removes_what_a_killed_writer_left_half_written(analysed_store, tmp_path):
    """A kill -9 leaves a temporary part or an unpublished run folder: the next writer removes them, nothing else."""
    stale_part = analysed_store / "tables" / "s3keys" / ".0123456789abcdef.parquet.0f0f.tmp"
    stale_part.write_bytes(b"PAR1 half")
    stale_run = analysed_store / "runs" / "20260101T000000Z-dead00"
    stale_run.mkdir()
    (stale_run / "orphans.parquet").write_bytes(b"PAR1 half")
    published = sorted(p.name for p in (analysed_store / "runs").iterdir() if (p / "summary.json").exists())
    assert run("sql", "select count(*) from orphans", "--store", str(analysed_store)).exit_code == 0
    assert stale_part.exists() and stale_run.exists()  # a reader changes nothing
    assert run("analyze", "--assume-no-splits", "--store", str(analysed_store)).exit_code == 0
    assert not stale_part.exists() and not stale_run.exists()
    assert set(published) < {p.name for p in (analysed_store / "runs").iterdir() if (p / "summary.json").exists()}


def test_a_full_disk_is_named_by_the_innermost_part_written(tmp_path):
    """A part written while another is open (an export's keys while its rejects are): the full disk names the part that hit it."""
    import errno

    from ringfsck.config import Settings
    from ringfsck.errors import NoSpaceError
    from ringfsck.store import Store

    store = Store.open(Settings(store=str(tmp_path / "store")))
    with pytest.raises(NoSpaceError) as info, store.writing_part("rejects", "outer"), store.writing_part("s3keys", "inner") as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert "/tables/s3keys/" in str(info.value) and "rejects" not in str(info.value)
