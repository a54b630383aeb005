"""Training settings at their edges: what a hostile or unlucky user gives `delgrad train` and the
`Trainer` API, and what each must end in (a clear refusal, a warning, or the run asked for)."""

import json
import warnings

import numpy as np
import pytest

from delgrad_core._errors import InvalidValueError
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner
from delgrad_core.training import TrainingConfig, config_with_defaults, load_config
from delgrad_core.training._heuristics import SilentNeuronBump


def _silent_batch() -> list[np.ndarray]:
    """Spike times of a 2-3-2 network's batch of two samples, every neuron silent."""
    return [np.full((2, 3), np.inf), np.full((2, 2), np.inf)]


@pytest.mark.parametrize("weight", [1e308, 1.0])
def test_a_silent_neuron_bump_that_would_overflow_is_refused_naming_it(weight):
    """(a network held silent, e.g. by `weight_limit = 1e-300`, doubled the bump some 1,000 steps
    in a row until the weights were inf and the checkpoint's JSON failed with a traceback; with
    finite weights, the next level may still overflow)"""
    bump = SilentNeuronBump([0.3, 0.0], 0.0005, level=1e308)
    params = {"layers.0.weights": np.full((2, 3), weight), "layers.1.weights": np.ones((3, 2))}
    overflowing = "their input weights" if weight == 1e308 else "it"
    with pytest.raises(InvalidValueError, match=r"^silent_bump: 1034 steps in a row were skipped for silent neurons, "
                                                r"the bump doubling each time to 1e\+308, and the next one overflows "
                                                f"{overflowing}:"):
        bump.skip_step(_silent_batch(), params)
    assert (params["layers.0.weights"] == weight).all() and (params["layers.1.weights"] == 1).all()  # (unchanged)
    assert bump.level == 1e308


def test_a_silent_neuron_bump_below_overflow_still_doubles():
    bump = SilentNeuronBump([0.3, 0.0], 0.5, level=2.0)
    params = {"layers.0.weights": np.zeros((2, 3)), "layers.1.weights": np.zeros((3, 2))}
    assert bump.skip_step(_silent_batch(), params)
    assert (params["layers.0.weights"] == 2).all() and (params["layers.1.weights"] == 2).all() and bump.level == 4


@pytest.mark.parametrize(("values", "message"), [
    (dict(gradient_slope="nominal", tau_ratio=1.0000001),
     "gradient_slope: 'nominal' needs tau_ratio = 1 (the closed form of DelGrad's reference code), got tau_ratio "
     "1.0000001"),
    (dict(delay_shift=1.0, delay_scale=0.99999999e-9),
     "delay_scale: the delays delay_shift + delay_scale * sigmoid(p) must vary by at least 1e-09 of delay_shift (1.0) "
     "to be trained, got 9.9999999e-10"),
])
def test_a_value_just_out_of_range_is_shown_as_given(values, message):
    """(shown rounded to 6 digits, the refusal read "needs tau_ratio = 1, got tau_ratio 1")"""
    with pytest.raises(InvalidValueError) as refused:
        TrainingConfig(**values)
    assert str(refused.value) == message


# a small, fast training (4 hidden neurons, batches of 250, one epoch)
_TRAIN = ["train", "--hidden", "4", "--batch-size", "250", "--epochs", "1", "--no-progress"]


@pytest.mark.parametrize(("settings", "warned"), [
    (["--delays", "none,axonal", "--set", "shared_input_delays=2"],
     'shared_input_delays: not used, the first layer has no delays (delays = ["none", "axonal"])'),
    (["--delays", "none", "--set", "silent_bump=null", "--set", "silent_neuron_limit=0.1", "--set",
      "silent_limit_output=0.5"],
     "silent_limit_output, silent_neuron_limit: not used, the silent-neuron rules are off (silent_bump = None)"),
])
def test_settings_that_nothing_uses_are_named(tmp_path, settings, warned):
    """(recorded in metrics.json as if used, and silently without effect: shared_input_delays
    ties the first layer's axonal delays; silent_bump = None turns every silent-neuron rule off)"""
    result = cli_runner().invoke(main, [*_TRAIN, *settings, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert f"Warning: {warned}" in result.stderr, result.stderr


@pytest.mark.parametrize(("given", "configs", "warned"), [
    ({"delay_lr", "shared_input_delays"}, [dict(delays="none")],
     ["delay_lr, shared_input_delays: not used, the network has no delays (shown)"]),  # (one warning for both)
    ({"shared_input_delays"}, [dict(delays="none")],
     ["shared_input_delays: not used, the network has no delays (shown)"]),
    ({"silent_neuron_limit"}, [dict(silent_bump=None), dict(silent_bump=0.1)], []),  # (a config uses it)
    ({"silent_neuron_limit"}, [dict(silent_bump=None), dict(silent_bump=None)],
     ["silent_neuron_limit: not used, the silent-neuron rules are off (silent_bump = None)"]),
])
def test_unused_settings_are_those_no_config_uses_each_named_once(given, configs, warned):
    """`warn_unused_settings` (warned where it is called from, the command's code)."""
    from delgrad_core.cli._unused_settings import warn_unused_settings

    with pytest.warns() if warned else warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        warn_unused_settings(given, [TrainingConfig(**config) for config in configs], "shown")
    assert [str(warning.message) for warning in told] == warned
    assert all(warning.filename == __file__ for warning in told)


def test_the_settings_of_a_toml_config_file_are_chosen_and_those_a_run_recorded_are_not(tmp_path, finished_run):
    """A --config TOML file holds what the user chose; a run's metrics.json records every setting,
    defaults too, so only those --set gives again count as chosen."""
    from delgrad_core.cli._unused_settings import chosen_settings

    settings = {"delay_lr": 0.1, "delays": "none", "epochs": 1}
    (tmp_path / "chosen.toml").write_text("delay_lr = 0.1\ndelays = 'none'\n")
    assert chosen_settings(settings, tmp_path / "chosen.toml", {}) == {"delay_lr", "delays", "epochs"}
    assert chosen_settings(settings, finished_run / "metrics.json", {"delay_lr": 0.1}) == {"delay_lr"}


def test_silent_neuron_and_delay_settings_in_use_are_not_named_as_unused(tmp_path):
    result = cli_runner().invoke(main, [*_TRAIN, "--delays", "axonal,none", "--set", "shared_input_delays=1",
                                        "--set", "silent_neuron_limit=0.1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "not used" not in result.stderr, result.stderr


def test_a_sweep_names_the_settings_none_of_its_trials_uses(tmp_path):
    """(delgrad train named them; a sweep trained every trial with them recorded as used)"""
    result = cli_runner().invoke(main, ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1",
                                        "--set", "batch_size=250", "--set", "delay_lr=0.1", "--set", "silent_bump=null",
                                        "--set", "silent_neuron_limit=0.2", "--out", str(tmp_path / "sweep")])
    assert result.exit_code == 0, result.output
    assert "Warning: delay_lr: not used, no trial's network has delays (--delays none)" in result.stderr
    assert "Warning: silent_neuron_limit: not used, the silent-neuron rules are off (silent_bump = None)" in \
        result.stderr


def test_a_sweep_does_not_name_delay_settings_some_trial_uses(tmp_path):
    result = cli_runner().invoke(main, ["sweep", "--hidden", "3", "--delays", "none,axonal", "--seeds", "1",
                                        "--set", "delay_lr=0.1", "--set", "shared_input_delays=1",
                                        "--out", str(tmp_path / "sweep"), "--slurm-script", str(tmp_path / "job.sh")])
    assert result.exit_code == 0, result.output
    assert "not used" not in result.stderr, result.stderr


@pytest.mark.parametrize("delay_max", [1.0, 2.0])
def test_a_delay_max_that_every_initial_clipped_delay_is_above_is_refused(delay_max):
    """(the clipped delays start at delay_shift + delay_scale * sigmoid(x); every one was clipped
    to delay_max, and delay_shift, delay_scale and the initialisation went unused)"""
    with pytest.raises(InvalidValueError, match=r"^delay_max: the clipped delays start between delay_shift and "
                                                r"delay_shift \+ delay_scale \(2.0 and 3.5\), so all would start at "
                                                rf"delay_max; set it above delay_shift, got {delay_max}$"):
        TrainingConfig(delay_parametrisation="clip", delay_shift=2.0, delay_scale=1.5, delay_max=delay_max)
    clipped = TrainingConfig(delay_parametrisation="clip", delay_shift=2.0, delay_scale=1.5, delay_max=2.5)
    assert clipped.delay_max == 2.5  # (above delay_shift: the delays start in [2, 2.5])


def test_delgrad_train_stops_a_network_the_bump_cannot_revive_without_blaming_the_step_sizes(tmp_path):
    """(with weights held at 1e-300 the bump doubled until the checkpoint failed on inf; a silent_bump
    ten times DelGrad's is not why)"""
    result = cli_runner().invoke(main, ["train", "--hidden", "4", "--delays", "none", "--batch-size", "4",
                                        "--epochs", "1", "--no-progress", "--set", "weight_limit=1e-300",
                                        "--set", "silent_bump=0.01", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: silent_bump: 1030 steps in a row were skipped for silent neurons"), \
        result.stderr
    assert result.stderr.endswith("turn the rule off with silent_bump = None\n"), result.stderr


@pytest.mark.parametrize("hidden", ["5.0", "5,x", "1e2"])
def test_a_hidden_size_that_is_no_integer_is_refused_saying_so(hidden):
    """(the refusal read "expected one value or a comma-separated list, got '5.0'", one value)"""
    result = cli_runner().invoke(main, ["train", "--hidden", hidden])
    assert result.exit_code == 2, result.output
    assert result.stderr.endswith(f"Error: Invalid value for --hidden: expected an integer or comma-separated "
                                  f"integers (e.g. 30 or 128,64), got {hidden!r}\n"), result.stderr


@pytest.mark.parametrize(("text", "section", "shown"), [
    ("network = 5\n", "network", "5"), ("[[optimiser]]\nepochs = 3\n", "optimiser", "[{'epochs': 3}]"),
    ("[train]\nheuristics = true\n", "heuristics", "True")])
def test_a_section_that_is_no_table_is_refused_as_such(tmp_path, text, section, shown):
    """(refused as "config: unknown setting(s) network; known: ..." and all 47 names, not as the
    section it is)"""
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(InvalidValueError) as refused:
        load_config(tmp_path / "c.toml")
    assert str(refused.value).startswith(f"{tmp_path / 'c.toml'}: {section} is a section: [{section}] must be a "
                                         f"table of its settings, got {shown}; allowed in it: "), refused.value


@pytest.mark.parametrize("path", [0, None, b"c.toml"])
def test_load_config_refuses_a_path_that_is_no_path(path):
    """(an integer was taken as a file descriptor: 0 read standard input and closed it, 1 closed
    standard output)"""
    with pytest.raises(InvalidValueError, match=rf"^load_config: path: expected the path of a TOML file \(a str or "
                                                rf"Path\), got {type(path).__name__}$"):
        load_config(path)


@pytest.mark.parametrize("values", [{1: 2, "hiddn": 3}, {None: 1, "hiddn": 3}])
def test_unknown_setting_names_of_two_types_are_refused_naming_them(values):
    """(names of two types, a string among them, failed with a TypeError sorting them for the
    message of unknown ones)"""
    name = next(iter(values))
    for build in (TrainingConfig.from_dict, config_with_defaults):
        with pytest.raises(InvalidValueError, match=rf"^config: unknown setting\(s\) {name}, hiddn; known: "):
            build(values)


def test_options_nested_too_deeply_are_refused_naming_the_setting(tmp_path):
    """(a list in a list ... 600 deep, valid JSON, overflowed Python's recursion: a RecursionError
    traceback; a list holding itself did so from Python)"""
    deep = "[" * 600 + "]" * 600
    result = cli_runner().invoke(main, ["train", "--set", f'encoder_options={{"a": {deep}}}',
                                        "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.stderr.endswith("Error: encoder_options: lists and tables nested more than 100 levels deep\n"), \
        result.stderr
    itself = []
    itself.append(itself)
    with pytest.raises(InvalidValueError, match=r"^backend_options: lists and tables nested more than 100 levels"):
        TrainingConfig(backend_options={"x": itself})
    assert TrainingConfig(dataset_options={"x": [[[1]]]}, _check_components=False).dataset_options == {"x": [[[1]]]}


def test_an_encoder_name_that_is_no_string_is_refused_in_english():
    with pytest.raises(InvalidValueError, match=r"^encoder: expected an encoder name, got 3; installed: "):
        config_with_defaults({"encoder": 3})


@pytest.mark.parametrize("command", [["train", "--out", "out"], ["sweep", "--out", "out"], ["evaluate", "network.npz"]])
def test_config_given_twice_is_refused(tmp_path, monkeypatch, command):
    """(the first file was ignored without a word: only the last --config counted)"""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "network.npz").write_bytes(b"")
    (tmp_path / "a.toml").write_text("epochs = 1\n")
    (tmp_path / "b.toml").write_text("hidden = 3\n")
    result = cli_runner().invoke(main, [*command, "--config", "a.toml", "--config", "b.toml"])
    assert result.exit_code == 2, result.output
    assert ("Invalid value for '--config': given 2 times ('a.toml', 'b.toml'); give one settings file (merge them "
            "into one; --set KEY=VALUE adds settings)") in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_latency_window_of_no_width_is_refused(tmp_path):
    """t_late = t_early maps every feature value to the same spike time (t_early + x (t_late -
    t_early)): the inputs carry nothing; t_late must be greater, also where no encoder is built
    yet (a settings file is read before the components it will be used with are known)."""
    with pytest.raises(InvalidValueError, match=r"^t_late: must be greater than t_early"):
        TrainingConfig(t_early=1.0, t_late=1.0)
    (tmp_path / "window.toml").write_text("[encoder]\nt_early = 1.0\nt_late = 1.0\n")
    with pytest.raises(InvalidValueError, match=r"window.toml: t_late: must be greater than t_early"):
        load_config(tmp_path / "window.toml")
    assert TrainingConfig(t_early=1.0, t_late=1.5).t_late == 1.5


@pytest.mark.parametrize("secret", ["token", "password", "secret"])
def test_a_secret_given_as_a_backend_option_is_refused_before_it_is_recorded(secret):
    """docs/hil.md: train, evaluate and sweep refuse `token` (a run folder keeps its options in
    plain text); a file holding it (`token_file`) is the way."""
    with pytest.raises(InvalidValueError, match=rf"^backend_options\.{secret}: a run keeps its settings in plain text"):
        TrainingConfig(backend_options={secret: "s3cret"}, _check_components=False)


def test_a_setting_one_side_lacks_differs_as_none_there():
    """(setting_differences: what a resume refusal and a sweep's clash name; a setting recorded on
    one side only, e.g. by another version, is a difference from either side)"""
    from delgrad_core.training._config import setting_differences

    assert setting_differences({"a": 1}, {"a": 1, "b": 2}) == {"b": (None, 2)}
    assert setting_differences({"a": 1, "b": 2}, {"a": 1}) == {"b": (2, None)}
    assert setting_differences({"a": 1, "b": 2}, {"a": 3}, ignore=("a",)) == {"b": (2, None)}


@pytest.mark.parametrize(("values", "expected"), [
    # (docs/model.md §5.4: the published rates and initialisation per delay kind)
    (dict(hidden=30, delays="none"), dict(weight_lr=0.02, delay_lr=0.0, weight_init_mean=0.5, weight_init_std=1.0)),
    (dict(hidden=30, delays="axonal"), dict(weight_lr=0.005, delay_lr=0.005, weight_init_mean=1.0,
                                            weight_init_std=1.0)),
    (dict(hidden=30, delays="synaptic"), dict(weight_lr=0.01, delay_lr=0.003, weight_init_mean=1.0,
                                              weight_init_std=1.0)),
    # (dendritic has no published setting: it takes the axonal one, _config.py)
    (dict(hidden=30, delays="dendritic"), dict(weight_lr=0.005, delay_lr=0.005, weight_init_mean=1.0,
                                               weight_init_std=1.0)),
    # (mixed kinds: those of the first layer with delays, `TrainingConfig.resolved`)
    (dict(hidden=30, delays=["none", "axonal"]), dict(weight_lr=0.005, delay_lr=0.005, weight_init_mean=1.0)),
    # (docs/training.md: a synaptic network of at most 5 hidden neurons in all takes 0.015 and 0.01)
    (dict(hidden=5, delays="synaptic"), dict(weight_lr=0.015, delay_lr=0.01, weight_init_mean=1.0)),
    (dict(hidden=[3, 3], delays="synaptic"), dict(weight_lr=0.01, delay_lr=0.003)),
    (dict(hidden=[2, 3], delays="synaptic"), dict(weight_lr=0.015, delay_lr=0.01)),
    # (docs/training.md: delay_lr may be 0, the delays stay as initialised; only unset rates take a default)
    (dict(hidden=30, delays="axonal", delay_lr=0.0, weight_init_std=0.0), dict(delay_lr=0.0, weight_init_std=0.0)),
    (dict(hidden=5, delays="synaptic", delay_lr=0.0), dict(weight_lr=0.015, delay_lr=0.0)),
])
def test_unset_learning_rates_and_initialisation_resolve_to_the_published_ones(values, expected):
    """`None` learning rates/initialisation take the DelGrad default for the chosen delay kind
    (`TrainingConfig`, docs/model.md §5.4, docs/training.md); a value given stays."""
    resolved = TrainingConfig(**values).resolved()
    assert {name: getattr(resolved, name) for name in expected} == expected


@pytest.mark.parametrize(("beta1", "beta2", "refused"), [
    (0.5, 0.25, True),  # (the square equal to adam_beta2: not below it)
    (0.5, 0.2500001, False),
    (0.0, 0.0, False),  # (adam_beta1 0: allowed whatever adam_beta2)
])
def test_adam_beta1_squared_must_be_below_adam_beta2_unless_it_is_zero(beta1, beta2, refused):
    """docs/training.md: "`adam_beta1` squared must be below `adam_beta2`, or `adam_beta1` 0"."""
    if not refused:
        assert TrainingConfig(adam_beta1=beta1, adam_beta2=beta2).adam_beta1 == beta1
        return
    with pytest.raises(InvalidValueError, match=r"^adam_beta1: its square must be below adam_beta2 \(0.25\)"):
        TrainingConfig(adam_beta1=beta1, adam_beta2=beta2)


def test_a_delay_scale_of_exactly_the_least_fraction_of_delay_shift_is_allowed():
    """The delays must vary "by at least 1e-09 of delay_shift" (the refusal's own words): that much is enough."""
    assert TrainingConfig(delay_shift=1.0, delay_scale=1e-9).delay_scale == 1e-9


@pytest.mark.parametrize(("name", "value", "message"), [
    ("weight_init_mean", "x", "weight_init_mean: expected a finite number or a list of them (one per layer), or "
                              "unset, got 'x'"),
    ("weight_init_std", [], "weight_init_std: expected a finite number >= 0 or a list of them (one per layer), or "
                            "unset, got an empty list"),
])
def test_a_per_layer_setting_refused_names_both_forms_it_takes(name, value, message):
    """docs/training.md: `weight_init_mean`/`weight_init_std` take one value or one per layer; a
    refusal names the field and the allowed values (the module's docstring)."""
    with pytest.raises(InvalidValueError) as refused:
        TrainingConfig(**{name: value})
    assert str(refused.value) == message


def _nested_list(levels: int) -> list:
    """A list in a list ... `levels` deep, holding 1."""
    value = [1]
    for _ in range(levels - 1):
        value = [value]
    return value


def test_options_nested_exactly_100_levels_deep_are_allowed_and_one_more_is_refused():
    """The refusal reads "nested more than 100 levels deep": an options table holding lists 99 deep is
    100 levels (the table the first), allowed; one more level is refused."""
    assert TrainingConfig(loss_options={"x": _nested_list(99)}, _check_components=False).loss_options == \
        {"x": _nested_list(99)}
    with pytest.raises(InvalidValueError, match=r"^loss_options: lists and tables nested more than 100 levels deep$"):
        TrainingConfig(loss_options={"x": _nested_list(100)}, _check_components=False)


@pytest.mark.parametrize(("values", "message"), [
    (dict(gradient_slope=None), "gradient_slope: None is not allowed; choose one of observed, nominal"),
    (dict(delay_parametrisation=None), "delay_parametrisation: None is not allowed; choose one of sigmoid, clip"),
    (dict(keep_best=1), "keep_best: expected true or false, got 1"),
    (dict(backend_options={1: 2}), "backend_options: expected a table (dict) of settings, got {1: 2}"),
])
def test_a_setting_of_the_wrong_kind_is_refused_naming_it_and_what_it_takes(values, message):
    """Every field is checked by a declared rule that names the field and the allowed values on
    failure, wrong types included (the module docstring of delgrad_core/training/_config.py)."""
    with pytest.raises(InvalidValueError) as refused:
        TrainingConfig(**values, _check_components=False)
    assert str(refused.value) == message


def test_settings_given_as_tuples_are_stored_as_the_lists_json_gives_back():
    """The config is one JSON-serialisable record (module docstring): what it holds is what a
    run's metrics.json gives back, tuples as lists."""
    config = TrainingConfig(hidden=(3, 2), delays=("none", "axonal", "axonal"), weight_init_mean=(0.5, 1.0, 1.0),
                            loss_options={"x": (1, 2)}, _check_components=False)
    settings = config.to_dict()
    assert json.loads(json.dumps(settings)) == settings
    assert (settings["hidden"], settings["delays"]) == ([3, 2], ["none", "axonal", "axonal"])


def test_a_setting_is_shown_as_json_shortened_to_80_characters():
    """`shown_setting`: "A setting as JSON, shortened for a one-line message"."""
    from delgrad_core.training._config import shown_setting

    assert shown_setting({"b": [1, 2], "a": None}) == '{"a": null, "b": [1, 2]}'
    assert shown_setting("x" * 78) == '"' + "x" * 78 + '"'  # (80 characters: whole)
    shown = shown_setting("x" * 79)
    assert len(shown) == 80 and shown == '"' + "x" * 76 + "..."


@pytest.mark.parametrize("start", ["\n", "  \t\r\n", "\ufeff\n"])
def test_a_run_record_after_blank_space_is_read_as_one(tmp_path, start):
    """`load_config` reads a run's metrics.json (its "config" table) as well as TOML; no TOML
    document starts with "{" (`_is_json`), blank space and a BOM before it included."""
    path = tmp_path / "metrics.json"
    path.write_text(start + json.dumps({"config": {"epochs": 3, "hidden": [4, 2]}}), encoding="utf-8")
    assert load_config(path) == {"epochs": 3, "hidden": [4, 2]}


@pytest.mark.parametrize("section", ["", "[backend]\n", "[encoder]\n"], ids=["settings", "backend", "encoder"])
def test_a_config_of_thousands_of_unknown_names_is_refused_naming_a_few(tmp_path, section):
    """(3,000 unknown keys made a one-line error of 20 kB, 300,000 of 2.7 MB)"""
    config = tmp_path / "many.toml"
    config.write_text(section + "".join(f"k{i} = {i}\n" for i in range(3000)))
    result = cli_runner().invoke(main, ["train", "--hidden", "2", "--epochs", "1", "--no-progress", "--config",
                                        str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "k0, k1, k10 and 2997 more" in result.stderr, result.stderr
    assert len(result.stderr) < 2000
