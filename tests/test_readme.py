"""The README's examples of reading the store with DuckDB and Polars run as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import duckdb
import pytest

import _planted
from ringfsck.config import Settings
from ringfsck.store import Store

README = Path(__file__).resolve().parent.parent / "README.md"


def _store_section_blocks(language: str) -> list[str]:
    text = README.read_text()
    section = text[text.index("## The store") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


@pytest.fixture(scope="module")
def readme_store(tmp_path_factory):
    """A store at ./ringfsck-store, the default the examples use."""
    root = tmp_path_factory.mktemp("readme")
    world, _, _ = _planted.analyzed(root, "ringfsck-store")
    return root, world


def test_duckdb_examples(readme_store, monkeypatch):
    root, world = readme_store
    monkeypatch.chdir(root)
    (block,) = _store_section_blocks("sql")
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", block).split(";") if s.strip()]
    assert len(statements) >= 3
    results = [duckdb.connect().execute(statement).fetchall() for statement in statements]
    assert sum(count for _, count in results[0]) == len(world.orphans)
    # the packed keys read back as the hex keys of the listing
    top_keys = {key for key, _ in results[2]}
    with Store.open(Settings(store=str(root / "ringfsck-store"))).connect() as con:
        listed = {row[0] for row in con.execute("SELECT DISTINCT main_chunk FROM listkeys").fetchall()}
    assert top_keys and top_keys <= listed


def test_polars_example(readme_store, monkeypatch):
    root, world = readme_store
    monkeypatch.chdir(root)
    (block,) = _store_section_blocks("python")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(compile(block, "README.md", "exec"), {})
    assert "disk" in output.getvalue() and "len" in output.getvalue()


def test_the_command_reference_is_the_help_of_every_command():
    """README's command reference is generated from --help; this fails when they drift (fix: python -m ringfsck.cli.reference)."""
    import os
    import subprocess
    import sys

    from ringfsck.cli.reference import BEGIN, END

    # In a process of its own, as an operator's --help is: click caches each command's help option
    # when first used, so commands invoked earlier in this process (without -h) would print otherwise.
    env = {**os.environ, "PYTHONPATH": str(README.parent)}
    check = subprocess.run([sys.executable, "-m", "ringfsck.cli.reference", "--check", str(README)], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    text = README.read_text()
    reference = text[text.index(BEGIN):text.index(END)]
    # Generic: every command and subcommand of the group is in it, whichever module adds it.
    from ringfsck.cli import main

    for name in main.list_commands(None):
        assert f"<code>ringfsck {name}</code>" in reference, name
        for sub in getattr(main.get_command(None, name), "commands", {}):
            assert f"<code>ringfsck {name} {sub}</code>" in reference, (name, sub)


def test_the_reference_generator_rewrites_only_its_section(tmp_path):
    from click.testing import CliRunner

    from ringfsck.cli.reference import BEGIN, END, generate

    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{BEGIN}\nstale\n{END}\nafter\n")
    assert CliRunner().invoke(generate, ["--check", str(readme)]).exit_code == 1
    assert CliRunner().invoke(generate, [str(readme)]).exit_code == 0
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{END}\nafter\n") and "stale" not in text
    assert "<code>ringfsck ingest listkeys</code>" in text and "Usage: ringfsck ingest listkeys [OPTIONS] [PATH]..." in text
    assert CliRunner().invoke(generate, ["--check", str(readme)]).exit_code == 0
