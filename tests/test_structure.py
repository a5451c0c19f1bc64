"""The structure the architecture document promises, checked on the code itself (ast, nothing run):
purposeful errors derive from MtvrError, no import cycle inside ``mtvr/``, imports flow one way."""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import mtvr.errors as errors

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_ERRORS = {
    name for name, obj in vars(builtins).items() if isinstance(obj, type) and issubclass(obj, BaseException)
}


def _modules(package: str = "mtvr") -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def test_every_error_class_derives_from_mtvr_error():
    for name, cls in vars(errors).items():
        if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == errors.__name__:
            assert issubclass(cls, errors.MtvrError), name


def test_no_purposeful_builtin_raise_in_mtvr():
    """``raise ValueError(...)`` (or any builtin exception) in ``mtvr/`` must be an MtvrError subclass instead,
    dual-inheriting the builtin where callers catch it; bare ``raise`` and re-raising a caught error are fine."""
    found = []
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        protocol = {  # a module's or class's __getattr__ must raise AttributeError: Python's protocol
            id(n)
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef) and f.name == "__getattr__"
            for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None and id(node) not in protocol:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in BUILTIN_ERRORS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} raise {exc.id}")
    assert not found, "\n".join(found)


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``module`` imports anywhere in its file (top level or inside functions)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != module:
                out.add(t)
    return out


def import_graph(package: str = "mtvr") -> dict[str, set[str]]:
    mods = _modules(package)
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan); a package importing its own
    submodules (``mtvr.video`` -> ``mtvr.video.x``) is how packages re-export and is left out."""
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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


def test_no_import_cycle_inside_mtvr():
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# (importer prefix, imported prefix): imports against the direction docs/architecture.md states
FORBIDDEN = [
    ("mtvr.video", "mtvr.scale"),  # scale registers its Ray executor into the video pipeline, not the reverse
    ("mtvr.hub", "mtvr.modeling"),  # the Hub helpers download and upload folders; models use them
    ("mtvr.evaluation", "mtvr.train"),  # evaluation reads data through mtvr.clipset
    ("mtvr.index", "mtvr.retriever"),
    ("mtvr.text_towers", "mtvr.modeling"),
]


def test_imports_flow_one_way():
    graph = import_graph()
    bad = [
        f"{m} imports {t}"
        for m, targets in graph.items()
        for t in targets
        for src, dst in FORBIDDEN
        if (m == src or m.startswith(src + ".")) and (t == dst or t.startswith(dst + "."))
    ]
    core = {m for m in graph if not m.startswith(("mtvr.demo", "mtvr.commands", "mtvr.cli"))}
    bad += [f"{m} imports {t}" for m in core for t in graph[m] if t.startswith(("mtvr.demo", "mtvr.commands"))]
    assert not bad, "\n".join(bad)


def test_the_builders_use_mtvr_and_mtvr_reaches_them_only_by_name():
    """``datasets_builders`` -> ``mtvr`` (its public API, never the demo); ``mtvr`` names the builders only at
    run time (mtvr/builders.py), so neither the SDK's core nor the demo imports them."""
    mods = {**_modules("mtvr"), **_modules("datasets_builders")}
    graph = {m: _imports(m, p, set(mods)) for m, p in mods.items()}
    assert any(t.startswith("mtvr.") for t in graph["datasets_builders.multi_shapes"])  # the scan sees imports
    bad = [
        f"{m} imports {t}"
        for m, targets in graph.items()
        for t in targets
        if (m.startswith("datasets_builders") and t.startswith(("mtvr.demo", "mtvr.commands", "mtvr.cli")))
        or (m.startswith("mtvr") and t.startswith("datasets_builders"))
    ]
    assert not bad, "\n".join(bad)


def test_evaluate_reports_dataset_problems_as_dataset_errors_not_recipe_errors(tmp_path):
    import types

    import pytest

    from mtvr.errors import DatasetError, FeatureStoreError, RecipeError
    from mtvr.evaluation import evaluate_dataset

    retriever = types.SimpleNamespace(config=types.SimpleNamespace(languages=["en"]))
    (tmp_path / "store").mkdir()
    (tmp_path / "ds").mkdir()
    cases = (
        (tmp_path / "nowhere", DatasetError, "nowhere not found"),
        (tmp_path / "store", FeatureStoreError, "not a"),
    )
    for features, error, match in cases:
        with pytest.raises(error, match=match) as err:
            evaluate_dataset(retriever, str(tmp_path / "ds"), features)
        assert not isinstance(err.value, RecipeError)


def test_no_module_outside_the_index_package_touches_its_private_state():
    """The index's private fields (``self._x`` in ``mtvr/index/``) are read and written only there: the server,
    the sharded build, the retriever and the benchmarks use its public calls (``from_faiss``, ``metadata``,
    ``faiss_index``...)."""
    index_pkg = ROOT / "mtvr" / "index"
    private = set()
    for path in index_pkg.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                if node.attr.startswith("_") and not node.attr.startswith("__"):
                    private.add(node.attr)
    assert {"_index", "_metadata", "_id_of", "_int_of", "_next"} <= private
    found = []
    for folder in ("mtvr", "benchmarks", "datasets_builders", "hub"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if index_pkg in path.parents:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in private
                    and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert not found, "\n".join(found)
