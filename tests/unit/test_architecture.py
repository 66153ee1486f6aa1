"""The wings as the docs draw them: every module named, each wing's `__init__` saying what it
owns and may import, and no import circle among gq's modules (`lint-imports` checks the
layers themselves in CI; this holds what needs no lint tool)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from support import ROOT

PACKAGE = ROOT / "gq"
WINGS = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def modules() -> list[Path]:
    return sorted(p.relative_to(ROOT) for p in PACKAGE.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The gq modules `path` imports (TYPE_CHECKING and function-level imports included):
    `from gq.a import b` names gq.a.b when that is a module, else gq.a."""
    names: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.split(".")[0] == "gq"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gq":
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def readme_layout() -> dict[str, str]:
    """The README's layout: a wing ("." for gq/ itself) → the file names its lines give."""
    block = re.search(r"^## Layout\n.*?```\n(.*?)```", (ROOT / "README.md").read_text(), re.S | re.M)
    assert block, "README.md: no layout"
    wings: dict[str, str] = {}
    wing = "."
    for line in block.group(1).splitlines():
        head = re.match(r"gq/(\w+/)?", line)
        if head:
            wing = head.group(1)[:-1] if head.group(1) else "."
            line = line[head.end():] if head.group(1) else line[3:]
        wings[wing] = wings.get(wing, "") + " " + line
    return wings


def test_the_readme_layout_names_every_module() -> None:
    layout = readme_layout()
    unnamed = [str(path) for path in modules() if (path.name != "__init__.py" or path.parent.name == "gq")
               and path.name not in layout.get(path.parent.relative_to("gq").as_posix(), "").split()]
    assert not unnamed, f"README.md's layout does not name: {', '.join(unnamed)}"


def test_the_architecture_page_names_every_module() -> None:
    text = (ROOT / "docs/architecture.md").read_text()
    unnamed = [str(path) for path in modules() if path.name != "__init__.py"
               and str(path) not in text and f"`{path.name}`" not in text and f" {path.name}" not in text]
    assert not unnamed, f"docs/architecture.md does not name: {', '.join(unnamed)}"


@pytest.mark.parametrize("wing", WINGS)
def test_each_wing_says_what_it_owns_and_may_import(wing: str) -> None:
    doc = ast.get_docstring(ast.parse((PACKAGE / wing / "__init__.py").read_text())) or ""
    assert "Owns:" in doc and "import" in doc, f"gq/{wing}/__init__.py: say what it owns and may import"


def test_no_module_of_gq_is_in_an_import_circle() -> None:
    graph = {dotted(p): set() for p in modules()}
    for path in modules():
        # not a module's own packages: Python has imported them before the module runs
        graph[dotted(path)] = {m for m in imports(path) if m in graph and not f"{dotted(path)}.".startswith(f"{m}.")}
    circles = [c for c in strongly_connected(graph) if len(c) > 1]
    assert not circles, f"import circles: {circles}"


CLASS_LINES = 200  # a class longer than this no longer reads in one sitting: split it into parts


def test_no_class_of_gq_is_longer_than_it_reads_in_one_sitting() -> None:
    long = [f"{path}: {node.name} is {length} lines" for path in modules()
            for node in ast.walk(ast.parse((ROOT / path).read_text())) if isinstance(node, ast.ClassDef)
            and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > CLASS_LINES]
    assert not long, f"classes longer than {CLASS_LINES} lines (split them into parts): {'; '.join(long)}"


def test_the_import_contract_names_every_wing() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c["layers"] for c in contracts if c["type"] == "layers")
    assert {f"gq.{w}" for w in WINGS} <= set(layers)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    found.append(sorted(component))
    return found
