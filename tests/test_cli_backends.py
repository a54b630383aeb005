"""`delgrad backends`: table and JSON listing of installed backends."""

import json

from click.testing import CliRunner

import delgrad_core
from delgrad_core import Backend, BackendRegistry, Capabilities, hookimpl
from delgrad_core.cli import main


def test_backends_json_lists_reference_and_example():
    result = CliRunner().invoke(main, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    records = {record["name"]: record for record in json.loads(result.output)}
    assert records["reference"]["distribution"] == "delgrad-reference"
    assert records["example"]["distribution"] == "delgrad-example-backend"
    assert records["reference"]["capabilities"]["exact"] is True
    assert records["example"]["capabilities"]["exact"] is False
    assert records["example"]["version"] == "0.1.0"


def test_backends_table_has_one_row_per_backend():
    result = CliRunner().invoke(main, ["backends"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["NAME", "DISTRIBUTION", "VERSION"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["reference"][1:3] == ["delgrad-reference", "0.1.0"] and "exact" in rows["reference"]
    assert "statistical" in rows["example"]
    assert len(rows) == len(delgrad_core.available_backends())


class _ExactBackend(Backend):
    name = "fine"
    capabilities = Capabilities(exact=True)

    def __init__(self, host="localhost"):
        self.host = host

    def _execute(self, network, input_spike_times, calibration, seed):
        raise NotImplementedError("never executed in these tests")


def test_a_backend_that_cannot_be_built_is_reported_not_fatal(monkeypatch):
    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("needs-host", lambda host: _ExactBackend(host))
            register("fine", _ExactBackend)

    registry = BackendRegistry()
    registry.register_plugin(Plugin(), distribution="delgrad-local", version="9")
    monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)
    result = CliRunner().invoke(main, ["backends", "--json"])
    records = {record["name"]: record for record in json.loads(result.stdout)}
    assert records["fine"]["capabilities"]["exact"] is True
    assert records["needs-host"]["capabilities"] is None and "host" in records["needs-host"]["error"]
    table = CliRunner().invoke(main, ["backends"])
    assert table.exit_code == 0 and "backend 'needs-host' cannot be built" in table.stderr
