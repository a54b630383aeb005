"""Plugin discovery through real entry points of fake installed distributions."""

import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

import delgrad_core
from delgrad_core import (
    DuplicateNameError,
    InvalidValueError,
    PluginError,
    PluginLoadError,
    PluginLoadWarning,
    PluginRegistry,
    UnknownNameError,
    get_backend,
)
from delgrad_core.testing import write_distribution

GROUP = "delgrad.backends"

GOOD = """
    from delgrad_core import Backend, Capabilities, ExecutionResult, hookimpl

    BUILT = []

    class NullBackend(Backend):
        name = "{name}"

        def __init__(self, label="{name}"):
            BUILT.append(label)
            self.label = label

        capabilities = Capabilities(max_layers=7)

        def _execute(self, request):
            return ExecutionResult([], {{}})

    @hookimpl
    def delgrad_register_backends(register):
        register("{name}", NullBackend, description="a test backend", capabilities=Capabilities(max_layers=7))
"""


def _good(name):
    return GOOD.format(name=name)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path into which fake distributions are installed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DELGRAD_STRICT_PLUGINS", raising=False)

    def install(dist, module, source, entry_name=None, version="1.0"):
        write_distribution(tmp_path, dist, version, {module: source}, {GROUP: {entry_name or module: module}})

    return install


def test_broken_plugin_warns_and_the_others_still_load(site):
    site("delgrad-fake-good", "fake_good", _good("fake-good"))
    site("delgrad-fake-broken", "fake_broken", "raise ImportError('missing dependency xyz')\n")
    with pytest.warns(PluginLoadWarning) as record:
        registry = PluginRegistry().discover()
    messages = [str(w.message) for w in record if "fake_broken" in str(w.message)]
    assert len(messages) == 1
    assert "delgrad-fake-broken" in messages[0] and "missing dependency xyz" in messages[0]
    assert messages[0] in registry.problems
    assert "fake-good" in registry.names()
    info = registry.get("backend", "fake-good")
    assert (info.distribution, info.version, info.description) == ("delgrad-fake-good", "1.0", "a test backend")
    assert registry.create_backend("fake-good", label="x").label == "x"


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_broken_plugin_is_an_error_in_strict_mode(site, monkeypatch, how):
    site("delgrad-fake-broken", "fake_broken", "raise ImportError('missing dependency xyz')\n")
    if how == "environment":
        monkeypatch.setenv("DELGRAD_STRICT_PLUGINS", "1")
        registry = PluginRegistry()
    else:
        registry = PluginRegistry(strict=True)
    with pytest.raises(PluginLoadError, match="fake_broken.*delgrad-fake-broken"):
        registry.discover()


def test_strict_mode_tries_every_plugin_and_names_every_problem(site):
    site("delgrad-fake-broken", "fake_broken", "raise ImportError('missing dependency xyz')\n")
    site("delgrad-first-twin", "first_twin", _good("twin"))
    site("delgrad-second-twin", "second_twin", _good("twin"))
    site("delgrad-fake-good", "fake_good", _good("fake-good"))
    site("delgrad-quitter", "quitter", "raise SystemExit(3)\n")
    registry = PluginRegistry(strict=True)
    with pytest.raises(PluginError, match="^3 plugin problems:") as raised:
        registry.discover()
    problems = str(raised.value).splitlines()[1:]
    assert len(problems) == 3 and all(line.startswith("- ") for line in problems)
    # in loading order (distribution names)
    assert "missing dependency xyz" in problems[0] and "SystemExit" in problems[1] and "'twin'" in problems[2]
    assert "fake-good" in registry.names()  # the healthy ones were loaded before the error


def test_strict_mode_raises_problems_of_one_kind_as_that_kind(site):
    site("delgrad-fake-broken", "fake_broken", "raise ImportError('missing dependency xyz')\n")
    site("delgrad-quitter", "quitter", "raise SystemExit(3)\n")
    with pytest.raises(PluginLoadError, match="^2 plugin problems:\n- .*xyz.*\n- .*SystemExit"):
        PluginRegistry(strict=True).discover()


def test_strict_environment_value_is_checked(monkeypatch):
    monkeypatch.setenv("DELGRAD_STRICT_PLUGINS", "maybe")
    with pytest.raises(ValueError, match="DELGRAD_STRICT_PLUGINS"):
        PluginRegistry()


@pytest.mark.parametrize("code", ["import sys; sys.exit(0)", "raise SystemExit(3)", "raise BaseException('odd')"])
def test_a_plugin_that_exits_at_import_is_a_load_failure(site, code):
    site("delgrad-quitter", "quitter", code + "\n")
    site("delgrad-fake-good", "fake_good", _good("fake-good"))
    with pytest.warns(PluginLoadWarning, match="quitter.*failed to load"):
        registry = PluginRegistry().discover()
    assert "fake-good" in registry.names()
    with pytest.raises(PluginLoadError, match="quitter"):
        PluginRegistry(strict=True).discover()


def test_a_plugin_that_exits_does_not_end_the_command(tmp_path):
    """`delgrad backends` in a real process with a plugin calling sys.exit(0) at import."""
    write_distribution(tmp_path, "delgrad-quitter", "1.0", {"quitter": "import sys; sys.exit(0)\n"},
                       {GROUP: {"quitter": "quitter"}})
    env = {"PYTHONPATH": str(tmp_path), "PATH": os.environ["PATH"]}
    process = subprocess.run([sys.executable, "-m", "delgrad_core.cli", "backends"], capture_output=True,
                             text=True, env=env, cwd=tmp_path, timeout=120)
    assert process.returncode == 0 and "reference" in process.stdout
    assert "quitter" in process.stderr and "SystemExit" in process.stderr
    assert process.stderr.count("failed to load") == 1  # said once, not as a warning and again in the listing
    env["DELGRAD_STRICT_PLUGINS"] = "1"
    strict = subprocess.run([sys.executable, "-m", "delgrad_core.cli", "backends"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=120)
    assert strict.returncode == 1 and "quitter" in strict.stderr and "Traceback" not in strict.stderr
    write_distribution(tmp_path, "delgrad-quitter-too", "1.0", {"quitter_too": "raise SystemExit(2)\n"},
                       {GROUP: {"quitter-too": "quitter_too"}})
    both = subprocess.run([sys.executable, "-m", "delgrad_core.cli", "backends"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    lines = both.stderr.strip().splitlines()  # one line per problem
    assert both.returncode == 1 and lines[0] == "Error: 2 plugin problems:", both.stderr
    assert [line[:2] for line in lines[1:]] == ["- ", "- "] and "quitter-too" in lines[2]


def test_duplicate_name_warns_keeps_the_first_and_is_shown(site):
    site("delgrad-first-twin", "first_twin", _good("twin"))
    site("delgrad-second-twin", "second_twin", _good("twin"))
    with pytest.warns(PluginLoadWarning, match="'twin' is registered by two distributions") as record:
        registry = PluginRegistry().discover()
    message = str(record[0].message)
    assert "delgrad-first-twin" in message and "delgrad-second-twin" in message
    assert registry.get("backend", "twin").distribution == "delgrad-first-twin"
    assert any("twin" in problem for problem in registry.problems)
    with pytest.raises(DuplicateNameError, match="delgrad-first-twin.*delgrad-second-twin"):
        PluginRegistry(strict=True).discover()


def test_a_plugin_taking_the_reference_name_does_not_break_anything(site):
    site("aaa-impostor", "impostor", _good("reference"))
    with pytest.warns(PluginLoadWarning, match="'reference' is registered by two distributions"):
        registry = PluginRegistry().discover()
    assert registry.get("backend", "reference").distribution == "delgrad-reference"


def test_an_entry_point_named_as_another_distributions_says_whose_name_it_took(site):
    """(pluggy's own message dumped its registry of modules and named no distribution)"""
    site("aaa-impostor", "impostor", _good("impostor"), entry_name="reference")
    with pytest.warns(PluginLoadWarning) as record:
        registry = PluginRegistry().discover()
    message = " ".join(str(warning.message) for warning in record)
    assert "plugin 'reference' (impostor) from distribution 'aaa-impostor' 1.0 cannot be registered: the plugin name " \
           "'reference' is taken by distribution 'delgrad-reference' (the names of the entry points in " \
           "'delgrad.backends' must differ: rename one)" in message, message
    assert "<module" not in message
    assert registry.get("backend", "reference").distribution == "delgrad-reference"


def test_two_entry_points_naming_one_plugin_say_so(tmp_path, monkeypatch):
    """(pluggy's own message dumped its registry of modules and advised on hook signatures)"""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DELGRAD_STRICT_PLUGINS", raising=False)
    write_distribution(tmp_path, "delgrad-twice", "1.0", {"twice": _good("twice")},
                       {GROUP: {"twice": "twice", "twice-again": "twice"}})
    with pytest.warns(PluginLoadWarning) as record:
        registry = PluginRegistry().discover()
    message = " ".join(str(warning.message) for warning in record)
    assert "cannot be registered: it names the plugin object the entry point 'twice' of distribution " \
           "'delgrad-twice' registered already (one entry point per plugin: remove the other)" in message, message
    assert "<module" not in message and "twice" in registry.names()


def test_misspelt_hook_fails_in_strict_mode_and_warns_otherwise(site):
    source = """
        from delgrad_core import hookimpl

        @hookimpl
        def delgrad_register_backend(register):   # missing the final "s"
            pass
    """
    site("delgrad-typo", "typo", source)
    with pytest.raises(PluginLoadError, match="typo.*unknown hook.*delgrad_register_backend"):
        PluginRegistry(strict=True).discover()
    with pytest.warns(PluginLoadWarning, match="unknown hook"):
        PluginRegistry().discover()


def test_a_plugin_that_registers_nothing_is_reported(site):
    source = """
        from delgrad_core import hookimpl

        @hookimpl
        def delgrad_register_backends(register):
            pass
    """
    site("delgrad-empty", "empty", source)
    with pytest.warns(PluginLoadWarning, match=r"empty.*registers nothing \(its hook delgrad_register_backends ran "
                                               r"without calling register\)"):
        PluginRegistry().discover()


@pytest.mark.parametrize("group", ["delgrad.backend", "delgrad_backends", "Delgrad.Backends"])
def test_an_entry_point_in_a_group_all_but_delgrads_is_reported(tmp_path, site, group):
    """(a plugin whose pyproject.toml named the group one letter off was missing without a word:
    `delgrad train --backend` said it was not installed)"""
    write_distribution(tmp_path, "delgrad-near", "1.0", {"near": _good("near")}, {group: {"near": "near"}})
    with pytest.warns(PluginLoadWarning, match=rf"^distribution 'delgrad-near' declares the entry point 'near' "
                                               rf"\(near\) in group '{group}', which delgrad does not read: plugins "
                                               rf"are found in 'delgrad.backends' \(correct the group's name in its "
                                               rf"pyproject.toml and install it again\)$"):
        registry = PluginRegistry().discover()
    assert "near" not in registry.names()


def test_a_hook_that_returns_its_backend_instead_of_registering_it_is_told_so(site):
    """(it was told that its entry point must name the module holding the hooks, each decorated
    with @hookimpl, as it did: the hook was found and called)"""
    source = """
        from delgrad_core import hookimpl, get_backend

        @hookimpl
        def delgrad_register_backends(register):
            return get_backend
    """
    site("delgrad-returning", "returning", source)
    with pytest.warns(PluginLoadWarning, match=r"returning.*registers nothing \(its hook delgrad_register_backends "
                                               r"returned function instead of calling register\(name, \.\.\.\), "
                                               r"the argument it is given, for each thing it adds"):
        PluginRegistry().discover()


def test_a_hook_that_returns_its_things_beside_one_that_registers_is_told_so(site):
    """(only a plugin that registered nothing at all was told: the returned losses were lost
    without a word, and training said they were not installed)"""
    source = """
        from delgrad_core import ShiftInvariantSquaredError, hookimpl, get_backend

        @hookimpl
        def delgrad_register_backends(register):
            register("kept", lambda: get_backend("reference"))

        @hookimpl
        def delgrad_register_losses(register):
            return [("squared-too", ShiftInvariantSquaredError)]
    """
    site("delgrad-half", "half_returning", source)
    with pytest.warns(PluginLoadWarning, match=r"half_returning.*its hook delgrad_register_losses returned list "
                                               r"instead of calling register\(name, \.\.\.\)"):
        registry = PluginRegistry().discover()
    assert "kept" in registry.names()


def test_a_refused_registration_keeps_the_plugins_others(site):
    source = """
        from delgrad_core import hookimpl, get_backend

        @hookimpl
        def delgrad_register_backends(register):
            register("half-ok", lambda: get_backend("reference"))
            register("bad name!", lambda: get_backend("reference"))
    """
    site("delgrad-half", "half", source)
    with pytest.warns(PluginLoadWarning, match="bad name!"):
        registry = PluginRegistry().discover()
    assert "half-ok" in registry.names()  # (only the refused registration is left out)


def test_training_defaults_the_backends_own_capabilities_refuse_are_refused(site):
    """(registered, then `delgrad train --backend x` said the backend does not support delay kind
    'dendritic', which the user had never asked for)"""
    source = """
        from delgrad_core import Capabilities, hookimpl, get_backend

        @hookimpl
        def delgrad_register_backends(register):
            axonal = Capabilities(delay_kinds={"none", "axonal"}, tau_ratios=(1.0,))
            register("kind-clash", lambda: get_backend("reference"), capabilities=axonal,
                     training_defaults={"delays": "dendritic"})
            register("ratio-clash", lambda: get_backend("reference"), capabilities=axonal,
                     training_defaults={"tau_ratio": 2.0})
            register("fits", lambda: get_backend("reference"), capabilities=axonal,
                     training_defaults={"delays": ["axonal", "none"], "tau_ratio": 1.0})
    """
    site("delgrad-clash", "clash", source)
    with pytest.warns(PluginLoadWarning) as warned:
        registry = PluginRegistry().discover()
    messages = " ".join(str(w.message) for w in warned)
    assert "backend 'kind-clash': training_defaults.delays: 'dendritic' is not among the delay kinds its " \
           "capabilities declare (axonal, none)" in messages
    assert "backend 'ratio-clash': training_defaults.tau_ratio: 2 is not among the tau ratios its capabilities " \
           "declare (1.0,)" in messages
    assert "fits" in registry.names() and "kind-clash" not in registry.names()


def test_unknown_name_lists_the_choices(site):
    site("delgrad-fake-good", "fake_good", _good("fake-good"))
    registry = PluginRegistry().discover()
    with pytest.raises(UnknownNameError) as info:
        registry.create_backend("nope")
    names = ", ".join(registry.names())
    assert str(info.value) == f"unknown backend 'nope'; choose one of {names}; the plugins seen are those " \
                              f"installed for {sys.executable}"
    assert "fake-good" in names and isinstance(info.value, LookupError)


def test_capabilities_are_listed_without_building_the_backend(site):
    site("delgrad-lister", "listed_only", _good("listed-only"))
    registry = PluginRegistry().discover()
    import listed_only

    assert registry.get("backend", "listed-only").capabilities.max_layers == 7
    assert listed_only.BUILT == []


def test_a_factory_that_cannot_build_a_backend_is_the_plugins_fault_not_the_options():
    """(each said "backend 'x': invalid options [] (...)", blaming the user)"""
    from delgrad_core.testing import MockBackend

    class Unfinished(delgrad_core.Backend):  # (wrote `execute` instead of `_execute`)
        name = "unfinished"
        capabilities = delgrad_core.Capabilities()

        def execute(self, request):
            return None

    def buggy():
        return MockBackend(name="buggy", capabilities=len(3))

    def needs_a_port(*, port):
        return MockBackend(name="needs-port")

    class Plugin:
        @delgrad_core.hookimpl
        def delgrad_register_backends(self, register):
            register("unfinished", Unfinished, capabilities=delgrad_core.Capabilities())
            register("buggy", buggy, capabilities=delgrad_core.Capabilities())
            register("needs-port", needs_a_port, capabilities=delgrad_core.Capabilities())
            register("hollow-caps", lambda: MockBackend(name="hollow-caps", capabilities={"exact": True}))

    registry = PluginRegistry()
    registry.register_plugin(Plugin(), distribution="local")
    with pytest.raises(PluginError, match=r"backend 'unfinished' from 'local': its class Unfinished does not "
                                          r"implement _execute"):
        registry.create_backend("unfinished")
    with pytest.raises(PluginError, match=r"backend 'buggy' from 'local': its factory failed: TypeError: object of "
                                          r"type 'int' has no len\(\)"):
        registry.create_backend("buggy")
    with pytest.raises(delgrad_core.InvalidValueError, match=r"^backend 'needs-port': option\(s\) port required; give "
                                                             r"it as --backend-option port=VALUE \(in a config: "
                                                             r"backend_options; in the conformance suite: "
                                                             r"--delgrad-backend-option\)$"):
        registry.create_backend("needs-port")
    assert registry.create_backend("needs-port", port=5).name == "needs-port"
    with pytest.raises(PluginError, match=r"backend 'hollow-caps' from 'local': its capabilities are a dict, not a "
                                          r"delgrad_core.Capabilities"):
        registry.create_backend("hollow-caps")
    with pytest.raises(PluginError, match="its capabilities are a dict"):  # (read for listing: built with no options)
        registry.get("backend", "hollow-caps").capabilities  # noqa: B018


def test_registered_name_and_backend_name_must_agree():
    class Plugin:
        @delgrad_core.hookimpl
        def delgrad_register_backends(self, register):
            register("alias", lambda: get_backend("reference"))
            register("not-a-backend", dict)

    registry = PluginRegistry()
    registry.register_plugin(Plugin(), distribution="local")
    with pytest.raises(PluginError, match="calls itself 'reference'.*must agree"):
        registry.create_backend("alias")
    with pytest.raises(PluginError, match="not-a-backend.*not a Backend"):
        registry.create_backend("not-a-backend")

    from delgrad_reference import ReferenceBackend

    class Mislabelled:
        @delgrad_core.hookimpl
        def delgrad_register_backends(self, register):
            register("other-name", ReferenceBackend)

    with pytest.raises(PluginLoadError, match="another name than its Backend.name 'reference'"):
        PluginRegistry(strict=True).register_plugin(Mislabelled(), distribution="local")


def test_unknown_backend_options_are_named():
    with pytest.raises(ValueError, match=r"backend 'reference': unknown option\(s\) colour; allowed: n_threads"):
        get_backend("reference", colour="red")


def test_get_backend_by_name_default_and_injection():
    with get_backend() as reference:
        assert reference.name == "reference" and reference.capabilities.exact
        assert get_backend(reference) is reference
        with pytest.raises(ValueError, match="options"):
            get_backend(reference, n_threads=1)
    with pytest.raises(ValueError, match="backend name or a Backend object"):
        get_backend(3)
    with pytest.raises(UnknownNameError, match="choose one of .*reference"):
        get_backend("does-not-exist")


def test_installed_backends_are_listed_with_their_distributions():
    infos = {info.name: info for info in delgrad_core.available_backends()}
    assert infos["reference"].distribution == "delgrad-reference"
    assert infos["example"].distribution == "delgrad-example-backend"
    assert infos["reference"].capabilities.exact and not infos["example"].capabilities.exact
    assert infos["reference"].to_dict()["capabilities"]["delay_kinds"] == ["axonal", "dendritic", "none", "synaptic"]


def test_refresh_discovers_again(site):
    delgrad_core.refresh_plugins()
    site("delgrad-late", "late_plugin", _good("late"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert get_backend("late").name == "late"
    finally:
        delgrad_core.refresh_plugins()


EXTRAS = """
    import numpy as np
    from delgrad_core import LossResult, hookimpl
    from delgrad_core.datasets import Dataset

    class HingeLoss:
        def __init__(self, margin=0.5):
            self.margin = margin

        def __call__(self, output_times, labels):
            times = np.where(np.isfinite(output_times), output_times, 10.0)
            rows = np.arange(len(labels))
            gap = times[rows, labels][:, None] + self.margin - times
            gap[rows, labels] = 0.0
            active = gap > 0
            gradient = -active.astype(float)
            gradient[rows, labels] = active.sum(axis=1)
            return LossResult(np.where(active, gap, 0.0).sum(axis=1), gradient / len(labels))

    class DoubledEncoder:
        def __init__(self, t_early=0.15, t_late=2.0):
            self.t_early, self.t_late = t_early, t_late

        def n_inputs(self, n_features):
            return 2 * n_features

        def __call__(self, features):
            times = self.t_early + np.asarray(features) * (self.t_late - self.t_early)
            return np.concatenate([times, times], axis=1)

    def stripes(split, n=300):
        rng = np.random.default_rng({"train": 0, "validation": 1, "test": 2}[split])
        features = rng.uniform(0, 1, (n, 2))
        return Dataset("stripes", split, features, (features[:, 0] > 0.5).astype(int), ("left", "right"))

    @hookimpl
    def delgrad_register_losses(register):
        register("hinge", HingeLoss)

    @hookimpl
    def delgrad_register_encoders(register):
        register("doubled", DoubledEncoder)

    @hookimpl
    def delgrad_register_datasets(register):
        register("stripes", stripes, ("train", "validation", "test"))
"""


def test_plugins_add_losses_encoders_and_datasets_used_by_name(site, tmp_path):
    site("delgrad-extras", "extras", EXTRAS)
    delgrad_core.refresh_plugins()
    try:
        from delgrad_core.datasets import available_datasets
        from delgrad_core.training import TrainingConfig
        from delgrad_core.training._run import run_training

        assert "hinge" in delgrad_core.available_losses()
        assert available_datasets()["stripes"] == ("train", "validation", "test")
        with pytest.raises(ValueError, match=r"loss 'hinge': unknown parameter\(s\) delta; allowed: margin"):
            delgrad_core.make_loss("hinge", delta=0.1)
        config = TrainingConfig(dataset="stripes", loss="hinge", encoder="doubled", hidden=6, epochs=2,
                                delays="none", loss_options={"margin": 0.3}, silent_limit_hidden=1.0,
                                silent_limit_output=1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (steps run: none is skipped for silent neurons)
            summary = run_training(config, tmp_path / "run", progress=False, plots=False)
        assert summary["config"]["loss"] == "hinge" and 0.0 <= summary["test_accuracy"] <= 1.0
        loaded = delgrad_core.load_network(tmp_path / "run" / "network.npz")
        assert loaded.sizes == [4, 6, 2]  # the encoder doubled 2 features into 4 inputs
        with pytest.raises(ValueError, match=r"loss: 'hinged' is not installed \(did you mean hinge\?\); installed: "
                                             r"crossentropy, hinge, squared"):
            TrainingConfig(loss="hinged")
    finally:
        delgrad_core.refresh_plugins()


def test_the_plugin_module_of_the_suite_costs_nothing(tmp_path):
    """pytest loads delgrad's pytest plugin in every run: importing it must not load numpy or the kernels."""
    code = ("import sys, delgrad_core.testing.plugin, delgrad_core; "
            "print(sorted(m for m in ('numpy', 'delgrad_core._layer', 'delgrad_core._ir') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_importing_the_core_leaves_the_environment_alone(tmp_path):
    code = ("import os, numpy as np, delgrad_core as dg; "
            "dg.forward(dg.Network.feedforward([2, 2]), np.zeros((1, 2))); print(os.environ.get('OMP_WAIT_POLICY'))")
    env = {"PATH": os.environ["PATH"]}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=60)
    assert out.stdout.strip() == "None", out.stdout + out.stderr
    np.testing.assert_equal(out.returncode, 0)


DEFAULTS = """
    from delgrad_core import hookimpl
    from delgrad_core.testing import MockBackend

    class ChipBackend(MockBackend):
        name = "{name}"

        def __init__(self):
            super().__init__(name="{name}")

    @hookimpl
    def delgrad_register_backends(register):
        register("{name}", ChipBackend, training_defaults={defaults})
"""


def test_training_defaults_of_a_discovered_backend_apply_under_the_users_settings(site):
    """Registering defaults while the process-wide registry is being discovered must not recurse
    into the registry; the defaults apply when a config names the backend."""
    from delgrad_core.training import config_with_defaults

    site("delgrad-chip", "chip_plugin", DEFAULTS.format(name="chip", defaults={"threshold": 2.6, "batch_size": 40}))
    delgrad_core.refresh_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            config = config_with_defaults({"backend": "chip", "batch_size": 10})
        assert (config.threshold, config.batch_size) == (2.6, 10)
        assert config_with_defaults({}).threshold == 1.0  # only for that backend
    finally:
        delgrad_core.refresh_plugins()


@pytest.mark.parametrize(("defaults", "message"), [
    ({"threshold": -1.0}, r"training_defaults\.threshold: expected a finite number >= 1e-300"),
    ({"treshold": 2.6}, r"training_defaults: unknown setting\(s\) treshold"),
])
def test_invalid_training_defaults_are_a_load_problem_naming_the_setting(site, defaults, message):
    module = f"chip_plugin_{sorted(defaults)[0]}"  # a fresh module name: imported modules are cached
    site("delgrad-chip", module, DEFAULTS.format(name="chip", defaults=defaults))
    with pytest.raises(PluginLoadError, match=message):
        PluginRegistry(strict=True).discover()


COMMAND = """
    import click
    from delgrad_core import hookimpl

    @click.command()
    @click.argument("who")
    def greet(who):
        '''Say hello.'''
        click.echo(f"hello {{who}}")

    @hookimpl
    def delgrad_register_commands(register):
        register("{name}", {command})
"""


def test_a_plugin_adds_a_command_to_the_command_line(site):
    from delgrad_core.testing import cli_runner

    from delgrad_core.cli import main

    site("delgrad-greeter", "greeter_plugin", COMMAND.format(name="greet", command="greet"))
    delgrad_core.refresh_plugins()
    try:
        runner = cli_runner()
        result = runner.invoke(main, ["greet", "world"])
        assert (result.exit_code, result.stdout) == (0, "hello world\n"), result.output
        listing = runner.invoke(main, ["--help"])
        assert "greet" in listing.stdout and "Say hello." in listing.stdout
        unknown = runner.invoke(main, ["gret", "world"])
        assert unknown.exit_code == 2 and "No such command 'gret'" in unknown.stderr
    finally:
        delgrad_core.refresh_plugins()


FAILING_COMMANDS = """
    import sys

    import click
    from delgrad_core import hookimpl

    @click.command()
    def buggy():
        raise RuntimeError("a bug of the plugin's")

    @click.command()
    def exits():
        sys.exit(3)

    @hookimpl
    def delgrad_register_commands(register):
        register("buggy", buggy, description="registered, as the command has no docstring")
        register("exits", exits)
"""


def test_a_plugin_commands_own_exception_is_one_line_naming_the_plugin(site):
    """(a traceback: the one-line errors covered delgrad's own exceptions only); its sys.exit
    status stays its own, and a registered description lists a command without a docstring"""
    from delgrad_core.testing import cli_runner

    from delgrad_core.cli import main

    site("delgrad-buggy", "buggy_plugin", FAILING_COMMANDS)
    delgrad_core.refresh_plugins()
    try:
        runner = cli_runner()
        result = runner.invoke(main, ["buggy"])
        assert (result.exit_code, result.stderr) == (1, "Error: command 'buggy' from 'delgrad-buggy' failed: "
                                                        "RuntimeError: a bug of the plugin's\n"), result.output
        assert runner.invoke(main, ["exits"]).exit_code == 3
        listing = runner.invoke(main, ["--help"])
        assert re.search(r"buggy +registered, as the command has no docstring", listing.stdout), listing.stdout
    finally:
        delgrad_core.refresh_plugins()


@pytest.mark.parametrize(("name", "command", "message"), [
    ("train", "greet", r"command 'train': the name of a built-in delgrad command"),
    ("greet", "print", r"command 'greet': expected a click.Command, got builtin_function_or_method"),
])
def test_a_command_taking_a_built_in_name_or_not_a_command_is_a_load_problem(site, name, command, message):
    module = f"greeter_{name}_{command}"
    site("delgrad-greeter", module, COMMAND.format(name=name, command=command))
    with pytest.raises(PluginLoadError, match=message):
        PluginRegistry(strict=True).discover()


OPTION_DEFAULTS = """
    from delgrad_core import Capabilities, hookimpl
    from delgrad_core.testing import MockBackend

    class ProxyBackend(MockBackend):
        name = "proxy"

        def __init__(self, target="fast"):
            super().__init__(name="proxy")

    class AxonalProxy(MockBackend):
        name = "proxy-axonal"

        def __init__(self, target="fast"):
            super().__init__(name="proxy-axonal", capabilities=AXONAL)

    AXONAL = Capabilities(delay_kinds={"none", "axonal"})

    def defaults(options):
        if options.get("target") == "broken":
            return {"batch_size": 0}
        return {"batch_size": 40} if options.get("target") == "chip" else {"batch_size": 7, "threshold": 2.0}

    @hookimpl
    def delgrad_register_backends(register):
        register("proxy", ProxyBackend, training_defaults=defaults)
        register("proxy-axonal", AxonalProxy, capabilities=AXONAL,
                 training_defaults=lambda options: {"delays": options.get("target", "axonal")})
"""


def test_training_defaults_may_depend_on_the_backend_options(site):
    from delgrad_core.training import config_with_defaults

    site("delgrad-proxy", "proxy_plugin", OPTION_DEFAULTS)
    delgrad_core.refresh_plugins()
    try:
        chip = config_with_defaults({"backend": "proxy", "backend_options": {"target": "chip"}})
        fast = config_with_defaults({"backend": "proxy", "threshold": 3.0})
        assert (chip.batch_size, chip.threshold, fast.batch_size, fast.threshold) == (40, 1.0, 7, 3.0)
        with pytest.raises(PluginError, match=r"backend 'proxy' from 'delgrad-proxy': its training_defaults\(options\) "
                                              r"returned a setting it may not: backend .proxy.: training_defaults."
                                              r"batch_size: expected"):  # (the user never gave it: not their error)
            config_with_defaults({"backend": "proxy", "backend_options": {"target": "broken"}})
        assert config_with_defaults({"backend": "proxy-axonal"}).delays == "axonal"
        with pytest.raises(PluginError, match=r"backend 'proxy-axonal' from 'delgrad-proxy': its training_defaults"
                                              r"\(options\) returned a setting its own capabilities refuse: delays: "
                                              r"'synaptic' is not among the delay kinds its capabilities declare "
                                              r"\(axonal, none\)"):  # (it blamed the user: "does not support ...")
            config_with_defaults({"backend": "proxy-axonal", "backend_options": {"target": "synaptic"}})
    finally:
        delgrad_core.refresh_plugins()


def test_dataset_defaults_apply_under_backend_defaults_and_the_users():
    from delgrad_core.training import config_with_defaults

    config = config_with_defaults({"dataset": "digits"})
    assert config.encoder_options == {"pairs": True} and config.hidden == 100
    assert config_with_defaults({"dataset": "digits", "hidden": 7}).hidden == 7
    assert config_with_defaults({"dataset": "yin_yang"}).hidden == 30


def test_a_factory_that_returns_no_backend_is_named_when_its_capabilities_are_read():
    from delgrad_core._plugins import Registration

    registration = Registration("backend", "hollow", lambda: None, "hollow-dist")
    with pytest.raises(PluginError,
                       match="backend 'hollow' from 'hollow-dist': factory returned NoneType, not a Backend"):
        registration.capabilities  # noqa: B018  (it said "'NoneType' object does not support the context manager")


def test_a_failing_backend_factory_is_a_plugin_error_naming_it():
    from delgrad_core import hookimpl

    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("crashing", lambda: (_ for _ in ()).throw(RuntimeError("no device")))

    registry = PluginRegistry()
    registry.register_plugin(Plugin(), distribution="delgrad-local")
    with pytest.raises(PluginError, match="backend 'crashing' from 'delgrad-local': its factory failed: "
                                          "RuntimeError: no device"):
        registry.create_backend("crashing")


def test_first_use_from_several_threads_leaves_standard_output_alone(tmp_path):
    """(each thread discovered the plugins, redirecting the process's stdout to its own buffer;
    the restores interleaved and left a buffer in place: everything printed after was lost)"""
    code = """if True:
        import os, sys, threading, time
        import delgrad_core as dg
        barrier, stop = threading.Barrier(4), threading.Event()
        def first_use():
            barrier.wait()
            dg.get_backend("reference").close()
        def chatter():  # (another thread printing meanwhile: its output was taken for a plugin's)
            while not stop.is_set():
                print("progress", flush=True)
                time.sleep(0.001)
        talking = threading.Thread(target=chatter)
        talking.start()
        users = [threading.Thread(target=first_use) for _ in range(4)]
        [t.start() for t in users]
        [t.join() for t in users]
        stop.set()
        talking.join()
        print("still printed" if sys.stdout is sys.__stdout__ else "replaced")
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={**os.environ, "DELGRAD_STRICT_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "still printed" and "progress" in result.stdout


def test_a_type_error_inside_a_loss_factory_is_the_plugins_not_the_users(monkeypatch):
    """(it was a usage error: "loss_options: loss 'picky': cannot be built with [] (scale must be
    a number)", though the user gave no option and the plugin's own code failed)"""
    from delgrad_core import hookimpl

    def picky(scale="x", required_bound=None):
        raise TypeError("scale must be a number")

    def needy(bound):
        raise AssertionError("not called")

    class Plugin:
        @hookimpl
        def delgrad_register_losses(self, register):
            register("picky", picky)
            register("needy", needy)

    registry = PluginRegistry()
    registry.register_plugin(Plugin(), distribution="delgrad-picky")
    monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)
    with pytest.raises(PluginError, match="loss 'picky' from 'delgrad-picky': its factory failed: TypeError: scale "
                                          "must be a number"):
        delgrad_core.make_loss("picky")
    with pytest.raises(delgrad_core.InvalidValueError, match=r"^loss 'needy': parameter\(s\) bound required; give it "
                                                             r"in a config's loss_options \(--set "
                                                             r"'loss_options=\{\"bound\": VALUE\}'\)$"):
        delgrad_core.make_loss("needy")


def test_a_refused_capabilities_table_names_the_backend():
    """(the refusal said "Capabilities: unknown setting(s) max_batchsize ..." without the backend:
    a plugin registering several could not tell which)"""
    from delgrad_core import hookimpl

    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("caps-table", lambda: None, capabilities={"max_batchsize": 10})

    registry = PluginRegistry(strict=False)  # (CI sets DELGRAD_STRICT_PLUGINS)
    with pytest.warns(delgrad_core.PluginLoadWarning):
        registry.register_plugin(Plugin(), distribution="delgrad-local")
    assert any("backend 'caps-table': capabilities: Capabilities: unknown setting(s) max_batchsize (did you mean "
               "max_batch_size?)" in failure for failure in registry.failures), registry.failures


def test_the_pytest_plugin_loads_under_a_pytest_without_the_stash_of_pytest_7(monkeypatch):
    """(pytest loads the conformance suite's plugin into every run on a machine with delgrad: under
    pytest 6 its StashKey ended every unrelated test run with an AttributeError)"""
    import importlib.util

    from delgrad_core.testing import plugin

    monkeypatch.delattr(pytest, "StashKey", raising=False)
    spec = importlib.util.spec_from_file_location("_plugin_under_old_pytest", plugin.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.pytest_addoption) and callable(module.backend_under_test)


def test_a_misspelt_name_gets_the_name_meant():
    """(only the list of installed names was given, unlike misspelt options and settings)"""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    with pytest.raises(UnknownNameError, match=r"^unknown backend 'referense' \(did you mean reference\?\); "
                                               r"choose one of "):
        get_backend("referense")
    result = cli_runner().invoke(main, ["train", "--dataset", "yinyang", "--epochs", "1"])
    assert result.exit_code == 2 and "Error: dataset: 'yinyang' is not installed (did you mean yin_yang?); " \
                                      "installed: " in result.output, result.output


def test_hooks_of_a_class_and_hooks_with_another_argument_name_say_what_delgrad_expects():
    """(a class named by the entry point said only "missing 1 required positional argument:
    'self'"; a hook taking `registry` got pluggy's words alone)"""
    from types import SimpleNamespace

    from delgrad_core import hookimpl

    class Hooks:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("from-a-class", lambda: get_backend("reference"))

    @hookimpl
    def delgrad_register_backends(registry):
        pass

    registry = PluginRegistry(strict=False)
    with pytest.warns(PluginLoadWarning, match=r"missing 1 required positional argument: 'self' \(its entry point "
                                               r"names the class Hooks, whose hooks need an instance: name an "
                                               r"instance, e.g. plugin = Hooks\(\) in its module, or make the hooks "
                                               r"module-level functions\)$"):
        registry.register_plugin(Hooks, distribution="class-dist")
    with pytest.warns(PluginLoadWarning, match=r"Argument\(s\) \{'registry'\} are declared in the hookimpl but can "
                                               r"not be found in the hookspec \(delgrad's hooks each take one argument "
                                               r"named register: delgrad_register_backends\(register\), "):
        registry.register_plugin(SimpleNamespace(delgrad_register_backends=delgrad_register_backends),
                                 distribution="argument-dist")
    registry.register_plugin(Hooks(), distribution="instance-dist")
    assert registry.names() == ["from-a-class"]


def test_registered_capabilities_other_than_the_built_backends_are_warned_of_once(monkeypatch):
    """(`delgrad backends` listed the registered capabilities and training defaults were checked
    against them, while the backend ran with others; only the conformance suite noticed)"""
    from delgrad_core import Backend, Capabilities, ExecutionResult, hookimpl

    class Narrow(Backend):
        name = "narrow"
        capabilities = Capabilities(max_layers=2, max_layer_size=64)

        def _execute(self, request):
            return ExecutionResult([], {})

    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("narrow", Narrow, capabilities=Capabilities(max_layers=3, max_layer_size=64))
            register("honest", type("Honest", (Narrow,), {"name": "honest"}), capabilities=Narrow.capabilities)

    monkeypatch.setattr("delgrad_core._plugins._WARNED_CAPABILITIES", set())
    registry = PluginRegistry(strict=False)
    registry.register_plugin(Plugin(), distribution="delgrad-narrow")
    with pytest.warns(PluginLoadWarning) as record:
        registry.create_backend("narrow").close()
        registry.create_backend("narrow").close()
    assert [str(w.message) for w in record] == [
        "backend 'narrow' from 'delgrad-narrow' registers other capabilities than its backend built without options "
        "declares (max_layers: registered 3, built 2); `delgrad backends` lists the registered ones: register the "
        "backend's own"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginLoadWarning)
        registry.create_backend("honest").close()


@pytest.mark.parametrize("value, strict", [("", False), ("0", False), ("no", False), ("False", False), (" ", False),
                                           ("1", True), ("YES", True), (" true ", True)])
def test_strict_environment_takes_the_usual_spellings_of_yes_and_no(monkeypatch, value, strict):
    """The values the error for another one lists (0, 1, true, false, yes, no), in any case and spacing."""
    monkeypatch.setenv("DELGRAD_STRICT_PLUGINS", value)
    assert PluginRegistry(builtins=False).strict is strict


def test_result_neutral_options_given_as_one_string_are_refused():
    """(a string is a collection of its letters: "threads" would declare the options t, h, r, ...
    neutral, which a factory taking **options cannot refuse)"""
    from delgrad_core import hookimpl

    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("one-string", lambda **options: None, result_neutral_options="threads")
            register("a-list", lambda **options: None, result_neutral_options=["threads"])

    registry = PluginRegistry(strict=False, builtins=False)
    with pytest.warns(PluginLoadWarning, match="backend 'one-string': result_neutral_options"):
        registry.register_plugin(Plugin(), distribution="delgrad-local")
    assert registry.names() == ["a-list"]
    assert registry.get("backend", "a-list").details["result_neutral_options"] == frozenset({"threads"})


def test_a_hook_marked_optional_that_delgrad_does_not_declare_is_no_problem():
    """(pluggy's optionalhook=True: a plugin may implement a hook of a later delgrad, or of another
    host, and still load here; only an unmarked unknown hook is a misspelling)"""
    from delgrad_core import hookimpl

    class Plugin:
        @hookimpl(optionalhook=True)
        def delgrad_register_widgets(self, register):
            register("w", object())

        @hookimpl
        def delgrad_register_backends(self, register):
            register("optional-too", lambda **options: None)

    registry = PluginRegistry(strict=True, builtins=False)
    registry.register_plugin(Plugin(), distribution="delgrad-local")
    assert registry.names() == ["optional-too"] and registry.problems == []


def test_an_entry_point_naming_an_object_that_is_none_is_reported(tmp_path, monkeypatch):
    """(a placeholder `plugin = None` left in the module the entry point names registers nothing,
    which docs/plugins.md says gives a PluginLoadWarning)"""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DELGRAD_STRICT_PLUGINS", raising=False)
    write_distribution(tmp_path, "delgrad-placeholder", "1.0", {"placeholder": "PLUGIN = None\n"},
                       {GROUP: {"placeholder": "placeholder:PLUGIN"}})
    with pytest.warns(PluginLoadWarning, match="placeholder.*registers nothing"):
        registry = PluginRegistry().discover()
    assert any("placeholder" in failure for failure in registry.failures)


def test_a_plugin_whose_only_registration_is_refused_has_that_one_problem():
    """(it called register: "registers nothing", the problem of a hook that never calls it, would
    send its author looking for the wrong mistake)"""
    from delgrad_core import hookimpl

    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            register("Bad Name", lambda **options: None)

    registry = PluginRegistry(strict=False, builtins=False)
    with pytest.warns(PluginLoadWarning):
        registry.register_plugin(Plugin(), distribution="delgrad-local")
    assert len(registry.problems) == 1 and "registration refused" in registry.problems[0]
    assert "registers nothing" not in " ".join(registry.failures)


@pytest.mark.parametrize(("name", "taken"), [("a", True), ("9.x_y-z", True), ("-x", False), (".x", False),
                                             ("_x", False), ("X", False), ("a b", False), ("", False), (3, False)])
def test_a_registered_name_is_lower_case_letters_digits_and_dot_underscore_dash_beginning_with_a_letter_or_digit(
        name, taken):
    """(docs/plugins.md)"""
    from delgrad_core import hookimpl

    class Plugin:
        @hookimpl
        def delgrad_register_losses(self, register):
            register(name, lambda: None)

    registry = PluginRegistry(strict=False, builtins=False)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        registry.register_plugin(Plugin(), distribution="delgrad-local")
    assert (name in registry.names("loss")) is taken, registry.problems
    if not taken:
        assert f"loss name: expected lower-case letters, digits, '.', '_' or '-', beginning with a letter or digit, " \
               f"got {name!r}" in " ".join(registry.problems), registry.problems


def test_a_built_backend_that_is_refused_is_closed():
    """(the caller gets an error, not the backend: nobody else could release what it holds)"""
    built = []

    class Plugin:
        @delgrad_core.hookimpl
        def delgrad_register_backends(self, register):
            register("alias", lambda: built.append(get_backend("reference")) or built[-1])

    registry = PluginRegistry(builtins=False)
    registry.register_plugin(Plugin(), distribution="local")
    with pytest.raises(PluginError, match="calls itself 'reference'"):
        registry.create_backend("alias")
    assert len(built) == 1 and built[0].closed


def test_a_type_error_of_a_factory_taking_any_option_is_the_options_fault():
    """(delgrad cannot check the names a factory taking **options passes on: the backend it
    builds refusing one is the user's mistake, named, not the plugin's)"""
    from delgrad_reference import ReferenceBackend

    class Plugin:
        @delgrad_core.hookimpl
        def delgrad_register_backends(self, register):
            register("reference", lambda **options: ReferenceBackend(**options))

    registry = PluginRegistry(builtins=False)
    registry.register_plugin(Plugin(), distribution="local")
    with pytest.raises(InvalidValueError, match=r"backend 'reference': invalid options \['colour'\]"):
        registry.create_backend("reference", colour="red")


def test_a_backend_factory_calling_sys_exit_is_a_plugin_error():
    """(it must not end the host's command as if it had succeeded)"""
    class Plugin:
        @delgrad_core.hookimpl
        def delgrad_register_backends(self, register):
            register("quitter", lambda: sys.exit(0))

    registry = PluginRegistry(builtins=False)
    registry.register_plugin(Plugin(), distribution="local")
    with pytest.raises(PluginError, match="backend 'quitter' from 'local': its factory failed: SystemExit"):
        registry.create_backend("quitter")


def test_a_backend_factory_raising_its_own_base_exception_is_a_plugin_error():
    """(one outside `Exception` passed as it was: a traceback)"""
    class Halted(BaseException):
        pass

    def halting():
        raise Halted("no board")

    class Plugin:
        @delgrad_core.hookimpl
        def delgrad_register_backends(self, register):
            register("halting", halting)

    registry = PluginRegistry(builtins=False)
    registry.register_plugin(Plugin(), distribution="local")
    with pytest.raises(PluginError, match="^backend 'halting' from 'local': its factory failed: Halted: no board$"):
        registry.create_backend("halting")


def test_ctrl_c_while_a_plugin_is_imported_is_not_taken_for_a_broken_plugin(site):
    """(only Ctrl-C passes: the user stopped the command)"""
    site("delgrad-interrupted", "interrupted", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        PluginRegistry().discover()


def test_what_another_thread_prints_while_a_plugin_loads_is_not_the_plugins(site, tmp_path, capsys, monkeypatch):
    """(the plugin's import waits until another thread of the host has printed: that line goes to
    standard output, and is no problem of the plugin's)"""
    (tmp_path / "gate_for_plugin.py").write_text("import threading\nloading, printed = threading.Event(), "
                                                  "threading.Event()\n")
    import importlib

    importlib.invalidate_caches()
    gate_for_plugin = importlib.import_module("gate_for_plugin")
    monkeypatch.setitem(sys.modules, "gate_for_plugin", gate_for_plugin)  # (forgotten after the test)

    site("delgrad-waiting", "waiting", """
        import gate_for_plugin
        from delgrad_core import hookimpl

        gate_for_plugin.loading.set()
        gate_for_plugin.printed.wait(10)

        @hookimpl
        def delgrad_register_losses(register):
            register("waited", lambda: None)
    """)

    def host():
        gate_for_plugin.loading.wait(10)
        print("the host's own line")
        gate_for_plugin.printed.set()

    import threading

    other = threading.Thread(target=host)
    other.start()
    registry = PluginRegistry(strict=True).discover()
    other.join()
    assert "waited" in registry.names("loss") and registry.problems == []
    assert "the host's own line" in capsys.readouterr().out


def test_ctrl_c_while_a_hook_runs_is_not_taken_for_a_failing_hook():
    class Plugin:
        @delgrad_core.hookimpl
        def delgrad_register_losses(self, register):
            raise KeyboardInterrupt

    registry = PluginRegistry(builtins=False)
    with pytest.raises(KeyboardInterrupt):
        registry.register_plugin(Plugin(), distribution="local")
    assert registry.problems == [] and registry.failures == []


@pytest.mark.parametrize("n_threads", [None, 3])
def test_the_reference_backend_runs_forward_on_the_threads_it_was_given(monkeypatch, n_threads):
    """(`ReferenceBackend(n_threads=k)`: `forward` runs on k threads, None leaving it its own
    choice; the spike times are those of `forward`)"""
    from delgrad_core.testing import make_network
    from delgrad_reference import ReferenceBackend, _backend

    network, inputs = make_network([3, 4, 2], "axonal"), np.random.default_rng(0).uniform(0.0, 1.0, (5, 3))
    asked = []
    monkeypatch.setattr(_backend, "forward", lambda *args, **options: asked.append(options) or
                        delgrad_core.forward(*args, **options))
    result = ReferenceBackend(n_threads=n_threads).execute(network, inputs)
    assert asked == [{"n_threads": n_threads}]
    for got, wanted in zip(result.layer_spike_times, delgrad_core.forward(network, inputs), strict=True):
        np.testing.assert_array_equal(got, wanted)


@pytest.mark.parametrize("n_threads", [0, 1.5, "2"])
def test_the_reference_backend_refuses_a_thread_count_that_is_no_positive_integer(n_threads):
    from delgrad_reference import ReferenceBackend

    with pytest.raises(InvalidValueError, match="n_threads: expected an integer from 1 to"):
        ReferenceBackend(n_threads=n_threads)


def test_a_reference_run_resumes_on_another_thread_count(tmp_path):
    """The reference backend's n_threads changes no result (its sums are the same on any number of
    threads): a run resumes with another one, and records the one it ran with last."""
    import json

    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    run = tmp_path / "run"
    trained = cli_runner().invoke(main, ["train", "--hidden", "4", "--delays", "none", "--epochs", "1", "--batch-size",
                                         "250", "--backend-option", "n_threads=1", "--out", str(run), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    resumed = cli_runner().invoke(main, ["train", "--out", str(run), "--resume", "--epochs", "2", "--backend-option",
                                         "n_threads=2", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and metrics["config"]["backend_options"] == {"n_threads": 2}


@pytest.mark.parametrize("look_up", [
    lambda registry, kind: registry.names(kind),
    lambda registry, kind: registry.get(kind, "reference"),
    lambda registry, kind: registry.registrations(kind),
])
@pytest.mark.parametrize("kind", ["backends", "nope", ["backend"]])
def test_an_unknown_kind_of_component_is_refused_naming_the_kinds(look_up, kind):
    """(a KeyError: 'backends'; plugin_tools.factory_defaults answered {} for it, as for a name not registered)"""
    from delgrad_core.plugin_tools import factory_defaults

    message = rf"^kind: expected one of backend, dataset, loss, encoder, command, got {re.escape(repr(kind))}$"
    with pytest.raises(InvalidValueError, match=message):
        look_up(PluginRegistry(), kind)
    with pytest.raises(InvalidValueError, match=message):
        factory_defaults(kind, "reference")
    assert factory_defaults("backend", "nope") == {} and "n_threads" in factory_defaults("backend", "reference")
