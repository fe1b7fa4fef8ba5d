"""The plugin API's guard rails: first-party plugins use only the public facade; every hook is documented;
every diagnostic code in use is registered."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import mlprism
import pytest
from mlprism import hookspecs
from mlprism.diagnostics import CODES

ROOT = Path(__file__).resolve().parents[3]
PLUGIN_FILES = sorted([*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples" / "plugins").rglob("*.py")])
ALLOWED = {"mlprism", "mlprism.testing"}
#: What `import mlprism` offers a plugin: the facade's `__all__` (its submodules `mlprism.ir`,
#: `mlprism.diagnostics`, `mlprism.hookspecs` are reachable as attributes, but are not the API).
PUBLIC = frozenset(mlprism.__all__)


def private_uses(path: Path) -> list[str]:
    """Every place a file reaches past the public facade: `mlprism._internal`, `mlprism.ir`, `mlprism._x` ..."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[str] = []

    def check(module: str, line: int) -> None:
        if (module == "mlprism" or module.startswith("mlprism.")) and module not in ALLOWED:
            found.append(f"{path.relative_to(ROOT)}:{line}: imports `{module}`")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                check(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            check(node.module, node.lineno)
            if node.module == "mlprism":
                for alias in node.names:
                    if alias.name not in PUBLIC:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports `mlprism.{alias.name}`")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mlprism":
            if node.attr not in PUBLIC and not (node.attr.startswith("__") and node.attr.endswith("__")):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: uses `mlprism.{node.attr}`")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and re.search(r"\bmlprism\._(?!_)", node.value)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: names `{node.value[:60]}`")
    return found


def test_there_are_plugin_files_to_scan() -> None:
    assert len(PLUGIN_FILES) >= 4


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=[str(p.relative_to(ROOT)) for p in PLUGIN_FILES])
def test_first_party_plugins_import_only_the_public_facade(path: Path) -> None:
    assert private_uses(path) == []


def test_the_scanner_catches_private_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import mlprism._internal.compiler\nfrom mlprism import _version\nfrom mlprism.ir import Step\n"
                   "import mlprism\nx = mlprism._internal\nimportlib.import_module('mlprism._internal.load')\n"
                   "from mlprism import ir, Pipeline\ny = mlprism.diagnostics.CODES\nz = mlprism.Step\n")
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        assert len(private_uses(bad)) == 7, private_uses(bad)
    finally:
        ROOT = old


def test_the_facade_exports_what_it_lists() -> None:
    for name in mlprism.__all__:
        assert hasattr(mlprism, name), name
        assert not name.startswith("_") or name == "__version__"


HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("mlprism_"))


def test_there_are_hooks() -> None:
    assert {"mlprism_register_targets", "mlprism_schema_sections", "mlprism_config_searchpath",
            "mlprism_validate_ir", "mlprism_transform_ir"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_every_hookspec_is_documented(name: str) -> None:
    func = getattr(hookspecs, name)
    assert getattr(func, "mlprism_spec", None) is not None, f"{name} is not marked with @hookspec"
    doc = inspect.getdoc(func) or ""
    assert len(doc) >= 80, f"{name} needs a docstring: it is the hook's reference documentation"
    summary = doc.splitlines()[0]
    assert summary.endswith("."), f"{name}: the first line is a one-sentence summary"
    for param in inspect.signature(func).parameters:
        assert f"``{param}``" in doc or f"`{param}`" in doc or param in doc, f"{name}: document `{param}`"


def test_every_code_in_use_is_registered() -> None:
    used: dict[str, str] = {}
    for path in (ROOT / "compiler" / "mlprism").rglob("*.py"):
        for code in re.findall(r"[\"'](MLP\d{3})[\"']", path.read_text(encoding="utf-8")):
            used.setdefault(code, str(path.relative_to(ROOT)))
    missing = {code: where for code, where in used.items() if code not in CODES}
    assert not missing, f"register these in mlprism.diagnostics.CODES: {missing}"
