"""The code's shape, read from the AST of every module in ``trls_core/`` and ``flows/``.

Three rules, each failing with every offender listed:

- **Size**: no module over :data:`MAX_LINES` lines. A module that grows past
  it holds more than one concept; split it by concept (a package whose
  ``__init__`` re-exports the public names keeps callers working).
- **No import cycle** among these modules. Every import counts: module
  level *and* inside functions, since a deferred import is still a
  dependency and deferring one only hides a cycle until the function runs.
  Imports under ``if TYPE_CHECKING:`` do not count (they never run).
  ``from pkg import name`` is an edge to ``pkg.name`` when that is a module,
  else to ``pkg`` (its ``__init__``); importing ``a.b`` is not counted as
  importing ``a``, so a package ``__init__`` that re-exports its submodules
  is not a cycle.
- **No private name across modules**: ``from x import _name``, and
  ``m._name`` where ``m`` was imported from another trls module (a module,
  class or function), fail. A ``_module`` is private to its package: its
  siblings may import it (``stages/_common.py``), nothing else may. Dunder
  names are public. A helper two modules need is public, in the module that
  owns its concept.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("trls_core", "flows")
MAX_LINES = 400

# Known cases, each owned by pending work; remove an entry when its work lands (the test
# then keeps the rule for that module too). Never add an entry to make new code pass.
SIZE_ALLOWED: dict[str, str] = {}
CYCLES_ALLOWED: dict[frozenset[str], str] = {}


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    is_package: bool
    imports: list[tuple[str, int]] = field(default_factory=list)  # (target module, line)


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _load(root: Path) -> dict[str, Module]:
    mods: dict[str, Module] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            text = path.read_text()
            name, is_package = _module_name(path, root)
            mods[name] = Module(name, path, ast.parse(text, str(path)), len(text.splitlines()), is_package)
    return mods


def _ours(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] in PACKAGES


def _absolute(mod: Module, node: ast.ImportFrom) -> str:
    """The module ``node`` imports from, with relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = mod.name.split(".")
    if not mod.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node under ``node`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.orelse:
                yield sub
                yield from _runtime_nodes(sub)
            continue
        yield child
        yield from _runtime_nodes(child)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_module_allowed(importer: Module, target: str) -> bool:
    """A ``_module`` may be imported by modules of its own package only."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            package = ".".join(parts[:i])
            home = importer.name if importer.is_package else importer.name.rpartition(".")[0]
            if home != package and not home.startswith(package + "."):
                return False
    return True


@dataclass
class Scan:
    mods: dict[str, Module]
    private: list[str] = field(default_factory=list)


def _scan(root: Path = ROOT) -> Scan:
    mods = _load(root)
    scan = Scan(mods)
    for mod in mods.values():
        where = mod.path.relative_to(root)
        bound: dict[str, str] = {}  # local name -> what it is, for names imported from other trls modules
        for node in _runtime_nodes(mod.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if not _ours(alias.name):
                        continue
                    mod.imports.append((alias.name, node.lineno))
                    if not _private_module_allowed(mod, alias.name):
                        scan.private.append(f"{where}:{node.lineno}: import {alias.name} (a private module)")
                    if alias.asname:
                        bound[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(mod, node)
                if not _ours(source):
                    continue
                if not _private_module_allowed(mod, source):
                    scan.private.append(f"{where}:{node.lineno}: from {source} import ... (a private module)")
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    target = sub if sub in mods else source
                    if target != mod.name:
                        mod.imports.append((target, node.lineno))
                    if _private(alias.name) and target != mod.name:
                        scan.private.append(f"{where}:{node.lineno}: from {source} import {alias.name}")
                    bound[alias.asname or alias.name] = sub
        for node in _runtime_nodes(mod.tree):
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
            ):
                scan.private.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr} ({bound[node.value.id]})")
    return scan


def _cycles(mods: dict[str, Module]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph = {m.name: sorted({t for t, _ in m.imports if t in mods and t != m.name}) for m in mods.values()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _edges_within(mods: dict[str, Module], comp: list[str]) -> list[str]:
    members = set(comp)
    return [
        f"{mods[a].path.relative_to(ROOT)}:{line} imports {t}"
        for a in comp
        for t, line in mods[a].imports
        if t in members and t != a
    ]


def test_the_scan_sees_the_code() -> None:
    scan = _scan()
    assert {"trls_core", "flows", "trls_core.cli", "trls_core.tracking"} <= set(scan.mods)
    assert any(t == "trls_core.config" for m in scan.mods.values() for t, _ in m.imports)


def test_no_module_over_the_size_limit() -> None:
    scan = _scan()
    over = {
        str(m.path.relative_to(ROOT)): m.lines
        for m in scan.mods.values()
        if m.lines > MAX_LINES and m.name not in SIZE_ALLOWED
    }
    assert not over, f"modules over {MAX_LINES} lines (split them by concept): {over}"


def test_no_import_cycle() -> None:
    scan = _scan()
    cycles = [c for c in _cycles(scan.mods) if frozenset(c) not in CYCLES_ALLOWED]
    detail = "\n".join(f"{' <-> '.join(c)}:\n  " + "\n  ".join(_edges_within(scan.mods, c)) for c in cycles)
    assert not cycles, f"import cycles among trls_core/flows modules:\n{detail}"


def test_no_private_name_across_modules() -> None:
    scan = _scan()
    assert not scan.private, "private names used across modules (make them public where they belong):\n" + "\n".join(
        scan.private
    )


def test_allow_lists_name_only_real_cases() -> None:
    """An entry whose case is gone must be removed, so the rule applies again."""
    scan = _scan()
    stale = [m for m in SIZE_ALLOWED if m not in scan.mods or scan.mods[m].lines <= MAX_LINES]
    cycles = {frozenset(c) for c in _cycles(scan.mods)}
    stale += [" <-> ".join(sorted(c)) for c in CYCLES_ALLOWED if not any(c <= found for found in cycles)]
    assert not stale, f"allow-list entries with nothing left to allow (remove them): {stale}"


def test_the_rules_catch_what_they_name(tmp_path: Path) -> None:
    """The checks themselves, on a made-up tree: cycles (one deferred), private names, private modules."""
    files = {
        "trls_core/__init__.py": "",
        "trls_core/a.py": "from trls_core.b import _helper\nimport trls_core.b as bm\nbm._x\n",
        "trls_core/b.py": "def f():\n    from trls_core.a import thing\n",
        "trls_core/c.py": (
            "from typing import TYPE_CHECKING\nfrom trls_core.b import f\nf._y\n"
            "if TYPE_CHECKING:\n    from trls_core.d import T\n"
        ),
        "trls_core/d.py": "from trls_core.c import g\nfrom trls_core.pkg._impl import h\n",
        "trls_core/pkg/__init__.py": "from trls_core.pkg.mod import k\n",
        "trls_core/pkg/_impl.py": "import os\nos._exit\n",
        "trls_core/pkg/mod.py": "from trls_core.pkg._impl import h\n",
        "flows/__init__.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    scan = _scan(tmp_path)
    assert _cycles(scan.mods) == [["trls_core.a", "trls_core.b"]]  # c -> d only under TYPE_CHECKING
    found = sorted(line.split(": ", 1)[1] for line in scan.private)
    assert found == [
        "bm._x (trls_core.b)",
        "f._y (trls_core.b.f)",
        "from trls_core.b import _helper",
        "from trls_core.pkg._impl import ... (a private module)",
    ]
