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


@pytest.mark.parametrize("value, arguments, message", [
    (0, dict(low=1, high=16, integer=True), "n: expected an integer from 1 to 16, got 0"),
    (2.0, dict(low=1, integer=True), "n: expected an integer >= 1, got 2.0"),
    (True, dict(low=0, high=1), "n: expected a number from 0 to 1, got True"),
    (float("inf"), dict(low=0, low_open=True), "n: expected a finite number > 0, got inf"),
    (float("nan"), dict(), "n: expected a finite number, got nan"),
    (None, dict(low=1, integer=True), "n: expected an integer >= 1, got None"),  # (None only if optional)
    (1.0, dict(low=0, high=1, high_open=True), "n: expected a number >= 0 and < 1, got 1.0"),
    ("3", dict(optional=True), "n: expected None or a finite number, got '3'"),
    (-1, dict(low=0, high=2**63 - 1, integer=True, optional="fresh entropy"),
     "n: expected None (fresh entropy) or an integer from 0 to 2**63 - 1, got -1"),
    (10**400, dict(high=10), "n: expected a number <= 10, got the integer 1.00e+400"),
    (10**400, dict(), "n: expected a finite number, got the integer 1.00e+400"),  # (too large for a float)
    (0, dict(low=1, high=100_000, integer=True, what="a count of samples"),
     "n: expected a count of samples from 1 to 100,000, got 0"),
])
def test_checked_number_names_the_field_and_what_it_takes(value, arguments, message):
    with pytest.raises(dg.InvalidValueError) as info:
        delgrad_core.plugin_tools.checked_number(value, "n", **arguments)
    assert str(info.value) == message


def test_checked_number_gives_python_numbers():
    import numpy as np

    checked_number = delgrad_core.plugin_tools.checked_number
    assert checked_number(None, "n", optional=True) is None
    for value, arguments, expected in ((np.int64(3), dict(integer=True), 3), (np.float32(0.5), {}, 0.5),
                                       (-0.0, {}, 0.0), (7, {}, 7.0)):
        result = checked_number(value, "n", **arguments)
        assert result == expected and type(result) is type(expected) and str(result) == str(expected)


def test_versions_are_the_installed_distributions_own():
    """(delgrad_core.__version__, which run folders and NIR files record, was a string of its own
    beside pyproject.toml's and meson.build's: a changed version in pyproject left runs saying 0.1.0)"""
    from importlib.metadata import version

    import delgrad_bss2
    from delgrad_core._version import distribution_version

    assert delgrad_core.__version__ == version("delgrad") and "__version__" in delgrad_core.__all__
    assert delgrad_bss2.__version__ == version("delgrad-bss2")
    assert distribution_version("no-such-distribution-of-delgrad") == "unknown"
