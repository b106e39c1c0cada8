"""The package's shape, read from its source (AST, nothing imported): no import cycle between its modules, its own
modules imported at the top only, and every import left inside a function says why (an optional or heavy
dependency loaded only where it is needed). docs/architecture.md gives the layers these rules keep apart."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shared" / "ateda"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text(), filename=str(p))) for p in sorted(PACKAGE.rglob("*.py"))}


SOURCES = _sources()


def _absolute(module: str, node: ast.ImportFrom) -> str:
    """The absolute name ``from X import ...`` refers to inside ``module`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    is_package = SOURCES[module][0].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package's modules an import statement loads (``from pkg import mod`` names the module ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "ateda"]
    base = _absolute(module, node)
    if base.split(".")[0] != "ateda":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in SOURCES else base for a in node.names]


def _imports(tree: ast.Module) -> tuple[list[ast.stmt], list[tuple[ast.stmt, str]]]:
    """(module-level imports, imports inside a function or class with the name of that scope)."""
    top: list[ast.stmt] = []
    nested: list[tuple[ast.stmt, str]] = []

    def walk(node: ast.AST, scope: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (top.append(child) if scope is None else nested.append((child, scope)))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                walk(child, getattr(child, "name", "<lambda>") if scope is None else scope)
            else:
                walk(child, scope)

    walk(tree, None)
    return top, nested


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, (_, tree) in SOURCES.items():
        top, _ = _imports(tree)
        graph[module] = {t for node in top for t in _targets(module, node) if t in SOURCES and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_source_is_found():
    assert {"ateda.config", "ateda.errors", "ateda.cli", "ateda.lake.iceberg", "ateda.steps.split"} <= set(SOURCES)


def test_no_import_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# The console script's entry point imports the CLI inside run() on purpose: so that Ctrl-C or a missing optional
# dependency during those imports is one line, not a traceback. It is the one exception.
ENTRY_POINT = "ateda.console"


@pytest.mark.parametrize("module", sorted(set(SOURCES) - {ENTRY_POINT}))
def test_package_modules_are_imported_at_the_top(module: str):
    _, nested = _imports(SOURCES[module][1])
    inside = [f"line {node.lineno} in {scope}(): {ast.unparse(node)}" for node, scope in nested
              if _targets(module, node)]
    assert inside == [], f"{module} imports the package's own modules inside functions"


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_every_import_inside_a_function_says_why(module: str):
    path, tree = SOURCES[module]
    lines = path.read_text().splitlines()
    _, nested = _imports(tree)
    silent = [f"line {node.lineno}: {ast.unparse(node)}" for node, _ in nested
              if "#" not in lines[node.lineno - 1] and not lines[node.lineno - 2].lstrip().startswith("#")]
    assert silent == [], f"{module}: a function-level import needs a comment saying why it is not at the top"


def test_the_entry_point_is_the_only_exception_and_only_imports_the_cli():
    _, nested = _imports(SOURCES[ENTRY_POINT][1])
    assert [ast.unparse(node) for node, _ in nested] == ["from ateda.cli import main"]


def test_the_library_never_imports_its_cli():
    graph = _graph()
    offenders = sorted(m for m, deps in graph.items() if not m.startswith("ateda.cli")
                       and any(d == "ateda.cli" or d.startswith("ateda.cli.") for d in deps))
    assert offenders == []


def test_steps_parse_no_arguments():
    """The function logic (steps/) neither parses command lines nor prints: that is the CLI's."""
    for module, (_, tree) in SOURCES.items():
        if not module.startswith("ateda.steps."):
            continue
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        imported = {t for node in _imports(tree)[0] for t in
                    ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])}
        assert "argparse" not in imported, module
        assert "print" not in names, module


FORBIDDEN = {  # layer -> the layers it must not import (docs/architecture.md, "Which way imports go")
    "ateda.ztf": ("ateda.lake", "ateda.events", "ateda.steps", "ateda.warehouse", "ateda.serving", "ateda.local",
                  "ateda.cli", "ateda.dev", "ateda.config", "ateda.ingest", "ateda.status", "ateda.lsst"),
    "ateda.lsst": ("ateda.lake", "ateda.events", "ateda.steps", "ateda.warehouse", "ateda.serving", "ateda.local",
                   "ateda.cli", "ateda.dev", "ateda.config", "ateda.ingest", "ateda.status", "ateda.ztf"),
    "ateda.avro": ("ateda.ztf", "ateda.lsst", "ateda.lake", "ateda.events", "ateda.steps", "ateda.warehouse",
                   "ateda.serving", "ateda.local", "ateda.cli", "ateda.dev", "ateda.config", "ateda.ingest",
                   "ateda.status"),
    "ateda.lake": ("ateda.steps", "ateda.warehouse", "ateda.local", "ateda.cli", "ateda.dev", "ateda.ingest",
                   "ateda.status"),
    "ateda.events": ("ateda.lake", "ateda.steps", "ateda.warehouse", "ateda.serving", "ateda.local", "ateda.cli",
                     "ateda.dev"),
    "ateda.steps": ("ateda.local", "ateda.cli", "ateda.dev", "ateda.ingest", "ateda.status"),
    "ateda.serving": ("ateda.steps", "ateda.warehouse", "ateda.local", "ateda.cli", "ateda.dev"),
    "ateda.warehouse": ("ateda.steps", "ateda.local", "ateda.cli", "ateda.dev", "ateda.serving"),
    "ateda.local": ("ateda.steps", "ateda.warehouse", "ateda.cli", "ateda.dev"),
    # the explorer reads the warehouse and the lake; only the CLI imports it
    "ateda.explorer": ("ateda.steps", "ateda.local", "ateda.cli", "ateda.dev", "ateda.serving", "ateda.events",
                       "ateda.ingest", "ateda.status", "ateda.backfill"),
}


def test_nothing_but_the_cli_imports_the_explorer():
    graph = _graph()
    offenders = sorted(f"{m} -> {d}" for m, deps in graph.items()
                       if not m.startswith(("ateda.cli", "ateda.explorer"))
                       for d in deps if d == "ateda.explorer" or d.startswith("ateda.explorer."))
    assert offenders == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_downwards_only(layer: str):
    graph = _graph()
    wrong = sorted(f"{m} -> {d}" for m, deps in graph.items() if m == layer or m.startswith(layer + ".")
                   for d in deps if any(d == f or d.startswith(f + ".") for f in FORBIDDEN[layer]))
    assert wrong == []


def test_only_the_refresh_worker_of_the_steps_runs_dbt():
    graph = _graph()
    assert sorted(m for m, deps in graph.items() if m.startswith("ateda.steps.")
                  and any(d.startswith("ateda.warehouse") for d in deps)) == ["ateda.steps.dbt_refresh"]


def test_tests_share_helpers_through_conftest_only():
    """Shared test helpers live in tests/conftest.py; a test module never imports another test module."""
    offenders = []
    for path in sorted(PACKAGE.parents[1].joinpath("tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not offenders, offenders


# ateda.tom runs inside a TOM's Django process (docs/explorer.md, "TOM Toolkit"), with tomtoolkit's dependencies,
# not ATEDA's: it imports the standard library and what tomtoolkit brings, never the rest of the package, and nothing
# in the package imports it (its Django imports would fail there).
TOM = "ateda.tom"
TOM_MAY_IMPORT = {"requests", "django", "crispy_forms", "tom_alerts", "tom_dataproducts", "tom_targets"}


def _in_tom(module: str) -> bool:
    return module == TOM or module.startswith(TOM + ".")


def test_nothing_in_the_package_imports_the_tom_module():
    importers = []
    for module, (_, tree) in SOURCES.items():
        if _in_tom(module):
            continue
        top, nested = _imports(tree)
        importers += [f"{module}: {ast.unparse(node)}" for node in top + [n for n, _ in nested]
                      if any(_in_tom(t) for t in _targets(module, node))]
    assert importers == []


def test_the_tom_module_imports_only_what_a_tom_has():
    modules = [m for m in SOURCES if _in_tom(m)]
    assert "ateda.tom.broker" in modules
    for module in modules:
        top, nested = _imports(SOURCES[module][1])
        roots = set()
        for node in top + [n for n, _ in nested]:
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif not node.level:
                roots.add((node.module or "").split(".")[0])
            else:
                assert _in_tom(_absolute(module, node)), f"{module}: {ast.unparse(node)} leaves ateda.tom"
        foreign = roots - set(sys.stdlib_module_names) - TOM_MAY_IMPORT
        assert foreign == set(), f"{module} imports {sorted(foreign)}, which a TOM does not have"
