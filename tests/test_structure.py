"""The package's structure: modules share public names only, and imports run one way."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ringfsck"
# Cycles through imports made inside functions, not untangled yet: each pair is one a new
# cycle must not join. Remove a pair once its modules no longer import each other.
KNOWN_CYCLES = {
    ("ringfsck.analysis", "ringfsck.deleter"),
    ("ringfsck.analysis", "ringfsck.manifest"),
    ("ringfsck.deleter", "ringfsck.manifest"),
    ("ringfsck.deleter", "ringfsck.reverse_lookup"),
}


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_no_module_imports_another_modules_private_names():
    private = []
    for name, path in _modules().items():
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ringfsck"):
                private += [f"{name} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert private == []


def test_no_import_cycles_but_the_known_ones():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ringfsck"):
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("ringfsck")}
        graph[name] = {target for target in targets if target in modules and target != name}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        return seen

    reach = {name: reachable(name) for name in graph}
    cycles = {(a, b) for a in graph for b in graph[a] if a < b and a in reach[b]}
    assert cycles <= KNOWN_CYCLES


def test_context_managers_are_entered_with_with():
    """``__enter__``/``__exit__`` called by hand skip the exit on an error between them: ``with`` (or an ExitStack) never does."""
    by_hand = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("__enter__", "__exit__"):
                by_hand.append(f"{name}:{node.lineno} calls {node.func.attr}")
    assert by_hand == []
