"""The docs stay true to the tree: citations of docs/domain.md name sections it has, docs/architecture.md names
every module of ringfsck/ and nothing that is not there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ROOT / "docs" / "domain.md"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# Where the domain is cited: the code, its SQL, tests, benchmarks, report templates and the docs.
CITING = [ROOT / "README.md", *(ROOT / folder for folder in ("ringfsck", "sql", "tests", "benchmarks", "reports", "docs"))]
# The old name of the domain document, outside the repository (spelled apart so this file does not cite it).
OLD_NAME = re.compile("DOMAIN" + r"\.md")
# "docs/domain.md section 8", "sections 2 and 3", "sections 3 to 7", "sections 5-7", "sections 4, 5 and 7".
CITATION = re.compile(r"docs/domain\.md\s+sections?\s+(\d+(?:\s*(?:,|-|–|to|and)\s*\d+)*)")
# A section sign after the name is not the project's way of citing a section.
OTHER_CITATION = re.compile(r"docs/domain\.md\s*§")
# Paths of the tree named in docs/architecture.md.
TREE_PATH = re.compile(r"\b((?:ringfsck|sql|tests|benchmarks|reports|docs)/[\w./-]*\w)")


def _text_files() -> list[Path]:
    files = []
    for place in CITING:
        for path in [place] if place.is_file() else sorted(p for p in place.rglob("*") if p.is_file()):
            if "__pycache__" not in path.parts and path.suffix not in {".png", ".parquet", ".pyc"}:
                files.append(path)
    return files


def _domain_sections() -> list[int]:
    return [int(number) for number in re.findall(r"^## (\d+)\. ", DOMAIN.read_text(), re.M)]


def test_the_domain_is_numbered_one_to_ten():
    assert _domain_sections() == list(range(1, 11))


def test_nothing_cites_the_domain_document_outside_the_repository():
    citing = [str(path.relative_to(ROOT)) for path in _text_files() if OLD_NAME.search(path.read_text(errors="replace"))]
    assert citing == []


def test_every_cited_section_of_docs_domain_md_exists():
    sections = set(_domain_sections())
    cited, wrong = 0, []
    for path in _text_files():
        text = path.read_text(errors="replace")
        wrong += [f"{path.relative_to(ROOT)}: {match.group(0)}" for match in OTHER_CITATION.finditer(text)]
        for match in CITATION.finditer(text):
            cited += 1
            numbers = {int(number) for number in re.findall(r"\d+", match.group(1))}
            if not numbers <= sections:
                wrong.append(f"{path.relative_to(ROOT)}: {' '.join(match.group(0).split())}")
    # docs/domain.md refers to its own sections as "section N"
    for number in re.findall(r"\bsections? (\d+)", DOMAIN.read_text()):
        if int(number) not in sections:
            wrong.append(f"docs/domain.md: section {number}")
    assert wrong == []
    assert cited > 40  # the code does cite it: a regex that stopped matching would pass vacuously


def _documented_modules() -> set[str]:
    """Every module of ringfsck/, but a package's __init__.py that holds no more than a docstring."""
    modules = set()
    for path in (ROOT / "ringfsck").rglob("*.py"):
        body = ast.parse(path.read_text()).body
        if path.name == "__init__.py" and len(body) <= 1 and all(isinstance(node, ast.Expr) for node in body):
            continue
        modules.add(str(path.relative_to(ROOT)))
    return modules


def test_architecture_names_every_module_and_only_paths_that_exist():
    named = set(TREE_PATH.findall(ARCHITECTURE.read_text()))
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert missing == [], "docs/architecture.md names paths that do not exist"
    unnamed = sorted(_documented_modules() - named)
    assert unnamed == [], "modules of ringfsck/ that docs/architecture.md does not name"


def test_readme_links_the_docs_and_shows_the_report():
    readme = (ROOT / "README.md").read_text()
    for doc in ("docs/domain.md", "docs/architecture.md", "docs/scale.md"):
        assert f"]({doc})" in readme, doc
    assert "](docs/report.png)" in readme
    assert (ROOT / "docs" / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
