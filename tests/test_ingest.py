"""File ingestion: formats, rejects with line numbers, idempotence, error messages."""

from __future__ import annotations

import gzip
import json
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ringfsck.config import Settings
from ringfsck.errors import InputError
from ringfsck.ingest import ingest_listkeys, ingest_s3keys
from ringfsck.store import Store

CHUNK = "555555A4948FAA554034E155555555A61470C07A"
MAIN = "8000004F3F3A54FFEADF8C00000000511470C070"
KEY = "BDE4B9BBEB45711EC2F1A9C78F6BCD59E02C6220"


@pytest.fixture(scope="module")
def monkeypatch_lines():
    """A monkeypatch that hypothesis examples may share (function-scoped fixtures may not be)."""
    with pytest.MonkeyPatch.context() as patch:
        yield patch


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


def test_a_file_checksummed_by_an_older_ringfsck_is_read_again_once(store, tmp_path):
    """Older stores hold bare sha256 checksums: such a file reads as changed, replaces its part, and is then unchanged."""
    import hashlib

    path = tmp_path / "node.csv"
    path.write_text("\n".join(listkeys_lines(10)) + "\n")
    ingest_listkeys(store, [str(path)])
    (checksum,) = [s.checksum for s in store.sources()]
    assert checksum.startswith("xxh3-128:") and len(checksum) == len("xxh3-128:") + 32
    sources = json.loads((store.root / "sources.json").read_text())
    sources[0]["checksum"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (store.root / "sources.json").write_text(json.dumps(sources))
    assert ingest_listkeys(store, [str(path)]).files[0].status == "ingested"
    assert [s.checksum for s in store.sources()] == [checksum]
    assert ingest_listkeys(store, [str(path)]).files[0].status == "unchanged"
    assert rows(store, "SELECT count(*) FROM listkeys") == [(10,)]


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
        + b'"b","multi\nline","' + KEY[:30].encode() + b'zz"\n'  # a damaged key: rejected
        + b'"b","elsewhere","bucket/object on aws"\n'  # another backend's key: skipped
        + b'"b","two fields"\n'
        + f'"","no bucket","{KEY}"\n'.encode()
        + b'"b","no data",""\n'
        + b'"b","\xff bad","' + KEY.encode() + b'"\n'
        + f'"b","last","{KEY.lower()}"\n'.encode()
    )
    report = ingest_s3keys(store, [str(path)])
    assert report.rows == 2
    assert report.files[0].skipped == {"no RING key": 1, "keys of other backends": 1}
    rejects = rows(store, "SELECT line, reason FROM rejects ORDER BY line")
    assert [line for line, _ in rejects] == [2, 5, 6, 8]
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
    assert any("line 2" in r and "error listing bucket" in r for r in summary["incomplete_reasons"])


def test_empty_bucket_files_are_fine_but_no_keys_at_all_is_an_error(store, tmp_path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "empty_keys.txt").write_text("")
    with pytest.raises(InputError, match="no S3 keys"):
        ingest_s3keys(store, [str(tmp_path / "exports")])
    (tmp_path / "exports" / "full_keys.txt").write_text(f'"full","k","{KEY}"\n')
    report = ingest_s3keys(store, [str(tmp_path / "exports")])
    assert report.rows == 1


# --- the two listkeys paths (numpy for canonical lines, polars field by field) agree with the rules ---

def _expected_listkeys(lines: list[str]) -> tuple[list[tuple], list[tuple[int, str]], dict[str, int]]:
    """docs/domain.md section 5, line by line, written plainly: (rows, rejects as (line, reason start), skipped)."""
    rows, rejects, skipped = [], [], {}
    for number, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        stripped = text.strip()
        kind = "blank" if not stripped else "noise" if stripped.startswith("Use") else "header" if stripped.startswith("_1,_2") else None
        if kind:
            skipped[kind] = skipped.get(kind, 0) + 1
            continue
        fields = [f.strip() for f in text.split(",", 4)]
        hex40 = lambda f: len(f) == 40 and all(c in "0123456789abcdefABCDEF" for c in f)  # noqa: E731
        if len(fields) < 4:
            rejects.append((number, "expected at least 4"))
        elif not hex40(fields[0]):
            rejects.append((number, "chunk key"))
        elif not hex40(fields[1]):
            rejects.append((number, "main chunk key"))
        elif not fields[2]:
            rejects.append((number, "disk is empty"))
        elif not (1 <= len(fields[3]) <= 9 and fields[3].isascii() and fields[3].isdigit()):
            rejects.append((number, "flag"))
        else:
            rows.append((fields[0].upper(), fields[1].upper(), fields[2], int(fields[3])))
    return rows, rejects, skipped


_hex = st.text("0123456789ABCDEFabcdef", min_size=40, max_size=40)
_line_kinds = st.one_of(
    # canonical, with and without extra columns and CRLF
    st.tuples(_hex, _hex, st.sampled_from(["g1disk1", "d", "g12disk10", "disk-é", "\u00a0nbsp\u00a0", "ideo\u3000", "g1\tdisk", "g1\x01disk",
                                         "g1\x00disk", "g1\x7fdisk", "/scality/" + "d" * 60, "x" * 65, "\t" + "d" * 70]), st.integers(0, 999_999_999),
              st.sampled_from(["", ",x", ",,", ",1,2,3"]), st.sampled_from(["\n", "\r\n"]))
    .map(lambda t: f"{t[0]},{t[1]},{t[2]},{t[3]}{t[4]}{t[5]}"),
    # almost canonical: one thing wrong or merely spaced
    st.tuples(_hex, _hex, st.sampled_from(["", " g1disk1", "g1 disk", "g1disk1 ", "g1disk1"]),
              st.sampled_from(["", "0", "01", " 16", "1234567890", "x", "-1", "1e3"]))
    .map(lambda t: f"{t[0]},{t[1]},{t[2]},{t[3]}\n"),
    st.tuples(_hex, st.text("0123456789ABCDEFG ,", min_size=38, max_size=42), st.sampled_from(["g1disk1"]))
    .map(lambda t: f"{t[0]},{t[1]},{t[2]},0\n"),
    st.sampled_from(["\n", "   \n", "Use ring DATA\n", "_1,_2,_3,_4\n", "garbage\n", ",,,\n"]),
)


_K1, _K2 = "0123456789abcdefABCDEF0123456789abcdefAB", "FEDCBA9876543210fedcba9876543210FEDCBA98"
_TRICKY = [
    f"{_K1},{_K2},g1disk1,0\n", f"{_K1},{_K2},g1disk1,48,extra\r\n", f"{_K1},{_K2},g1disk1,123456789\n",
    f"{_K1},{_K2},g1disk1,1234567890\n", f"{_K1},{_K2},g1disk1,\n", f"{_K1},{_K2},,0\n", f"{_K1},{_K2}, g1disk1 , 16 \n",
    f"{_K1},{_K2},g1 disk,0\n", f"{_K1},{_K2},g1disk1,x\n", f"{_K1},{_K2},g1disk1,-1\n", f"{_K1},{_K2},g1disk1\n",
    f"{_K1[:-1]}G,{_K2},g1disk1,0\n", f"{_K1},{_K2[:-1]},g1disk1,0\n", f"{_K1},{_K2[:-1]}_,g1disk1,0\n",
    f"{_K1},{_K2},disk-é,32\n", f"{_K1},{_K2},{'d' * 70},0\n", f"{_K1},{_K2},g1\x00disk,0\n", f"{_K1},{_K2},g1\x1fdisk,0\n", f"{_K1},{_K2},\u00a0g1disk1\u00a0,32\n", "Use ring DATA\n", "_1,_2,_3,_4\n", "\n", "  \r\n", "garbage\n", f"{_K1},{_K2},d,7",
]


@settings(max_examples=100, deadline=None)
@example(lines=_TRICKY, block=64).via("every tricky line")
@example(lines=_TRICKY, block=1 << 20).via("every tricky line, one block")
@given(lines=st.lists(_line_kinds, min_size=1, max_size=60), block=st.integers(60, 400))
def test_listkeys_fast_and_exact_paths_follow_the_same_rules(tmp_path_factory, monkeypatch_lines, lines, block):
    from ringfsck.ingest import inputs

    monkeypatch_lines.setattr(inputs, "READ_BLOCK", block)  # lines straddle blocks
    expected_rows, expected_rejects, expected_skipped = _expected_listkeys(lines)
    root = tmp_path_factory.mktemp("paths")
    path = root / "node.csv"
    path.write_bytes("".join(lines).encode())
    store = Store.open(Settings(store=str(root / "store")))
    try:
        skipped = ingest_listkeys(store, [str(path)]).files[0].skipped
    except InputError as error:  # only when no row was valid: the file's rejects are recorded all the same
        assert not expected_rows
        if not expected_rejects:
            assert "empty input" in str(error)
            return
        assert "no valid row" in str(error)
        (source,) = store.sources()
        skipped = source.skipped
    assert sorted(rows(store, "SELECT chunk_key, main_chunk, disk, flag FROM listkeys")) == sorted(expected_rows)
    found = rows(store, "SELECT line, reason FROM rejects ORDER BY line")
    assert [line for line, _ in found] == [line for line, _ in expected_rejects]
    for (_, reason), (_, start) in zip(found, expected_rejects):
        assert start in reason
    assert skipped == expected_skipped


# --- the two S3 key CSV paths (pyarrow for plain files, csv row by row) give the same store ---

_names = st.text(st.characters(codec="utf-8", exclude_characters="\r\x00"), max_size=12) | st.sampled_from(WEIRD)
_good_row = st.tuples(st.sampled_from(["b", "mpuShadowBucketb", "x,y"]), _names, st.sampled_from([KEY, KEY.lower(), "", "0" * 40]))
_csv_rows = st.one_of(
    # rows the exporter writes, four times as likely as a line only the exact path handles
    *[_good_row.map(lambda r: ("row", r))] * 4,
    st.sampled_from([b"\n", b'"b","two"\n', b'"","nobucket","' + KEY.encode() + b'"\n', b'"b","bad","XYZ"\n', b'"b","bad","' + KEY[:-1].encode() + b'G"\n', b'"b","bad","' + KEY[:-1].encode() + b'"\n',
                     b'"b","bad"," ' + KEY.encode() + b'"\n',
                     b'"b","a"b,"' + KEY.encode() + b'"\n', b'"b","cr\rin",""\n', b'"b","\xff","' + KEY.encode() + b'"\n',
                     b'"bucket","object key","sproxyd key"\n']).map(lambda raw: ("raw", raw)),
)


def _write_csv(path, items, crlf):
    import csv
    import io

    out = io.BytesIO()
    for kind, item in items:
        if kind == "raw":
            out.write(item)
        else:
            text = io.StringIO(newline="")
            csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\r\n" if crlf else "\n").writerow(item)
            out.write(text.getvalue().encode())
    path.write_bytes(out.getvalue())


def _s3keys_outcome(root, path, exact: bool, monkeypatch):
    from ringfsck.ingest import s3keys

    def refuse(*args, **kwargs):
        raise s3keys._NotPlain("forced")

    with monkeypatch.context() as patch:
        if exact:
            patch.setattr(s3keys, "_parse_csv_fast", refuse)
        store = Store.open(Settings(store=str(root / ("exact" if exact else "fast"))))
        try:
            report = ingest_s3keys(store, [str(path)])
        except InputError as error:
            return str(error).replace(str(root / "exact"), "").replace(str(root / "fast"), "")
    return (
        report.rows, report.rejected, report.files[0].skipped,
        sorted(rows(store, "SELECT bucket, object_key, sproxyd_key, mpu_part, line FROM s3keys")),
        rows(store, "SELECT line, reason FROM rejects ORDER BY line"),
    )


@settings(max_examples=80, deadline=None)
@example(items=[("row", ("b", "plain", KEY)), ("row", ("b", 'q"uote\nnew,line', KEY.lower())), ("row", ("b", "no data", ""))], crlf=False)
@example(items=[("raw", b'"bucket","object key","sproxyd key"\n'), ("row", ("b", "x", KEY))], crlf=True)
@example(items=[("row", ("b", "multi\nline", KEY)), ("row", ("b", "after", KEY))], crlf=False)
@example(items=[("raw", b'"b","cr\rin",""\n'), ("row", ("b", "after", KEY))], crlf=False)
@example(items=[("row", ("b", "x", KEY)), ("raw", b'"b","not hex","' + KEY[:-1].encode() + b'G"\n')], crlf=False)
@example(items=[("row", ("b", "x", "")), ("raw", b'"b","short","' + KEY[:-1].encode() + b'"\n'), ("row", ("b", "y", KEY))], crlf=False)
@example(items=[("raw", b'"b","short","' + KEY[:-1].encode() + b'"\n'), ("raw", b'"b","long","' + KEY.encode() + b'A"\n')], crlf=False)
@given(items=st.lists(_csv_rows, min_size=1, max_size=25), crlf=st.booleans())
def test_s3keys_fast_and_exact_csv_paths_agree(tmp_path_factory, monkeypatch_lines, items, crlf):
    root = tmp_path_factory.mktemp("s3csv")
    path = root / "b_keys.txt"
    _write_csv(path, items, crlf)
    assert _s3keys_outcome(root, path, False, monkeypatch_lines) == _s3keys_outcome(root, path, True, monkeypatch_lines)


def test_listkeys_row_groups_each_hold_one_key_prefix_partition(store, tmp_path, monkeypatch):
    """The analysis reads one partition at a time through the row-group statistics of main_chunk_hi."""
    import random

    import pyarrow.parquet as pq

    from ringfsck.ingest import listkeys
    from ringfsck.partitions import PARTITION_BITS, partition_bounds

    monkeypatch.setattr(listkeys, "ROW_GROUP_ROWS", 50)
    rng = random.Random(7)
    lines = [f"{rng.getrandbits(160):040X},{rng.getrandbits(160):040X},g1disk{i % 3},0" for i in range(2000)]
    path = tmp_path / "node.csv"
    path.write_text("\n".join(lines) + "\n")
    ingest_listkeys(store, [str(path)])
    (part,) = (store.root / "tables" / "listkeys").glob("*.parquet")
    metadata = pq.ParquetFile(part).metadata
    assert metadata.num_rows == 2000 and metadata.num_row_groups >= 16
    column = metadata.schema.names.index("main_chunk_hi")
    for index in range(metadata.num_row_groups):
        stats = metadata.row_group(index).column(column).statistics
        assert stats.min >> (64 - PARTITION_BITS) == stats.max >> (64 - PARTITION_BITS)
    low, high = partition_bounds(3)
    expected = sum(1 for line in lines if low <= int(line[41:57], 16) <= high)
    assert rows(store, f"SELECT count(*) FROM listkeys_packed WHERE main_chunk_hi BETWEEN {low} AND {high}") == [(expected,)]


# --- files parsed in forked worker processes give what threads give ---

def _store_contents(store: Store) -> dict[str, list]:
    con = store.connect()
    return {
        "listkeys": sorted(con.execute("SELECT * FROM listkeys").fetchall()),
        "s3keys": sorted(con.execute("SELECT * EXCLUDE (source) FROM s3keys").fetchall()),
        "rejects": sorted(con.execute("SELECT * FROM rejects").fetchall()),
        "sources": sorted((s.kind, s.location, s.size, s.checksum, s.rows, s.rejected, json.dumps(s.skipped)) for s in store.sources()),
    }


def _mixed_inputs(root):
    """Several listkeys files (one gzip, one with rejects) and S3 key exports."""
    nodes = root / "listkeys"
    nodes.mkdir(parents=True)
    for node in range(4):
        lines = listkeys_lines(300, start=node * 1000) + (["Use ringsh", f"BAD,{MAIN},g1disk1,0", f"{CHUNK},{MAIN},,0"] if node == 1 else [])
        data = ("\n".join(lines) + "\n").encode()
        (nodes / f"node{node}.csv{'.gz' if node == 2 else ''}").write_bytes(gzip.compress(data) if node == 2 else data)
    exports = root / "s3-bucketd"
    exports.mkdir()
    for bucket in range(3):
        (exports / f"b{bucket}_keys.txt").write_text("".join(f'"b{bucket}","key {n}, with a comma","{KEY}"\n' for n in range(50)) + '"b","bad","0123456789ABCDEF0123XYZ"\n')
    return nodes, exports


_FORKED_INGEST = """
import json, os, sys
from ringfsck.config import Settings
from ringfsck.errors import InputError
from ringfsck.ingest import ingest_inputs, loop
from ringfsck.store import Store

loop._FORK_MIN_BYTES = 0  # small files are forked too
parse_one = loop._parse_one

def noting_the_pid(*args, **kwargs):  # forked workers inherit this patch
    with open(os.path.join(sys.argv[1], str(os.getpid())), "w"):
        pass
    return parse_one(*args, **kwargs)

loop._parse_one = noting_the_pid
store = Store.open(Settings(store=sys.argv[2]))
try:
    reports = ingest_inputs(store, [sys.argv[3]], sys.argv[4:])
    outcome = {"rows": [r.rows for r in reports], "rejected": [r.rejected for r in reports]}
except InputError as error:
    outcome = {"error": str(error)}
print(json.dumps({**outcome, "pid": os.getpid(), "workers": sorted(int(p) for p in os.listdir(sys.argv[1]))}))
"""


def _forked_ingest(tmp_path, store_dir, nodes, *exports):
    """Ingest in a fresh interpreter (as the CLI does: polars not loaded), files forked whatever their size."""
    import subprocess
    import sys

    pids = tmp_path / f"pids-{store_dir.name}"
    pids.mkdir()
    run = subprocess.run([sys.executable, "-c", _FORKED_INGEST, str(pids), str(store_dir), str(nodes), *map(str, exports)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    outcome = json.loads(run.stdout)
    assert outcome["workers"] and outcome["pid"] not in outcome["workers"]  # parsed in other processes
    return outcome


def test_forked_workers_store_what_threads_store(tmp_path):
    from ringfsck.ingest import ingest_inputs

    nodes, exports = _mixed_inputs(tmp_path / "inputs")
    threaded = Store.open(Settings(store=str(tmp_path / "threads")))
    ingest_inputs(threaded, [str(nodes)], [str(exports)])
    outcome = _forked_ingest(tmp_path, tmp_path / "forked", nodes, exports)
    assert outcome["rows"] == [1200, 150] and outcome["rejected"] == [2, 3]
    forked = Store.open(Settings(store=str(tmp_path / "forked")))
    assert _store_contents(forked) == _store_contents(threaded)
    assert {f.status for f in ingest_listkeys(forked, [str(nodes)]).files} == {"unchanged"}


def test_an_error_in_a_forked_worker_names_its_file_and_keeps_the_others(tmp_path):
    nodes, exports = _mixed_inputs(tmp_path / "inputs")
    broken = nodes / "node9.csv.gz"
    broken.write_bytes(gzip.compress(("\n".join(listkeys_lines(100)) + "\n").encode())[:-30])
    outcome = _forked_ingest(tmp_path, tmp_path / "store", nodes, exports)
    assert str(broken) in outcome["error"] and "unreadable gzip file" in outcome["error"] and "\n" not in outcome["error"]
    store = Store.open(Settings(store=str(tmp_path / "store")))
    recorded = {s.location for s in store.sources() if s.kind == "listkeys"}
    assert str(broken) not in recorded and recorded <= {str(p) for p in nodes.iterdir()}
    broken.unlink()
    report = ingest_listkeys(store, [str(nodes)])  # the files that were parsed are not parsed again
    assert report.rows == 1200
    assert {f.location for f in report.files if f.status == "unchanged"} == recorded


def test_no_fork_once_polars_is_loaded(tmp_path, monkeypatch):
    """polars' thread pool does not survive a fork: a process that loaded it parses on threads."""
    import sys

    from ringfsck.ingest import _listkeys_job, loop

    monkeypatch.setattr(loop, "_FORK_MIN_BYTES", 0)
    nodes, _ = _mixed_inputs(tmp_path / "inputs")
    store = Store.open(Settings(store=str(tmp_path / "store")))
    job = _listkeys_job(store, [str(nodes)])
    pending = [(0, i) for i in range(len(job.files))]
    monkeypatch.delitem(sys.modules, "polars", raising=False)
    assert loop._forking(store, [job], pending, workers=2)
    assert not loop._forking(store, [job], pending[:1], workers=2)  # one file: nothing to share
    assert not loop._forking(store, [job], pending, workers=1)
    monkeypatch.setitem(sys.modules, "polars", object())
    assert not loop._forking(store, [job], pending, workers=2)


def test_an_interrupted_ingest_records_every_part_it_published(store, tmp_path, monkeypatch):
    """Ctrl-C while files are parsed: the files already parsed are recorded (no part without its source), then 130."""
    from concurrent import futures

    from ringfsck.ingest import workers

    nodes, _ = _mixed_inputs(tmp_path / "inputs")
    calls = []

    def interrupted_once(pending, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return futures.wait(pending, **kwargs)

    monkeypatch.setattr(workers, "wait", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        ingest_listkeys(store, [str(nodes)])
    parts = {p.stem for p in (store.root / "tables" / "listkeys").glob("*.parquet")}
    assert parts == {s.id for s in store.sources()}
    monkeypatch.undo()
    report = ingest_listkeys(store, [str(nodes)])
    assert report.rows == 1200 and len(store.sources()) == 4
