"""Dataset, loss and encoder plugins written carelessly: each mistake is named where it is made,
never trained on silently nor blamed on the user's settings."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import delgrad_core
from delgrad_core import (InvalidValueError, LossResult, PluginError, PluginLoadWarning, PluginRegistry,
                          UnknownOptionError, hookimpl)
from delgrad_core.datasets import Dataset, DatasetOptionsError, load_dataset

SPLITS = ("train", "validation", "test")


@pytest.fixture
def plugin(monkeypatch):
    """Install, as the process-wide registry, the core's components plus a plugin of `hooks`;
    returns the registry."""

    def install(**hooks):
        registry = PluginRegistry(strict=False)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            registry.register_plugin(SimpleNamespace(**{name: hookimpl(hook) for name, hook in hooks.items()}),
                                     distribution="delgrad-careless")
        monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)
        return registry

    return install


def _stripes(name, labels=lambda x: (x[:, 0] > 0.5).astype(int), class_names=("left", "right"), n_features=2):
    """A loader of `name` whose labels are `labels(features)`."""

    def load(split):
        features = np.random.default_rng(SPLITS.index(split)).uniform(0, 1, (60, n_features))
        return Dataset(name, split, features, labels(features), class_names)

    return load


# -- datasets -----------------------------------------------------------------------------------
def test_labels_off_by_one_name_the_first_bad_label_and_its_sample():
    """(said only "values must be in [0, 1]": a loader counting classes from 1 could not tell why)"""
    with pytest.raises(InvalidValueError, match=r"^Dataset.labels: values must be in \[0, 1\] \(label i is "
                                                r"class_names\[i\]\); 2 are not, the first, of sample 1, is 2$"):
        Dataset("toy", "train", [[0.0], [1.0], [0.5]], [1, 2, 2], ("a", "b"))
    with pytest.raises(InvalidValueError, match=r"1 are not, the first, of sample 0, is -1$"):
        Dataset("toy", "train", [[0.0], [1.0]], [-1, 0], ("a", "b"))


def test_features_of_one_or_three_dimensions_say_how_to_make_them_a_table():
    with pytest.raises(InvalidValueError, match=r"got 1-d \(one feature each: features\[:, None\]\)$"):
        Dataset("toy", "train", [0.0, 1.0], [0, 1], ("a", "b"))
    with pytest.raises(InvalidValueError, match=r"got 3-d \(flatten each sample: features.reshape\(len\(features\), "
                                                r"-1\)\)$"):
        Dataset("toy", "train", np.zeros((2, 3, 3)), [0, 1], ("a", "b"))


def test_a_dataset_without_features_is_refused_not_blamed_on_the_encoder():
    """(built, then training said "encoder 'latency' from 'delgrad': n_inputs(0) returned 0")"""
    with pytest.raises(InvalidValueError, match=r"^Dataset.features: expected at least one feature per sample, got "
                                                r"shape \(60, 0\)$"):
        _stripes("bare", labels=lambda x: np.zeros(len(x), int), n_features=0)("train")


def test_a_dataset_of_one_class_is_refused(plugin):
    """(trained to "test accuracy 100.00 %": one output neuron, a loss of 0 and nothing learnt)"""
    plugin(delgrad_register_datasets=lambda register: register(
        "alone", _stripes("alone", labels=lambda x: np.zeros(len(x), int), class_names=("only",)), SPLITS))
    with pytest.raises(PluginError, match=r"^dataset 'alone' from 'delgrad-careless': split 'train' has the one "
                                          r"class 'only'; a classification needs at least 2 class names$"):
        load_dataset("alone", "train")


@pytest.mark.parametrize(("loader", "message"), [
    (lambda split: _stripes("lazy")("train"), r"asked for split 'test' of dataset 'lazy', its loader returned split "
                                              r"'train' of dataset 'lazy'"),
    (lambda split: Dataset("lazy", split, [[-0.25, 0.5], [0.0, 1.0]], [0, 1], ("left", "right")),
     r"the features of split 'test' must lie in \[0, 1\] \(they span -0.25 to 1.0\)"),
])
def test_a_loader_returning_another_split_or_negative_features_is_named(plugin, loader, message):
    """Checked after loading: the split returned is the one asked for, features are not below 0 either."""
    plugin(delgrad_register_datasets=lambda register: register("lazy", loader, SPLITS))
    with pytest.raises(PluginError, match=r"^dataset 'lazy' from 'delgrad-careless': " + message):
        load_dataset("lazy", "test")


def test_a_train_split_missing_a_class_is_warned_of(plugin):
    """(labels counted from 1 with a class name added in front trained silently, the class names
    one off the classes)"""
    plugin(delgrad_register_datasets=lambda register: register(
        "shifted", _stripes("shifted", labels=lambda x: (x[:, 0] > 0.5) + 1, class_names=("none", "left", "right")),
        SPLITS))
    with pytest.warns(UserWarning, match=r"^dataset 'shifted' from 'delgrad-careless': split 'train' holds no sample "
                                         r"of class 0 \('none'\), of 3 \(label i is class_names\[i\], from 0\): the "
                                         r"network learns nothing of it$"):
        load_dataset("shifted", "train")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("shifted", "test")  # (a small test split may miss a class)
        load_dataset("yin_yang", "validation")


@pytest.mark.parametrize(("n_classes", "listed"), [
    (6, "1 ('c1'), 2 ('c2'), 3 ('c3'), 4 ('c4'), 5 ('c5'), of 6"),  # (5 missing: all of them named)
    (7, "1 ('c1'), 2 ('c2'), 3 ('c3'), 4 ('c4'), 5 ('c5'), ..., of 7"),  # (6 missing: the first 5, then ...)
])
def test_the_warning_of_missing_classes_names_at_most_five(plugin, n_classes, listed):
    """Only class 0 in the train split: the missing classes are listed up to five, then '...'."""
    class_names = tuple(f"c{label}" for label in range(n_classes))
    plugin(delgrad_register_datasets=lambda register: register(
        "narrow", _stripes("narrow", labels=lambda x: np.zeros(len(x), int), class_names=class_names), SPLITS))
    with pytest.warns(UserWarning) as caught:
        load_dataset("narrow", "train")
    assert f"holds no sample of class {listed} (label i" in str(caught[0].message)


def test_a_loader_taking_any_options_is_not_given_split_as_one(plugin):
    """(load_dataset's own split, given as an option too, would reach the loader twice)"""
    plugin(delgrad_register_datasets=lambda register: register(
        "open", lambda split, **options: _stripes("open")(split), SPLITS))
    with pytest.raises(InvalidValueError, match=r"^dataset 'open': split is not a dataset option"):
        load_dataset("open", "train", split="test")


def test_an_unknown_option_error_of_a_loader_keeps_its_class_and_names(plugin):
    """Only a plain InvalidValueError naming an option becomes a DatasetOptionsError; a loader's UnknownOptionError
    about the values of its option stays one, with its names."""
    def load(split, parts=()):
        raise UnknownOptionError(f"parts: unknown part(s) {', '.join(parts)}; allowed: left, right", names=list(parts))

    plugin(delgrad_register_datasets=lambda register: register("picky", load, SPLITS))
    with pytest.raises(UnknownOptionError, match=r"^dataset 'picky' \(loading 'train'\): parts: unknown part\(s\) "
                                                 r"up") as caught:
        load_dataset("picky", "train", parts=("up",))
    assert list(caught.value.names) == ["up"] and not isinstance(caught.value, DatasetOptionsError)


def test_a_type_error_of_a_loader_given_options_is_an_options_error_not_the_plugins(plugin):
    """With options, a TypeError is taken for an option of the wrong type (without, it is the plugin's fault)."""
    def load(split, scale=1):
        return _stripes("typed", n_features=int(2 * scale))(split)  # (scale None: 2 * None is a TypeError)

    plugin(delgrad_register_datasets=lambda register: register("typed", load, SPLITS))
    with pytest.raises(DatasetOptionsError, match=r"^dataset 'typed': loading 'train' with options \{'scale': None\} "
                                                  r"failed: "):
        load_dataset("typed", "train", scale=None)


def test_training_on_a_dataset_without_a_validation_split_says_training_needs_it(plugin):
    """(said "choose one of train, test", as if the user had chosen a split)"""
    plugin(delgrad_register_datasets=lambda register: register("pair", _stripes("pair"), ("train", "test")))
    with pytest.raises(InvalidValueError, match=r"^split: unknown split 'validation' of dataset 'pair'; choose one "
                                                r"of train, test \(training needs train, validation, test: its plugin "
                                                r"registers too few\)$"):
        load_dataset("pair", "validation")
    with pytest.raises(InvalidValueError, match=r"choose one of train, test$"):
        load_dataset("pair", "dev")


def test_dataset_defaults_with_an_option_the_encoder_does_not_take_are_refused_with_the_registration(plugin):
    """(registered, then `train --dataset` blamed the user: "encoder_options: encoder 'latency':
    unknown parameter(s) pair", an option the user never gave)"""
    with pytest.warns(PluginLoadWarning, match=r"registration refused: dataset 'paired': training_defaults."
                                               r"encoder_options: encoder 'latency': unknown parameter\(s\) pair \(did "
                                               r"you mean pairs\?\); allowed: t_early, t_late, repeat, pairs$"):
        registry = PluginRegistry(strict=False)
        registry.register_plugin(SimpleNamespace(delgrad_register_datasets=hookimpl(lambda register: register(
            "paired", _stripes("paired"), SPLITS, training_defaults={"encoder_options": {"pair": True}}))),
            distribution="delgrad-careless")
    assert "paired" not in registry.names("dataset")
    registry = plugin(delgrad_register_datasets=lambda register: register(
        "other", _stripes("other"), SPLITS,
        training_defaults={"encoder": "not-yet-loaded", "encoder_options": {"x": 1}}))
    assert "other" in registry.names("dataset")  # (an encoder not registered yet is checked when training)


def test_an_encoder_of_dataset_defaults_that_is_not_installed_is_named_as_theirs_not_the_users(plugin_and_reference):
    """(refused as "encoder: 'rate' is not installed", as if the user had named it)"""
    from delgrad_core.training import config_with_defaults

    plugin_and_reference(delgrad_register_datasets=lambda register: register(
        "rated", _stripes("rated"), SPLITS, training_defaults={"encoder": "rate"}))
    with pytest.raises(InvalidValueError, match=r"^encoder \(chosen by the training defaults of dataset 'rated' from "
                                                r"'delgrad-careless'; encoder = NAME chooses another\): 'rate' is not "
                                                r"installed; installed: latency"):
        config_with_defaults({"dataset": "rated"})
    assert config_with_defaults({"dataset": "rated", "encoder": "latency"}).encoder == "latency"


def test_backend_defaults_with_an_option_the_encoder_does_not_take_are_refused_with_the_registration():
    """(as a dataset's: `train --backend` then blamed the user's encoder_options)"""
    from delgrad_reference import ReferenceBackend

    registry = PluginRegistry(strict=False)
    with pytest.warns(PluginLoadWarning, match=r"registration refused: backend 'reference': training_defaults."
                                               r"encoder_options: encoder 'latency': unknown parameter\(s\) repat "
                                               r"\(did you mean repeat\?\)"):
        registry.register_plugin(SimpleNamespace(delgrad_register_backends=hookimpl(lambda register: register(
            "reference", ReferenceBackend, training_defaults={"encoder_options": {"repat": 5}}))),
            distribution="delgrad-careless")
    assert "reference" not in registry.names("backend")


# -- losses and encoders ------------------------------------------------------------------------
class _Loss:
    def __call__(self, output_times, labels):
        return LossResult(np.zeros(len(labels)), np.zeros(np.shape(output_times)))


class _Encoder:
    def n_inputs(self, n_features):
        return n_features

    def __call__(self, features):
        return 0.15 + np.array(features, dtype=np.float64)


def _loss_function(output_times, labels):
    return _Loss()(output_times, labels)


def test_options_reach_a_plugin_losss_keyword_options_and_its_parameters_named_like_settings(plugin_and_reference):
    """A loss taking **options takes any option, one named like a training setting too; a parameter named like a
    training setting (seed) is the loss's own; a loss taking *parts allows its named parameters only, and refuses
    unknown options naming each (a name that is no identifier quoted)."""
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    class AnyOptions(_Loss):
        def __init__(self, **options):
            self.options = options

    class Seeded(_Loss):
        def __init__(self, seed=0):
            self.seed = seed

    class Parts(_Loss):
        def __init__(self, *parts, margin=1.0):
            self.margin = margin

    plugin_and_reference(delgrad_register_losses=lambda register: (
        register("any", AnyOptions), register("seeded", Seeded), register("parts", Parts)))
    config = config_with_defaults({"dataset": "yin_yang"})
    assert component("loss", "any", config, {"seed": 7, "colour": 1}).loss.options == {"seed": 7, "colour": 1}
    assert component("loss", "seeded", config, {"seed": 7}).loss.seed == 7
    with pytest.raises(UnknownOptionError, match=r"^loss_options: loss 'parts': unknown parameter\(s\) 'b a', colour; "
                                                 r"allowed: margin$") as refused:
        component("loss", "parts", config, {"colour": 1, "b a": 2})
    assert refused.value.names == ("b a", "colour")


@pytest.mark.parametrize("kind, obj, why", [
    ("loss", _loss_function, "_loss_function requires output_times, labels"),
    ("loss", _Loss(), "an instance of _Loss requires output_times, labels"),
    ("encoder", _Encoder(), "an instance of _Encoder has the method n_inputs"),
    ("encoder", lambda features: features, "<lambda> requires features"),
])
def test_a_loss_or_encoder_registered_instead_of_its_factory_is_refused_with_the_registration(kind, obj, why):
    """(registered, then training told the user to give labels, output_times in loss_options)"""
    hook = {"loss": "delgrad_register_losses", "encoder": "delgrad_register_encoders"}[kind]
    registry = PluginRegistry(strict=False)
    expected = (rf"registration refused: {kind} 'built': expected a factory returning the {kind} \(its class, or "
                rf"lambda: the {kind}\), which training calls with the {kind}'s parameters; got the {kind} itself "
                rf"\({why}\)$")
    with pytest.warns(PluginLoadWarning, match=expected):
        registry.register_plugin(SimpleNamespace(**{hook: hookimpl(lambda register: register("built", obj))}),
                                 distribution="delgrad-careless")
    assert "built" not in registry.names(kind)


def test_factories_of_losses_and_encoders_are_registered(plugin):
    registry = plugin(delgrad_register_losses=lambda register: register("mine", _Loss),
                      delgrad_register_encoders=lambda register: [register("mine", _Encoder),
                                                                  register("made", lambda: _Encoder())])
    assert "mine" in registry.names("loss") and {"mine", "made"} <= set(registry.names("encoder"))


@pytest.mark.parametrize("arguments", [
    (SPLITS, {"batch_size": 30}),  # training_defaults given where description goes: lost silently
    (SPLITS, lambda x, y: np.stack([x, y], axis=-1)),  # so was a plane
])
def test_a_registration_with_another_argument_in_place_of_the_description_is_refused(arguments):
    registry = PluginRegistry(strict=False)
    given = type(arguments[1]).__name__
    with pytest.warns(PluginLoadWarning, match=rf"registration refused: dataset 'odd': description: expected a string, "
                                               rf"got {given} \(the arguments: register\(name, loader, splits, "
                                               rf"description='', plane=None, training_defaults=None\); give the "
                                               rf"others by keyword\)$"):
        registry.register_plugin(SimpleNamespace(delgrad_register_datasets=hookimpl(
            lambda register: register("odd", _stripes("odd"), *arguments))), distribution="delgrad-careless")
    assert "odd" not in registry.names("dataset")


def test_splits_given_as_one_name_are_refused_naming_them():
    registry = PluginRegistry(strict=False)
    with pytest.warns(PluginLoadWarning, match=r"dataset 'one': splits must be a non-empty list of names, got "
                                               r"'train'$"):
        registry.register_plugin(SimpleNamespace(delgrad_register_datasets=hookimpl(
            lambda register: register("one", _stripes("one"), "train"))), distribution="delgrad-careless")


@pytest.mark.parametrize("setting, value", [("backend", "example"), ("backend_options", {"threads": 1}),
                                            ("dataset", "yin_yang")])
def test_dataset_defaults_choosing_the_backend_or_dataset_are_refused(setting, value):
    """(a dataset's backend = "example" trained there, not on the reference backend `train --help`
    names, and without the backend's own defaults; its dataset was never used)"""
    registry = PluginRegistry(strict=False)
    with pytest.warns(PluginLoadWarning, match=rf"dataset 'bossy': training_defaults.{setting}: not a dataset's to "
                                               r"choose \(its defaults apply under the user's dataset and backend, "
                                               r"and the backend's defaults\)$"):
        registry.register_plugin(SimpleNamespace(delgrad_register_datasets=hookimpl(lambda register: register(
            "bossy", _stripes("bossy"), SPLITS, training_defaults={setting: value, "batch_size": 30}))),
            distribution="delgrad-careless")
    assert "bossy" not in registry.names("dataset")


@pytest.mark.parametrize("option", ["split", "name"])
def test_a_split_or_name_option_for_a_loader_taking_any_option_is_refused_not_a_traceback(plugin, option):
    """(`train --dataset-option split=test` with a loader taking **options ended in "TypeError:
    load_dataset() got multiple values for argument 'split'")"""
    def anything(split, **options):
        return _stripes("anything")(split)

    plugin(delgrad_register_datasets=lambda register: register("anything", anything, SPLITS))
    with pytest.raises(delgrad_core.UnknownOptionError, match=rf"^dataset 'anything': {option} is not a dataset "
                                                              r"option \(the dataset's name and split are "
                                                              r"load_dataset's own arguments; training loads train, "
                                                              r"validation, test\)$"):
        load_dataset("anything", "train", **{option: "test"})


# -- as installed, on the command line ----------------------------------------------------------
CARELESS = """
    import numpy as np
    from delgrad_core import hookimpl
    from delgrad_core.datasets import Dataset

    def stripes(split, **options):
        x = np.random.default_rng(len(split)).uniform(0, 1, (60, 2))
        return Dataset("stripes", split, x, (x[:, 0] > 0.5).astype(int), ("left", "right"))

    @hookimpl
    def delgrad_register_datasets(register):
        register("stripes", stripes, ("train", "validation", "test"))
        register("positional", stripes, ("train", "validation", "test"), {"batch_size": 30})
"""


def test_careless_dataset_registrations_end_in_one_line_on_the_command_line(tmp_path, monkeypatch):
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner, write_distribution

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DELGRAD_STRICT_PLUGINS", raising=False)
    write_distribution(tmp_path, "delgrad-careless", "1.0", {"careless_data": CARELESS},
                       {"delgrad.backends": {"careless": "careless_data"}})
    delgrad_core.refresh_plugins()
    try:
        out = tmp_path / "run"
        result = cli_runner().invoke(main, ["train", "--dataset", "stripes", "--dataset-option", "split=test",
                                            "--epochs", "1", "--out", str(out)])
        assert result.exit_code == 2 and not out.exists(), result.output
        assert result.stderr.endswith("Error: dataset_options: dataset 'stripes': split is not a dataset option (the "
                                      "dataset's name and split are load_dataset's own arguments; training loads "
                                      "train, validation, test)\n")
        result = cli_runner().invoke(main, ["train", "--dataset", "positional", "--epochs", "1", "--out", str(out)])
        assert result.exit_code == 2 and not out.exists(), result.output
        assert "Error: dataset: 'positional' cannot be used: distribution 'delgrad-careless' 1.0 registers it, " \
               "but its registration was refused: dataset 'positional': description: expected a string, got dict" \
               in result.stderr
    finally:
        delgrad_core.refresh_plugins()


# -- answers of losses, encoders and planes, checked as training meets them -------------------------
@pytest.fixture
def plugin_and_reference(plugin):
    """`plugin`, with the reference backend registered too (a config names it)."""
    from delgrad_reference import _plugin as reference

    def install(**hooks):
        registry = plugin(**hooks)
        registry.register_plugin(reference, distribution="delgrad-reference")
        return registry

    return install


def _trained_loss(name):
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    return component("loss", name, config_with_defaults({"dataset": "yin_yang", "loss": name}), {})


def _times_and_labels(seed=0):
    rng = np.random.default_rng(seed)
    times = rng.uniform(0.5, 2.5, (40, 3))
    times[rng.random((40, 3)) < 0.1] = np.inf  # (some silent outputs)
    return times, rng.integers(0, 3, 40)


# (docs/plugins.md: warned where they differ by more than 10 %; 15 % off is)
@pytest.mark.parametrize("change", [lambda g, b: -g, lambda g, b: g * b, lambda g, b: 0 * g, lambda g, b: 1.15 * g])
def test_a_loss_gradient_that_is_not_the_derivative_of_its_loss_is_warned_of_once(plugin_and_reference, change):
    """(a flipped sign, a gradient not divided by the batch size, or none at all trained on
    without a word: the loss rose, or nothing moved, and the run ended with exit status 0)"""
    squared = delgrad_core.make_loss("squared")

    def careless():
        return lambda times, labels: (lambda r: LossResult(r.per_sample, change(r.gradient, len(labels))))(
            squared(times, labels))

    plugin_and_reference(delgrad_register_losses=lambda register: register("careless", careless))
    loss = _trained_loss("careless")
    with pytest.warns(UserWarning, match=r"^loss 'careless' from 'delgrad-careless': its gradient is not the "
                                         r"derivative of the batch mean of its per_sample losses \(relative "
                                         r"difference .* to finite differences on a batch of 40\); training follows "
                                         r"the gradient: check its sign and that it is divided by the batch size$"):
        loss(*_times_and_labels())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(*_times_and_labels(1))  # (checked once)


def test_a_loss_gradient_is_checked_on_the_first_batch_with_spike_times_not_on_a_silent_one(plugin_and_reference):
    """(docs: checked once, on a batch with spike times; a first batch of silent outputs has
    nothing to differentiate and must not use up the check)"""
    squared = delgrad_core.make_loss("squared")
    plugin_and_reference(delgrad_register_losses=lambda register: register(
        "flipped", lambda: lambda times, labels: (lambda r: LossResult(r.per_sample, -r.gradient))(
            squared(times, labels))))
    loss = _trained_loss("flipped")
    times, labels = _times_and_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(np.full_like(times, np.inf), labels)
    with pytest.warns(UserWarning, match="its gradient is not the derivative"):
        loss(times, labels)


def test_a_loss_gradient_within_10_percent_of_the_derivative_is_not_warned_of(plugin_and_reference):
    squared = delgrad_core.make_loss("squared")
    plugin_and_reference(delgrad_register_losses=lambda register: register(
        "close", lambda: lambda times, labels: (lambda r: LossResult(r.per_sample, 1.05 * r.gradient))(
            squared(times, labels))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _trained_loss("close")(*_times_and_labels())


@pytest.mark.parametrize("error", [ValueError("operands could not be broadcast together"),
                                   PermissionError("the cache folder is read-only")])
def test_a_loss_failing_with_another_error_is_not_told_to_copy_its_inputs(plugin_and_reference, error):
    """(the advice "compute on a copy" belongs to numpy's read-only refusal alone, a ValueError)"""
    def failing(times, labels):
        raise error

    plugin_and_reference(delgrad_register_losses=lambda register: register("failing", lambda: failing))
    with pytest.raises(PluginError, match=str(error)) as raised:
        _trained_loss("failing")(*_times_and_labels())
    assert "compute on a copy" not in str(raised.value)


def test_a_loss_answering_integers_is_taken_and_one_nan_among_its_values_is_named(plugin_and_reference):
    per_sample = np.zeros(40)
    per_sample[7] = np.nan
    plugin_and_reference(delgrad_register_losses=lambda register: (
        register("counting", lambda: lambda times, labels: LossResult(np.ones(len(times), int),
                                                                      np.zeros(np.shape(times), int))),
        register("holey", lambda: lambda times, labels: LossResult(per_sample, np.zeros(np.shape(times))))))
    assert _trained_loss("counting")(*_times_and_labels()).per_sample.tolist() == [1] * 40
    with pytest.raises(PluginError, match=r"^loss 'holey' from 'delgrad-careless': its per_sample contains NaN or "
                                          r"inf \(a silent output neuron must give a finite loss without gradient\)$"):
        _trained_loss("holey")(*_times_and_labels())


def _linear_loss(silent_gradient=0.0):
    """A loss of the sum of a sample's spike times (its exact gradient: 1 / batch size), with
    `silent_gradient` for silent outputs."""
    def loss(times, labels):
        spiking = np.isfinite(times)
        return LossResult(np.where(spiking, times, 0.0).sum(axis=1),
                          np.where(spiking, 1.0, silent_gradient) / len(times))

    return lambda: loss


@pytest.mark.parametrize("offset, silent_gradient", [(1e12, 0.0), (0.0, 5.0)])
def test_a_right_loss_gradient_is_not_warned_of_at_late_times_nor_for_what_it_gives_silent_outputs(
        plugin_and_reference, offset, silent_gradient):
    """(the finite differences step with the spike times, and silent outputs have no derivative to
    compare a gradient with)"""
    plugin_and_reference(delgrad_register_losses=lambda register: register("linear", _linear_loss(silent_gradient)))
    times, labels = _times_and_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _trained_loss("linear")(times + offset, labels)


@pytest.mark.parametrize("name", ["squared", "crossentropy"])
def test_the_cores_losses_pass_the_gradient_check(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(5):
            _trained_loss(name)(*_times_and_labels(seed))


@pytest.mark.parametrize("per_sample", [np.array(["0"] * 40), np.zeros(40, complex)])
def test_a_loss_answering_other_than_real_numbers_is_named(plugin_and_reference, per_sample):
    """(strings ended in a TypeError traceback; complex numbers were blamed on the core's
    output_gradient)"""
    plugin_and_reference(delgrad_register_losses=lambda register: register(
        "wordy", lambda: lambda times, labels: LossResult(per_sample, np.zeros(np.shape(times)))))
    with pytest.raises(PluginError, match=rf"^loss 'wordy' from 'delgrad-careless': its per_sample is an array of "
                                          rf"dtype {per_sample.dtype}, expected real numbers$"):
        _trained_loss("wordy")(*_times_and_labels())


def test_an_encoder_writing_into_its_features_is_told_to_copy_them(plugin_and_reference):
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    class Scaling(_Encoder):
        def __call__(self, features):
            features *= 0.5
            return super().__call__(features)

    plugin_and_reference(delgrad_register_encoders=lambda register: register("scaling", Scaling))
    encoder = component("encoder", "scaling", config_with_defaults({"dataset": "yin_yang", "encoder": "scaling"}), {})
    with pytest.raises(PluginError, match=r"read-only \(an encoder receives read-only features: compute on a copy\)$"):
        encoder(load_dataset("yin_yang", "test").features)


def test_an_encoder_giving_other_inputs_than_it_counts_is_named(plugin_and_reference):
    """(docs/plugins.md: spike times (n, n_inputs); one input more than n_inputs says would have
    met the network's first layer)"""
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    class Extra(_Encoder):
        def __call__(self, features):
            return np.hstack([super().__call__(features), np.zeros((len(features), 1))])

    plugin_and_reference(delgrad_register_encoders=lambda register: register("extra", Extra))
    encoder = component("encoder", "extra", config_with_defaults({"dataset": "yin_yang", "encoder": "extra"}), {})
    with pytest.raises(PluginError, match=r"^encoder 'extra' from 'delgrad-careless': returned a float64 array of "
                                          r"shape \(3, 5\) for features of shape \(3, 4\), not a float64 array of "
                                          r"shape \(3, 4\)$"):
        encoder(np.full((3, 4), 0.5))


def test_an_encoder_giving_minus_infinity_is_named_and_plus_infinity_is_silence(plugin_and_reference):
    """(docs/plugins.md: spike times, +inf for no spike; -inf is no time, as NaN is not)"""
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    class Marking(_Encoder):
        def __call__(self, features):
            times = super().__call__(features)
            times[features > 0.8] = np.inf
            times[features < 0.2] = -np.inf
            return times

    plugin_and_reference(delgrad_register_encoders=lambda register: register("marking", Marking))
    encoder = component("encoder", "marking", config_with_defaults({"dataset": "yin_yang", "encoder": "marking"}), {})
    silent = encoder(np.full((3, 4), 0.9))
    assert np.isposinf(silent).all()
    features = np.full((3, 4), 0.5)
    features[2, 1] = 0.1
    with pytest.raises(PluginError, match=r"^encoder 'marking' from 'delgrad-careless': returned spike time -inf for "
                                          r"input 1 of sample 2 \(a time, or \+inf for no spike\)$"):
        encoder(features)


@pytest.mark.parametrize("scale, refused", [(2.0, True), (1.0 + 1e-12, False)])
def test_a_plane_beyond_the_unit_square_is_refused_not_clipped(plugin, scale, refused):
    """(features of 0 to 2 were clipped to [0, 1] without a word: a wrong decision map)"""
    from delgrad_core.training._plane import plane_inputs

    plugin(delgrad_register_datasets=lambda register: register(
        "wide", _stripes("wide"), SPLITS, plane=lambda x, y: np.stack([x.ravel(), y.ravel()], 1) * scale))
    encoder = delgrad_core.LatencyEncoder()
    if refused:
        with pytest.raises(PluginError, match=r"^dataset 'wide' from 'delgrad-careless': its plane returned "
                                              r"features outside \[0, 1\] on a grid of 3 x 3, e.g. 2.0 \(features lie "
                                              r"in \[0, 1\], as a loader's do\)$"):
            plane_inputs("wide", encoder, 2, 3)
    else:
        assert plane_inputs("wide", encoder, 2, 3)[2].shape == (9, 2)


def test_splits_holding_the_same_samples_are_warned_of(plugin_and_reference):
    """(a loader ignoring its split trained and tested on the same samples without a word)"""
    from delgrad_core.training import Trainer, config_with_defaults

    load = _stripes("same")
    plugin_and_reference(delgrad_register_datasets=lambda register: register(
        "same", lambda split: Dataset("same", split, load("train").features, load("train").labels,
                                      ("left", "right")), SPLITS))
    with pytest.warns(UserWarning, match=r"^dataset 'same': the splits train and validation; train and test; "
                                         r"validation and test hold the same samples \(a loader that ignores its "
                                         r"split\?\): accuracies measured on one are those of the other$"):
        Trainer(config_with_defaults({"dataset": "same", "hidden": 2, "epochs": 1, "batch_size": 20})).close()


def test_defaults_options_for_another_encoder_are_not_given_to_the_one_the_user_chooses(plugin_and_reference):
    """(`--dataset digits --set encoder=plain` was refused: "encoder_options: encoder 'plain':
    unknown parameter(s) pairs", an option of the dataset's defaults for the latency encoder)"""
    from delgrad_core.training import config_with_defaults

    class Plain(_Encoder):
        def __init__(self, repeat=1):
            self.repeat = repeat

    plugin_and_reference(delgrad_register_encoders=lambda register: register("plain", Plain))
    assert config_with_defaults({"dataset": "digits", "encoder": "plain"}).encoder_options == {}
    assert config_with_defaults({"dataset": "digits"}).encoder_options == {"pairs": True}
    with pytest.raises(InvalidValueError, match=r"encoder_options: .*unknown parameter\(s\) pairs"):
        config_with_defaults({"dataset": "digits", "encoder": "plain", "encoder_options": {"pairs": True}})


@pytest.mark.parametrize("repeat", [5.0, "5", 0, True])
def test_an_encoder_repeat_that_is_no_positive_integer_is_refused_not_ignored(plugin_and_reference, repeat):
    """(read as "no repeat": shared_input_delays and a backend taking inputs in copies went
    unchecked against the copies the encoder makes)"""
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    class Copying(_Encoder):
        pass

    Copying.repeat = repeat
    plugin_and_reference(delgrad_register_encoders=lambda register: register("copying", Copying))
    encoder = component("encoder", "copying", config_with_defaults({"dataset": "yin_yang", "encoder": "copying"}), {})
    with pytest.raises(PluginError, match=rf"^encoder 'copying' from 'delgrad-careless': its repeat, the consecutive "
                                          rf"copies it makes of each input, is {repeat!r}, not a positive integer$"):
        encoder.copies


def test_an_encoder_with_a_repeat_method_or_none_has_no_copies_to_check(plugin_and_reference):
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    class Repeating(_Encoder):
        def repeat(self, times):
            return times

    plugin_and_reference(delgrad_register_encoders=lambda register: register("repeating", Repeating))
    config = config_with_defaults({"dataset": "yin_yang", "encoder": "repeating"})
    assert component("encoder", "repeating", config, {}).copies is None
    assert component("encoder", "latency", config_with_defaults({"dataset": "yin_yang"}), {"repeat": 3}).copies == 3


def test_an_encoders_numpy_integer_counts_are_taken_as_integers_and_a_numpy_bool_is_refused(plugin_and_reference):
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    class Counted(_Encoder):
        repeat = np.int64(2)

        def n_inputs(self, n_features):
            return np.int64(n_features) if n_features else np.True_

    plugin_and_reference(delgrad_register_encoders=lambda register: register("counted", Counted))
    encoder = component("encoder", "counted", config_with_defaults({"dataset": "yin_yang", "encoder": "counted"}), {})
    assert (encoder.copies, encoder.n_inputs(4)) == (2, 4)
    assert type(encoder.copies) is int and type(encoder.n_inputs(4)) is int
    with pytest.raises(PluginError, match=r"n_inputs\(0\) returned (np\.)?True_?, not a positive integer$"):
        encoder.n_inputs(0)
