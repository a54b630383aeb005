"""Training configuration: one validated, JSON/TOML-serialisable record of every setting.

Defaults are DelGrad's ideal-simulation Yin-Yang settings (docs/model.md §5): tau_m = 2 tau_s,
threshold 1, Adam, 300 epochs, batch 150, learning rate x0.95 every 20 epochs, shift-invariant
squared error with Delta = 0.2, and per-delay-kind learning rates and initialisation.  A backend
may register its own defaults (e.g. a chip's operating point); `config_with_defaults` applies them
under the user's settings.  Every field is checked by a declared rule that names the field and
the allowed values on failure, wrong types and NaN included.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import numbers
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np

from delgrad_core._errors import FileFormatError, InvalidValueError, PluginError
from delgrad_core._capabilities import check_weight_grid
from delgrad_core._ir import MAX_TAU_RATIO, MIN_THRESHOLD, MIN_TAU_RATIO, DelayKind
from delgrad_core._numbers import checked_number, number_wanted, shown_number
from delgrad_core._options import check_known_names, close_name_hint
from delgrad_core._propagation import GRADIENT_SLOPES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TrainingConfig", "load_config", "is_run_record", "config_with_defaults", "check_settings",
           "result_settings", "without_default_options", "option_defaults", "OPTION_TABLES", "setting_differences",
           "shown_setting", "unused_component_fields", "COMPONENT_FIELD_PREFIX", "MAX_STEP_SIZE", "LATER_SETTINGS",
           "check_adam_betas", "number_rule"]

# backend options that are secrets: never written into a run folder
_SECRET_OPTIONS = frozenset({"token", "password", "secret"})

# DelGrad's reference learning rates and weight initialisation per delay kind (docs/model.md §5);
# dendritic has no published setting, so it uses the axonal one.
# The published 5-hidden synaptic network used its own, larger rates (docs/model.md §5.4); small
# synaptic networks get them (5 seeds: median 95.8 % test accuracy against 91.3 % with the 30-hidden rates).
_SMALL_SYNAPTIC_DEFAULTS = {"weight_lr": 0.015, "delay_lr": 0.01}
_SMALL_NETWORK_HIDDEN = 5
_KIND_DEFAULTS = {
    "none": {"weight_lr": 0.02, "delay_lr": 0.0, "weight_init_mean": 0.5, "weight_init_std": 1.0},
    "axonal": {"weight_lr": 0.005, "delay_lr": 0.005, "weight_init_mean": 1.0, "weight_init_std": 1.0},
    "dendritic": {"weight_lr": 0.005, "delay_lr": 0.005, "weight_init_mean": 1.0, "weight_init_std": 1.0},
    "synaptic": {"weight_lr": 0.01, "delay_lr": 0.003, "weight_init_mean": 1.0, "weight_init_std": 1.0},
}


# -- field rules: each returns the normalised value or raises naming the field ------------------
def number_rule(low=None, high=None, *, low_open=False, high_open=False, integer=False, optional=False,
                per_layer=False):
    """A finite number (an integer if `integer`) in the given range; None if `optional`; a list
    of such numbers (one per neuron layer) if `per_layer`."""
    bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open, "integer": integer}
    wanted = number_wanted(**bounds)
    if per_layer:
        wanted += " or a list of them (one per layer)"
    if optional:
        wanted += ", or unset"

    def one(name, value):
        try:
            return checked_number(value, name, **bounds)  # (numpy numbers as Python ones: the config is JSON)
        except InvalidValueError:
            raise InvalidValueError(f"{name}: expected {wanted}, got {shown_number(value)}") from None

    def check(name, value):
        if value is None and optional:
            return None
        if per_layer and isinstance(value, (list, tuple)):
            if not value:
                raise InvalidValueError(f"{name}: expected {wanted}, got an empty list")
            return [one(name, v) for v in value]
        return one(name, value)

    return check


def _choice(allowed):
    """One of `allowed` (a tuple, or a callable giving the names registered now)."""

    def check(name, value):
        names = allowed() if callable(allowed) else allowed
        if value not in names:
            raise InvalidValueError(f"{name}: {value!r} is not allowed; choose one of {', '.join(names)}")
        return value

    return check


def _registered(kind):
    """A name registered for `kind` by an installed plugin; another is "not installed" (naming
    those that are, and where the project's own distributions have it)."""
    def check(name, value):
        from delgrad_core._plugins import not_installed, registry

        installed = registry().names(kind)
        if not isinstance(value, str) or value not in installed:
            raise InvalidValueError(not_installed(kind, value, installed, field=name))
        return value

    check.looks_up_plugins = True
    return check


def _plain_float(value) -> float:
    """`value` as a Python float, -0.0 as 0.0 (so that settings compare and hash as given)."""
    return float(value) + 0.0


_JSON_VALUE = "a string, a finite number, true/false, None, or a list or table of them (the config is JSON)"
# (option tables nest a few levels; some 500 overflowed Python's recursion here, a list holding itself at once)
_MAX_NESTING = 100


def _json_value(name, value, field=None, depth=0):
    """`value` as a plain JSON value (numpy numbers and bools as Python ones, tuples as lists,
    paths as strings); anything JSON cannot hold is refused naming `name` (or the setting
    `field` it is in, for lists and tables nested too deeply), so that no checkpoint fails on it."""
    if isinstance(value, PurePath):  # (e.g. a dataset's directory given from Python)
        value = str(value)
    if isinstance(value, str):
        return _unicode_text(name, value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):  # (numpy's integers and floats are registered as numbers)
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return _plain_float(value)
    field = field or name
    if isinstance(value, (list, tuple, dict)) and depth == _MAX_NESTING:
        raise InvalidValueError(f"{field}: lists and tables nested more than {_MAX_NESTING} levels deep")
    if isinstance(value, (list, tuple)):
        return [_json_value(f"{name}[{i}]", item, field, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {_unicode_text(f"{name} key", key): _json_value(f"{name}.{key}", item, field, depth + 1)
                for key, item in value.items()}
    raise InvalidValueError(f"{name}: expected {_JSON_VALUE}, got {value!r}")


def _unicode_text(name, text: str) -> str:
    """`text`, refused if it is not Unicode text (a lone surrogate: Python's stand-in for a byte
    of a file name that is not UTF-8), which JSON readers other than Python's refuse."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidValueError(f"{name}: {text!r} is not Unicode text (a path whose name is not UTF-8?), which the "
                                "run's JSON files cannot hold for other readers; rename it, or reach it through a "
                                "link whose name is UTF-8") from None
    return text


def _table(name, value):
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InvalidValueError(f"{name}: expected a table (dict) of settings, got {value!r}")
    return _json_value(name, value)


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidValueError(f"{name}: expected true or false, got {value!r}")
    return bool(value)  # (a numpy bool as a Python one: the config is JSON)


def _delay_kinds(name, value):
    allowed = tuple(k.value for k in DelayKind)
    kinds = value if isinstance(value, (list, tuple)) else [value]
    if not kinds or any(not isinstance(kind, str) or kind not in allowed for kind in kinds):  # (an array: ambiguous)
        raise InvalidValueError(f"{name}: {value!r} is not allowed; choose one of {', '.join(allowed)} "
                                "(or a list with one per layer)")
    return value if isinstance(value, str) else list(kinds)


def _hidden_sizes(name, value):
    """One size (an integer, also for a list of one) or a list of sizes, one per hidden layer."""
    sizes = value if isinstance(value, (list, tuple)) else [value]
    if not sizes or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in sizes):
        raise InvalidValueError(f"{name}: expected a positive integer or a list of them (one per hidden layer), "
                                f"got {value!r}")
    return int(sizes[0]) if len(sizes) == 1 else [int(v) for v in sizes]


def _rule(default, check, section: str):
    factory = {"default_factory": dict} if default == {} else {"default": default}
    return field(metadata={"check": check, "section": section}, **factory)


_RESOLVED = 1e-9  # the least delay_scale / delay_shift: the sigmoid's range in a billion parts of its delays
_FRACTION = number_rule(0, 1)
_POSITIVE = number_rule(0, low_open=True)
_NON_NEGATIVE = number_rule(0)

#: The largest learning rate and silent-neuron bump.  Adam moves a parameter by about its learning
#: rate per step, the bump adds itself to weights: in units of the threshold (1 by default) for
#: weights, of tau_s for delays.  Ten of them per step is 500 times DelGrad's largest rate and
#: leaves a small Yin-Yang network at chance level (docs/training.md); far larger values
#: overflowed the network.
MAX_STEP_SIZE = 10
_STEP_SIZE = number_rule(0, MAX_STEP_SIZE, low_open=True, optional=True)


@dataclass
class TrainingConfig:
    """Every setting of a training run.  `None` learning rates/initialisation take the
    DelGrad default for the chosen delay kind (see `resolved()`).

    Each setting is checked by its own rule and against the others, and against the dataset,
    loss, encoder and backend it names (their options; unless `_check_components` is False, for
    settings read before the components they will be used with are known, e.g. a config file
    given beside --backend).
    """

    # task and network
    dataset: str = _rule("yin_yang", _registered("dataset"), "data")
    dataset_options: dict = _rule({}, _table, "data")  # (keyword arguments of the dataset's loader)
    hidden: int | list = _rule(30, _hidden_sizes, "network")
    delays: str | list = _rule("synaptic", _delay_kinds, "network")
    tau_ratio: float = _rule(2.0, number_rule(MIN_TAU_RATIO, MAX_TAU_RATIO), "network")  # (the solver's verified range)
    threshold: float = _rule(1.0, number_rule(MIN_THRESHOLD), "network")  # (the network's range)
    encoder: str = _rule("latency", _registered("encoder"), "encoder")
    t_early: float = _rule(0.15, _NON_NEGATIVE, "encoder")
    t_late: float = _rule(2.0, _POSITIVE, "encoder")
    encoder_options: dict = _rule({}, _table, "encoder")
    # optimisation
    epochs: int = _rule(300, number_rule(1, integer=True), "optimiser")
    batch_size: int = _rule(150, number_rule(1, integer=True), "optimiser")
    seed: int = _rule(0, number_rule(0, 2**63 - 1, integer=True), "optimiser")
    weight_lr: float | None = _rule(None, _STEP_SIZE, "optimiser")
    delay_lr: float | None = _rule(None, number_rule(0, MAX_STEP_SIZE, optional=True), "optimiser")  # (0: fixed delays)
    lr_decay: float = _rule(0.95, number_rule(0, 1, low_open=True), "optimiser")
    lr_decay_every: int = _rule(20, number_rule(1, integer=True), "optimiser")
    adam_beta1: float = _rule(0.9, number_rule(0, 1, high_open=True), "optimiser")
    adam_beta2: float = _rule(0.999, number_rule(0, 1, high_open=True), "optimiser")
    adam_eps: float = _rule(1e-8, _POSITIVE, "optimiser")
    # decay per step of an exponential moving average of the parameters; the average is the
    # network that is validated, selected and kept (None: off; e.g. 0.999 averages ~1000 steps)
    parameter_average: float | None = _rule(None, number_rule(0, 1, high_open=True, optional=True), "optimiser")
    weight_init_mean: float | list | None = _rule(None, number_rule(optional=True, per_layer=True), "network")
    weight_init_std: float | list | None = _rule(None, number_rule(0, optional=True, per_layer=True), "network")
    delay_init_mean: float = _rule(0.0, number_rule(), "network")
    delay_init_std: float = _rule(0.25, _NON_NEGATIVE, "network")
    # loss (loss_<parameter> fields go to the loss's parameter of that name; loss_options to any)
    loss: str = _rule("squared", _registered("loss"), "loss")
    loss_delta: float = _rule(0.2, _NON_NEGATIVE, "loss")
    loss_xi: float = _rule(0.2, _POSITIVE, "loss")
    loss_alpha: float = _rule(0.005, _NON_NEGATIVE, "loss")
    loss_beta: float = _rule(1.0, _POSITIVE, "loss")
    loss_options: dict = _rule({}, _table, "loss")
    max_weight_term: float | None = _rule(0.2, number_rule(0, low_open=True, optional=True), "heuristics")
    # where each neuron's membrane slope is taken in the backward pass: at the spike time the
    # backend gave ("observed": exact), or at the nominal neuron's own crossing ("nominal": DelGrad's
    # reference code for measured times, tau_m = tau_s only; docs/model.md §4)
    gradient_slope: str = _rule("observed", _choice(GRADIENT_SLOPES), "heuristics")
    # delay parametrisation: delay = shift + scale * sigmoid(raw), or clip(raw, 0, delay_max)
    delay_parametrisation: str = _rule("sigmoid", _choice(("sigmoid", "clip")), "network")
    delay_shift: float = _rule(0.0, _NON_NEGATIVE, "network")
    delay_scale: float = _rule(1.0, _POSITIVE, "network")
    delay_max: float | None = _rule(None, number_rule(0, low_open=True, optional=True), "network")
    # consecutive input lines that share one axonal delay of the first layer: the copies of an
    # input the encoder repeats, as on BrainScaleS-2, whose delay elements serve all copies of an
    # input (1: each line its own delay)
    shared_input_delays: int = _rule(1, number_rule(1, integer=True), "network")
    # the config's own weight constraints (None: only the backend's); float shadow weights
    weight_limit: float | None = _rule(None, number_rule(0, low_open=True, optional=True), "network")
    # (finer steps than 1e-12 serve no substrate, and weights divided by a denormal step overflow)
    weight_resolution: float | None = _rule(None, number_rule(1e-12, optional=True), "network")
    # silent-neuron handling: skip the step and bump input weights of silent neurons when the
    # silent fraction of a layer exceeds its limit (hidden layers, output layer)
    silent_limit_hidden: float = _rule(0.3, _FRACTION, "heuristics")
    silent_limit_output: float = _rule(0.0, _FRACTION, "heuristics")
    silent_bump: float | None = _rule(0.0005, _STEP_SIZE, "heuristics")
    # per-neuron revival: a hidden neuron silent in more than this fraction of a batch's samples
    # gets silent_bump added to its input weights, without skipping the step (None: off)
    silent_neuron_limit: float | None = _rule(None, number_rule(0, 1, optional=True), "heuristics")
    # model selection: keep the epoch with the best validation accuracy as the trained network
    keep_best: bool = _rule(True, _flag, "heuristics")
    # execution
    backend: str = _rule("reference", _registered("backend"), "backend")
    backend_options: dict = _rule({}, _table, "backend")
    # samples per job when a split is evaluated (validation, test); on a noisy backend every job
    # draws its own noise (None: the backend's max_batch_size, else EVALUATION_CHUNK; on an exact,
    # noise-free backend smaller jobs for large networks, see output_spike_times)
    evaluation_batch_size: int | None = _rule(None, number_rule(1, integer=True, optional=True), "backend")
    _check_components: dataclasses.InitVar[bool] = True

    def __post_init__(self, _check_components: bool):
        for spec in dataclasses.fields(self):
            setattr(self, spec.name, spec.metadata["check"](spec.name, getattr(self, spec.name)))
        check_weight_grid(self.weight_limit, self.weight_resolution)
        if not self.t_late > self.t_early:
            raise InvalidValueError(f"t_late: must be greater than t_early ({self.t_early}), got {self.t_late}")
        check_adam_betas(self.adam_beta1, self.adam_beta2, "adam_beta1", "adam_beta2")
        if self.delay_parametrisation == "sigmoid" and not self.delay_scale >= _RESOLVED * self.delay_shift:
            # (delay_shift=1e16: every delay the same double, nothing for the delays to learn)
            raise InvalidValueError(f"delay_scale: the delays delay_shift + delay_scale * sigmoid(p) must vary by "
                                    f"at least {_RESOLVED:g} of delay_shift ({self.delay_shift!r}) to be trained, got "
                                    f"{self.delay_scale!r}")
        if self.delay_max is not None and self.delay_parametrisation != "clip":  # (it was taken and ignored)
            raise InvalidValueError(f"delay_max: bounds delays only with delay_parametrisation = 'clip'; with "
                                    f"{self.delay_parametrisation!r} they lie between delay_shift and delay_shift + "
                                    f"delay_scale ({self.delay_shift:g} and {self.delay_shift + self.delay_scale:g})")
        if self.delay_max is not None and self.delay_max <= self.delay_shift:  # (every delay was clipped to it)
            raise InvalidValueError(f"delay_max: the clipped delays start between delay_shift and delay_shift + "
                                    f"delay_scale ({self.delay_shift!r} and {self.delay_shift + self.delay_scale!r}), "
                                    f"so all would start at delay_max; set it above delay_shift, got "
                                    f"{self.delay_max!r}")
        if isinstance(self.delays, list) and len(self.delays) != len(self.hidden_sizes) + 1:
            raise InvalidValueError(f"delays: a list needs one kind per neuron layer ({len(self.hidden_sizes) + 1}), "
                                    f"got {len(self.delays)}")
        secrets = sorted(_SECRET_OPTIONS & set(self.backend_options))
        if secrets:
            raise InvalidValueError(f"backend_options.{secrets[0]}: a run keeps its settings in plain text "
                                    f"(metrics.json); give the backend a file holding it instead (e.g. "
                                    f"{secrets[0]}_file=PATH) or its environment variable")
        for name in ("weight_init_mean", "weight_init_std"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != len(self.hidden_sizes) + 1:
                raise InvalidValueError(f"{name}: a list needs one value per neuron layer "
                                        f"({len(self.hidden_sizes) + 1}), got {len(value)}")
        if _check_components:  # (the whole config: a backend's defaults may set tau_ratio = 1, not the file)
            if self.gradient_slope == "nominal" and self.tau_ratio != 1.0:
                raise InvalidValueError(f"gradient_slope: 'nominal' needs tau_ratio = 1 (the closed form of DelGrad's "
                                        f"reference code), got tau_ratio {self.tau_ratio!r}")
            from delgrad_core.training._components import check_components  # (that module imports this one)

            check_components(self)

    @property
    def hidden_sizes(self) -> list[int]:
        """Hidden layer sizes as a list."""
        return [self.hidden] if isinstance(self.hidden, int) else list(self.hidden)

    @property
    def delay_kinds(self) -> list[str]:
        """The delay kind of every neuron layer."""
        if isinstance(self.delays, list):
            return list(self.delays)
        return [self.delays] * (len(self.hidden_sizes) + 1)

    def resolved(self) -> "TrainingConfig":
        """A copy with the per-delay-kind defaults filled in (for mixed kinds: those of the
        first layer with delays; synaptic networks of at most 5 hidden neurons take the rates of
        the published 5-hidden network)."""
        # (a copy first: it checks fields changed after construction before they are used here)
        config = dataclasses.replace(self, _check_components=False)
        defaults = {**_KIND_DEFAULTS[config._first_delay_kind()], **config.small_network_rates()}
        updates = {name: value for name, value in defaults.items() if getattr(config, name) is None}
        # (learning rates and initialisation reach no component: those were checked with `self`)
        return dataclasses.replace(config, **updates, _check_components=False)

    def small_network_rates(self) -> dict:
        """The learning rates left unset that `resolved` takes from DelGrad's 5-hidden synaptic
        network (docs/model.md §5.4) rather than the delay kind's: those of a synaptic network of
        at most 5 hidden neurons in all; {} for any other network."""
        if self._first_delay_kind() != "synaptic" or sum(self.hidden_sizes) > _SMALL_NETWORK_HIDDEN:
            return {}
        return {name: rate for name, rate in _SMALL_SYNAPTIC_DEFAULTS.items() if getattr(self, name) is None}

    def _first_delay_kind(self) -> str:
        """The delay kind of the first layer with delays ("none" without)."""
        return next((kind for kind in self.delay_kinds if kind != "none"), "none")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict, *, check_components: bool = True) -> "TrainingConfig":
        return cls(**check_known_names(values, [f.name for f in dataclasses.fields(cls)], "config"),
                   _check_components=check_components)


#: Settings added after runs were recorded, with the value every earlier run trained with: a
#: run's stored settings without one mean that value (not a default a backend registers now),
#: and a sweep leaves one at that value out of a trial's identity (its earlier trials keep their ids).
LATER_SETTINGS = {"dataset_options": {}, "gradient_slope": "observed", "shared_input_delays": 1}


def check_adam_betas(beta1: float, beta2: float, name1: str, name2: str) -> None:
    """Adam's step is bounded (by (1 - beta1) / sqrt((1 - beta2) (1 - beta1^2 / beta2)) times
    its learning rate, docs/training.md) only where beta1^2 < beta2 (or beta1 = 0: at most
    1 / sqrt(1 - beta2) times)."""
    if beta1 > 0 and not beta1 * beta1 < beta2:
        raise InvalidValueError(f"{name1}: its square must be below {name2} ({beta2!r}), or Adam's steps have no "
                                f"bound (they can grow to thousands of learning rates), got {beta1!r}")


def check_settings(values: dict, what: str) -> dict:
    """Check the names and each value's own rule of settings given while plugins are still being
    loaded (a backend's training defaults): names of registered things and rules across fields
    are checked later, when a `TrainingConfig` is built from them."""
    rules = {spec.name: spec.metadata["check"] for spec in dataclasses.fields(TrainingConfig)}
    check_known_names(values, rules, what)
    return {name: value if getattr(rules[name], "looks_up_plugins", False) else rules[name](f"{what}.{name}", value)
            for name, value in values.items()}


def config_with_defaults(values: dict, *, merge_options: bool = True) -> TrainingConfig:
    """The config of `values` on top of the training defaults registered by the dataset they
    name (e.g. an encoding that suits it) and, above those, by the backend they name (e.g. a
    chip's operating point; for a backend that registers a function, what it returns for the
    backend options of `values`); the user's values win.  Option tables are merged with the
    defaults' unless `merge_options` is False (for the stored settings of a run: they are final)."""
    from delgrad_core._plugins import registry

    if not isinstance(values, dict):
        complete = " (a TrainingConfig is complete: every setting it does not set holds its class default, which "\
            "would win over the defaults; give a dict of only the settings you choose)" \
            if isinstance(values, TrainingConfig) else ""
        raise InvalidValueError(f"config_with_defaults: expected a table of the settings you choose (a dict), got "
                                f"{type(values).__name__}{complete}")
    plugins = registry()
    dataset = values.get("dataset", TrainingConfig.dataset)
    defaults, chosen_by = {}, {}
    if isinstance(dataset, str) and dataset in plugins.names("dataset"):
        defaults.update(plugins.get("dataset", dataset).details.get("training_defaults") or {})
        chosen_by = dict.fromkeys(defaults, plugins.get("dataset", dataset))
    backend = values.get("backend", TrainingConfig.backend)
    if isinstance(backend, str) and backend in plugins.names("backend"):
        backend_defaults = plugins.get("backend", backend).details.get("training_defaults") or {}
        if callable(backend_defaults):  # defaults that depend on the backend options (e.g. the device of mock-hil)
            options = values.get("backend_options") if isinstance(values.get("backend_options"), dict) else {}
            backend_defaults = _called_defaults(plugins.get("backend", backend), backend_defaults, dict(options))
        _check_layer_count(backend, backend_defaults, values, plugins.get("backend", backend).details)
        defaults = {**defaults, **backend_defaults, **_merged_options(defaults, backend_defaults)}
        chosen_by.update(dict.fromkeys(backend_defaults, plugins.get("backend", backend)))
    _refuse_uninstalled_default_components(defaults, values, chosen_by, plugins)
    defaults = _without_unused_component_defaults(defaults, values, plugins)
    merged = _merged_options(defaults, values) if merge_options else {}
    return TrainingConfig.from_dict({**defaults, **values, **merged})


def _refuse_uninstalled_default_components(defaults: dict, values: dict, chosen_by: dict, plugins) -> None:
    """Refuse a loss or encoder that is not installed, chosen by the training defaults of the
    registration `chosen_by` names for it (not by `values`), saying so: the refusal read as if
    the user had named it."""
    from delgrad_core._plugins import not_installed

    for kind in COMPONENT_FIELD_PREFIX:
        name = defaults.get(kind)
        if kind not in values and isinstance(name, str) and name not in plugins.names(kind):
            registration = chosen_by[kind]
            raise InvalidValueError(not_installed(kind, name, field=(
                f"{kind} (chosen by the training defaults of {registration.kind} {registration.name!r} from "
                f"{registration.distribution!r}; {kind} = NAME chooses another)")))


#: The prefix of the settings a component's parameters are taken from (``loss_delta`` -> ``delta``).
COMPONENT_FIELD_PREFIX = {"loss": "loss_", "encoder": ""}


def unused_component_fields(kind: str, factory) -> list[str]:
    """The settings of the `kind` ("loss" or "encoder") section, e.g. ``loss_xi``, that the
    component `factory` has no named parameter for (a factory's ``**options`` gets the table
    ``loss_options`` or ``encoder_options``, never the settings)."""
    parameters = {name for name, p in inspect.signature(factory).parameters.items()
                  if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    prefix = COMPONENT_FIELD_PREFIX[kind]
    return [name for name in _sections()[kind]
            if name not in (kind, f"{kind}_options") and name[len(prefix):] not in parameters]


def _without_unused_component_defaults(defaults: dict, values: dict, plugins) -> dict:
    """`defaults` without the loss and encoder settings the chosen loss or encoder has no
    parameter for (a chip's ``loss_delta`` when the user chooses the cross-entropy loss): they
    would be recorded as used, and are not.  Where the user chooses another loss or encoder than
    the defaults', their options table keeps only what it takes (a dataset's ``pairs`` for the
    latency encoder was blamed on the user's ``encoder_options``)."""
    kept = dict(defaults)
    for kind in COMPONENT_FIELD_PREFIX:
        chosen = values.get(kind, defaults.get(kind, getattr(TrainingConfig, kind)))
        if not (isinstance(chosen, str) and chosen in plugins.names(kind)):
            continue  # (refused where the config is checked)
        factory = plugins.get(kind, chosen).obj
        for name in unused_component_fields(kind, factory):
            kept.pop(name, None)
        options = kept.get(f"{kind}_options")
        if chosen != defaults.get(kind, getattr(TrainingConfig, kind)) and isinstance(options, dict):
            parameters = inspect.signature(factory).parameters
            if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                kept[f"{kind}_options"] = {name: value for name, value in options.items() if name in parameters}
    return kept


def _called_defaults(registration, defaults, options: dict) -> dict:
    """The training settings a backend's `training_defaults(options)` returns, checked; what it
    returns that is not a table of valid settings is a `PluginError` naming the backend (the
    user never gave those settings)."""
    from delgrad_core._plugins import call_plugin

    what = f"backend {registration.name!r} from {registration.distribution!r}: its training_defaults(options)"
    settings = call_plugin(registration, "backend", lambda: defaults(options), "its training_defaults(options)",
                           arguments_checked=True)
    if not isinstance(settings, dict):
        raise PluginError(f"{what} returned {type(settings).__name__}, not a table of settings")
    from delgrad_core._plugins import refused_default

    try:
        settings = check_settings(settings, f"backend {registration.name!r}: training_defaults")
    except InvalidValueError as exc:
        raise PluginError(f"{what} returned a setting it may not: {exc}") from None
    refused = refused_default(registration.details.get("capabilities"), settings)
    if refused:  # (the user, who asked for none of it, would be told the backend cannot run it)
        raise PluginError(f"{what} returned a setting its own capabilities refuse: {refused}")
    return settings


def result_settings(settings: dict, neutral_options) -> dict:
    """`settings` without the backend options in `neutral_options`, those its backend declares
    as not changing results (`Backend.result_neutral_options`: a thread count, a client's
    timeouts or token file), for comparing runs by what their results depend on."""
    options = settings.get("backend_options")
    if not isinstance(options, dict):
        return settings
    return {**settings, "backend_options": {k: v for k, v in options.items() if k not in neutral_options}}


#: The settings naming a component whose keyword options are the table ``<name>_options``.
OPTION_TABLES = ("backend", "dataset", "encoder", "loss")
#: {(kind, name): (the factory registered, its `option_defaults`)} as last read.
_OPTION_DEFAULTS: dict = {}


def without_default_options(settings: dict) -> dict:
    """`settings` without the options of their backend, dataset, encoder and loss given at the
    value the component's factory takes when they are left out (`option_defaults`), for comparing
    runs: ``chip = 0`` where 0 is the factory's default is the same as no ``chip``.  Others stay
    as given, e.g. those a factory takes as ``**options``."""
    kept = dict(settings)
    for kind in OPTION_TABLES:
        options = settings.get(f"{kind}_options")
        if isinstance(options, dict) and options:
            defaults = option_defaults(kind, settings.get(kind))
            kept[f"{kind}_options"] = {name: value for name, value in options.items()
                                       if name not in defaults or json.dumps(value) != defaults[name]}
    return kept


def option_defaults(kind: str, name) -> dict:
    """{option: its default as JSON text} of the factory registered as `name` of `kind`, for the
    keyword parameters whose default is None, a string, true/false or a finite number (compared
    as JSON: 1 is neither true nor 1.0); {} for a name not registered."""
    from delgrad_core._plugins import factory_defaults, registry

    if not isinstance(name, str) or name not in registry().names(kind):
        return {}
    factory = registry().get(kind, name).obj
    known = _OPTION_DEFAULTS.get((kind, name))
    if known is not None and known[0] is factory:  # (a sweep compares every finished trial's settings)
        return known[1]
    defaults = {}
    for option, default in factory_defaults(kind, name).items():
        if default is None or isinstance(default, (str, bool, np.bool_, numbers.Real)):
            with contextlib.suppress(InvalidValueError):  # (NaN or inf: no JSON value, never given)
                defaults[option] = json.dumps(_json_value(option, default))
    _OPTION_DEFAULTS[kind, name] = (factory, defaults)
    return defaults


def setting_differences(old: dict, new: dict, *, ignore=()) -> dict:
    """{name: (value in `old`, value in `new`)} of the settings that differ, by name (a setting
    one side lacks counts as None there); the names in `ignore` are left out."""
    return {name: (old.get(name), new.get(name)) for name in sorted(set(old) | set(new))
            if name not in ignore and old.get(name) != new.get(name)}


def shown_setting(value) -> str:
    """A setting as JSON, shortened for a one-line message."""
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _merged_options(defaults: dict, values: dict) -> dict:
    """Option tables of `values` on top of the defaults' for the same component (a dataset's
    encoder option survives a further option given for that encoder, by the user or a backend;
    dataset options always: the defaults are those of the dataset the values name)."""
    merged = {}
    for section in ("dataset", "encoder", "loss"):
        key, default_name = f"{section}_options", defaults.get(section, getattr(TrainingConfig, section))
        same_component = section == "dataset" or values.get(section, default_name) == default_name
        if isinstance(defaults.get(key), dict) and isinstance(values.get(key), dict) and same_component:
            merged[key] = {**defaults[key], **values[key]}
    return merged


def _check_layer_count(backend: str, backend_defaults: dict, values: dict, details: dict) -> None:
    """Refuse a layer count that the backend's per-layer defaults do not fit, saying so (rather
    than letting the check of a setting the user never gave speak)."""
    hidden = values.get("hidden", TrainingConfig.hidden)
    if isinstance(hidden, (bool, np.bool_)) or not isinstance(hidden, (int, np.integer, list, tuple)):
        return
    n_layers = 2 if isinstance(hidden, (int, np.integer)) else len(hidden) + 1
    for name in ("weight_init_mean", "weight_init_std"):
        default = backend_defaults.get(name)
        if name in values or not isinstance(default, list) or len(default) == n_layers:
            continue
        capabilities = details.get("capabilities")
        limit = getattr(capabilities, "max_layers", None)
        if limit is not None and n_layers > limit:
            raise InvalidValueError(f"hidden: backend {backend!r} runs at most {limit} neuron layers "
                                    f"({limit - 1} hidden), got {n_layers} ({n_layers - 1} hidden)")
        raise InvalidValueError(f"hidden: backend {backend!r}'s default {name} is for {len(default)} neuron layers, "
                                f"got {n_layers}; give {name} (one value per neuron layer) for this network")


def _field_names() -> list[str]:
    return [spec.name for spec in dataclasses.fields(TrainingConfig)]


def _sections() -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    for spec in dataclasses.fields(TrainingConfig):
        sections.setdefault(spec.metadata["section"], []).append(spec.name)
    return sections


def _flatten_section(section: str, table: dict, where: str) -> dict:
    """Settings of one [section] table as config fields.  In [loss], [encoder] and [backend],
    ``name`` is the registered name, ``<parameter>`` a field ``loss_<parameter>`` if one exists,
    and anything else goes to the section's options table."""
    if not isinstance(table, dict):
        raise InvalidValueError(f"{where}: {section} is a section: [{section}] must be a table of its settings, got "
                                f"{table!r}; allowed in it: {', '.join(_sections()[section])}")
    fields = _sections()[section]
    values, options, given_as = {}, {}, {}
    for given, value in table.items():
        key = given.replace("-", "_")
        if key == "name" and section in ("loss", "encoder", "backend"):
            field, target = section, values
        elif key in fields:
            field, target = key, values
        elif f"{section}_{key}" in fields and not key.endswith("options"):
            field, target = f"{section}_{key}", values
        elif section in ("loss", "encoder", "backend"):
            field, target = key, options
        else:
            raise InvalidValueError(f"{where}: unknown setting {key!r} in [{section}]{close_name_hint(key, fields)}; "
                                    f"allowed: {', '.join(fields)}")
        if (target is values, field) in given_as:  # (e.g. name and backend, delta and loss_delta, t-early and t_early)
            raise InvalidValueError(f"{where}: [{section}] sets {field} twice ({given_as[target is values, field]!r} "
                                    f"and {given!r}); give it once")
        given_as[target is values, field] = given
        target[field] = value
    if options:
        table = values.get(f"{section}_options", {})
        twice = sorted(set(options) & set(table)) if isinstance(table, dict) else []
        if twice:
            raise InvalidValueError(f"{where}: [{section}] gives {', '.join(twice)} twice (alone and in "
                                    f"{section}_options); give each once")
        values[f"{section}_options"] = {**table, **options}
    return values


def load_config(path: str | Path) -> dict:
    """Read a TOML file of settings: flat keys (top level, or all in one [train] table), or
    sectioned tables [data], [network], [encoder], [optimiser], [loss], [heuristics], [backend]
    (docs/training.md); or a run's metrics.json, whose settings are those the run trained with.
    Every setting is checked; errors name the file and the setting."""
    if not isinstance(path, (str, os.PathLike)):  # (an integer is a file descriptor: 0 read stdin, and closed it)
        raise InvalidValueError(f"load_config: path: expected the path of a TOML file (a str or Path), got "
                                f"{type(path).__name__}")
    if os.path.exists(path) and not (os.path.isfile(path) or os.path.isdir(path)):  # (a FIFO is read for ever)
        raise InvalidValueError(f"{path}: cannot read the settings file (not a regular file: a FIFO, device or socket)")
    try:
        with open(path, "rb") as handle:
            text = handle.read()
        text = text.decode("utf-8-sig")  # (editors on Windows may start the file with a BOM)
        if _is_json(text):
            return _checked(_run_config(text, path), path)
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FileFormatError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise FileFormatError(f"{path}: not valid TOML (not UTF-8 text)") from None
    except RecursionError:
        raise FileFormatError(f"{path}: not valid TOML (nested too deeply to read)") from None
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:  # (the path given is wrong)
        raise InvalidValueError(f"{path}: cannot read the settings file ({exc.strerror or exc})") from None
    if "train" in values:
        if not isinstance(values["train"], dict):
            raise InvalidValueError(f"{path}: [train] must be a table")
        if len(values) > 1:
            others = sorted(key for key in values if key != "train")
            raise InvalidValueError(f"{path}: settings outside the [train] table would be ignored: "
                                    f"{', '.join(others)}; put every setting in [train] or none")
        values = values["train"]
    flat = {}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key in _sections() and (isinstance(value, dict) or key not in _field_names()):  # a [section], not a setting
            section_values = _flatten_section(key, value, str(path))
        elif isinstance(value, dict) and key not in _field_names():
            raise InvalidValueError(f"{path}: {key} is neither a setting nor a section"
                                    f"{close_name_hint(key, [*_sections(), *_field_names()])}; the sections: "
                                    f"{', '.join(_sections())} (docs/training.md)")
        else:
            section_values = {key: value}
        twice = sorted(set(section_values) & set(flat))
        if twice:
            raise InvalidValueError(f"{path}: {', '.join(twice)} set twice")
        flat.update(section_values)
    return _checked(flat, path)


def _checked(settings: dict, path) -> dict:
    """`settings` read from the file `path`, once each is checked (the components it names are
    checked with the settings given beside the file, e.g. --backend); errors name the file."""
    try:
        TrainingConfig.from_dict(settings, check_components=False)
    except InvalidValueError as exc:
        raise InvalidValueError(f"{path}: {exc}") from None
    return settings


def _is_json(text: str) -> bool:
    """Whether a settings file's `text` is JSON (a run's metrics.json): no TOML document starts
    with "{"."""
    return text.lstrip("\ufeff \t\r\n").startswith("{")


def is_run_record(path) -> bool:
    """Whether the settings file `path` (one `load_config` reads) is a run's metrics.json, which
    holds every setting of the run, its defaults too."""
    with open(path, "rb") as handle:
        return _is_json(handle.read(4096).decode("utf-8", errors="replace"))


def _run_config(text: str, path) -> dict:
    """The settings a run trained with: the "config" table of its metrics.json (docs/training.md)."""
    try:
        values = json.loads(text)
    except ValueError as exc:
        raise FileFormatError(f"{path}: neither TOML nor a run's metrics.json (not valid JSON: {exc})") from None
    config = values.get("config") if isinstance(values, dict) else None
    if not isinstance(config, dict):
        raise FileFormatError(f"{path}: a JSON file but not a run's metrics.json (it has no \"config\" table of "
                              "settings); settings files are TOML (docs/training.md)")
    return config
