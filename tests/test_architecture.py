"""The structure docs/ARCHITECTURE.md promises: no import circles, TensorFlow-free floors."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("keras_ternary", "hw_sim")

#: Modules that must import without TensorFlow (the floors both packages share, and the
#: parts of hw_sim that work on the framework-free IR).
TENSORFLOW_FREE = (
    "keras_ternary",
    "keras_ternary.cliutil",
    "keras_ternary.config",
    "keras_ternary.fileio",
    "keras_ternary.regimes",
    "keras_ternary.report",
    "keras_ternary.rundir",
    "keras_ternary.contract.activations",
    "keras_ternary.contract.affine",
    "keras_ternary.contract.entropy",
    "keras_ternary.contract.geometry",
    "keras_ternary.contract.metadata",
    "keras_ternary.contract.ternary",
    "keras_ternary.contract.tflite_reader",
    "keras_ternary.layer_table",
    "hw_sim.ir",
    "hw_sim.analysis",
    "hw_sim.accelerators",
    "hw_sim.memory",
    "hw_sim.technology",
    "hw_sim.emulate",
    "hw_sim.tables",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules that ``path`` imports anywhere (function bodies too), except for typing."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks are not imports at run time
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)  # a module importing its own package is not an arrow
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(path, name, known) for name, path in modules.items()}
    # a package's __init__ re-exporting its submodules is not a circle with them
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    assert _cycles(graph) == []


def test_circle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", TENSORFLOW_FREE)
def test_module_imports_without_tensorflow(module):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = (
        f"import sys, {module}\n"
        "heavy = sorted(m for m in ('tensorflow', 'larq', 'tf_keras') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
