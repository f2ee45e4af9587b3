"""Every command ringfsck prints (Next: lines, the report's next steps) runs as printed, from another folder.

The operator works in one folder with the default store (./ringfsck-store); each printed
command is then run, through a shell-like split, from a different folder, as a new process.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ringfsck.errors import EXIT_USAGE

_CODE = re.compile(r"<code>(.*?)</code>", re.S)


def ringfsck(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ringfsck as a new process in ``cwd`` (this checkout's code, no config or store from the environment)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RINGFSCK_")}
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "ringfsck", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)


def run_as_printed(command: str, cwd: Path) -> subprocess.CompletedProcess:
    words = shlex.split(command, comments=True)
    assert words[0] == "ringfsck", command
    return ringfsck(cwd, *words[1:])


def next_lines(output: str) -> list[str]:
    """The commands of the 'Next:' lines (and their indented continuations) of a command's output."""
    commands, in_next = [], False
    for line in output.splitlines():
        if line.startswith("Next: "):
            in_next = True
            commands.append(line[len("Next: "):].strip())
        elif in_next and line.startswith(" ") and line.strip().startswith("ringfsck "):
            commands.append(line.strip())
        else:
            in_next = False
    return commands


def report_commands(report: Path) -> list[str]:
    text = report.read_text()
    section = text[text.index("Next steps"):]
    section = section[:section.index("</table>")]
    return [html.unescape(code) for code in _CODE.findall(section)]


@pytest.fixture
def operator(tmp_path, lab_world, lab_servers):
    """An analysed and sized store at the operator's ./ringfsck-store, as the README's steps leave it."""
    here = tmp_path / "operator"
    here.mkdir()
    steps = [
        ("ingest", "listkeys", str(lab_world.listkeys_dir)),
        ("ingest", "bucketd", "--url", lab_servers.bucketd_url, "--raft-session", "1", "--raft-session", "2"),
        ("resolve", "--srebuildd", lab_servers.srebuildd_url),
        ("analyze",),
        ("size", "--srebuildd", lab_servers.srebuildd_url),
        ("report", "-o", "report.html"),
    ]
    outputs = {}
    for step in steps:
        result = ringfsck(here, *step)
        assert result.returncode == 0, (step, result.stdout, result.stderr)
        outputs[step[0] if step[0] != "ingest" else f"ingest {step[1]}"] = result
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return here, elsewhere, outputs


def test_report_and_manifest_commands_run_from_another_folder(operator, lab_world, lab_servers):
    here, elsewhere, _ = operator
    commands = report_commands(here / "report.html")
    assert [c for c in commands if " manifest " in f"{c} "] and [c for c in commands if "--execute" in c]
    store = str(here / "ringfsck-store")
    for command in commands:
        assert f"--store {store}" in command, command
        result = run_as_printed(command, elsewhere)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        assert "dry run" not in result.stdout or "--execute" not in command
    assert sorted(lab_servers.deleted()) == sorted(lab_world.truth["orphans"])
    assert not (elsewhere / "ringfsck-store").exists()

    # A manifest written in the operator's folder: its Next lines run from elsewhere too.
    result = ringfsck(here, "manifest", "-o", "again.csv")
    assert result.returncode == 0, result.stderr
    printed = next_lines(result.stdout)
    assert len(printed) == 2 and all(str(here / "again.csv") in command for command in printed)
    for command in printed:
        rerun = run_as_printed(command, elsewhere)
        assert rerun.returncode == 0, (command, rerun.stdout, rerun.stderr)
        # Everything is already deleted: said so, and not called a dry run when it is not one.
        assert "nothing left to delete" in rerun.stdout, rerun.stdout
        assert ("dry run" in rerun.stdout) == ("--execute" not in command), (command, rerun.stdout)


def test_ingest_says_where_the_store_is(operator):
    here, _, outputs = operator
    store = str(here / "ringfsck-store")
    for name in ("ingest listkeys", "ingest bucketd"):
        assert store in outputs[name].stdout, (name, outputs[name].stdout)
    assert "ringsh noise line" in outputs["ingest listkeys"].stdout


def test_the_srebuildd_url_comes_from_the_config_when_it_has_it(tmp_path, operator, lab_servers):
    here, elsewhere, _ = operator
    config = here / "fsck.yml"
    config.write_text(f"store: {here / 'ringfsck-store'}\nsrebuildd_url: {lab_servers.srebuildd_url}\n")
    result = ringfsck(here, "--config", "fsck.yml", "manifest", "-o", "orphans.csv")
    assert result.returncode == 0, result.stderr
    printed = next_lines(result.stdout)
    assert printed and all(f"--config {config}" in command for command in printed)
    assert not any("--store" in command or "--srebuildd" in command for command in printed)
    dry_run = run_as_printed(printed[0], elsewhere)
    assert dry_run.returncode == 0 and "would delete" in dry_run.stdout, dry_run.stdout + dry_run.stderr


def test_an_unknown_srebuildd_is_printed_as_a_blank_to_fill(tmp_path, operator):
    from ringfsck.commands import UNKNOWN_SREBUILDD

    here, elsewhere, _ = operator
    (here / "ringfsck-store" / "srebuildd.json").unlink()
    result = ringfsck(here, "manifest", "-o", "orphans.csv")
    execute = next_lines(result.stdout)[-1]
    assert UNKNOWN_SREBUILDD in execute
    # As printed it cannot reach anything: a usage error naming the option, before any request.
    refused = run_as_printed(execute, elsewhere)
    assert refused.returncode == EXIT_USAGE, refused.stderr
    assert "srebuildd" in refused.stderr


def test_the_reports_next_steps_follow_the_deletion(operator, lab_world, lab_servers):
    """Part deleted: the next step resumes from the manifest the journal names; all deleted: a fresh check."""
    here, elsewhere, _ = operator
    assert ringfsck(here, "manifest", "-o", "budget.csv").returncode == 0
    first = ringfsck(here, "delete", "--manifest", "budget.csv", "--execute", "--max-keys", "3", "--srebuildd", lab_servers.srebuildd_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(lab_servers.deleted()) == 3

    assert ringfsck(here, "report", "-o", "partly.html").returncode == 0
    [resume] = report_commands(here / "partly.html")
    assert "--execute" in resume and f"--manifest {here / 'budget.csv'}" in resume, resume
    orphans = len(lab_world.truth["orphans"])
    assert f"{orphans - 3:,} key(s) of the manifest left" in (here / "partly.html").read_text()
    result = run_as_printed(resume, elsewhere)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(lab_servers.deleted()) == sorted(lab_world.truth["orphans"])

    assert ringfsck(here, "report", "-o", "done.html").returncode == 0
    [fresh] = report_commands(here / "done.html")
    assert shlex.split(fresh)[1] == "analyze", fresh
    assert "every orphan of this analysis is deleted or was already gone" in (here / "done.html").read_text()
