"""The lock is what pyproject.toml declares, the layer's pins are the lock's, and every package the tests
and benchmarks import is declared (so `make install` on a fresh machine has it)."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
DEV = [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]]
FIRST_PARTY = {"support_agent", "support_agent_local", "tests", "app", "__future__"}
REGENERATE = "run `make lock` after changing dependencies in pyproject.toml"


def pins(path: Path) -> dict[str, set[Version]]:
    """name → pinned versions of a requirements file written by `uv pip compile` (one `name==version` a line;
    a universal lock may pin one package at two versions, for different Pythons)."""
    found: dict[str, set[Version]] = {}
    for line in path.read_text().splitlines():
        if not line or line[0] in " #-":
            continue
        requirement = Requirement(line.rstrip(" \\"))
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{path.name}: {line!r} is not pinned"
        found.setdefault(canonicalize_name(requirement.name), set()).add(Version(spec.version))
    return found


LOCK = pins(ROOT / "requirements.lock")
LAYER = pins(ROOT / "layers" / "common" / "requirements.txt")


@pytest.mark.parametrize("requirement", RUNTIME + DEV, ids=str)
def test_the_lock_pins_each_declared_dependency_within_its_range(requirement: Requirement) -> None:
    name = canonicalize_name(requirement.name)
    assert name in LOCK, f"{requirement} is not in requirements.lock: {REGENERATE}"
    for version in LOCK[name]:
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement}: {REGENERATE}"
        )


def test_the_layer_pins_the_runtime_dependencies_at_the_locked_versions() -> None:
    for requirement in RUNTIME:
        assert canonicalize_name(requirement.name) in LAYER, (
            f"{requirement} missing from the layer: {REGENERATE}"
        )
    differing = {
        name: (version, LOCK.get(name)) for name, version in LAYER.items() if LOCK.get(name) != version
    }
    assert not differing, f"layer pins differ from requirements.lock (layer, lock): {differing}; {REGENERATE}"
    for tool in ("moto", "pytest", "aws-sam-cli", "mypy"):
        assert tool not in LAYER, f"{tool} (development only) is in the layer"


def imported_modules(*folders: str) -> set[str]:
    modules: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - FIRST_PARTY


def test_every_package_the_tests_and_benchmarks_import_is_declared() -> None:
    declared = {canonicalize_name(r.name) for r in RUNTIME + DEV}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module in sorted(imported_modules("tests", "bench")):
        names = {canonicalize_name(d) for d in distributions.get(module, [module])}
        if not names & declared:
            undeclared[module] = sorted(names)
    assert not undeclared, (
        f"imported but not declared in pyproject.toml (add them to the dev extra, then `make lock`): {undeclared}"
    )
