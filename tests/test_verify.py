"""``ringfsck verify``: reverse lookups through a configured command, read conservatively (issue 15 point 4)."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from test_delete import POLICY, prepared

from ringfsck.config import Settings
from ringfsck.deleter import delete_from_manifest
from ringfsck.errors import ConfigError, RefusedError
from ringfsck.manifest import write_manifest
from ringfsck.reverse_lookup import command_for, found_input_key, verify_manifest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = shlex.quote(sys.executable)


def _with(store, **settings):
    store.settings = dataclasses.replace(store.settings, **settings)
    return store


@pytest.fixture
def manifest_store(lab_world, lab_servers, tmp_path):
    store = prepared(lab_world, lab_servers, tmp_path / "store")
    write_manifest(store, tmp_path / "m.csv")
    return store


def test_the_lab_reverse_lookup_verifies_every_orphan(lab_world, manifest_store, tmp_path):
    store = _with(manifest_store, reverse_lookup_command=f"{PYTHON} -m ringfsck.lab.revlookup --world {shlex.quote(str(lab_world.path))} {{key}}")
    report = verify_manifest(store, tmp_path / "m.csv")
    assert report.outcomes == {"verified": len(lab_world.truth["orphans"])}
    lines = report.results.read_text().splitlines()
    assert len(lines) == report.asked and all('"status": "verified"' in line for line in lines)
    sampled = verify_manifest(store, tmp_path / "m.csv", sample=3)
    assert sampled.asked == 3 and sampled.outcomes["verified"] == 3


def test_a_found_key_that_s3_references_refuses_the_manifest(lab_world, lab_servers, manifest_store, tmp_path):
    live = lab_world.truth["sproxyd_keys"][0]
    liar = tmp_path / "liar.py"
    liar.write_text(f"import sys\nprint(sys.argv[1] + ' was written by {live}')\n")
    store = _with(manifest_store, reverse_lookup_command=f"{PYTHON} {shlex.quote(str(liar))} {{key}}")
    with pytest.raises(RefusedError, match=f"written by input key {live}, which S3 references"):
        verify_manifest(store, tmp_path / "m.csv", sample=2)
    with pytest.raises(RefusedError, match="which S3 references"):
        delete_from_manifest(store, tmp_path / "m.csv", execute=True, base_url=lab_servers.srebuildd_url, policy=POLICY)
    assert lab_servers.deleted() == set()
    done = subprocess.run([sys.executable, "-m", "ringfsck", "delete", "--manifest", str(tmp_path / "m.csv"), "--store", str(store.root)],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 4 and "which S3 references" in done.stderr


@pytest.mark.parametrize(("script", "why"), [
    ("print('nothing here')", "output not understood"),
    ("print('AB' * 20, 'CD' * 20)", "output not understood"),  # two candidates: no guess
    ("import sys; sys.exit(3)", "exit status 3"),
    ("import time; time.sleep(5)", "no answer within"),
])
def test_failed_or_unreadable_lookups_are_unverified(manifest_store, tmp_path, script, why):
    tool = tmp_path / "tool.py"
    tool.write_text(script + "\n")
    store = _with(manifest_store, reverse_lookup_command=f"{PYTHON} {shlex.quote(str(tool))} {{key}}", reverse_lookup_timeout=0.5)
    report = verify_manifest(store, tmp_path / "m.csv", sample=1)
    assert report.outcomes == {"unverified": 1} and why in report.first_unverified[0]


def test_the_command_is_split_without_a_shell_and_its_placeholders_checked():
    settings = Settings(reverse_lookup_command="ssh {node} scalarcrevlookupid -b {ip}:{port} {key}", reverse_lookup_node="n1; rm -rf /",
                        reverse_lookup_ip="10.0.0.1", reverse_lookup_port=4244)
    assert command_for(settings, "A" * 40) == ["ssh", "n1; rm -rf /", "scalarcrevlookupid", "-b", "10.0.0.1:4244", "A" * 40]
    with pytest.raises(ConfigError, match="set reverse_lookup_node"):
        command_for(Settings(reverse_lookup_command="ssh {node} x {key}"), "A" * 40)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        command_for(Settings(reverse_lookup_command="x {host} {key}"), "A" * 40)
    with pytest.raises(ConfigError, match="no reverse_lookup_command"):
        command_for(Settings(), "A" * 40)


def test_the_found_key_is_the_one_other_40_hex_token():
    queried = "B" * 40
    assert found_input_key(f"{queried} -> {'c' * 40}\n", queried) == "C" * 40
    assert found_input_key(f"{queried}\n", queried) is None
    assert found_input_key("key " + "D" * 41, queried) is None  # not a 40-hex token
