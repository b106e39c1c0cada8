"""Lean function images: each function's image installs the core plus its own extras (deploy/scripts/images.sh,
pyproject.toml), and everything the function's code can import resolves to a distribution that image carries.

Two checks per function, against the installed metadata of this venv (the same pins the images install):
- statically, every import reachable from ``functions/<name>/main.py`` through the package, function-level
  (lazy) imports included, belongs to the image's distributions;
- at run time, importing the function module in a fresh interpreter loads no module outside them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import REPO

IMAGES = REPO / "deploy" / "scripts" / "images.sh"
PACKAGE = REPO / "shared"
HEAVY = {"dbt-core", "duckdb", "matplotlib", "sqlglot", "dbt-duckdb"}  # what split and bronze must never carry
# Loaded when present but not needed: jsonschema's optional format checkers (it imports them if installed),
# astropy's optional sorted containers (its table indexing uses them if installed: the test extra brings them with
# hypothesis) and setuptools' start-up hook of every virtualenv.
OPPORTUNISTIC = {"jsonpointer", "rfc3339_validator", "_distutils_hack", "sortedcontainers"}


def image_extras() -> dict[str, tuple[str, ...]]:
    """functions/ folder -> the extras its image installs, as the image build reads them."""
    specs = re.findall(r'"([\w-]+):(\w+):(http|cloudevent):([\w,]*)"', IMAGES.read_text())
    assert specs, f"no image specs in {IMAGES}"
    return {folder: tuple(e for e in extras.split(",") if e) for _, folder, _, extras in specs}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def closure(extras: tuple[str, ...]) -> frozenset[str]:
    """Normalised names of every distribution `pip install ateda[extras]` brings (transitively)."""
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [("ateda", extras)]
    done: set[tuple[str, tuple[str, ...]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in done:
            continue
        done.add((name, wanted))
        seen.add(_norm(name))
        for text in metadata.distribution(name).requires or []:
            req = Requirement(text)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, tuple(sorted(req.extras))))
    return frozenset(seen)


@cache
def module_owners() -> dict[str, set[str]]:
    return {top: {_norm(d) for d in dists} for top, dists in metadata.packages_distributions().items()}


def _ateda_module_file(module: str) -> Path | None:
    base = PACKAGE.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable_imports(main: Path) -> dict[str, str]:
    """Third-party top-level module -> the file that imports it, over every module reachable from ``main``."""
    third: dict[str, str] = {}
    todo, visited = [main], set()
    while todo:
        path = todo.pop()
        if path in visited:
            continue
        visited.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                top = name.split(".")[0]
                if top == "ateda":
                    found = _ateda_module_file(name)
                    if found is not None:
                        todo.append(found)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third.setdefault(top, str(path.relative_to(REPO)))
    return third


def _owner(top: str) -> set[str]:
    owners = module_owners().get(top)
    assert owners, f"{top!r} belongs to no installed distribution"
    return owners


FUNCTIONS = sorted(image_extras())


def test_every_function_has_an_image_spec():
    assert FUNCTIONS == sorted(p.parent.name for p in (REPO / "functions").glob("*/main.py"))


def test_split_and_bronze_images_carry_neither_dbt_nor_matplotlib():
    extras = image_extras()
    for folder in ("split", "bronze", "minio_bridge", "dead_letter"):
        assert not closure(extras[folder]) & HEAVY, (folder, sorted(closure(extras[folder]) & HEAVY))
    assert {"dbt-core", "duckdb"} <= closure(extras["dbt_refresh"])  # the check can see heavy deps when present


@pytest.mark.parametrize("folder", FUNCTIONS)
def test_everything_a_function_can_import_is_in_its_image(folder: str):
    allowed = closure(image_extras()[folder])
    missing = {top: (sorted(_owner(top)), where) for top, where in reachable_imports(REPO / "functions" / folder /
                                                                                     "main.py").items()
               if not _owner(top) & allowed}
    assert not missing, f"{folder}'s image lacks what its code imports: {missing}"


@pytest.mark.parametrize("folder", FUNCTIONS)
def test_importing_a_function_loads_only_its_image(folder: str):
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('fn', {str(REPO / 'functions' / folder / 'main.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    env = {**os.environ, "ATEDA_BRIDGE_TOKEN": "image-check", "ATEDA_HOME": str(REPO / ".ateda" / "image-check")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    allowed = closure(image_extras()[folder])
    foreign = {top: sorted(module_owners()[top]) for top in loaded
               if top in module_owners() and not module_owners()[top] & allowed
               and top != "ateda" and top not in OPPORTUNISTIC}
    assert not foreign, f"importing {folder} loads modules its image does not carry: {foreign}"
