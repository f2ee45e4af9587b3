"""The HTML report: self-contained, escaped, and rendered by a real headless Chromium."""

from __future__ import annotations

import html as html_text
import os
import re
import shutil
import subprocess

import pytest

from ringfsck import AnalysisOptions, Settings, Store, analyze, ingest_listkeys, ingest_s3keys
from ringfsck.capacity import human_bytes
from ringfsck.demo import run_demo
from ringfsck.report import FIRST_ROWS, render_report, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo"), objects=300, echo=lambda _line: None)


@pytest.fixture(scope="module")
def two_runs(demo, tmp_path_factory):
    """The demo's store after its deletion, analysed a second time: a history of two runs."""
    store = Store.open(Settings(store=str(demo.store)))
    analyze(store)
    report = tmp_path_factory.mktemp("two-runs") / "report.html"
    write_report(store, report)
    return store, report


def _chromium_dom(url: str, profile) -> str:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed")
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line], "console messages on the page"
    return dom.stdout


def _cells(dom: str, testid: str) -> list[str]:
    """The text of every element with this data-testid, in page order (tags inside stripped)."""
    return [html_text.unescape(re.sub(r"<[^>]+>", "", text)).strip() for text in re.findall(rf'data-testid="{testid}"[^>]*>(.*?)</t[dh]>', dom, re.S)]


def _table_rows(dom: str, testid: str) -> list[list[str]]:
    """The data rows of the table with this data-testid, as cell texts (tags stripped, entities decoded)."""
    table = re.search(rf'<table[^>]*data-testid="{testid}"[^>]*>(.*?)</table>', dom, re.S)
    assert table, testid
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        if cells:
            rows.append([html_text.unescape(re.sub(r"<[^>]+>", "\n", cell)).strip() for cell in cells])
    return rows


def test_object_names_are_quoted_with_control_characters_visible(tmp_path):
    # The reference's CSV percent-encodes names: this one holds CR LF, a NUL-free bidi override and a quote.
    (tmp_path / "node.csv").write_text("A" * 40 + "," + "B" * 40 + ",d,0\n")
    (tmp_path / "b_keys.txt").write_text('"bucket","crlf%0D%0Akey","' + "C" * 40 + '"\n"bucket","say%22hi%22%E2%80%AEgpj.exe","' + "D" * 40 + '"\n')
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(tmp_path / "node.csv")])
    ingest_s3keys(store, [str(tmp_path / "b_keys.txt")])
    analyze(store, AnalysisOptions(assume_no_splits=True))
    text = html_text.unescape(render_report(store))
    assert '"crlf\\r\\nkey"' in text and "crlf\r\nkey" not in text
    assert '"say\\"hi\\"\\u202egpj.exe"' in text and "\u202e" not in text


def test_data_loss_comes_first_and_the_tables_hold_the_stores_rows(two_runs):
    store, report = two_runs
    page = report.read_text()
    counts = store.run_summary()["counts"]
    assert counts["gaps"]["unrecoverable"] and counts["debris"] and counts["duplicates"], "the demo plants them"
    assert page.index('data-testid="data-loss"') < page.index("<h2>Warnings</h2>") < page.index("<h2>Gaps per bucket</h2>")
    assert page.count('data-testid="gaps-total"') == 1 and f">{sum(counts['gaps'].values()):,}<" in page


def test_report_is_self_contained(demo):
    html = demo.report.read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"(src|href)=\"https?:", html)
    assert "<svg" in html


def test_report_states_the_measured_size_reading_and_multipliers(demo):
    # The demo exports from bucketd (S3 sizes known) and its srebuildd answers the object's size.
    reading = demo.capacity["size_reading"]
    assert reading["decision"] == "object" and reading["answered"] >= 20
    html = demo.report.read_text()
    assert f"X-Scal-Size measured on {reading['answered']:,} referenced keys: {reading['object_matches']:,} agree with the object reading" in html.replace("&#39;", "'")
    assert "from X-Scal-Size: logical, raw" in html and "&times;1, &times;1.5" in html  # ARC 8+4 under the object reading


def test_object_keys_cannot_inject_html(tmp_path):
    (tmp_path / "node.csv").write_text("A" * 40 + "," + "B" * 40 + ",d,0\n")
    (tmp_path / "b_keys.txt").write_text('"bucket","<script>alert(1)</script><b>x","' + "C" * 40 + '"\n')
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(tmp_path / "node.csv")])
    ingest_s3keys(store, [str(tmp_path / "b_keys.txt")])
    analyze(store, AnalysisOptions(assume_no_splits=True))
    html = render_report(store)
    assert "<script>alert(1)" not in html and "<b>x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x" in html


def test_incomplete_analysis_is_shown_with_reasons_and_the_right_next_step(tmp_path, lab_world):
    store = Store.open(Settings(store=str(tmp_path / "store")))
    ingest_listkeys(store, [str(lab_world.listkeys_dir)])
    ingest_s3keys(store, [str(lab_world.s3keys_dir)])
    analyze(store)
    html = render_report(store)
    assert "Analysis INCOMPLETE" in html and "never checked for split objects" in html
    assert "ringfsck resolve" in html and "ringfsck manifest" not in html


@pytest.mark.browser
def test_report_renders_in_headless_chromium(demo, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed")
    url = demo.report.resolve().as_uri()
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not [line for line in dom.stderr.splitlines() if "CONSOLE" in line], "console messages on the page"

    def figure(testid: str) -> str:
        match = re.search(rf'data-testid="{testid}">([^<]*)<', dom.stdout)
        assert match, testid
        return match.group(1)

    counts = demo.summary["counts"]
    assert figure("orphans") == f"{counts['orphans']:,}"
    assert figure("candidates") == f"{counts['candidates']:,}"
    assert figure("gaps-missing") == f"{counts['gaps']['missing']:,}"
    assert figure("gaps-unrecoverable") == f"{counts['gaps']['unrecoverable']:,}"
    assert figure("debris") == f"{counts['debris']:,}"
    assert figure("logical") == human_bytes(demo.capacity["totals"]["logical_bytes"])
    assert figure("raw") == human_bytes(demo.capacity["totals"]["raw_bytes"])
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1600", f"--screenshot={screenshot}", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000


@pytest.mark.browser
def test_history_and_tables_render_in_headless_chromium_with_the_stores_figures(two_runs, tmp_path):
    store, report = two_runs
    dom = _chromium_dom(report.resolve().as_uri(), tmp_path / "profile")
    con = store.connect()
    runs = [store.run_summary(run_id) for run_id in store.run_ids()]
    assert len(runs) == 2
    # History: one column per run, oldest first, each run's own figures.
    assert _cells(dom, "history-orphans") == [f"{run['counts']['orphans']:,}" for run in runs]
    for status in ("unrecoverable", "missing", "degraded"):
        assert _cells(dom, f"history-{status}") == [f"{run['counts']['gaps'][status]:,}" for run in runs]
    first_capacity = __import__("json").loads((store.run_dir(runs[0]["run_id"]) / "capacity.json").read_text())["totals"]
    assert _cells(dom, "history-logical") == [human_bytes(first_capacity["logical_bytes"]), "not sized"]
    deleted = con.execute("SELECT count(*) FROM orphans").fetchone()[0]  # the demo deleted every orphan of its run
    # Deletions belong to the run whose manifest they came from: the second run deleted nothing.
    assert _cells(dom, "history-deleted") == [f"{deleted:,}", "none"]
    # Debris and duplicates: the first rows of the store's views, with their keys, chunks and objects.
    debris = con.execute("SELECT ring_key, chunks FROM debris ORDER BY referenced DESC, ring_key LIMIT ?", [FIRST_ROWS]).fetchall()
    assert [(row[0], int(row[2])) for row in _table_rows(dom, "debris-table")] == debris
    duplicates = con.execute("SELECT sproxyd_key, reference_count, objects FROM duplicates ORDER BY reference_count DESC, sproxyd_key LIMIT ?",
                             [FIRST_ROWS]).fetchall()
    shown = _table_rows(dom, "duplicates-table")
    assert [(row[0], int(row[1])) for row in shown] == [(key, count) for key, count, _ in duplicates]
    for row, (_, _, objects) in zip(shown, duplicates):
        assert row[2].split("\n")[0] == '"' + objects[0] + '"'
    unrecoverable = con.execute("SELECT sproxyd_key FROM gaps WHERE status = 'unrecoverable' ORDER BY bucket, object_key").fetchall()
    assert [row[3] for row in _table_rows(dom, "unrecoverable")] == [key for (key,) in unrecoverable][:FIRST_ROWS]
    latest = runs[-1]["counts"]
    assert re.search(r'data-testid="main-chunks">([^<]*)<', dom).group(1) == f"{latest['ring_main_chunks']:,}"
    assert re.search(r'data-testid="gaps-total">([^<]*)<', dom).group(1) == f"{sum(latest['gaps'].values()):,}"
