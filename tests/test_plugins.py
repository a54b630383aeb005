"""Plugin discovery through real entry points of fake installed distributions."""

import warnings

import pytest

import delgrad_core
from delgrad_core import (
    BackendRegistry,
    DuplicateBackendError,
    PluginLoadError,
    PluginLoadWarning,
    UnknownBackendError,
    get_backend,
)
from delgrad_core.testing import write_distribution

GROUP = "delgrad.backends"

GOOD = """
    from delgrad_core import Backend, Capabilities, ExecutionResult, hookimpl

    class NullBackend(Backend):
        def __init__(self, label="{name}"):
            self.label = label
        name = "{name}"
        capabilities = Capabilities()
        def _execute(self, network, input_spike_times, calibration, seed):
            return ExecutionResult([], {{}})

    @hookimpl
    def delgrad_register_backends(register):
        register("{name}", NullBackend, description="a test backend")
"""


def _good(name):
    return GOOD.format(name=name)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path into which fake distributions are installed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DELGRAD_STRICT_PLUGINS", raising=False)

    def install(dist, module, source, entry_name=None, version="1.0"):
        write_distribution(
            tmp_path, dist, version, {module: source}, {GROUP: {entry_name or module: module}}
        )

    return install


def test_broken_plugin_warns_and_the_others_still_load(site):
    site("delgrad-fake-good", "fake_good", _good("fake-good"))
    site("delgrad-fake-broken", "fake_broken", "raise ImportError('missing dependency xyz')\n")
    with pytest.warns(PluginLoadWarning) as record:
        registry = BackendRegistry().discover()
    messages = [str(w.message) for w in record if "fake_broken" in str(w.message)]
    assert len(messages) == 1
    assert "delgrad-fake-broken" in messages[0] and "missing dependency xyz" in messages[0]
    assert "fake-good" in registry.names()
    info = registry.info("fake-good")
    assert (info.distribution, info.version, info.description) == ("delgrad-fake-good", "1.0", "a test backend")
    assert registry.create("fake-good", label="x").label == "x"


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_broken_plugin_is_an_error_in_strict_mode(site, monkeypatch, how):
    site("delgrad-fake-broken", "fake_broken", "raise ImportError('missing dependency xyz')\n")
    if how == "environment":
        monkeypatch.setenv("DELGRAD_STRICT_PLUGINS", "1")
        registry = BackendRegistry()
    else:
        registry = BackendRegistry(strict=True)
    with pytest.raises(PluginLoadError, match="fake_broken.*delgrad-fake-broken"):
        registry.discover()


def test_strict_environment_value_is_checked(monkeypatch):
    monkeypatch.setenv("DELGRAD_STRICT_PLUGINS", "maybe")
    with pytest.raises(ValueError, match="DELGRAD_STRICT_PLUGINS"):
        BackendRegistry().discover()


def test_duplicate_name_names_both_distributions(site):
    site("delgrad-first-twin", "first_twin", _good("twin"))
    site("delgrad-second-twin", "second_twin", _good("twin"))
    with pytest.raises(DuplicateBackendError) as info:
        BackendRegistry().discover()
    message = str(info.value)
    assert "'twin'" in message and "delgrad-first-twin" in message and "delgrad-second-twin" in message


def test_failing_hook_registers_nothing_of_that_plugin(site):
    source = """
        from delgrad_core import hookimpl, get_backend

        @hookimpl
        def delgrad_register_backends(register):
            register("half-ok", lambda: get_backend("reference"))
            register("bad name!", lambda: get_backend("reference"))
    """
    site("delgrad-half", "half", source)
    with pytest.warns(PluginLoadWarning, match="bad name!"):
        registry = BackendRegistry().discover()
    assert "half-ok" not in registry.names()


def test_unknown_name_lists_the_choices(site):
    site("delgrad-fake-good", "fake_good", _good("fake-good"))
    registry = BackendRegistry().discover()
    with pytest.raises(UnknownBackendError) as info:
        registry.create("nope")
    names = ", ".join(registry.names())
    assert str(info.value) == f"unknown backend 'nope'; choose one of {names}"
    assert "fake-good" in names


def test_factory_must_return_a_backend():
    class Plugin:
        @delgrad_core.hookimpl
        def delgrad_register_backends(self, register):
            register("not-a-backend", dict)

    registry = BackendRegistry()
    registry.register_plugin(Plugin(), distribution="local")
    with pytest.raises(TypeError, match="not-a-backend.*not a Backend"):
        registry.create("not-a-backend")


def test_get_backend_by_name_default_and_injection():
    reference = get_backend()
    assert reference.name == "reference" and reference.capabilities.exact
    assert get_backend(reference) is reference
    with pytest.raises(TypeError, match="options"):
        get_backend(reference, n_threads=1)
    with pytest.raises(TypeError, match="backend name or a Backend object"):
        get_backend(3)
    with pytest.raises(UnknownBackendError, match="choose one of .*reference"):
        get_backend("does-not-exist")


def test_installed_backends_are_listed_with_their_distributions():
    infos = {info.name: info for info in delgrad_core.available_backends()}
    assert infos["reference"].distribution == "delgrad-reference"
    assert infos["example"].distribution == "delgrad-example-backend"
    assert infos["reference"].capabilities.exact and not infos["example"].capabilities.exact
    assert infos["reference"].to_dict()["capabilities"]["delay_kinds"] == ["axonal", "dendritic", "none", "synaptic"]


def test_refresh_discovers_again(site):
    delgrad_core.refresh_backends()
    site("delgrad-late", "late_plugin", _good("late"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert get_backend("late").name == "late"
    finally:
        delgrad_core.refresh_backends()
