"""The whole job on a simulated live RING and bucketd: ringfsck's commands against the reference's Spark jobs.

Generates (or reuses, ``--world DIR``) a lab world of about ``--rows`` listkeys rows and serves it
with the lab (supervisor and nodes, bucketd, srebuildd on 127.0.0.1). Then, each step its own
process, measured (wall time, peak RSS of its whole process tree, JVM included):

* ringfsck as an operator runs it: ``ingest ring``, ``ingest bucketd``, ``resolve``, ``analyze``,
  ``size``, ``report``, through the CLI;
* the reference in PySpark local mode (``local[*]``; benchmarks/spark_baseline.py, ``pip install
  .[bench]``, Java 17): ``listkey`` (every node through the supervisor, one node per task), ``p0``
  (digkeys, asking srebuildd whether each key is split, one request at a time per task), ``p1``,
  ``p2``, each its own Spark application. The reference's S3 export (s3utils, Node.js, not Spark)
  is not run: p0 reads the world's export files, the same keys the lab's bucketd serves, and its
  time is not counted (which favours the reference).

Prints each step's seconds, peak RSS and CPU seconds (the figure that does not depend on the
machine's load: per million listkeys rows for each side, the lab's servers apart), the totals, the
ratios reference/ringfsck, and both orphan counts with what makes them differ (the reference's
known bugs, docs/domain.md sections 4, 5, 6 and 8). p0's lookups dominate the reference at scale:
``--reference-lookups-sample N`` asks srebuildd about N keys only and projects the time of the
others linearly (printed as projected); ringfsck always runs in full.

    python benchmarks/bench_whole_job.py --rows 1000000                       # ~10 min on a loaded 2-core machine
    python benchmarks/bench_whole_job.py [--rows 10000000] [--world /var/tmp/whole-job-world] [--reference-lookups-sample 50000]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Measured, lab_world, run_measured  # noqa: E402

from ringfsck.capacity import human_bytes  # noqa: E402
from ringfsck.lab import LabServers, World  # noqa: E402
from ringfsck.lab._state import MANIFEST, STATE_DIR  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _run(label: str, cmd: list[str], env: dict[str, str]) -> Measured:
    measured = run_measured(cmd, env={"PYTHONPATH": str(ROOT), **env})
    if measured.returncode != 0:
        raise SystemExit(f"{label} failed (exit {measured.returncode}):\n{measured.stderr[-3000:]}")
    print(f"  {label:<18} {measured.seconds:8.1f} s  peak {human_bytes(measured.peak_rss_bytes):>10}  CPU {measured.cpu_seconds:7.1f} s", flush=True)
    return measured


def _lab_cpu(lab: LabServers) -> float:
    """CPU seconds the lab's servers have used (they answer both sides, on the same cores)."""
    fields = Path(f"/proc/{lab.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _raft_sessions(world: World) -> list[str]:
    buckets = json.loads((world.path / STATE_DIR / MANIFEST).read_text())["buckets"]
    return sorted({str(info["raft_session"]) for info in buckets.values()})


def run_ringfsck(lab: LabServers, world: World, store: Path, report: Path) -> tuple[dict[str, Measured], set[str]]:
    """The whole job as an operator runs it, one ringfsck process per step; and the orphans it found."""
    common = ["--store", str(store)]
    ring = ["--supervisor", lab.supervisor_url, "--ring", lab.ring, "--login", lab.sup_login]
    ring += ["--ca-bundle", lab.ca_bundle] if lab.ca_bundle else []
    settings = world.truth["settings"]
    steps = {
        "ingest ring": ["ingest", "ring", *ring],
        "ingest bucketd": ["ingest", "bucketd", "--url", lab.bucketd_url, *(a for s in _raft_sessions(world) for a in ("--raft-session", s))],
        "resolve": ["resolve", "--srebuildd", lab.srebuildd_url],
        "analyze": ["analyze", "--arc", settings["arc"], "--cos", str(settings["cos"])],
        "size": ["size", "--srebuildd", lab.srebuildd_url],
        "report": ["report", "-o", str(report)],
    }
    env = {"RINGFSCK_SUP_PASSWORD": lab.sup_password}
    measured = {name: _run(name, [sys.executable, "-m", "ringfsck", *args, *common], env) for name, args in steps.items()}
    return measured, _keys_from_store(store, "select ring_key from orphans")


def _keys_from_store(store: Path, query: str) -> set[str]:
    """The first column of a query over ringfsck's store (not measured)."""
    listed = run_measured([sys.executable, "-m", "ringfsck", "sql", query, "--format", "csv", "--store", str(store)], env={"PYTHONPATH": str(ROOT)})
    if listed.returncode != 0:
        raise SystemExit(f"ringfsck sql failed:\n{listed.stderr[-2000:]}")
    return {row[0] for row in list(csv.reader(io.StringIO(listed.stdout)))[1:]}


def run_reference(lab: LabServers, world: World, work: Path, sample: int | None, memory: str) -> tuple[dict[str, Measured], set[str], dict]:
    """listkey, p0 (with srebuildd lookups), p1, p2: each its own Spark application; the orphans p2 wrote."""
    listkeys = work / "listkeys.csv"
    base = [sys.executable, str(HERE / "spark_baseline.py"), "--work", str(work), "--memory", memory, "--ring", lab.ring]
    listkey = ["--step", "listkey", "--supervisor", lab.supervisor_url, "--login", lab.sup_login, "--listkeys", str(listkeys)]
    listkey += ["--ca-bundle", lab.ca_bundle] if lab.ca_bundle else []
    p0 = ["--step", "p0", "--s3keys", str(world.path / "s3-bucketd"), "--srebuildd", lab.srebuildd_url]
    if sample:  # a share of the keys, spread evenly over the exports by a hash of the key
        p0 += ["--lookups-share", str(min(1.0, sample / world.truth["counts"]["export_rows"]))]
    steps = {
        "listkey": listkey,
        "p0": p0,
        "p1": ["--step", "p1", "--listkeys", str(listkeys), "--listkeys-header"],
        "p2": ["--step", "p2"],
    }
    env = {"RINGFSCK_SUP_PASSWORD": lab.sup_password}
    measured = {name: _run(f"spark {name}", [*base, *args], env) for name, args in steps.items()}
    p0_result = json.loads(measured["p0"].stdout.strip().splitlines()[-1])
    orphans = set()
    for part in (work / "s3objects-missing.csv").glob("part-*"):
        orphans.update(line.strip() for line in part.read_text().splitlines() if line.strip())
    p0_result["nok_digkeys"] = set()  # the input keys whose lookup failed (NOK_HTTP), by digkey
    for part in (work / "s3-dig-keys.csv").glob("part-*"):
        with part.open(newline="") as rows:
            p0_result["nok_digkeys"].update(_digkey(row["key"]) for row in csv.DictReader(rows) if row["digkey"] == "NOK_HTTP")
    return measured, orphans, p0_result


def _digkey(key: str) -> str:
    """docs/domain.md section 3 (what both sides match on)."""
    digits = key.upper().lstrip("0")
    digits = "0" * (len(digits) % 2) + digits
    return hashlib.md5(bytes.fromhex(digits)).hexdigest()[:22].upper() + "0000"


def explain_difference(ringfsck: set[str], reference: set[str], world: World, sampled: bool, nok: set[str], store: Path) -> list[str]:
    """Why the two orphan sets differ, each difference put down to a known cause (or left unexplained).

    ``nok``: digkeys of the input keys whose lookup p0 turned into NOK_HTTP (srebuildd answered 404 or failed).
    """
    truth = world.truth
    split_indexes = {_digkey(key) for key in truth["splits"]}
    subkeys = {_digkey(sub) for subs in truth["splits"].values() for sub in subs}
    debris = set(truth["debris"])
    tombstones_only = _keys_from_store(store, "select main_chunk from listkeys group by all having min(flag % 2) = 1")
    causes = {
        "split index chunks (the reference forgets the index's own chunk, docs/domain.md section 4)": lambda k: k[:26] in split_indexes,
        "subkeys of split objects not looked up (the lookup sample)": lambda k: sampled and k[:26] in subkeys,
        "referenced keys whose lookup answered NOK_HTTP (an unknown read as unreferenced, docs/domain.md section 8)": lambda k: k[:26] in nok,
        "main chunks holding only tombstones (the reference ignores the flag for service 51, docs/domain.md sections 5, 6)":
            lambda k: k in tombstones_only,
        "debris the reference counts as candidates (it counts rows, tombstones included, docs/domain.md section 6)": lambda k: k in debris,
    }
    lines = []
    only_reference = reference - ringfsck
    for cause, matches in causes.items():
        found = {k for k in only_reference if matches(k)}
        if found:
            lines.append(f"    {len(found):>8,} reference only: {cause}")
            only_reference -= found
    if only_reference:
        lines.append(f"    {len(only_reference):>8,} reference only, UNEXPLAINED, e.g. {sorted(only_reference)[:3]}")
    if only_ringfsck := ringfsck - reference:
        service_50 = {k for k in only_ringfsck if k[30:32] == "50"}
        if service_50:
            lines.append(f"    {len(service_50):>8,} ringfsck only: service 50 chunks the reference drops (it keeps flag text with a 0 only, docs/domain.md section 6)")
        if rest := only_ringfsck - service_50:
            lines.append(f"    {len(rest):>8,} ringfsck only, UNEXPLAINED, e.g. {sorted(rest)[:3]}")
    return lines


def _ratio(reference: float, ringfsck: float) -> str:
    return f"{reference / ringfsck:.1f}x" if ringfsck else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="about this many listkeys rows (default 10 M)")
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--world", type=Path, default=None, help="keep (and reuse) the generated world here")
    parser.add_argument("--work", type=Path, default=None, help="the store and Spark's outputs (default: a temporary directory, removed)")
    parser.add_argument("--memory", default="2g", help="spark.driver.memory (default 2g)")
    parser.add_argument("--reference-lookups-sample", type=int, metavar="N",
                        help="p0 asks srebuildd about N keys only and projects the rest linearly (a full run is slow)")
    args = parser.parse_args()

    world = lab_world(args.world, args.rows, args.nodes, prefix="whole-job-world-")
    counts = world.truth["counts"]
    print(f"world: {counts['listkeys_rows']:,} listkeys rows on {args.nodes} nodes, {counts['export_rows']:,} S3 export rows, "
          f"{counts['splits']:,} split objects, {len(world.truth['orphans']):,} planted orphans; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores", flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="whole-job-"))
    shutil.rmtree(work / "store", ignore_errors=True)
    try:
        with LabServers(world) as lab:
            print(f"lab: supervisor {lab.supervisor_url} ({'HTTPS' if lab.ca_bundle else 'HTTP'}), bucketd {lab.bucketd_url}, "
                  f"srebuildd {lab.srebuildd_url}; no added latency", flush=True)
            print("ringfsck, one process per step:", flush=True)
            lab_before = _lab_cpu(lab)
            ours, ringfsck_orphans = run_ringfsck(lab, world, work / "store", work / "report.html")
            lab_ours = _lab_cpu(lab) - lab_before
            print("reference, one Spark application per job (local[*]):", flush=True)
            theirs, reference_orphans, p0 = run_reference(lab, world, work / "spark", args.reference_lookups_sample, args.memory)
            lab_theirs = _lab_cpu(lab) - lab_before - lab_ours
        load = os.getloadavg()[0]

        ours_seconds = sum(m.seconds for m in ours.values())
        ours_peak = max(m.peak_rss_bytes for m in ours.values())
        projected = p0.get("projected_extra_seconds", 0.0)
        theirs_seconds = sum(m.seconds for m in theirs.values()) + projected
        theirs_peak = max(m.peak_rss_bytes for m in theirs.values())
        ours_cpu = sum(m.cpu_seconds for m in ours.values())
        # CPU counts only what ran: with a lookup sample the unasked keys' CPU is missing (understating the reference's).
        theirs_cpu = sum(m.cpu_seconds for m in theirs.values())
        millions = counts["listkeys_rows"] / 1e6
        print(f"ringfsck total   {ours_seconds:8.1f} s  peak {human_bytes(ours_peak)}  CPU {ours_cpu:.1f} s = {ours_cpu / millions:.1f} s per M rows"
              f"  (lab servers: {lab_ours:.1f} CPU s more)")
        print(f"reference total  {theirs_seconds:8.1f} s  peak {human_bytes(theirs_peak)}  CPU {theirs_cpu:.1f} s = {theirs_cpu / millions:.1f} s per M rows"
              f"  (lab servers: {lab_theirs:.1f} CPU s more)")
        print(f"  p0: {p0['lookups']:,} srebuildd lookups of {p0['keys']:,} keys, {p0['cores']} task(s) at a time, "
              f"{p0['lookup_task_seconds']:.1f} task-seconds in lookups, {p0['failed_lookups']:,} answered NOK_HTTP")
        if projected:
            print(f"  PROJECTED: p0 looked up {p0['lookups']:,} of {p0['keys']:,} keys; the time of the other {p0['keys'] - p0['lookups']:,} "
                  f"lookups is projected linearly from them: +{projected:.1f} s, counted in the total above (not in its CPU)")
        print("  not counted: the reference's S3 export (s3utils' verifyBucketSproxydKeys.js, Node.js, then jq): p0 reads the "
              "world's export files; ringfsck's ingest bucketd is counted (this favours the reference)")
        print(f"reference/ringfsck: time {_ratio(theirs_seconds, ours_seconds)}, peak memory {_ratio(theirs_peak, ours_peak)}, "
              f"CPU {_ratio(theirs_cpu, ours_cpu)}  (load average {load:.1f} at the end)")
        print(f"orphan main chunks: ringfsck {len(ringfsck_orphans):,}, reference {len(reference_orphans):,} "
              f"(planted: {len(world.truth['orphans']):,}; in common {len(ringfsck_orphans & reference_orphans):,})")
        if ringfsck_orphans != set(world.truth["orphans"]):
            print("  ringfsck did NOT find exactly the planted orphans")
        for line in explain_difference(ringfsck_orphans, reference_orphans, world, bool(projected), p0["nok_digkeys"], work / "store"):
            print(line)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
