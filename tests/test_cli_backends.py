"""`delgrad backends`: table and JSON listing of installed backends."""

import json

import pytest

from delgrad_core.testing import cli_runner

import delgrad_core
from delgrad_core import Capabilities, PluginRegistry, hookimpl
from delgrad_core.testing import MockBackend
from delgrad_core.cli import main


def test_backends_json_lists_reference_and_example():
    result = cli_runner().invoke(main, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    records = {record["name"]: record for record in listing["backends"]}
    assert isinstance(listing["problems"], list)
    assert records["reference"]["distribution"] == "delgrad-reference"
    assert records["example"]["distribution"] == "delgrad-example-backend"
    assert records["reference"]["capabilities"]["exact"] is True
    assert records["example"]["capabilities"]["exact"] is False
    assert records["example"]["version"] == "0.1.0"


def test_backends_table_has_one_row_per_backend():
    result = cli_runner().invoke(main, ["backends"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # (warnings about backends that cannot be built go to stderr)
    assert lines[0].split()[:3] == ["NAME", "DISTRIBUTION", "VERSION"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["reference"][1:3] == ["delgrad-reference", "0.1.0"] and "exact" in rows["reference"]
    assert "statistical" in rows["example"]
    if "bss2-emulator" in rows:  # (the chip's inputs come in copies: shown, as --json has them)
        assert " ".join(rows["bss2-emulator"]).endswith("inputs in copies of 5")
    assert len(rows) == len(delgrad_core.available_backends())


def _fine(host="localhost"):
    backend = MockBackend(name="fine", capabilities=Capabilities(exact=True))
    backend.host = host
    return backend


def test_a_backend_that_cannot_be_built_is_reported_not_fatal(monkeypatch):
    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("needs-host", lambda host: _fine(host))
            register("fine", _fine)

    registry = PluginRegistry()
    registry.register_plugin(Plugin(), distribution="delgrad-local", version="9")
    monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)
    result = cli_runner().invoke(main, ["backends", "--json"])
    records = {record["name"]: record for record in json.loads(result.stdout)["backends"]}
    assert records["fine"]["capabilities"]["exact"] is True
    assert records["needs-host"]["capabilities"] is None and "host" in records["needs-host"]["error"]
    table = cli_runner().invoke(main, ["backends"])
    assert table.exit_code == 0 and "backend 'needs-host' cannot be built" in table.stderr


def test_conflicts_are_shown_in_the_listing(monkeypatch):
    class Impostor:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("fine", _fine)

    registry = PluginRegistry(strict=False)
    registry.register_plugin(Impostor(), distribution="first")
    with pytest.warns(UserWarning, match="'fine' is registered by two"):
        registry.register_plugin(Impostor(), distribution="second", plugin_name="again")
    monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)
    table = cli_runner().invoke(main, ["backends"])
    assert table.exit_code == 0 and "'first' (kept) and 'second' (ignored)" in table.stderr
