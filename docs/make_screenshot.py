"""The README's screenshot (docs/report.png): the report of a lab world after a deletion, with a history of two runs.

    python docs/make_screenshot.py [--output docs/report.png] [--objects 2000]

What an operator's second weekly check looks like: the lab world is listed natively, exported from
bucketd, resolved, analysed and sized twice; the orphans of the second run are deleted from its
manifest, then the report is rendered and photographed full-page by Debian's headless Chromium
(``apt-get install chromium``). Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ringfsck.analysis import analyze
from ringfsck.config import Settings, SupSettings
from ringfsck.deleter import delete_from_manifest
from ringfsck.ingest.bucketd import ingest_bucketd
from ringfsck.ingest.ring import ingest_ring, sup_credentials
from ringfsck.lab import LabServers, generate_world
from ringfsck.manifest import write_manifest
from ringfsck.remote.http import HttpPolicy
from ringfsck.report import write_report
from ringfsck.resolve import resolve_splits
from ringfsck.sizing import size_orphans
from ringfsck.store import Store

WIDTH = 1280
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
# Appended to a copy of the report to read its laid-out height (the report itself runs no script).
_MEASURE = '<script>document.body.setAttribute("data-page-height", document.documentElement.scrollHeight)</script>'


def build_report(root: Path, objects: int, seed: int) -> Path:
    """Two analyses of one lab world, the second one's orphans deleted: the report's path."""
    world = generate_world(root / "world", objects=objects, seed=seed)
    policy = HttpPolicy(concurrency=32, timeout=10, retries=8, backoff_base=0.01, backoff_max=0.2)
    with LabServers(world.path) as lab:
        sup = SupSettings(url=lab.supervisor_url, login=lab.sup_login, password=lab.sup_password, ca_bundle=lab.ca_bundle)
        store = Store.open(Settings(store=str(root / "store"), sup=sup, cos_protection=world.truth["settings"]["cos"]))
        ingest_ring(store, supervisor=sup.url, credentials=sup_credentials(store.settings, []), policy=policy)
        ingest_bucketd(store, lab.bucketd_url, raft_sessions=[1, 2], policy=policy)
        resolve_splits(store, base_url=lab.srebuildd_url, policy=policy)
        for _week in range(2):
            analyze(store)
            size_orphans(store, base_url=lab.srebuildd_url, policy=policy)
        write_manifest(store, root / "orphans.csv")
        delete_from_manifest(store, root / "orphans.csv", execute=True, base_url=lab.srebuildd_url, policy=policy)
    return Path(write_report(store, root / "report.html"))


def _chromium(chromium: str, profile: Path, *arguments: str) -> str:
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        sys.exit(f"chromium failed: {done.stderr[-2000:]}")
    return done.stdout


def screenshot(report: Path, output: Path, chromium: str, work: Path) -> int:
    """A full-page PNG of ``report`` at WIDTH pixels: its height, measured first on a copy."""
    measured = work / "measure.html"
    measured.write_text(report.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    dom = _chromium(chromium, work / "profile", f"--window-size={WIDTH},1000", "--dump-dom", measured.as_uri())
    height = int(re.search(r'data-page-height="(\d+)"', dom).group(1))
    _chromium(chromium, work / "profile", f"--window-size={WIDTH},{height}", f"--screenshot={output.resolve()}", report.as_uri())
    return height


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "report.png")
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("Debian's chromium is needed: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="ringfsck-screenshot-") as directory:
        work = Path(directory)
        report = build_report(work, args.objects, args.seed)
        height = screenshot(report, args.output, chromium, work)
    print(f"{args.output}: {WIDTH}x{height}, {args.output.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
