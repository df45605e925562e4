"""The layers of `components/` (docs/architecture.md): imports run one way, down; decisions are
pure; one ComponentResource per file, and only in the component layers; components never read
Pulumi config."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "components"
# Bottom to top. A module may import its own package and the ones below it, never one above.
LAYERS = ["config", "planning", "engines", "infra", "serving", "offline", "__main__"]
PURE = {"planning", "engines"}  # no Pulumi at all
COMPONENT_LAYERS = {"infra", "serving"}
MODULES = sorted(PACKAGE.rglob("*.py"))


def layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of what the module imports (relative imports resolved)."""
    package = ["components", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module} if node.module else {f"{module}.{a.name}" for a in node.names}
    return names


def test_every_module_belongs_to_a_layer():
    assert {layer(p) for p in MODULES} == set(LAYERS)
    for package in LAYERS[:-1]:
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
        assert doc and "import" in doc, f"components/{package}/__init__.py says what it may import"


def upward(path: Path, source: str | None = None) -> list[str]:
    own = LAYERS.index(layer(path))
    return sorted(n for n in imported(path, source) if n.split(".")[0] == "components"
                  and LAYERS.index(n.split(".")[1]) > own)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down(path):
    assert upward(path) == [], f"{path.relative_to(PACKAGE)} imports a layer above it"


def test_the_checker_sees_upward_imports():
    config_module = PACKAGE / "config" / "cluster.py"
    assert upward(config_module, "from ..planning.catalog import CATALOG\nfrom .fields import Cidr") == \
        ["components.planning.catalog"]
    assert upward(PACKAGE / "infra" / "monitoring.py", "from components.serving import alerts") == \
        ["components.serving"]


@pytest.mark.parametrize("path", [p for p in MODULES if layer(p) in PURE],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_decisions_are_pure(path):
    assert not {n for n in imported(path) if n.split(".")[0] == "pulumi" or n.startswith("pulumi_")}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_one_component_per_file_in_the_component_layers(path):
    tree = ast.parse(path.read_text())
    components = [c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                  and any(ast.unparse(b).endswith("ComponentResource") for b in c.bases)]
    assert len(components) <= 1, components
    if components:
        assert layer(path) in COMPONENT_LAYERS, f"{components[0]} is a ComponentResource outside infra/serving"
        args = [c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) and c.name.endswith("Args")]
        assert args == [f"{components[0]}Args"], f"{path.name}: one typed Args for {components[0]}"
    if layer(path) != "config":
        assert "pulumi.Config(" not in path.read_text(), "only components/config reads Pulumi config"
