"""What a plugin author sees when a plugin goes wrong: the cause is named where it matters."""

import json
import os
import pickle
import subprocess
import sys

import pytest

import delgrad_core
from delgrad_core import PluginError, PluginLoadError, PluginLoadWarning, PluginRegistry, UnknownNameError, hookimpl
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner, write_distribution
from delgrad_core.training import TrainingConfig

from _registries import install_only_backends

GROUP = "delgrad.backends"

BACKEND = """
    from delgrad_core import Capabilities, hookimpl
    from delgrad_core.testing import MockBackend

    class {cls}(MockBackend):
        name = "{name}"

        def __init__(self):
            super().__init__(name="{name}")
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path into which fake distributions are installed (as in test_plugins)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DELGRAD_STRICT_PLUGINS", raising=False)

    def install(dist, module, source, entry_name=None):
        write_distribution(tmp_path, dist, "1.0", {module: source}, {GROUP: {entry_name or module: module}})

    return install


@pytest.fixture
def fresh():
    """The process-wide registry discovered anew inside the test, and forgotten after it."""
    delgrad_core.refresh_plugins()
    yield
    delgrad_core.refresh_plugins()


# -- 1. a plugin that failed to load is named where its name is missing -------------------------
def _broken_noisy(site):
    site("delgrad-noisy", "noisy_cpu_plugin", "raise ImportError('No module named torch')\n", entry_name="noisy")


def test_unknown_backend_names_the_plugins_that_failed_to_load(site, fresh):
    _broken_noisy(site)
    with pytest.warns(PluginLoadWarning, match="noisy"), pytest.raises(UnknownNameError) as raised:
        delgrad_core.get_backend("noisy-cpu")
    head, *items = str(raised.value).split("\n")
    assert head.endswith("; 1 plugin failed to load (the likely cause):") and len(items) == 1
    assert items[0].startswith("- plugin 'noisy' (noisy_cpu_plugin) from distribution 'delgrad-noisy' 1.0")
    assert items[0].endswith("failed to load: ImportError: No module named torch")


def test_train_with_a_backend_whose_plugin_failed_to_load_names_it(site, fresh, tmp_path):
    _broken_noisy(site)
    result = cli_runner().invoke(main, ["train", "--backend", "noisy-cpu", "--epochs", "1",
                                        "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and not (tmp_path / "run").exists()
    error = result.stderr.split("\nError: ", 1)[1]  # (after the warning given while loading)
    assert error.startswith("backend: 'noisy-cpu' is not installed; installed: ")
    assert error.endswith("; 1 plugin failed to load (the likely cause):\n- plugin 'noisy' (noisy_cpu_plugin) from "
                          "distribution 'delgrad-noisy' 1.0: failed to load: ImportError: No module named torch\n")


def test_no_failures_no_failure_note(site):
    site("delgrad-fine", "fine_plugin", BACKEND.format(cls="Fine", name="fine") + """
    @hookimpl
    def delgrad_register_backends(register):
        register("fine", Fine)
    """)
    registry = PluginRegistry().discover()
    assert registry.failures == []
    with pytest.raises(UnknownNameError) as raised:
        registry.get("backend", "nope")
    assert "failed to load" not in str(raised.value)


# -- 2. the unknown-name error names the Python whose plugins it saw, once ----------------------
def test_unknown_name_error_names_the_interpreter_once():
    seen = f"the plugins seen are those installed for {sys.executable}"
    with pytest.raises(UnknownNameError) as raised:
        delgrad_core.get_backend("does-not-exist")
    assert str(raised.value).count(seen) == 1
    again = UnknownNameError(str(raised.value))
    assert str(again) == str(raised.value) and str(pickle.loads(pickle.dumps(again))) == str(again)
    with pytest.raises(ValueError) as config:
        TrainingConfig(backend="does-not-exist")
    assert str(config.value).count(seen) == 1


def test_conformance_suite_unknown_backend_names_the_interpreter(tmp_path):
    env = {**os.environ, "DELGRAD_STRICT_PLUGINS": "0"}
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
                              "delgrad_core.testing", "--delgrad-backend", "does-not-exist", "--collect-only"],
                             capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    output = process.stdout + process.stderr
    assert process.returncode != 0 and "unknown backend 'does-not-exist'" in output, output
    assert f"the plugins seen are those installed for {sys.executable}" in output


# -- 3. one bad registration is refused alone, every problem reported ---------------------------
MIXED = BACKEND.format(cls="Mislabelled", name="reference") + BACKEND.format(cls="Good", name="good") + """
    @hookimpl
    def delgrad_register_backends(register):
        register("other-name", Mislabelled)
        register("good", Good)
        register("Bad Name", Good)
        register("good", Good)
"""


def test_a_bad_registration_is_refused_alone_and_every_problem_reported(site):
    site("delgrad-mixed", "mixed_plugin", MIXED)
    with pytest.warns(PluginLoadWarning) as record:
        registry = PluginRegistry().discover()
    messages = [str(w.message) for w in record if "mixed_plugin" in str(w.message)]
    assert len(messages) == 3
    assert "registered under another name than its Backend.name 'reference'" in messages[0]
    assert "'Bad Name'" in messages[1] and "'good' is registered twice" in messages[2]
    assert "good" in registry.names() and "other-name" not in registry.names()
    assert len(registry.failures) == 1 and registry.failures[0].count("registration refused") == 3
    with pytest.raises(PluginLoadError, match=r"^3 plugin problems:\n- .*Backend.name.*\n- .*Bad Name.*\n- .*twice"):
        PluginRegistry(strict=True).discover()


def test_a_hook_that_raises_registers_nothing_of_that_plugin(site):
    site("delgrad-half", "half_plugin", BACKEND.format(cls="Half", name="half-ok") + """
    @hookimpl
    def delgrad_register_backends(register):
        register("half-ok", Half)
        raise RuntimeError("device list unreadable")
    """)
    with pytest.warns(PluginLoadWarning, match="failed while registering: RuntimeError: device list unreadable"):
        registry = PluginRegistry().discover()
    assert "half-ok" not in registry.names()


def test_strict_register_plugin_raises_every_refusal_together():
    class Plugin:
        @hookimpl
        def delgrad_register_losses(self, register):
            register("fine", dict)
            register("not callable", 3)
            register("nope", 3)

    registry = PluginRegistry(strict=True)
    with pytest.raises(PluginLoadError, match=r"^2 plugin problems:\n- .*'not callable'.*\n- .*'nope'"):
        registry.register_plugin(Plugin(), distribution="local")
    assert "fine" in registry.names("loss")


# -- 4. what a plugin prints stays off standard output ------------------------------------------
CHATTY = BACKEND.format(cls="Chatty", name="chatty") + """
    print("chatty plugin imported")

    @hookimpl
    def delgrad_register_backends(register):
        print("registering chatty")
        register("chatty", Chatty)
"""


def test_a_plugin_that_prints_keeps_backends_json_parseable(site, fresh, capsys):
    site("delgrad-chatty", "chatty_plugin", CHATTY)
    result = cli_runner().invoke(main, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    assert "chatty_plugin) from distribution 'delgrad-chatty' 1.0 printed to standard output (a plugin must be " \
           "silent): 'chatty plugin imported'" in result.stderr
    listing = json.loads(result.stdout)
    assert "chatty" in [record["name"] for record in listing["backends"]]
    assert any("registering chatty" in problem for problem in listing["problems"])
    assert "chatty" not in capsys.readouterr().out
    with pytest.raises(PluginError, match="printed to standard output"):
        PluginRegistry(strict=True).discover()


def test_what_a_plugin_prints_before_it_fails_to_import_is_reported(site, fresh):
    """(what it printed, often why it fails, was lost: only its exception was reported)"""
    site("delgrad-gloomy", "gloomy_plugin",
         'print("libchip.so not found, set CHIP_HOME")\nraise ImportError("no chip")\n')
    result = cli_runner().invoke(main, ["backends", "--json"])
    assert result.exit_code == 0, result.output
    problems = " ".join(json.loads(result.stdout)["problems"])
    assert "printed to standard output (a plugin must be silent): 'libchip.so not found, set CHIP_HOME'" in problems
    assert "failed to load: ImportError: no chip" in problems


def test_a_factory_that_prints_keeps_backends_json_parseable(monkeypatch):
    from delgrad_core.testing import MockBackend

    def loud():
        print("building loud")
        return MockBackend(name="loud")

    install_only_backends(monkeypatch, {"loud": loud}, distribution="local")
    result = cli_runner().invoke(main, ["backends", "--json"])
    assert [record["name"] for record in json.loads(result.stdout)["backends"]] == ["loud"]
    assert "building loud" in result.stderr


# -- 5. capabilities must be a Capabilities -----------------------------------------------------
def test_capabilities_are_a_capabilities_or_a_table_of_them_else_refused_naming_plugin_and_field(monkeypatch):
    """(a list was refused without naming the field; a table, which plugins give, stays accepted)"""
    from delgrad_core import Capabilities
    from delgrad_core.testing import MockBackend

    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("tabled", lambda: MockBackend(name="tabled"), capabilities={"exact": True})
            register("listed", lambda: MockBackend(name="listed"), capabilities=["exact"])

    registry = PluginRegistry(strict=False)
    with pytest.warns(PluginLoadWarning, match=r"plugin 'caps-plugin' from distribution 'local' registration refused: "
                                               r"backend 'listed': capabilities: expected a delgrad_core.Capabilities, "
                                               r"a table Capabilities.from_dict takes, or None, got list"):
        registry.register_plugin(Plugin(), distribution="local", plugin_name="caps-plugin")
    assert "listed" not in registry.names()
    assert registry.get("backend", "tabled").capabilities == Capabilities(exact=True)
    # (asked for by name, a refused registration was "unknown" or "not installed", and the reason followed as a
    # plugin that failed to load)
    with pytest.raises(UnknownNameError, match=r"^backend 'listed' cannot be used: distribution 'local' registers it, "
                                               r"but its registration was refused: backend 'listed': capabilities: "):
        registry.get("backend", "listed")
    from delgrad_core._plugins import not_installed

    monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)
    assert not_installed("backend", "listed").startswith("backend: 'listed' cannot be used: distribution 'local' ")


# -- 6. a misspelt hook gets a suggestion -------------------------------------------------------
@pytest.mark.parametrize(("hook", "suggestion"), [
    ("delgrad_register_backend", "(did you mean 'delgrad_register_backends'?)"),
    ("delgrad_add_things", "(the hooks: delgrad_register_backends, delgrad_register_datasets, "),
])
def test_a_misspelt_hook_suggests_the_right_name(hook, suggestion):
    def implementation(register):
        pass

    implementation.__name__ = hook
    plugin = type("Plugin", (), {hook: staticmethod(hookimpl(implementation))})
    registry = PluginRegistry(strict=False)
    with pytest.warns(PluginLoadWarning) as record:
        registry.register_plugin(plugin, distribution="local", plugin_name="typo")
    assert f"delgrad plugin 'typo' from distribution 'local' implements an unknown hook: {hook!r} {suggestion}" \
        in str(record[0].message)
    assert registry.failures[0].startswith(f"plugin 'typo' from distribution 'local': implements an unknown hook: "
                                           f"{hook!r} {suggestion}")
