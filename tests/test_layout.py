"""How the code is laid out: no import circles, no reaching into another module's private names, small files.

The import graph is read from the sources (every ``import``, at the top of a module or inside a function: a
circle through a function-level import is still a circle), so these checks need no import of the modules.
"""
from __future__ import annotations

import ast
from pathlib import Path

import vidstyle

PKG = Path(vidstyle.__file__).parent
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _package_of(name: str, path: Path) -> list[str]:
    """The package a relative import in module ``name`` starts from."""
    return name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]


def _resolve(base: str, names: list[str]) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for ``from base import names``: a name that is a module
    of its own is that module."""
    out = []
    for n in names:
        sub = f"{base}.{n}"
        out.append((sub, None) if sub in MODULES else (base, n))
    return out


def imports_of(name: str) -> list[tuple[str, str | None, dict[str, str]]]:
    """[(vidstyle module imported, name taken from it or None, {alias: module} bound)] of module ``name``."""
    path = MODULES[name]
    pkg = _package_of(name, path)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "vidstyle":
                    found.append((a.name, None, {a.asname: a.name} if a.asname else {}))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "vidstyle":
                continue
            for a in node.names:
                for mod, taken in _resolve(base, [a.name]):
                    bound = {a.asname or a.name: mod} if taken is None else {}
                    found.append((mod, taken, bound))
    return found


def graph() -> dict[str, set[str]]:
    return {m: {mod for mod, _, _ in imports_of(m) if mod in MODULES and mod != m} for m in MODULES}


def circles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _inside(pkg_module: str, module: str) -> bool:
    """A package's ``__init__`` may re-export its own modules' names."""
    return module.startswith(pkg_module + ".")


def test_no_import_circles():
    found = circles(graph())
    assert not found, f"import circles: {found}"


def test_the_circle_check_sees_a_circle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(g) == [["a", "b", "c"]]


def test_no_module_takes_another_modules_private_names():
    """``from .x import _y`` and ``x._y`` (x an imported vidstyle module) are both reaching in."""
    offenders = []
    for name, path in MODULES.items():
        bound: dict[str, str] = {}
        for mod, taken, alias in imports_of(name):
            bound.update(alias)
            if taken and taken.startswith("_") and not taken.startswith("__") and mod != name \
                    and not _inside(name, mod):
                offenders.append(f"{name}: from {mod} import {taken}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                offenders.append(f"{name}: {node.value.id}.{node.attr}")
    assert not offenders, offenders


def test_no_file_holds_two_ideas():
    long = {str(p.relative_to(PKG)): n for p in PKG.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"
