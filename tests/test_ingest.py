"""File ingestion: formats, rejects with line numbers, idempotence, error messages."""

from __future__ import annotations

import gzip
import json
from urllib.parse import quote

import pytest

from ringfsck.config import Settings
from ringfsck.errors import InputError
from ringfsck.ingest import ingest_listkeys, ingest_s3keys
from ringfsck.store import Store

CHUNK = "555555A4948FAA554034E155555555A61470C07A"
MAIN = "8000004F3F3A54FFEADF8C00000000511470C070"
KEY = "BDE4B9BBEB45711EC2F1A9C78F6BCD59E02C6220"


@pytest.fixture
def store(tmp_path):
    return Store.open(Settings(store=str(tmp_path / "store")))


def rows(store, query):
    return store.connect().execute(query).fetchall()


def listkeys_lines(n, start=0):
    return [f"{i:040X},{MAIN},g1disk1,0" for i in range(start, start + n)]


def test_listkeys_noise_header_extra_columns_and_rejects(store, tmp_path):
    path = tmp_path / "node1.csv"
    path.write_bytes(
        b"Use ringsh -r DATA\n"
        b"_1,_2,_3,_4\n"
        + f"{CHUNK.lower()},{MAIN},g1disk1,0,extra,columns\n".encode()
        + b"\n"
        + f"BAD,{MAIN},g1disk1,0\n".encode()
        + f"{CHUNK},{MAIN},g1disk1\n".encode()
        + f"{CHUNK},{MAIN},g1disk1,zero\n".encode()
        + b"\xff\xfe not utf-8\n"
        + f"{CHUNK[:-1]}B,{MAIN},g1disk2,16\r\n".encode()
        + f"{CHUNK[:-1]}C,{MAIN},g1disk2,48".encode()  # no final newline
    )
    report = ingest_listkeys(store, [str(path)])
    assert report.rows == 3
    assert report.rejected == 4
    assert report.files[0].skipped == {"noise": 1, "header": 1, "blank": 1}
    assert rows(store, "SELECT chunk_key, flag FROM listkeys ORDER BY 1") == [(CHUNK, 0), (CHUNK[:-1] + "B", 16), (CHUNK[:-1] + "C", 48)]
    rejects = rows(store, "SELECT line, reason FROM rejects ORDER BY line")
    assert [line for line, _ in rejects] == [5, 6, 7, 8]
    assert "chunk key" in rejects[0][1]
    assert "4 comma-separated columns" in rejects[1][1]
    assert "flag" in rejects[2][1]
    assert "UTF-8" in rejects[3][1]


def test_line_numbers_stay_exact_across_read_blocks(store, tmp_path, monkeypatch):
    from ringfsck.ingest import inputs

    monkeypatch.setattr(inputs, "READ_BLOCK", 1000)  # force many small blocks
    lines = listkeys_lines(500)
    lines[333] = "garbage"
    path = tmp_path / "node.csv"
    path.write_text("\n".join(lines) + "\n")
    report = ingest_listkeys(store, [str(path)])
    assert report.rows == 499
    assert rows(store, "SELECT line, raw FROM rejects") == [(334, "garbage")]


def test_gzip_and_spark_directory(store, tmp_path):
    spark = tmp_path / "listkeys.csv"
    spark.mkdir()
    (spark / "_SUCCESS").write_text("")
    (spark / ".part-00000.crc").write_text("x")
    (spark / "part-00000").write_text("_1,_2,_3,_4\n" + "\n".join(listkeys_lines(10)) + "\n")
    with gzip.open(spark / "part-00001.gz", "wt") as handle:
        handle.write("\n".join(listkeys_lines(5, start=10)) + "\n")
    report = ingest_listkeys(store, [str(spark)])
    assert len(report.files) == 2
    assert rows(store, "SELECT count(*), count(DISTINCT chunk_key) FROM listkeys") == [(15, 15)]


def test_reingest_does_not_double_and_replaces_changed_files(store, tmp_path):
    path = tmp_path / "node.csv"
    path.write_text("\n".join(listkeys_lines(10)) + "\n")
    ingest_listkeys(store, [str(path)])
    again = ingest_listkeys(store, [str(path)])
    assert again.files[0].status == "unchanged"
    assert rows(store, "SELECT count(*) FROM listkeys") == [(10,)]
    path.write_text("\n".join(listkeys_lines(7)) + "\nbroken\n")
    changed = ingest_listkeys(store, [str(path)])
    assert changed.files[0].status == "ingested"
    assert rows(store, "SELECT count(*) FROM listkeys") == [(7,)]
    assert rows(store, "SELECT count(*) FROM rejects") == [(1,)]
    path.write_text("\n".join(listkeys_lines(7)) + "\n")
    ingest_listkeys(store, [str(path)])
    assert rows(store, "SELECT count(*) FROM rejects") == [(0,)]
    assert len(store.sources()) == 1


def test_same_content_under_another_name_is_a_duplicate(store, tmp_path):
    first, copy = tmp_path / "node1.csv", tmp_path / "node1-copy.csv"
    first.write_text("\n".join(listkeys_lines(10)) + "\n")
    copy.write_bytes(first.read_bytes())
    report = ingest_listkeys(store, [str(first), str(copy)])
    assert [f.status for f in report.files] == ["ingested", "duplicate"]
    assert rows(store, "SELECT count(*) FROM listkeys") == [(10,)]


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: None, "no such file or directory"),
        (lambda p: p.write_text(""), "empty input"),
        (lambda p: p.write_text("Use only noise\n\n"), "empty input"),
        (lambda p: p.write_bytes(b"\x1f\x8b\x08\x00garbage-not-gzip"), "unreadable gzip file"),
        (lambda p: p.write_bytes(gzip.compress(("\n".join(listkeys_lines(100)) + "\n").encode())[:-30]), "unreadable gzip file"),
    ],
)
def test_listkeys_errors_are_one_line_naming_the_file(store, tmp_path, make, message):
    path = tmp_path / "node.csv.gz"
    make(path)
    with pytest.raises(InputError) as info:
        ingest_listkeys(store, [str(path)])
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert not store.has_parts("listkeys")


def test_failed_reingest_keeps_the_previous_data(store, tmp_path):
    path = tmp_path / "node.csv"
    path.write_text("\n".join(listkeys_lines(10)) + "\n")
    ingest_listkeys(store, [str(path)])
    path.write_text("")
    with pytest.raises(InputError, match="empty input"):
        ingest_listkeys(store, [str(path)])
    assert rows(store, "SELECT count(*) FROM listkeys") == [(10,)]


def test_glob_and_empty_directory_errors(store, tmp_path):
    with pytest.raises(InputError, match="no files match"):
        ingest_listkeys(store, [str(tmp_path / "*.nothing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="directory holds no input files"):
        ingest_listkeys(store, [str(tmp_path / "empty")])


WEIRD = ["a,b", 'q"uote', "multi\nline\nkey", "tab\tkey", "été 日本 😀", " lead", "x%20y", "", "/slash/"]


def test_s3keys_csv_keeps_weird_names(store, tmp_path):
    import csv

    path = tmp_path / "bucket_keys.txt"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        for i, name in enumerate(WEIRD):
            writer.writerow(["bucket", name, f"{i:040X}"])
    report = ingest_s3keys(store, [str(path)])
    assert report.rows == len(WEIRD) and report.rejected == 0
    got = dict(rows(store, "SELECT object_key, sproxyd_key FROM s3keys"))
    assert got == {name: f"{i:040X}" for i, name in enumerate(WEIRD)}


def test_s3keys_csv_rejects_and_line_numbers(store, tmp_path):
    path = tmp_path / "b_keys.txt"
    path.write_bytes(
        f'"b","ok","{KEY}"\n'.encode()
        + b'"b","multi\nline","not-a-key"\n'
        + b'"b","two fields"\n'
        + f'"","no bucket","{KEY}"\n'.encode()
        + b'"b","no data",""\n'
        + b'"b","\xff bad","' + KEY.encode() + b'"\n'
        + f'"b","last","{KEY.lower()}"\n'.encode()
    )
    report = ingest_s3keys(store, [str(path)])
    assert report.rows == 2
    assert report.files[0].skipped == {"no RING key": 1}
    rejects = rows(store, "SELECT line, reason FROM rejects ORDER BY line")
    assert [line for line, _ in rejects] == [2, 4, 5, 7]
    assert rows(store, "SELECT DISTINCT sproxyd_key FROM s3keys") == [(KEY,)]


def test_s3keys_jsonl_decodes_object_urls(store, tmp_path):
    lines = [json.dumps({"name": "s3utils", "level": "info", "message": "listing bucket", "bucket": "b"})]
    for i, name in enumerate(WEIRD):
        lines.append(json.dumps({"level": "info", "message": "sproxyd key", "objectUrl": "s3://b/" + quote(name, safe="-_.!~*'()"), "sproxydKey": f"{i:040x}"}))
    lines.append("not json at all")
    lines.append(json.dumps({"message": "sproxyd key", "objectUrl": "http://wrong", "sproxydKey": KEY}))
    path = tmp_path / "export.log"
    path.write_text("\n".join(lines) + "\n")
    report = ingest_s3keys(store, [str(path)])
    assert report.files[0].format == "s3keys-jsonl"
    assert report.rows == len(WEIRD)
    assert dict(rows(store, "SELECT object_key, sproxyd_key FROM s3keys")) == {name: f"{i:040X}" for i, name in enumerate(WEIRD)}
    assert [line for (line,) in rows(store, "SELECT line FROM rejects ORDER BY 1")] == [len(WEIRD) + 2, len(WEIRD) + 3]


def test_s3keys_jsonl_export_errors_make_the_analysis_incomplete(store, tmp_path):
    from ringfsck.analysis import AnalysisOptions, analyze

    lines = [
        json.dumps({"message": "sproxyd key", "objectUrl": "s3://b/k", "sproxydKey": KEY}),
        json.dumps({"level": "error", "message": "error listing bucket", "bucket": "c"}),
    ]
    (tmp_path / "export.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "node.csv").write_text(f"{CHUNK},{MAIN},g1disk1,0\n")
    ingest_s3keys(store, [str(tmp_path / "export.log")])
    ingest_listkeys(store, [str(tmp_path / "node.csv")])
    summary = analyze(store, AnalysisOptions(assume_no_splits=True)).summary
    assert summary["complete"] is False
    assert any("may be incomplete" in r for r in summary["incomplete_reasons"])


def test_empty_bucket_files_are_fine_but_no_keys_at_all_is_an_error(store, tmp_path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "empty_keys.txt").write_text("")
    with pytest.raises(InputError, match="no S3 keys"):
        ingest_s3keys(store, [str(tmp_path / "exports")])
    (tmp_path / "exports" / "full_keys.txt").write_text(f'"full","k","{KEY}"\n')
    report = ingest_s3keys(store, [str(tmp_path / "exports")])
    assert report.rows == 1
