"""``ringfsck lab``: help with examples for every option, generate, serve."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ringfsck.cli.lab import lab

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@contextmanager
def lab_serve(world: Path, *options: str) -> Iterator[subprocess.Popen]:
    """``ringfsck lab serve --world WORLD OPTIONS`` in a process of its own, killed at the end whatever happened."""
    code = "import sys; from ringfsck.cli.lab import lab; lab(sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--world", str(world), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        yield proc
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("command", [[], ["generate"], ["serve"]])
def test_help_documents_every_option_with_an_example(command):
    result = CliRunner().invoke(lab, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "Examples:" in result.output
    group = lab.commands[command[0]] if command else lab
    for param in group.params:
        if param.name != "help":
            assert "Example: --" in (param.help or ""), param.name
            assert param.opts[0] in result.output


def test_generate(tmp_path):
    result = CliRunner().invoke(lab, ["generate", "--out", str(tmp_path / "w"), "--objects", "80", "--seed", "4", "--arc", "4+2",
                                      "--cos", "1", "--nodes", "3", "--buckets", "2", "--orphans", "0.1", "--gaps", "0.05", "--splits", "0.1",
                                      "--sizes", "4K-1M"])
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "w" / "truth.json").read_text())
    assert truth["settings"]["arc"] == "4+2" and truth["settings"]["cos"] == 1 and truth["settings"]["seed"] == 4
    assert truth["settings"]["sizes"] == [4096, 1 << 20] and all(4096 <= s <= 1 << 20 for s in truth["orphan_sizes"].values())
    assert f"orphans {truth['counts']['orphans']}" in result.output
    assert len(list((tmp_path / "w" / "listkeys").iterdir())) == 3
    bare = CliRunner().invoke(lab, ["generate", "--out", str(tmp_path / "b"), "--objects", "20", "--no-server-state"])
    assert bare.exit_code == 0 and not (tmp_path / "b" / "lab").exists()


@pytest.mark.parametrize("args, message", [(["--arc", "8-4"], "invalid ARC protection"), (["--gaps", "0.7", "--splits", "0.6"], "no room"),
                                           (["--sizes", "1M-1K"], "MIN <= MAX")])
def test_generate_refuses_bad_settings(tmp_path, args, message):
    result = CliRunner().invoke(lab, ["generate", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output
    assert result.output.startswith("Error: ") or "Usage:" in result.output  # one line, or click's usage error


def test_serve_a_world_without_state_is_one_error_line(tmp_path):
    result = CliRunner().invoke(lab, ["serve", "--world", str(tmp_path)])
    assert result.exit_code == 2 and "no lab state" in result.output


def test_serve_until_interrupted(lab_world):
    with lab_serve(lab_world.path, "--srebuildd-faults", "fail_keys=" + lab_world.truth["sproxyd_keys"][0]) as proc:
        urls = dict(re.match(r"(\w+)\s+(http://127\.0\.0\.1:\d+)", proc.stdout.readline()).groups() for _ in range(2))
        key = lab_world.truth["sproxyd_keys"]
        assert httpx.head(f"{urls['srebuildd']}/rebuild/arc-DATA/{key[0]}").status_code == 503
        assert httpx.head(f"{urls['srebuildd']}/rebuild/arc-DATA/{key[1]}").status_code == 200
        assert httpx.get(f"{urls['bucketd']}/_/raft_sessions/1/bucket").status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_serve_also_serves_the_supervisor_and_nodes(lab_world, tmp_path):
    with lab_serve(lab_world.path, "--node-faults", "node-01:bad_login=1") as proc:
        nodes = lab_world.truth["settings"]["nodes"]
        lines = [proc.stdout.readline() for _ in range(2 + 1 + nodes + 1)]  # srebuildd, bucketd, the supervisor, its nodes, the command
        supervisor = re.match(r"supervisor (http://127\.0\.0\.1:\d+)", lines[2]).group(1)
        assert [line.split()[0] for line in lines[3:-1]] == [f"node-{i:02d}" for i in range(nodes)]
        listing = lines[-1].removeprefix("List it: ").split()
        assert lines[-1].startswith("List it: ringfsck ingest ring") and listing[listing.index("--supervisor") + 1] == supervisor
        done = subprocess.run([sys.executable, "-m", "ringfsck", *listing[1:], "--store", str(tmp_path / "store")],
                              capture_output=True, text=True, env=ENV, timeout=120)
        assert done.returncode == 5 and "node-01" in done.stderr and "login refused" in done.stderr  # the fault given
        assert "node-00" in done.stdout and "rows in" in done.stdout
        password_file = Path(listing[listing.index("--password-file") + 1])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0 and not password_file.exists()


def test_serve_with_node_ips_gives_each_node_its_own_loopback_ip_and_srebuildd(lab_world, tmp_path):
    with lab_serve(lab_world.path, "--node-ips") as proc:
        nodes = lab_world.truth["settings"]["nodes"]
        lines = [proc.stdout.readline() for _ in range(2 + 1 + nodes + 1)]
        node_lines = [line.split() for line in lines[3:-1]]
        assert [words[0] for words in node_lines] == [f"node-{i:02d}" for i in range(nodes)]
        srebuildds = [words[words.index("srebuildd") + 1] for words in node_lines]
        assert [re.match(r"http://(127\.0\.0\.\d+):\d+$", url).group(1) for url in srebuildds] == [f"127.0.0.{2 + i}" for i in range(nodes)]
        assert len({url.rsplit(":", 1)[1] for url in srebuildds}) == 1  # one port for all, as on a RING
        key = next(iter(lab_world.truth["orphans"]))
        answer = httpx.head(f"{srebuildds[1]}/rebuild/arcdata-DATA/{key}", timeout=10)
        assert answer.status_code == 200  # a node's srebuildd answers for the RING
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
