"""Structure of the add-on (issue 12), read with ``ast`` (no bpy needed): no import cycle
between the modules of ``exgs_blender``, no source file over 450 lines, no Python source kept
in a string and run with ``python -c``."""

from __future__ import annotations

import ast
import os

from import_graph import find_cycles

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = "exgs_blender"
PKG_DIR = os.path.join(ROOT, PKG)


def _modules() -> dict[str, str]:
    """Dotted module name → file path for every .py under exgs_blender/."""
    out = {}
    for d, _dirs, files in os.walk(PKG_DIR):
        for f in files:
            if not f.endswith(".py"):
                continue
            rel = os.path.relpath(os.path.join(d, f), ROOT)[:-3].replace(os.sep, ".")
            out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = \
                os.path.join(d, f)
    return out


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = mod.split(".")
    base = parts if is_pkg else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module → add-on modules it imports (anywhere in the file, function bodies too: a
    deferred import is still a dependency)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") ==
                  "import_module" and node.args and isinstance(node.args[0], ast.JoinedStr)):
                continue  # the register list in __init__ (package → its own modules)
            for t in targets:
                while t and t not in mods:  # "pkg.mod.name" → "pkg.mod"
                    t = t.rpartition(".")[0]
                if t and t != mod and not mod.startswith(t + "."):  # parent packages: no edge
                    graph[mod].add(t)
    return graph


def test_detector_finds_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(g) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_addon():
    graph = import_graph()
    assert len(graph) > 10 and any(graph.values())  # the graph was really read
    assert find_cycles(graph) == []


def test_no_source_file_over_450_lines():
    long = {m: n for m, p in _modules().items()
            if (n := sum(1 for _ in open(p, encoding="utf-8"))) > 450}
    assert long == {}


def _code_strings(tree) -> list[str]:
    """String constants (docstrings excluded) that are Python programs with imports: the
    shape of a script kept in a string and run with ``python -c``."""
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docs and node.value.count("\n") >= 2):
            try:
                prog = ast.parse(node.value)
            except SyntaxError:
                continue
            if any(isinstance(n, ast.Import | ast.ImportFrom) for n in ast.walk(prog)):
                out.append(node.value)
    return out


def test_code_string_detector():
    tree = ast.parse('X = """\nimport sys\nprint(sys.argv)\n"""\n'
                     'def f():\n    """Docs.\n\n    import this\n    """\n')
    assert len(_code_strings(tree)) == 1


def test_no_code_run_from_a_string():
    for mod, path in _modules().items():
        tree = ast.parse(open(path, encoding="utf-8").read(), path)
        assert _code_strings(tree) == [], f"{mod}: Python source kept in a string"
