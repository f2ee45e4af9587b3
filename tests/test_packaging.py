"""A plain (non-editable) install ships the SQL steps and the report templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("ringfsck-*.whl")
    return path


def test_wheel_contains_sql_and_templates(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for sql in sorted((ROOT / "sql").rglob("*.sql")):
        assert f"ringfsck/_resources/sql/{sql.relative_to(ROOT / 'sql').as_posix()}" in names
    for template in sorted((ROOT / "reports" / "templates").rglob("*")):
        if template.is_file():
            assert f"ringfsck/_resources/templates/{template.relative_to(ROOT / 'reports' / 'templates').as_posix()}" in names


def test_installed_wheel_finds_its_resources_outside_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True, capture_output=True)
    probe = (
        "from ringfsck._resources import resource_dir; from ringfsck.steps import sql_steps; "
        "print(resource_dir('sql')); print(len(sql_steps()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True
    )
    sql_dir, steps = result.stdout.split()
    assert Path(sql_dir).is_relative_to(target)
    assert int(steps) == len(list((ROOT / "sql").glob("[0-9][0-9]_*.sql"))) - 1
