"""The package's shape: layers that import only downwards, no import cycle, one home per shared fact.

The import graph is read from the source with ``ast`` (module-level and function-level imports
alike, except those under ``if TYPE_CHECKING:``), so a lazy import inside a function cannot hide a
dependency that climbs a layer.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tclr_zoo"

# ARCHITECTURE.md, lowest first: a module imports only from its own layer or lower ones. train/ is a
# leaf that only the CLI imports: hub/ reads every model name (checkpoints too), so inference/,
# export/, retrieval/, hub/ and app/ never need it.
LAYERS = {
    "constants": 0, "atomic": 0, "runtime": 0, "recipes": 0,
    "models": 1, "data": 1, "losses": 1,
    "hub": 2,
    "inference": 3,
    "export": 4, "retrieval": 4,
    "train": 5,
    "cli": 6, "app": 6,
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


def _into_train(graph: dict[str, set[str]], layer: str) -> list[str]:
    return sorted(f"{m} -> {t}" for m, targets in graph.items() if m.split(".")[1:2] == [layer]
                  for t in targets if t.split(".")[1:2] == ["train"])


@pytest.mark.parametrize("layer", ["inference", "export", "retrieval", "hub", "app"])
def test_only_the_cli_imports_train(layer):
    """Reading a model (a checkpoint too) is hub/'s, so train/ is a leaf: no library layer reaches into
    it, nor the app (which sits beside the CLI, so the layer order alone would let it)."""
    graph = import_graph()
    assert _into_train(graph, layer) == []
    planted = {**graph, f"tclr_zoo.{layer}": {*graph.get(f"tclr_zoo.{layer}", set()), "tclr_zoo.train.protocols"}}
    assert _into_train(planted, layer) == [f"tclr_zoo.{layer} -> tclr_zoo.train.protocols"]


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


# ---- __all__: every module says which of its names are for other modules and for users ----------

# Modules that get their ``__all__`` once the rewrite of model-name resolution (hub/, load_model,
# info, registry, protocols) has settled their names. Empty this set then: the test below fails
# while a module listed here already has an ``__all__``, so the list cannot go stale.
WITHOUT_ALL_YET: set[str] = set()


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _all_node(tree: ast.Module) -> ast.expr | None:
    """The value assigned to ``__all__`` at the module's top level, or None when there is none."""
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            return node.value
    return None


def _bound_at_top(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (for ``__main__`` modules, which cannot be imported)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _lacking_all(modules: dict[str, Path]) -> list[str]:
    return sorted(m for m, p in modules.items() if _all_node(ast.parse(p.read_text(encoding="utf-8"))) is None)


def test_every_module_declares_all():
    lacking = _lacking_all(_modules())
    assert [m for m in lacking if m not in WITHOUT_ALL_YET] == []
    assert sorted(WITHOUT_ALL_YET - set(lacking)) == [], "these have an __all__ now: remove them from WITHOUT_ALL_YET"


def test_the_all_check_finds_a_module_without_one(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('"""A module that forgot its __all__."""\n\nVALUE = 1\n')
    assert _lacking_all({"tclr_zoo.planted": planted, "tclr_zoo.constants": PACKAGE / "constants.py"}) == [
        "tclr_zoo.planted"]


def _all_problems(name: str, path: Path) -> list[str]:
    """What is wrong with ``name``'s ``__all__``: duplicates, and names the module does not have."""
    if path.name == "__main__.py":  # importing it would run the command: read it
        tree = ast.parse(path.read_text(encoding="utf-8"))
        node = _all_node(tree)
        declared, present = (list(ast.literal_eval(node)) if node is not None else []), _bound_at_top(tree)
        missing = [n for n in declared if n not in present]
    else:
        module = importlib.import_module(name)
        declared = list(getattr(module, "__all__", []))
        missing = [n for n in declared if not hasattr(module, n)]  # a lazy name (PEP 562) is looked up
    problems = [f"{name}: {n!r} listed twice" for n in sorted({n for n in declared if declared.count(n) > 1})]
    return problems + [f"{name}: no {n!r}" for n in missing]


def test_every_name_in_all_exists():
    problems = [p for name, path in _modules().items() for p in _all_problems(name, path)]
    assert problems == []


def test_the_all_check_finds_a_name_that_is_not_there(tmp_path, monkeypatch):
    package = tmp_path / "planted_pkg"
    package.mkdir()
    (package / "__init__.py").write_text('__all__ = ["present", "gone", "present"]\n\npresent = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _all_problems("planted_pkg", package / "__init__.py") == [
        "planted_pkg: 'present' listed twice", "planted_pkg: no 'gone'"]


# ---- the public API documents its arguments and results (Google style, as transformers does) ------

PUBLIC_API = [
    "tclr_zoo.inference.model:VideoModel.embed", "tclr_zoo.inference.model:VideoModel.classify",
    "tclr_zoo.inference.model:VideoModel.embed_windows", "tclr_zoo.inference.model:VideoModel.preprocess",
    "tclr_zoo.inference.model:VideoModel.transform", "tclr_zoo.inference.model:VideoModel.save_pretrained",
    "tclr_zoo.inference.model:VideoModel.push_to_hub",
    "tclr_zoo.retrieval.index:VideoIndex.build", "tclr_zoo.retrieval.index:VideoIndex.add",
    "tclr_zoo.retrieval.index:VideoIndex.add_videos", "tclr_zoo.retrieval.index:VideoIndex.search",
    "tclr_zoo.retrieval.index:VideoIndex.save", "tclr_zoo.retrieval.index:VideoIndex.load",
    "tclr_zoo.retrieval.index:VideoIndex.remove", "tclr_zoo.retrieval.index:VideoIndex.remove_videos",
    "tclr_zoo.losses:tclr_losses",
    "tclr_zoo.models.preprocessing:Preprocessing.from_config", "tclr_zoo.models.preprocessing:Preprocessing.to_config",
    "tclr_zoo.models.preprocessing:Preprocessing.transform",
    "tclr_zoo.inference.corpus:embed_corpus", "tclr_zoo.inference.corpus:save_embeddings",
    "tclr_zoo.inference.corpus:read_embeddings",
    "tclr_zoo.retrieval.build:build_index", "tclr_zoo.retrieval.sheets:contact_sheet",
    "tclr_zoo.export.exporter:export_model", "tclr_zoo.atomic:exclusive_output",
    "tclr_zoo.inference.model:load_model", "tclr_zoo.hub.factory:create_model", "tclr_zoo.hub.factory:list_models",
    "tclr_zoo.hub.resolve:resolve", "tclr_zoo.hub.resolve:load_source", "tclr_zoo.hub.resolve:resolve_model",
    "tclr_zoo.hub.checkpoint:load_checkpoint", "tclr_zoo.hub.checkpoint:model_from_checkpoint",
    "tclr_zoo.hub.identity:model_identity", "tclr_zoo.inference.info:describe",
]

_SECTION = re.compile(r"^(Args|Arguments|Attributes|Example|Examples|Note|Notes|Raises|Returns|Yields):\s*$")


def _sections(doc: str) -> dict[str, list[str]]:
    """A Google-style docstring's sections: name -> the lines under it (dedented)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in inspect.cleandoc(doc).splitlines():
        match = _SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
        elif line and not line[0].isspace():
            current = None  # back to free text
        elif current is not None:
            current.append(line)
    return {name: inspect.cleandoc("\n".join(lines)).splitlines() for name, lines in sections.items()}


def _documented_args(lines: list[str]) -> list[str]:
    """The parameters an ``Args:`` section names: ``name: ...``, ``a, b: ...`` or ``name (type): ...``."""
    names = []
    for line in lines:
        entry = re.match(r"^([\w*]+(?:,\s*[\w*]+)*)(?:\s*\(.*?\))?:", line)
        if entry:
            names += [n.strip().lstrip("*") for n in entry.group(1).split(",")]
    return names


def _doc_problems(function: Any, doc: str | None) -> list[str]:
    """What the docstring of ``function`` leaves out: an ``Args:`` entry for every parameter (and none
    for a parameter it does not have), and ``Returns:`` (``Yields:`` for a generator) unless it
    returns None."""
    if not doc:
        return ["no docstring"]
    sections = _sections(doc)
    signature = inspect.signature(function)
    params = [n for n in signature.parameters if n not in ("self", "cls")]
    documented = _documented_args(sections.get("Args", []))
    problems = [f"Args: no entry for {n!r}" for n in params if n not in documented]
    problems += [f"Args: {n!r} is not a parameter" for n in documented if n not in params]
    if signature.return_annotation not in (None, "None"):
        wanted = "Yields" if inspect.isgeneratorfunction(inspect.unwrap(function)) else "Returns"
        if not sections.get(wanted):
            problems.append(f"no {wanted}: section")
    return problems


def _public_function(ref: str) -> Any:
    module, _, qualname = ref.partition(":")
    owner: Any = importlib.import_module(module)
    for part in qualname.split("."):
        owner = inspect.getattr_static(owner, part) if isinstance(owner, type) else getattr(owner, part)
    if isinstance(owner, (classmethod, staticmethod)):
        owner = owner.__func__
    return owner.fget if isinstance(owner, property) else owner


@pytest.mark.parametrize("ref", PUBLIC_API)
def test_public_api_documents_args_and_returns(ref):
    function = _public_function(ref)
    assert _doc_problems(function, function.__doc__) == []


def test_the_docstring_check_finds_what_is_left_out():
    def embed(videos, *, head="retrieval", workers=None) -> list:
        """Embed.

        Args:
            videos: the videos.
            head, pooling: the head.

        Raises:
            ValueError: a bad head.
        """

    assert _doc_problems(embed, embed.__doc__) == ["Args: no entry for 'workers'", "Args: 'pooling' is not a parameter",
                                                   "no Returns: section"]
