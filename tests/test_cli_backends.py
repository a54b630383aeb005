"""`delgrad backends`: table and JSON listing of installed backends."""

import json

import pytest

import delgrad_core
from delgrad_core import Capabilities, PluginRegistry, hookimpl
from delgrad_core.cli import main
from delgrad_core.testing import MockBackend, cli_runner

from _registries import install_only_backends


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


def _listing_of(monkeypatch, backends: dict, problems=()) -> dict:
    """`delgrad backends` (table and --json) with only `backends` (name -> factory) registered."""
    install_only_backends(monkeypatch, backends, version="9").problems.extend(problems)
    return {"table": cli_runner().invoke(main, ["backends"]), "json": cli_runner().invoke(main, ["backends", "--json"])}


def test_a_backend_that_cannot_be_built_is_reported_not_fatal(monkeypatch):
    listing = _listing_of(monkeypatch, {"needs-host": lambda host: _fine(host), "fine": _fine})
    records = {record["name"]: record for record in json.loads(listing["json"].stdout)["backends"]}
    assert records["fine"]["capabilities"]["exact"] is True
    assert records["needs-host"]["capabilities"] is None and "host" in records["needs-host"]["error"]
    table = listing["table"]
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


def test_the_table_shows_every_declared_capability_in_aligned_columns(monkeypatch):
    chip = Capabilities(delay_kinds={"axonal", "none"}, tau_ratios=(1, 2.5), max_inputs=128, max_layer_size=512,
                        max_layers=2, max_batch_size=100, weight_limit=2.1, weight_resolution=0.5,
                        delay_range=(1.0, 5.5), delay_resolution=0.25, input_copies=5, deterministic=False,
                        seed_independent=False, needs_calibration=True)
    seeded = Capabilities(exact=True, seed_independent=False, input_copies=1)
    table = _listing_of(monkeypatch, {"chip": lambda: MockBackend(name="chip", capabilities=chip),
                                      "seeded": lambda: MockBackend(name="seeded", capabilities=seeded)})["table"]
    assert table.exit_code == 0, table.output
    header, *rows = table.stdout.splitlines()
    cells = {row.split()[0]: [cell.strip() for cell in row.split("  ") if cell.strip()] for row in rows}
    assert cells["chip"][3:] == ["axonal,none", "1,2.5", "statistical, noisy", "yes",
                                 "in<=128 size<=512 layers<=2 batch<=100 |w|<=2.1 dw=0.5 dd=0.25 d in [1, 5.5] "
                                 "inputs in copies of 5"]
    assert cells["seeded"][3:] == ["axonal,dendritic,none,synaptic", "any", "exact, seeded", "no", "-"]
    for column in ("DISTRIBUTION", "VERSION", "DELAYS", "TAU RATIOS", "TIMES", "CALIBRATION", "LIMITS"):
        assert {row[header.index(column) - 1] for row in rows} == {" "}, column  # (each column starts in line)


def test_a_backend_whose_capabilities_exit_is_reported_with_the_exceptions_type(monkeypatch):
    """(a plugin calling sys.exit while asked for its capabilities must not end the listing of the others)"""
    class Exiting(MockBackend):
        @property
        def capabilities(self):
            raise SystemExit("no device")

    listing = _listing_of(monkeypatch, {"exits": lambda: Exiting(name="exits"), "fine": _fine})
    records = {record["name"]: record for record in json.loads(listing["json"].stdout)["backends"]}
    assert records["exits"]["error"] == "SystemExit: no device" and records["fine"]["capabilities"]["exact"]
    assert listing["table"].exit_code == 0 and "backend 'exits' cannot be built: SystemExit: no device" in \
        listing["table"].stderr


def test_each_loading_problem_is_one_warning_line(monkeypatch):
    problem = "delgrad plugin 'odd' failed:\n    ImportError:  no module"
    table = _listing_of(monkeypatch, {"fine": _fine}, [problem])["table"]
    assert "Warning: delgrad plugin 'odd' failed: ImportError: no module\n" in table.stderr
