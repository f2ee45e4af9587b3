"""The HTML report: self-contained, escaped, and rendered by a real headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from ringfsck import AnalysisOptions, Settings, Store, analyze, ingest_listkeys, ingest_s3keys
from ringfsck.capacity import human_bytes
from ringfsck.demo import run_demo
from ringfsck.report import render_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo"), objects=300, echo=lambda _line: None)


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
