"""The package's shape: layers that import only downwards, no import cycle, one home per shared fact.

The import graph is read from the source with ``ast`` (module-level and function-level imports
alike, except those under ``if TYPE_CHECKING:``), so a lazy import inside a function cannot hide a
dependency that climbs a layer.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tclr_zoo"

# ARCHITECTURE.md, lowest first: a module imports only from its own layer or lower ones.
LAYERS = {
    "constants": 0, "atomic": 0, "runtime": 0, "recipes": 0,
    "models": 1, "data": 1, "losses": 1,
    "hub": 2, "train": 2,
    "inference": 3,
    "export": 4, "retrieval": 4,
    "cli": 5, "app": 5,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    return skip


def _imported(module: str, is_package: bool, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
    else:
        base = []
    target = ".".join(base + ([node.module] if node.module else []))
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from . import x`` counts as importing ``x``)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in skip:
                for target in _imported(name, path.name == "__init__.py", node):
                    if target in files and target != name:
                        graph[name].add(target)
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_sits_in_a_layer():
    unplaced = [m for m in import_graph() if m not in ("tclr_zoo",) and not m.endswith("__main__")
                and _layer(m) is None]
    assert unplaced == []


def _climbs(graph: dict[str, set[str]]) -> list[str]:
    return [f"{m} -> {t}" for m, targets in graph.items() for t in targets
            if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m)]


def test_no_module_imports_from_a_layer_above_it():
    assert _climbs(import_graph()) == []


def test_the_layer_check_finds_a_planted_climb():
    graph = import_graph()
    graph["tclr_zoo.models.registry"] = {*graph["tclr_zoo.models.registry"], "tclr_zoo.inference.model"}
    assert _climbs(graph) == ["tclr_zoo.models.registry -> tclr_zoo.inference.model"]


def test_there_is_no_import_cycle():
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["tclr_zoo.constants"] = {*graph["tclr_zoo.constants"], "tclr_zoo.cli.main"}
    assert any("tclr_zoo.constants" in cycle for cycle in _cycles(graph))


def test_the_package_top_level_holds_only_the_shared_modules():
    flat = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert flat == ["atomic", "constants", "losses", "runtime"]


# A fact written out in two places drifts; these literals may appear in constants.py only.
SHARED_LITERALS = {
    "head names": re.compile(r"""["']backbone["'],\s*["']retrieval["'],\s*["']projection["']"""),
    "dataset layouts": re.compile(r"""["']ucf101["'],\s*["']hmdb51["'],\s*["']kinetics400["']"""),
    "model file name": re.compile(r"""=\s*["']model\.safetensors["']"""),
    "config file name": re.compile(r"""=\s*["']config\.json["']"""),
    "hub prefix": re.compile(r"""=\s*["']hf-hub:["']"""),
    "local prefix": re.compile(r"""=\s*["']local-dir:["']"""),
}


@pytest.mark.parametrize("fact", list(SHARED_LITERALS))
def test_shared_names_have_one_home(fact):
    pattern = SHARED_LITERALS[fact]
    elsewhere = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                       if p.name != "constants.py" and pattern.search(p.read_text()))
    assert elsewhere == []


@pytest.mark.parametrize("module", ["constants", "runtime"])
def test_the_lowest_layer_needs_no_torch(module):
    """``constants`` and ``runtime`` serve ``--help`` and the lowest layer: importing them must not load torch."""
    code = f"import sys, tclr_zoo.{module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_public_names_resolve():
    import tclr_zoo

    for name in ("load_model", "VideoModel", "VideoIndex", "create_model", "list_models", "contact_sheet",
                 "list_pretrained", "export_model"):
        assert callable(getattr(tclr_zoo, name)), name
    from tclr_zoo.losses import tclr_losses

    assert callable(tclr_losses)
