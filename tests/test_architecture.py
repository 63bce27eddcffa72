"""The parts keep their direction of dependencies (docs/architecture.md): checked on the import graph.

Every import counts, top-level or inside a function (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("rag", "ingest", "serving", "eval", "ui", "onprem_rag", "deploy")


def _modules() -> dict[str, Path]:
    out = {}
    for part in PARTS:
        for path in (ROOT / part).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every module name an import statement of ``module`` names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def _project_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for name in _imported(module, path):
            target = _project_module(name)
            if target is not None and target != module:
                edges[module].add(target)
    return edges


GRAPH = _graph()


def _part(module: str) -> str:
    return module.split(".")[0]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    assert _cycles(GRAPH) == []


def test_the_core_imports_no_other_part() -> None:
    arrows = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if _part(m) == "rag" for t in ts if _part(t) != "rag")
    assert arrows == []


def test_only_the_root_command_imports_the_service() -> None:
    arrows = sorted(
        f"{m} -> {t}"
        for m, ts in GRAPH.items()
        if _part(m) not in ("serving", "onprem_rag")
        for t in ts
        if _part(t) == "serving"
    )
    assert arrows == []


def test_no_part_imports_the_root_command() -> None:
    assert sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if _part(m) != "onprem_rag" for t in ts
                  if _part(t) == "onprem_rag") == []  # fmt: skip


@pytest.mark.parametrize("library", ["fastapi", "starlette", "uvicorn", "typer", "click", "rich"])
def test_the_core_uses_no_web_or_cli_library(library: str) -> None:
    users = sorted(
        m
        for m, path in MODULES.items()
        if _part(m) == "rag" and any(n.split(".")[0] == library for n in _imported(m, path))
    )
    assert users == []


def test_the_root_command_module_is_small() -> None:
    lines = (ROOT / "onprem_rag" / "cli.py").read_text(encoding="utf-8").count("\n")
    assert lines < 150, f"onprem_rag/cli.py has {lines} lines: commands belong to their part's cli module"
