"""The shape of the code: the direction of imports, no import loops, SQL only in the store.

Imports are read with `ast` from every module of `vhtui` and `runners`, function-level imports
included (a lazy import is still a dependency), `if TYPE_CHECKING:` blocks excluded (they never
run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vhtui", "runners")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str) -> str | None:
    """The longest known module that `name` (a module or a name inside one) refers to."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """The modules of ours that `module` imports, anywhere in it except under TYPE_CHECKING."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _resolve(alias.name)) is not None:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                target = _resolve(f"{base}.{alias.name}") or _resolve(base)
                if target is not None:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            connect(module)
    return components


def _ancestors(module: str) -> set[str]:
    """A package's __init__ is imported by each of its modules: that edge is not a loop."""
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_loops() -> None:
    # a module importing its own package's __init__ (which Python does anyway) is not a loop
    for module in GRAPH:
        GRAPH[module] -= _ancestors(module)
    assert _cycles() == []


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "runners":
        return "runners"
    return parts[1] if len(parts) > 1 else "vhtui"


# who may import whom: each layer lists the layers it stands on (the rest of vhtui's top-level
# modules, like errors, home and project, are shared by all but runners)
ALLOWED = {
    "runners": {"runners"},
    "store": {"store"},
    "data": {"store", "data"},
    "supervision": {"store", "data", "supervision", "runners"},
    "engine": {"store", "data", "supervision", "engine", "runners"},
    "deploy": {"store", "data", "supervision", "deploy", "runners"},
    "tui": {"store", "data", "supervision", "engine", "deploy", "tui", "runners"},
    "cli": {"store", "data", "supervision", "engine", "deploy", "tui", "cli", "runners"},
}
SHARED = {"errors", "home", "settings", "context", "project", "progress", "textfiles", "lazy_jsonschema", "vhtui"}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_what_they_stand_on(layer: str) -> None:
    wrong = []
    for module, targets in GRAPH.items():
        if _layer(module) != layer:
            continue
        for target in sorted(targets):
            target_layer = _layer(target)
            if target_layer in ALLOWED[layer]:
                continue
            if layer != "runners" and target_layer in SHARED:
                continue
            wrong.append(f"{module} -> {target}")
    assert wrong == []


SQL = re.compile(r"""(\.execute(many)?\(|["'](SELECT|INSERT|UPDATE|DELETE|PRAGMA|BEGIN|CREATE) )""")


def test_only_the_store_holds_sql() -> None:
    outside = []
    for module, path in MODULES.items():
        if module.startswith("vhtui.store") or module.startswith("runners"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if SQL.search(line):
                outside.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert outside == []


def test_no_dunder_import_and_no_private_imports_across_modules() -> None:
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == "__import__":
                found.append(f"{module}: __import__")
            if isinstance(node, ast.ImportFrom) and node.module and _resolve(node.module):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{module}: from {node.module} import {alias.name}")
    assert found == []


def test_the_engine_asks_runners_what_they_can_do_not_which_they_are() -> None:
    """Only the registry maps runner names to runners; no other engine module compares a name."""
    names = {"local", "docker", "remote", "ray"}
    found = []
    for module, path in MODULES.items():
        if not module.startswith("vhtui.engine") or module == "vhtui.engine.registry":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                constants = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                if names & set(constants):
                    found.append(f"{module}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr == "BUILT_IN":
                found.append(f"{module}:{node.lineno}: BUILT_IN")
    assert found == []
