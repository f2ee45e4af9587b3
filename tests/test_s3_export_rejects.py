"""S3 key exports: a rejected record loses nothing, and s3utils' JSON-lines log is read as it really is.

Every row of an S3 export is either stored or rejected; a rejected row keeps its exact text, whose
40-hex tokens stay references (``rejects.keys``). Both CSV paths (pyarrow for plain files, ``csv``
record by record) must give the same verdicts.
"""

from __future__ import annotations

import json

import pytest

from ringfsck.config import Settings
from ringfsck.errors import InputError
from ringfsck.ingest import ingest_s3keys
from ringfsck.store import Store

K1, K2, K3 = ("1" * 39 + "A", "2" * 39 + "B", "3" * 39 + "C")
LOGGER = "s3utils:verifyBucketSproxydKeys"


def _rows(store: Store, query: str) -> list[tuple]:
    return store.connect().execute(query).fetchall()


def _ingest(tmp_path, name: str, data: bytes, *, exact: bool, monkeypatch) -> Store:
    """Ingest one export into a fresh store, on the exact path only when ``exact``."""
    from ringfsck.ingest import s3keys

    path = tmp_path / "inputs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    store = Store.open(Settings(store=str(tmp_path / ("exact" if exact else "fast"))))
    with monkeypatch.context() as patch:
        if exact:
            def refuse(*args, **kwargs):
                raise s3keys._NotPlain("forced")

            patch.setattr(s3keys, "_parse_csv_fast", refuse)
        ingest_s3keys(store, [str(path)])
    return store


def _stored_and_rejected(store: Store) -> tuple[list[tuple], list[tuple]]:
    stored = _rows(store, "SELECT line, object_key, sproxyd_key FROM s3keys ORDER BY line")
    rejected = _rows(store, "SELECT line, raw, keys FROM rejects ORDER BY line")
    return stored, rejected


def _reject_keys(rejected: list[tuple]) -> set[str]:
    return {key for _, _, keys in rejected for key in keys}


# (name, CSV bytes, lines stored, lines rejected, keys that must be in some reject's keys)
_CSV_CASES = [
    ("invalid UTF-8 in an object key", b'"b","ok","' + K1.encode() + b'"\n"b","bad \xff name","' + K2.encode() + b'"\n"b","after","' + K3.encode() + b'"\n',
     [1, 3], [2], {K2}),
    ("stray quote inside an unquoted field", f'"b","ok","{K1}"\nb,a"b,{K2}\n"b","after","{K3}"\n'.encode(), [1, 3], [2], {K2}),
    ("text after a closing quote", f'"b","ok","{K1}"\n"b","closed,"{K2}\n"b","next","{K3}"\n'.encode(), [1, 3], [2], {K2}),
    ("unclosed quote swallows the next row", f'"b","ok","{K1}"\n"b","unclosed,{K2}\n"b","next","{K3}"\n'.encode(), [1], [2], {K2, K3}),
    ("unclosed quote up to the end of the file", f'"b","ok","{K1}"\n"b","unclosed,{K2}\nb,next,{K3}\n'.encode(), [1], [2], {K2, K3}),
    ("a fourth field", f'"b","ok","{K1}"\n"b","k","{K2}","extra"\n"b","after","{K3}"\n'.encode(), [1, 3], [2], {K2}),
    ("a space after a closing quote", f'"b","ok","{K1}"\n"b","k" ,"{K2}"\n"b","after","{K3}"\n'.encode(), [1, 3], [2], {K2}),
]


@pytest.mark.parametrize("exact", [False, True], ids=["default path", "exact path"])
@pytest.mark.parametrize("name,data,stored_lines,rejected_lines,reject_keys", _CSV_CASES, ids=[c[0] for c in _CSV_CASES])
def test_a_rejected_csv_record_keeps_its_whole_text_and_keys(tmp_path, monkeypatch, exact, name, data, stored_lines, rejected_lines, reject_keys):
    store = _ingest(tmp_path, "b_keys.txt", data, exact=exact, monkeypatch=monkeypatch)
    stored, rejected = _stored_and_rejected(store)
    assert [line for line, _, _ in stored] == stored_lines
    assert [line for line, _, _ in rejected] == rejected_lines
    assert reject_keys <= _reject_keys(rejected)
    # every key of the file is stored or held by a reject: nothing silently dropped
    assert {K1, K2, K3} <= {key for _, _, key in stored} | _reject_keys(rejected)
    for _, raw, _ in rejected:
        assert raw.strip()  # the record's own text, never an empty string


def test_the_raw_text_of_a_rejected_record_is_the_lines_it_consumed(tmp_path, monkeypatch):
    data = f'"b","k" ,"{K2}"\n"b","after","{K3}"\n'.encode()
    store = _ingest(tmp_path, "b_keys.txt", data, exact=True, monkeypatch=monkeypatch)
    assert _rows(store, "SELECT raw FROM rejects") == [(f'"b","k" ,"{K2}"',)]  # its final line end left out
    swallowed = f'"b","ok","{K1}"\n"b","unclosed,{K2}\n"b","next","{K3}"\n'.encode()
    store = _ingest(tmp_path / "swallowed", "b_keys.txt", swallowed, exact=True, monkeypatch=monkeypatch)
    assert _rows(store, "SELECT line, raw FROM rejects") == [(2, f'"b","unclosed,{K2}\n"b","next","{K3}"')]


def test_fast_path_stores_nothing_the_exact_path_rejects(tmp_path, monkeypatch):
    for name, data, *_ in _CSV_CASES:
        fast = _stored_and_rejected(_ingest(tmp_path / "f" / name.replace(" ", "-"), "b_keys.txt", data, exact=False, monkeypatch=monkeypatch))
        exact = _stored_and_rejected(_ingest(tmp_path / "e" / name.replace(" ", "-"), "b_keys.txt", data, exact=True, monkeypatch=monkeypatch))
        assert fast == exact, name


@pytest.mark.parametrize("exact", [False, True], ids=["default path", "exact path"])
def test_a_utf8_bom_does_not_cost_the_first_csv_row(tmp_path, monkeypatch, exact):
    data = b"\xef\xbb\xbf" + f'"b","first","{K1}"\n"b","second","{K2}"\n'.encode()
    store = _ingest(tmp_path, "b_keys.txt", data, exact=exact, monkeypatch=monkeypatch)
    assert _stored_and_rejected(store) == ([(1, "first", K1), (2, "second", K2)], [])
    assert _rows(store, "SELECT DISTINCT bucket FROM s3keys") == [("b",)]


def test_a_utf8_bom_does_not_cost_the_first_jsonl_record(tmp_path, monkeypatch):
    data = b"\xef\xbb\xbf" + "\n".join(json.dumps(r) for r in [_ref("s3://b/k", K1), _completed(1)]).encode() + b"\n"
    store = _ingest(tmp_path, "export.log", data, exact=False, monkeypatch=monkeypatch)
    assert _stored_and_rejected(store) == ([(1, "k", K1)], [])


def test_percent_encoded_names_of_jq_made_csvs_are_stored_as_they_are(tmp_path, monkeypatch):
    data = f'"b","100% sure","{K1}"\n"b","a%20b%00{K2[:4]}","{K2}"\n'.encode()
    store = _ingest(tmp_path, "b_keys.txt", data, exact=False, monkeypatch=monkeypatch)
    assert [key for _, key, _ in _stored_and_rejected(store)[0]] == ["100% sure", f"a%20b%00{K2[:4]}"]


# --- s3utils' verifyBucketSproxydKeys.js JSON-lines log ---

def _record(message: str, level: str = "info", **fields) -> dict:
    return {"name": LOGGER, "time": 1700000000000, "level": level, "message": message, "hostname": "s3", "pid": 7, **fields}


def _ref(url: str, key: str | None, message: str = "sproxyd key") -> dict:
    fields = {"objectUrl": url} | ({} if key is None else {"sproxydKey": key})
    return _record(message, **fields)


def _completed(scanned: int) -> dict:
    return _record("completed scan", skipped=0, scanned=scanned, haveMissingKeys=0, url="s3://")


def _log(tmp_path, records: list[dict | str], name: str = "export.log") -> str:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def _sources_incomplete(store: Store) -> list[str]:
    return [reason for source in store.sources() for reason in source.incomplete]


@pytest.fixture
def store(tmp_path):
    return Store.open(Settings(store=str(tmp_path / "store")))


def test_version_keys_are_split_on_the_last_nul(store, tmp_path):
    path = _log(tmp_path, [
        _record("start scanning bucket", url="s3://b"),
        _ref("s3://b/plain", K1),
        _ref("s3://b/obj%2Fname%00" + "98296833183455999999RG001%20%20", K2),
        _ref("s3://b/nul%00in%00name%00", K3),  # the null version of a name holding a NUL
        _completed(3),
    ])
    report = ingest_s3keys(store, [path])
    assert report.rows == 3 and report.rejected == 0
    assert sorted(_rows(store, "SELECT object_key, version_id, sproxyd_key FROM s3keys")) == [
        ("nul\0in\0name", "", K3), ("obj/name", "98296833183455999999RG001  ", K2), ("plain", None, K1),
    ]
    assert _sources_incomplete(store) == []


@pytest.mark.parametrize("message", ["sproxyd check returned success", "sproxyd check reported missing key", "sproxyd check error",
                                     "sproxyd check returned HTTP error"])
def test_sproxyd_check_records_are_references_too(store, tmp_path, message):
    level = "info" if message.endswith("success") else "error"
    path = _log(tmp_path, [{**_ref("s3://b/k", K1, message), "level": level}, _completed(1)])
    assert ingest_s3keys(store, [path]).rows == 1
    assert _rows(store, "SELECT sproxyd_key FROM s3keys") == [(K1,)]
    assert _sources_incomplete(store) == []


def test_a_key_of_another_backend_is_skipped_not_rejected(store, tmp_path):
    path = _log(tmp_path, [_ref("s3://b/k", K1), _ref("s3://b/elsewhere", "bucket/name"), _completed(2)])
    report = ingest_s3keys(store, [path])
    assert report.rows == 1 and report.rejected == 0
    assert report.files[0].skipped.get("keys of other backends") == 1
    assert _sources_incomplete(store) == []


def test_a_sproxyd_key_record_without_its_key_is_an_unknown_reference(store, tmp_path):
    path = _log(tmp_path, [_ref("s3://b/k", K1), _ref("s3://b/old-model", None), _completed(2)])
    report = ingest_s3keys(store, [path])
    assert report.rows == 1 and report.rejected == 1
    (reason,) = _sources_incomplete(store)
    assert path in reason and "line 2" in reason and "s3://b/old-model" in reason


def test_a_renamed_key_field_keeps_its_key_as_a_reference(store, tmp_path):
    renamed = _record("sproxyd key", objectUrl="s3://b/renamed", sproxydkey=K2)
    path = _log(tmp_path, [_ref("s3://b/k", K1), renamed, _completed(2)])
    report = ingest_s3keys(store, [path])
    assert report.rows == 1 and report.rejected == 1
    assert _rows(store, "SELECT line, keys FROM rejects") == [(2, [K2])]
    assert _sources_incomplete(store)


def test_a_truncated_record_is_rejected_with_its_key(store, tmp_path):
    truncated = json.dumps(_ref("s3://b/cut", K2))[:-2]  # cut after the key
    path = _log(tmp_path, [_ref("s3://b/k", K1), truncated, _completed(2)])
    report = ingest_s3keys(store, [path])
    assert report.rows == 1 and report.rejected == 1
    assert _rows(store, "SELECT line, keys FROM rejects") == [(2, [K2])]


@pytest.mark.parametrize("message", ["duplicate sproxyd key found", "object with empty metadata found",
                                     'object master metadata with duplicate "versionId" field found'])
def test_error_records_that_lose_nothing_leave_the_export_complete(store, tmp_path, message):
    path = _log(tmp_path, [_ref("s3://b/k", K1), _record(message, level="error", objectUrl="s3://b/k"), _completed(1)])
    ingest_s3keys(store, [path])
    assert _sources_incomplete(store) == []


@pytest.mark.parametrize("message", ["error fetching object locations array", "an error occurred during scan", "error parsing JSON input",
                                     "something nobody has seen"])
@pytest.mark.parametrize("level", ["error", "fatal"])
def test_error_records_that_may_lose_references_make_the_export_incomplete(store, tmp_path, message, level):
    path = _log(tmp_path, [_ref("s3://b/k", K1), _record(message, level=level, objectUrl="s3://b/lost", error="timeout"), _completed(2)])
    ingest_s3keys(store, [path])
    (reason,) = _sources_incomplete(store)
    assert path in reason and "line 2" in reason and "s3://b/lost" in reason and message in reason


def test_a_scan_without_its_completed_record_is_incomplete(store, tmp_path):
    path = _log(tmp_path, [_ref("s3://b/k", K1), _record("stopping execution"), _record("last status", scanned=1)])
    ingest_s3keys(store, [path])
    (reason,) = _sources_incomplete(store)
    assert path in reason and "did not complete" in reason


def test_a_completed_scan_that_logged_no_key_is_incomplete(store, tmp_path):
    path = _log(tmp_path, [_record("start scanning bucket", url="s3://b"), _completed(5)])
    with pytest.raises(InputError):  # no S3 key at all: an error, and the source is recorded incomplete
        ingest_s3keys(store, [path])
    (reason,) = _sources_incomplete(store)
    assert "VERBOSE=1" in reason


def test_an_empty_bucket_scan_is_complete(store, tmp_path):
    empty = _log(tmp_path, [_record("start scanning bucket", url="s3://e"), _completed(0)], name="empty.log")
    full = _log(tmp_path, [_ref("s3://b/k", K1), _completed(1)], name="full.log")
    ingest_s3keys(store, [empty, full])
    assert _sources_incomplete(store) == []


def test_each_run_of_a_concatenated_log_must_complete(store, tmp_path):
    """Per-bucket logs appended into one file: one run killed mid-way is not made whole by another's completion."""
    killed = [{**r, "pid": 11} for r in (_ref("s3://a/k", K1), _record("stopping execution"), _record("last status", scanned=1))]
    finished = [{**r, "pid": 12} for r in (_ref("s3://b/k", K2), _completed(1))]
    ingest_s3keys(store, [_log(tmp_path, killed + finished)])
    (reason,) = _sources_incomplete(store)
    assert "did not complete" in reason and "pid 11" in reason
    store2 = Store.open(Settings(store=str(tmp_path / "store2")))
    ingest_s3keys(store2, [_log(tmp_path, [{**r, "pid": 11} for r in (_ref("s3://a/k", K1), _completed(1))] + finished, name="ok.log")])
    assert _sources_incomplete(store2) == []


def test_other_backends_keys_stay_on_the_fast_csv_path(tmp_path, monkeypatch):
    """The reference's jq CSVs list every backend's keys: those rows are skipped without leaving pyarrow's reader."""
    from ringfsck import Settings, Store, ingest_s3keys
    from ringfsck.ingest import s3keys

    def exact_path(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("fell back to the exact path")

    monkeypatch.setattr(s3keys, "_parse_exact", exact_path)
    path = tmp_path / "b_keys.txt"
    path.write_text('"b","one","' + "A" * 40 + '"\n"b","two","b/two on aws"\n"b","three","' + "B" * 40 + '"\n')
    store = Store.open(Settings(store=str(tmp_path / "store")))
    report = ingest_s3keys(store, [str(path)])
    assert report.rows == 2 and report.files[0].skipped == {"keys of other backends": 1}
