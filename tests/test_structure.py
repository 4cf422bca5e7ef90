"""The code's architecture, checked: short functions, an import structure without cycles and
without arrows from the foundation up to a pillar, and no import-time side effects
(plotting backend, warning filters, heavy optional libraries)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trusttango"
MAX_LINES = 60
FOUNDATION = {"models", "data"}
PILLARS = {"automl", "explain", "robust", "detect", "privacy", "federated", "fairness", "report", "cli"}
HEAVY = ("opacus", "flwr", "tenseal", "librosa", "optuna")


def _modules() -> dict[str, ast.Module]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts): ast.parse(path.read_text(), str(path))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _unit(module: str) -> str:
    """``trusttango.robust.attacks`` -> ``robust``; ``trusttango.train`` -> ``train``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Every trusttango module ``name`` imports, at module level or inside functions."""
    package = name if name.endswith("__init__") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.removesuffix(".__init__").split(".")
                base = base[: len(base) - node.level + 1]
                found.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                found.add(node.module)
    return {m for m in found if m.split(".")[0] == "trusttango"}


def test_no_function_longer_than_sixty_lines() -> None:
    long = [
        f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]
    assert not long, "functions over 60 lines:\n" + "\n".join(long)


def _unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, tree in _modules().items():
        source = _unit(name)
        graph.setdefault(source, set())
        graph[source] |= {_unit(target) for target in _imports(name, tree) if _unit(target) != source}
    return graph


def test_foundation_never_imports_a_pillar() -> None:
    graph = _unit_graph()
    arrows = sorted(f"{unit} -> {target}" for unit in FOUNDATION for target in graph.get(unit, ()) if target in PILLARS)
    assert not arrows, f"foundation imports pillars: {arrows}"


def test_import_structure_has_no_cycle() -> None:
    """Depth-first search over the package-level import graph (a grey node met again is a cycle)."""
    graph, state, cycles = _unit_graph(), {}, []

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = "grey"
        for target in sorted(graph.get(unit, ())):
            if state.get(target) == "grey":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[unit] = "black"

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def _calls(tree: ast.Module, owner: str, attrs: set[str]) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in attrs
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == owner
    ]


def _scoped_lines(tree: ast.Module) -> set[int]:
    """Lines inside a ``with warnings.catch_warnings():`` block (filters there are restored on exit)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call) and getattr(item.context_expr.func, "attr", "") == "catch_warnings"
            for item in node.items
        ):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if hasattr(n, "lineno")}
    return lines


def test_library_never_selects_a_backend_or_filters_warnings_globally() -> None:
    found = [
        f"{name}:{line}"
        for name, tree in _modules().items()
        for line in _calls(tree, "matplotlib", {"use"})
        + [n for n in _calls(tree, "warnings", {"filterwarnings", "simplefilter"}) if n not in _scoped_lines(tree)]
    ]
    pyplot = [
        name
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        and any("pyplot" in (alias.name or "") for alias in node.names)
        or (isinstance(node, ast.ImportFrom) and (node.module or "").endswith("pyplot"))
    ]
    assert not found, f"matplotlib.use / global warning filters in library code: {found}"
    assert not pyplot, f"pyplot imported by library code (use trusttango.plotting): {sorted(set(pyplot))}"


IMPORT_CHECK = """
import sys, warnings, matplotlib
import numpy, scipy.stats, sklearn.metrics, torch, torchvision  # their own filters, added at their import
matplotlib.use("svg")
filters = list(warnings.filters)
import trusttango, trusttango.cli
for name in {pillars!r}:
    __import__("trusttango." + name)
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert warnings.filters == filters, "warning filters changed at import"
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_importing_every_package_leaves_global_state_alone() -> None:
    """A notebook's plotting backend and warning filters survive ``import trusttango`` and every
    pillar (the CLI included); no heavy optional library is loaded before it is used."""
    script = IMPORT_CHECK.format(pillars=sorted(PILLARS | FOUNDATION), heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"loaded at import time: {done.stdout.strip()}"


EVERY_MODULE = """
import importlib, matplotlib
matplotlib.use("svg")
for name in {modules!r}:
    importlib.import_module(name)
    assert matplotlib.get_backend() == "svg", name + " changed the backend to " + matplotlib.get_backend()
"""


def test_every_module_imports_without_changing_the_backend() -> None:
    modules = [name.removesuffix(".__init__") for name in sorted(_modules()) if not name.endswith("__main__")]
    script = EVERY_MODULE.format(modules=modules)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-1500:]
