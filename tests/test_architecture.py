"""The house rules of docs/architecture.md, checked on the source: no import cycles, no
private name used across modules, no long functions, a command line that only parses
and prints, and a public surface that resolves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "xdefect"
MAX_FUNCTION_LINES = 65  # "about 60"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text()) for p in sorted(SRC.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (not imported at run time)."""
    for node in ast.iter_child_nodes(tree):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"):
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The xdefect modules ``name`` imports at run time (lazy imports included)."""
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in known:
                out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names
                    if f"{node.module}.{a.name}" in known}
    out.discard(name)
    return out


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(m, t, set(mods)) for m, t in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n] if n in path else [m, n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # the graph holds the lazy and the package-relative imports too
    assert {"xdefect.detect", "xdefect.evaluate"} <= graph["xdefect.protocol"]
    assert "xdefect.cli.dataset" in graph["xdefect.cli"]
    assert "xdefect.pipelines" in graph["xdefect.cli.dataset"]  # imported inside a handler
    # the stages import downstream-to-upstream only
    assert "xdefect.train" not in graph["xdefect.patches"]
    assert graph["xdefect.train"].isdisjoint({"xdefect.patches", "xdefect.gan"})
    assert graph["xdefect.windows"] == set()  # the leaf: pure NumPy
    assert graph["xdefect.seeds"] == set()


def _xdefect_aliases(tree: ast.Module, known: set[str]) -> set[str]:
    """The local names a file binds to xdefect modules (``from xdefect import gdxray``,
    ``import xdefect.io as xio``, ``from xdefect import simulate as S``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.asname for a in node.names if a.asname and a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {a.asname or a.name for a in node.names
                    if f"{node.module}.{a.name}" in known}
    return out


def test_no_private_names_across_modules():
    """No file (the package, experiments/, bench/) imports an underscored name of an
    xdefect module or reaches one through a module it imported."""
    known = set(_modules())
    files = sorted(SRC.rglob("*.py")) + sorted((SRC.parents[1] / "experiments").glob("*.py")) \
        + sorted((SRC.parents[1] / "bench").glob("*.py"))
    bad = []
    for path in files:
        tree = ast.parse(path.read_text())
        aliases = _xdefect_aliases(tree, known)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xdefect"):
                bad += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                    and node.value.id in aliases):
                bad.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert not bad, bad


def test_no_long_functions():
    long = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, long


def test_cli_only_parses_and_prints():
    """The command line holds no array or tensor work: it never imports NumPy, torch,
    SciPy or Pillow, nor writes files itself."""
    for name, tree in _modules().items():
        if not name.startswith("xdefect.cli"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
                assert not {a.name for a in node.names} & {"write_image", "write_json",
                                                             "atomic_path"}, name
            else:
                continue
            assert not roots & {"numpy", "torch", "scipy", "PIL"}, (name, roots)


def test_public_surface_resolves():
    import xdefect

    for name in xdefect.__all__:
        assert getattr(xdefect, name) is not None, name
    with pytest.raises(AttributeError):
        xdefect.no_such_name  # noqa: B018


def test_every_module_names_its_public_surface():
    """Each module's ``__all__`` lists exactly its public definitions: everything else
    carries a leading underscore."""
    for name, tree in _modules().items():
        if name == "xdefect":
            continue
        defined, listed = set(), None
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name) and t.id == "__all__":
                        listed = set(ast.literal_eval(node.value))
                    elif isinstance(t, ast.Name):
                        defined.add(t.id)
        if name.endswith("__main__"):
            continue
        assert listed is not None, f"{name} has no __all__"
        public = {d for d in defined if not d.startswith("_")}
        assert listed == public, (name, sorted(listed ^ public))
