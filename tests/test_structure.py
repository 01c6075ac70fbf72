"""The shape of the package (issue 22), read from the source: no import cycles among lcf's modules, and the three
layers never reach across (lcf.container: standard library only; lcf.entropy: numpy and constriction, which only
entropy/coder.py imports; lcf.nn: torch, never bytes nor the entropy coder). Every import counts, also one inside a
function; imports under ``if TYPE_CHECKING:`` do not (they never run)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "lcf"


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


MODULES = _module_names()


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _imports(name: str) -> list[str]:
    """Every module ``name`` imports (absolute, dotted), anywhere in its source but under TYPE_CHECKING."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skipped = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.append(sub if sub in MODULES else module)
    return found


def _lcf_module(imported: str) -> str | None:
    """The lcf module an import reaches (the longest known prefix), None outside lcf."""
    while imported and imported not in MODULES:
        imported = imported.rpartition(".")[0]
    return imported or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name in MODULES:
        targets = set()
        for imported in _imports(name):
            target = _lcf_module(imported)
            if target is not None and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def _external(name: str) -> set[str]:
    """Top-level third-party packages ``name`` imports (the standard library left out)."""
    return {
        i.split(".")[0]
        for i in _imports(name)
        if not i.startswith("lcf") and i.split(".")[0] not in sys.stdlib_module_names and i != "__future__"
    }


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

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
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_what_it_must() -> None:
    """The checks below can fail: the reader finds nested, relative and ``from package import module`` imports."""
    graph = _graph()
    assert "lcf.batch" in graph["lcf.api"]  # inside api.batch()
    assert "lcf.entropy.coder" in graph["lcf.entropy.streams"]  # from .coder import ...
    assert "lcf.fileio" in graph["lcf.batch"]  # from lcf import fileio
    assert "lcf.batch_dask" in graph["lcf.batch"]  # inside executor_for(), only for a Dask cluster
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_import_cycles() -> None:
    graph = _graph()
    # lcf/__init__.py is the facade on top: it imports the API (lazily), and the package's version string is all a
    # module may read from it.
    for name in graph:
        for imported in _imports(name):
            if imported == "lcf" and name != "lcf":
                tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
                names = {
                    a.name
                    for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.module == "lcf" and not n.level
                    for a in n.names
                }
                assert names <= {"__version__"} | {m.rpartition(".")[2] for m in MODULES}, (name, names)
        graph[name].discard("lcf")
    assert _cycles(graph) == []  # none allowed


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("lcf.container")))
def test_container_is_standard_library_only(name: str) -> None:
    assert _external(name) == set()
    assert _graph()[name] <= {m for m in MODULES if m.startswith("lcf.container")} | {"lcf.errors", "lcf.constants"}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("lcf.entropy")))
def test_entropy_is_numpy_and_constriction_only(name: str) -> None:
    allowed = {"numpy", "constriction"} if name == "lcf.entropy.coder" else {"numpy"}
    assert _external(name) <= allowed
    assert _graph()[name] <= {m for m in MODULES if m.startswith("lcf.entropy")} | {"lcf.errors", "lcf.constants"}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("lcf.nn")))
def test_nn_is_torch_and_never_sees_bytes(name: str) -> None:
    assert _external(name) <= {"torch", "numpy"}
    assert _graph()[name] <= {m for m in MODULES if m.startswith("lcf.nn")} | {
        "lcf.errors",
        "lcf.constants",
        "lcf.manifest",
    }


def test_constants_and_options_import_no_third_party_package() -> None:
    for name in ("lcf.constants", "lcf.options", "lcf.errors", "lcf.manifest"):
        assert _external(name) == set(), name
    assert _graph()["lcf.constants"] == set()


def test_the_layers_meet_in_few_places() -> None:
    """nn and entropy meet in the latent codec and the loader; the container meets them in the codec alone."""
    graph = _graph()

    def layers(name: str) -> set[str]:
        return {
            t.split(".")[1]
            for t in graph[name]
            if t.count(".") and t.split(".")[1] in ("nn", "entropy", "container", "latent_codec")
        }

    codec_side = [n for n in MODULES if not n.startswith(("lcf.train", "lcf.bench"))]  # tools built on top
    assert sorted(n for n in codec_side if {"nn", "entropy"} <= layers(n)) == ["lcf.latent_codec", "lcf.loader"]
    assert [
        n
        for n in codec_side
        if "container" in layers(n)
        and layers(n) & {"nn", "entropy", "latent_codec"}
        and not n.startswith("lcf.container")
    ] == ["lcf.codec"]
    assert "lcf.image" not in graph["lcf.latent_codec"]  # symbols <-> streams: no image, no container
