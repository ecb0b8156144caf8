"""The package's import graph: no cycle between modules, no private name taken from another package.

Read with ``ast`` (nothing is imported), counting imports inside functions too: a deferred import still
ties two modules together, and the cycles it hides are what turned the text family into a ten-file knot.
Imports under ``if TYPE_CHECKING:`` are left out: they name types for the checker and never run.
A family package is loaded by name (``importlib``) through the registry, which is not an import here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import modelloop

ROOT = Path(modelloop.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _package(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rsplit(".", 1)[0]


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of a module except those under ``if TYPE_CHECKING:``."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every modelloop import in one module."""
    found: list[tuple[str, str | None]] = []
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "modelloop":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub, None) if sub in modules else (target, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "modelloop"]
    return found


def _graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = _modules()
    edges: dict[str, set[str]] = {}
    private: list[str] = []
    for name, path in modules.items():
        deps = set()
        for target, imported in _imports(name, path, modules):
            if target in modules:
                deps.add(target)
            if imported and imported.startswith("_") and not imported.startswith("__"):
                owner = _package(target, modules[target]) if target in modules else target
                if owner != _package(name, path) and not _package(name, path).startswith(owner + "."):
                    private.append(f"{name} imports {imported} from {target}")
        edges[name] = deps - {name}
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_modelloop_import_names_a_module_that_exists():
    """A deferred import whose module moved away fails only when its function runs; catch it here."""
    modules = _modules()
    missing = [f"{name} imports {target}" for name, path in modules.items()
               for target, _ in _imports(name, path, modules)
               if target not in modules and target.rsplit(".", 1)[0] not in modules]
    assert missing == []


def test_no_import_cycle_between_modules():
    edges, _ = _graph()
    assert _cycles(edges) == []


def test_no_private_name_imported_from_another_package():
    _, private = _graph()
    assert private == []


def test_the_walk_sees_a_planted_cycle_and_private_import(tmp_path, monkeypatch):
    """The checks themselves: a package with a deferred-import cycle and a private import is caught,
    and a TYPE_CHECKING-only import is not counted."""
    pkg = tmp_path / "modelloop"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "a" / "one.py").write_text("def f():\n    from ..b.two import g\n")
    (pkg / "b").mkdir()
    (pkg / "b" / "__init__.py").write_text("")
    (pkg / "b" / "two.py").write_text("from ..a.one import f\nfrom ..a.one import _hidden\n"
                                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from ..a import three\n")
    (pkg / "a" / "three.py").write_text("from ..b import two\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    edges, private = _graph()
    assert _cycles(edges) == [["modelloop.a.one", "modelloop.b.two"]]
    assert private == ["modelloop.b.two imports _hidden from modelloop.a.one"]
