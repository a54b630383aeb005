"""The built-in plugins use the core as a third party would: through its public names only."""

import ast
from pathlib import Path

import pytest

import delgrad_core as dg
import delgrad_core.plugin_tools

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_SOURCES = sorted(path for folder in ("backends", "plugins") for path in (ROOT / folder).glob("*/*/**/*.py")
                        if "tests" not in path.relative_to(ROOT).parts)


def _core_imports(path: Path):
    """(module, name or None, line) of each import from delgrad_core in the file at `path`."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None, node.lineno) for alias in node.names
                        if alias.name.split(".")[0] == "delgrad_core")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "delgrad_core":
            yield from ((node.module, alias.name, node.lineno) for alias in node.names)


def test_the_plugin_sources_are_found():
    names = {path.name for path in PLUGIN_SOURCES}
    assert {"_cache.py", "_service.py", "_protocol.py"} <= names and len(PLUGIN_SOURCES) > 20


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_built_in_plugins_import_only_public_core_names(path):
    for module, name, line in _core_imports(path):
        where = f"{path.relative_to(ROOT)}:{line}"
        assert not any(part.startswith("_") for part in module.split(".")), f"{where}: imports {module}"
        if name is not None:
            public = getattr(__import__(module, fromlist=["__all__"]), "__all__")
            assert name in public, f"{where}: {name} is not in {module}.__all__"


def test_plugin_tools_are_exported_and_documented():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert "plugin_tools" in dg.__all__ and "MAX_SEED" in dg.__all__
    for name in delgrad_core.plugin_tools.__all__:
        assert callable(getattr(delgrad_core.plugin_tools, name)) and f"`{name}" in docs, name
