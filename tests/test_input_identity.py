"""Inputs by identity (docs/domain.md section 8): real paths, unreadable inputs are errors, files that change while read."""

from __future__ import annotations

import os
import socket

import pytest
from click.testing import CliRunner

from ringfsck.config import Settings
from ringfsck.errors import EXIT_INPUT, InputError
from ringfsck.ingest import ingest_inputs, ingest_listkeys, ingest_s3keys
from ringfsck.store import Store

MAIN = "8000004F3F3A54FFEADF8C00000000511470C070"
KEY = "BDE4B9BBEB45711EC2F1A9C78F6BCD59E02C6220"


def listkeys_text(n: int, start: int = 0) -> str:
    return "".join(f"{i:040X},{MAIN},g1disk1,0\n" for i in range(start, start + n))


def _rows(store: Store, query: str) -> list[tuple]:
    return store.connect().execute(query).fetchall()


@pytest.fixture
def store(tmp_path):
    return Store.open(Settings(store=str(tmp_path / "store")))


def test_the_same_relative_path_in_two_directories_is_two_sources(store, tmp_path, monkeypatch):
    for node, start in (("one", 0), ("two", 100)):
        (tmp_path / node).mkdir()
        (tmp_path / node / "node.csv").write_text(listkeys_text(10, start))
        monkeypatch.chdir(tmp_path / node)
        ingest_listkeys(store, ["node.csv"])
    assert sorted(s.location for s in store.sources()) == [str(tmp_path / "one" / "node.csv"), str(tmp_path / "two" / "node.csv")]
    assert _rows(store, "SELECT count(*) FROM listkeys") == [(20,)]


def test_one_file_named_three_ways_is_one_source(store, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    real = tmp_path / "data" / "node.csv"
    real.write_text(listkeys_text(10))
    (tmp_path / "link.csv").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    report = ingest_listkeys(store, ["data/node.csv", str(real), "link.csv"])
    assert [(f.location, f.status) for f in report.files] == [(str(real), "ingested")]
    assert ingest_listkeys(store, ["link.csv"]).files[0].status == "unchanged"
    assert [s.location for s in store.sources()] == [str(real)]


def test_a_changed_file_replaces_only_what_it_brought(store, tmp_path, monkeypatch):
    for node, start in (("one", 0), ("two", 100)):
        (tmp_path / node).mkdir()
        (tmp_path / node / "node.csv").write_text(listkeys_text(10, start))
    monkeypatch.chdir(tmp_path / "one")
    ingest_listkeys(store, ["node.csv", "../two/node.csv"])
    (tmp_path / "one" / "node.csv").write_text(listkeys_text(3))
    assert ingest_listkeys(store, ["node.csv"]).files[0].status == "ingested"
    assert _rows(store, "SELECT count(*) FROM listkeys") == [(13,)]
    assert len(store.sources()) == 2


def _fifo(path):
    os.mkfifo(path)


def _socket(path):
    bound = socket.socket(socket.AF_UNIX)
    bound.bind(str(path))
    return bound


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p.symlink_to(p.parent / "gone.csv"), "dangling symbolic link"),
        (lambda p: [p.symlink_to(p.parent / ".loop-b"), (p.parent / ".loop-b").symlink_to(p)] and None, "symbolic link loop"),
        (_fifo, "not a regular file"),
        (_socket, "not a regular file"),
    ],
    ids=["dangling link", "link loop", "fifo", "socket"],
)
@pytest.mark.parametrize("named", [False, True], ids=["in a directory", "named"])
def test_an_unreadable_input_is_an_error_never_skipped(store, tmp_path, make, message, named):
    listing = tmp_path / "listkeys"
    listing.mkdir()
    (listing / "part-00000").write_text(listkeys_text(10))
    bad = listing / "part-00001"
    keep_alive = make(bad)
    try:
        with pytest.raises(InputError) as info:
            ingest_listkeys(store, [str(bad) if named else str(listing)])
    finally:
        if keep_alive is not None:
            keep_alive.close()
    assert message in str(info.value) and str(bad) in str(info.value) and "\n" not in str(info.value)
    assert not store.has_parts("listkeys")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_that_cannot_be_read_is_an_error(store, tmp_path):
    listing = tmp_path / "listkeys"
    listing.mkdir()
    (listing / "part-00000").write_text(listkeys_text(10))
    locked = listing / "part-00001"
    locked.write_text(listkeys_text(10, 10))
    locked.chmod(0)
    with pytest.raises(InputError, match="Permission denied") as info:
        ingest_listkeys(store, [str(listing)])
    assert str(locked) in str(info.value)


def test_hidden_files_and_spark_markers_stay_skipped(store, tmp_path):
    listing = tmp_path / "listkeys.csv"
    (listing / ".hidden").mkdir(parents=True)
    (listing / ".hidden" / "part-9").write_text("junk\n")
    (listing / "_SUCCESS").write_text("")
    (listing / ".part-00000.crc").write_text("x")
    (listing / "part-00000").write_text(listkeys_text(10))
    report = ingest_listkeys(store, [str(listing)])
    assert [f.location for f in report.files] == [str(listing / "part-00000")]


def test_a_file_that_changes_while_read_publishes_nothing(store, tmp_path, monkeypatch):
    from ringfsck.ingest import loop
    from ringfsck.ingest.inputs import OpenedInput

    path = tmp_path / "node.csv"
    path.write_text(listkeys_text(1000))

    class AppendedWhileRead(OpenedInput):
        """The exporter still writing: a row is appended once the reading has begun."""

        def read_after(self, head, size=None):
            data = super().read_after(head, size)
            with open(path, "a") as more:
                more.write(listkeys_text(1, 5000))
            return data

    monkeypatch.setattr(loop, "OpenedInput", AppendedWhileRead)
    with pytest.raises(InputError) as info:
        ingest_listkeys(store, [str(path)])
    assert str(info.value) == f"{path}: file changed while read; ingest it again once it is complete"
    assert not store.has_parts("listkeys") and store.sources() == []


def test_reading_stops_at_the_size_seen_at_open(tmp_path):
    from ringfsck.ingest.inputs import InputFile, OpenedInput

    path = tmp_path / "node.csv"
    path.write_bytes(b"x" * 100)
    with OpenedInput(InputFile(path)) as opened:
        with open(path, "ab") as more:
            more.write(b"y" * 100)
        assert opened.read(1000) == b"x" * 100


# --- a UTF-8 BOM, files made of junk only ---

@pytest.mark.parametrize("exact", [False, True], ids=["fast path", "exact path"])
def test_a_utf8_bom_does_not_cost_the_first_listkeys_row(store, tmp_path, exact):
    path = tmp_path / "node.csv"
    lines = listkeys_text(3) if not exact else listkeys_text(3).replace(",0\n", " , 0\n")  # spaced: the field-by-field path
    path.write_bytes(b"\xef\xbb\xbf" + lines.encode())
    report = ingest_listkeys(store, [str(path)])
    assert (report.rows, report.rejected) == (3, 0)


def test_a_listkeys_file_of_junk_only_is_recorded_then_an_error(store, tmp_path):
    good, junk = tmp_path / "node1.csv", tmp_path / "node2.csv"
    good.write_text(listkeys_text(10))
    junk.write_text('"b","k","' + KEY + '"\n' * 3)
    with pytest.raises(InputError) as info:
        ingest_listkeys(store, [str(good), str(junk)])
    assert str(junk) in str(info.value) and str(good) not in str(info.value) and "no valid row" in str(info.value)
    assert {s.location: (s.rows, s.rejected) for s in store.sources()} == {str(good): (10, 0), str(junk): (0, 3)}


def test_an_s3_export_of_junk_only_is_recorded_then_an_error(store, tmp_path):
    good, junk = tmp_path / "b1_keys.txt", tmp_path / "b2_keys.txt"
    good.write_text(f'"b1","k","{KEY}"\n')
    junk.write_text(f"{KEY},{MAIN},g1disk1,0\n" * 2)
    with pytest.raises(InputError, match="no valid row") as info:
        ingest_s3keys(store, [str(good), str(junk)])
    assert str(junk) in str(info.value)
    assert {s.location: s.rejected for s in store.sources()} == {str(good): 0, str(junk): 2}
    assert _rows(store, "SELECT count(*) FROM rejects") == [(2,)]
    with pytest.raises(InputError, match="no valid row"):  # both kinds in one call: every file recorded first
        ingest_inputs(store, [str(good)], [str(junk)])


def test_a_file_of_junk_only_exits_3(tmp_path):
    from ringfsck.cli import main

    junk = tmp_path / "node.csv"
    junk.write_text("not,a,listing\n")
    result = CliRunner().invoke(main, ["ingest", "listkeys", "--store", str(tmp_path / "store"), str(junk)])
    assert result.exit_code == EXIT_INPUT
    assert "no valid row" in result.output and str(junk) in result.output
