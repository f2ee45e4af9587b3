"""The command line: one-line errors with documented exit codes, help with examples, sql formats."""

from __future__ import annotations

import csv
import gzip
import io
import json

import pytest
from click.testing import CliRunner

import _planted
from ringfsck.cli import main
from ringfsck.errors import EXIT_INPUT, EXIT_USAGE


def run(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env)
    return result


def assert_one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def store(tmp_path):
    return str(tmp_path / "store")


def test_missing_path(store, tmp_path):
    missing = tmp_path / "nowhere.csv"
    assert_one_line_error(run("ingest", "listkeys", str(missing), "--store", store), EXIT_INPUT, str(missing), "no such file")


def test_empty_input(store, tmp_path):
    empty = tmp_path / "node.csv"
    empty.write_text("")
    assert_one_line_error(run("ingest", "listkeys", str(empty), "--store", store), EXIT_INPUT, str(empty), "empty input")


def test_unreadable_gzip(store, tmp_path):
    bad = tmp_path / "node.csv.gz"
    bad.write_bytes(gzip.compress(b"x" * 10000)[:40])
    assert_one_line_error(run("ingest", "listkeys", str(bad), "--store", store), EXIT_INPUT, str(bad), "unreadable gzip")


def test_wrong_arc_value(store):
    assert_one_line_error(run("analyze", "--arc", "8x4", "--store", store), EXIT_USAGE, "8x4", "K+M")


def test_config_of_the_wrong_shape(store, tmp_path):
    config = tmp_path / "config.yml"
    config.write_text("arc_protection: [8, 4]\n")
    assert_one_line_error(run("analyze", "--config", str(config), "--store", store), EXIT_USAGE, str(config), "arc_protection")


def test_sql_on_a_missing_store_is_one_line(store):
    assert_one_line_error(run("sql", "select * from nothing_here", "--store", store), EXIT_INPUT, f"no store at {store}")


def test_every_command_has_help_with_examples():
    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, command in walk(main, []):
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        if not hasattr(command, "commands"):
            assert "Example" in result.output, f"ringfsck {' '.join(path)} --help has no examples"


@pytest.fixture
def analysed_store(tmp_path):
    world = _planted.build()
    listkeys, exports = world.write(tmp_path)
    store = str(tmp_path / "store")
    assert run("ingest", "listkeys", str(listkeys), "--store", store).exit_code == 0
    assert run("ingest", "s3keys", str(exports), "--store", store).exit_code == 0
    result = run("analyze", "--assume-no-splits", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    return world, store, json.loads(result.stdout)


def test_sql_formats(analysed_store):
    world, store, summary = analysed_store
    query = "select ring_key, protection from orphans order by ring_key"
    as_csv = run("sql", query, "--format", "csv", "--store", store).stdout
    parsed = list(csv.DictReader(io.StringIO(as_csv)))
    assert {row["ring_key"] for row in parsed} == world.orphans
    as_json = json.loads(run("sql", query, "--format", "json", "--store", store).stdout)
    assert [row["ring_key"] for row in as_json] == [row["ring_key"] for row in parsed]
    ndjson = run("sql", query, "--format", "ndjson", "--store", store).stdout.splitlines()
    assert len(ndjson) == len(world.orphans)
    table = run("sql", "select count(*) as n from orphans", "--store", store).stdout
    assert str(len(world.orphans)) in table
    assert summary["counts"]["orphans"] == len(world.orphans)


def test_bad_sql_is_one_line(analysed_store):
    _, store, _ = analysed_store
    assert_one_line_error(run("sql", "select * from nothing_here", "--store", store), EXIT_INPUT, "nothing_here", "Views: listkeys")


def test_sql_object_keys_round_trip_in_json(analysed_store):
    _, store, _ = analysed_store
    rows = json.loads(run("sql", "select object_key from s3keys", "--format", "json", "--store", store).stdout)
    assert any(row["object_key"].startswith("été/ünïcödé/日本語/😀") for row in rows)


def test_ingest_reports_rejects_on_stderr(tmp_path):
    store = str(tmp_path / "store")
    node = tmp_path / "node.csv"
    node.write_text("A" * 40 + "," + "B" * 40 + ",d,0\nbroken line\n")
    result = run("ingest", "listkeys", str(node), "--store", store)
    assert result.exit_code == 0
    assert "1 ingested" in result.stdout and "1 rows" in result.stdout
    assert "1 row(s) rejected" in result.stderr


def test_a_second_writer_is_refused_readers_are_not(tmp_path):
    from ringfsck.config import Settings
    from ringfsck.errors import EXIT_REFUSED
    from ringfsck.store import Store

    world = _planted.build()
    listkeys, _ = world.write(tmp_path)
    store_dir = str(tmp_path / "store")
    running = Store.open(Settings(store=store_dir))
    running.lock("ringfsck delete")  # as a command still running would hold it
    assert_one_line_error(run("ingest", "listkeys", str(listkeys), "--store", store_dir), EXIT_REFUSED,
                          store_dir, "in use by ringfsck delete (pid")
    assert run("sql", "select count(*) from listkeys", "--store", store_dir).exit_code == 0
    running.unlock()
    assert run("ingest", "listkeys", str(listkeys), "--store", store_dir).exit_code == 0
    # Each command lets go when it ends, failed or not: the next one runs.
    assert run("ingest", "listkeys", str(tmp_path / "missing.csv"), "--store", store_dir).exit_code != 0
    assert run("analyze", "--assume-no-splits", "--store", store_dir).exit_code == 0


def test_a_lock_that_cannot_be_taken_is_one_line(tmp_path):
    from ringfsck.config import Settings
    from ringfsck.store import LOCK_FILE, Store

    world = _planted.build()
    listkeys, _ = world.write(tmp_path)
    store_dir = str(tmp_path / "store")
    (Store.open(Settings(store=store_dir)).root / LOCK_FILE).mkdir()  # something in the way
    assert_one_line_error(run("ingest", "listkeys", str(listkeys), "--store", store_dir), EXIT_INPUT, "cannot take the writer lock")


# --- running as a user of git, docker and aws expects ---

def test_no_arguments_prints_the_help_and_exits_0():
    result = run()
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout and "Commands:" in result.stdout


def test_a_group_without_its_subcommand_prints_its_help():
    result = run("ingest")
    assert result.exit_code == 0, result.output
    assert "listkeys" in result.stdout


def _ingested_into(tmp_path, *args, env=None) -> list[str]:
    """Ingest a listing with these arguments; which of tmp_path's stores received it."""
    listkeys = tmp_path / "inputs" / "listkeys"
    if not listkeys.exists():
        _planted.build().write(tmp_path / "inputs")
    result = run(*args[:args.index("LISTKEYS")], str(listkeys), *args[args.index("LISTKEYS") + 1:], env=env)
    assert result.exit_code == 0, result.output
    return sorted(path.parent.name for path in tmp_path.glob("*/store.json"))


def test_global_store_before_the_subcommand(tmp_path):
    assert _ingested_into(tmp_path, "--store", str(tmp_path / "global"), "ingest", "listkeys", "LISTKEYS") == ["global"]
    result = run("--store", str(tmp_path / "global"), "analyze", "--assume-no-splits", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["listkeys_rows"] > 0


def test_the_subcommand_store_wins_over_the_global_one(tmp_path):
    args = ("--store", str(tmp_path / "global"), "ingest", "listkeys", "LISTKEYS", "--store", str(tmp_path / "local"))
    assert _ingested_into(tmp_path, *args) == ["local"]


def test_the_global_store_wins_over_the_environment_and_the_config(tmp_path):
    config = tmp_path / "ringfsck.yml"
    config.write_text(f"store: {tmp_path / 'from-config'}\n")
    env = {"RINGFSCK_STORE": str(tmp_path / "from-env")}
    args = ("--config", str(config), "--store", str(tmp_path / "global"), "ingest", "listkeys", "LISTKEYS")
    assert _ingested_into(tmp_path, *args, env=env) == ["global"]


def test_ringfsck_store_from_the_environment_wins_over_the_config(tmp_path):
    config = tmp_path / "ringfsck.yml"
    config.write_text(f"store: {tmp_path / 'from-config'}\n")
    env = {"RINGFSCK_STORE": str(tmp_path / "from-env")}
    assert _ingested_into(tmp_path, "--config", str(config), "ingest", "listkeys", "LISTKEYS", env=env) == ["from-env"]
    assert _ingested_into(tmp_path, "ingest", "listkeys", "LISTKEYS", "--config", str(config), env=env) == ["from-env"]


def test_global_config_before_check(tmp_path):
    world = _planted.build()
    listkeys, exports = world.write(tmp_path / "inputs")
    config = tmp_path / "fsck.yml"
    config.write_text(f"store: {tmp_path / 'from-config'}\n")
    result = run("--config", str(config), "check", "--listkeys", str(listkeys), "--s3keys", str(exports), "--assume-no-splits", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["analysis"]["counts"]["orphans"] == len(world.orphans)
    assert (tmp_path / "from-config" / "store.json").is_file()


@pytest.mark.parametrize("url", ["htp://10.0.0.5:81", "http://", "http://10.0.0.5:port", "10.0.0.5:99999", "http://10.0.0.5:81 x"])
def test_a_malformed_srebuildd_url_is_a_usage_error(store, url):
    assert_one_line_error(run("resolve", "--srebuildd", url, "--store", store), EXIT_USAGE, "srebuildd")


def test_a_malformed_bucketd_url_is_a_usage_error(store):
    assert_one_line_error(run("ingest", "bucketd", "--url", "ftp://127.0.0.1:9000", "--bucket", "b", "--store", store), EXIT_USAGE, "bucketd")


@pytest.mark.parametrize(("layer", "expected"), [
    ({"srebuildd_ip": "10.0.0.5"}, "http://10.0.0.5:81"),
    ({"srebuildd_ip": "10.0.0.5", "srebuildd_port": 8181}, "http://10.0.0.5:8181"),
    ({"srebuildd_ip": "10.0.0.5:8282", "srebuildd_port": 8181}, "http://10.0.0.5:8282"),
    ({"srebuildd_url": "10.0.0.5:8383"}, "http://10.0.0.5:8383"),
    ({"srebuildd_url": "https://srebuildd.example:8443/"}, "https://srebuildd.example:8443"),
    ({"srebuildd_url": "http://[::1]:81"}, "http://[::1]:81"),
])
def test_srebuildd_host_port_forms(layer, expected):
    from ringfsck.config import load_settings

    assert load_settings(None, layer, env={}, cwd=None).srebuildd_base_url == expected


@pytest.mark.parametrize("layer", [{"srebuildd_ip": "http://10.0.0.5:81/x y"}, {"srebuildd_ip": "10.0.0.5:0"}, {"srebuildd_url": "10.0.0.5:"}])
def test_malformed_srebuildd_settings_name_the_key(layer):
    from ringfsck.config import load_settings
    from ringfsck.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(layer))):
        load_settings(None, layer, env={})


def test_skipped_lines_are_named_in_words(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    node = tmp_path / "node.csv"
    node.write_text("Use ringsh\nUse ringsh again\n" + "A" * 40 + "," + "B" * 40 + ",d,0\n")
    result = run("ingest", "listkeys", str(node))
    assert result.exit_code == 0, result.output
    assert "skipped 2 ringsh noise lines" in result.stdout
    # ...and it says where the store is, absolute (the default store of this folder)
    assert f"store {tmp_path / 'ringfsck-store'}" in result.stdout


def test_check_says_where_the_store_is(tmp_path, monkeypatch):
    world = _planted.build()
    listkeys, exports = world.write(tmp_path / "inputs")
    monkeypatch.chdir(tmp_path)
    result = run("check", "--listkeys", str(listkeys), "--s3keys", str(exports), "--assume-no-splits", "--store", "here")
    assert result.exit_code == 0, result.output
    assert f"store {tmp_path / 'here'}" in result.stdout.splitlines()[-1]


def test_ingest_bucketd_takes_timeout_and_retries_like_the_other_network_commands(store):
    import socket
    import time

    with socket.socket() as listener:  # accepts connections, never answers: every request times out
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        result = run("ingest", "bucketd", "--url", url, "--bucket", "b", "--timeout", "0.2", "--retries", "0", "--store", store)
    assert result.exit_code == 5, result.output
    assert time.monotonic() - started < 10
    help_text = run("ingest", "bucketd", "--help").stdout
    for default in ("1,000 keys per listing page", "64 requests in flight", "30 s per request", "5 retries"):
        assert default in help_text
