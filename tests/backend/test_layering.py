"""Guards of the backend's layout (issue 12): every module imports, no import cycle among
``exgs`` modules (top-level *and* function-level imports count: a lazy import is still a
dependency), ``exgs.io`` depends only on the basics, and no source file is over 450 lines."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from import_graph import find_cycles

ROOT = Path(__file__).resolve().parents[2] / "backend"
PKG = ROOT / "exgs"
MAX_LINES = 450
#: what ``exgs.io`` may import besides itself
IO_MAY_IMPORT = {"exgs", "exgs.errors", "exgs.scene", "exgs.fsutil", "exgs.transform"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _target(name: str) -> str | None:
    """The most specific exgs module that ``name`` (a dotted path) refers to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(name: str) -> set[str]:
    """The exgs modules ``name`` imports (anywhere in its source)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    base = name if _is_package(name) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "exgs" or a.name.startswith("exgs."):
                    out.add(_target(a.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pkg = base.split(".")
                pkg = pkg[:len(pkg) - (node.level - 1)]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not (mod == "exgs" or mod.startswith("exgs.")):
                continue
            for a in node.names:  # `from pkg import submodule` names the submodule
                full = f"{mod}.{a.name}"
                out.add(full if full in MODULES else _target(mod))
    out.discard(None)
    out.discard(name)
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_import_cycle_among_exgs_modules():
    graph = {m: imports_of(m) for m in MODULES}
    # a package's own __init__ importing its submodules (re-exports) is not a cycle of
    # layers: drop the edges submodule → its own package
    for m, deps in graph.items():
        graph[m] = {d for d in deps if not (m.startswith(d + ".") and _is_package(d))}
    assert find_cycles(graph) == []


def test_cycle_detector_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_io_depends_only_on_the_basics():
    bad = {m: sorted(d for d in imports_of(m)
                     if not (d in IO_MAY_IMPORT or d == "exgs.io" or d.startswith("exgs.io.")))
           for m in MODULES if m == "exgs.io" or m.startswith("exgs.io.")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_no_source_file_over_450_lines():
    long = {str(f.relative_to(ROOT)): n for f in MODULES.values()
            if (n := len(f.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
