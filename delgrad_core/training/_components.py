"""Losses and encoders of a run, built from the registry with the config's settings."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import warnings
from dataclasses import dataclass

import numpy as np

from delgrad_core._errors import InvalidValueError, PluginError, UnknownOptionError
from delgrad_core._options import closest_name, shown_names
from delgrad_core._plugins import Registration, build_registered, call_plugin, check_parameter_names, registry
from delgrad_core.datasets._registry import check_dataset_options
from delgrad_core.training._config import COMPONENT_FIELD_PREFIX, TrainingConfig, unused_component_fields

__all__ = ["component", "check_components"]

_FIELD_DEFAULTS = {spec.name: spec.default for spec in dataclasses.fields(TrainingConfig)
                   if spec.default is not dataclasses.MISSING}


def _read_only_view(values) -> np.ndarray:
    view = np.asarray(values).view()
    view.flags.writeable = False
    return view


_GRADIENT_TOLERANCE = 0.1  # relative difference of a loss's gradient to its finite differences that is warned of


def _called(registration: Registration, call, what: str, inputs: str):
    """`call_plugin` of the loss's or encoder's `call`, whose read-only `inputs` (in words) it
    is told to copy if it fails writing into them."""
    try:
        return call_plugin(registration, registration.kind, call, what, arguments_checked=True)
    except PluginError as exc:
        if not isinstance(exc.__cause__, ValueError) or "read-only" not in str(exc.__cause__):
            raise
        kind = registration.kind
        raise PluginError(f"{exc} ({'an' if kind == 'encoder' else 'a'} {kind} receives read-only {inputs}: compute "
                          "on a copy)") from exc.__cause__


@dataclass(frozen=True)
class _CheckedLoss:
    """A registered loss whose answers are checked: a plugin's failure or a result that is not
    a `LossResult` of the batch's shapes is a `PluginError` naming the loss."""

    loss: object
    registration: Registration
    gradient_checked: bool = dataclasses.field(default=False, compare=False)

    def __call__(self, output_times, labels):
        # (read-only views: training goes on with these very spike times; a loss changing them
        # in place would change the accuracy, the silence heuristics and the backward pass)
        output_times, labels = _read_only_view(output_times), _read_only_view(labels)
        result = _called(self.registration, lambda: self.loss(output_times, labels), "evaluating it",
                         "spike times and labels")
        batch, n_outputs = np.shape(output_times)
        if not (hasattr(result, "per_sample") and hasattr(result, "gradient")):
            raise PluginError(f"loss {self.registration.name!r} from {self.registration.distribution!r}: returned "
                              f"{type(result).__name__}, not a LossResult (per_sample of shape {(batch,)}, gradient "
                              f"of shape {(batch, n_outputs)})")
        for name, shape in (("per_sample", (batch,)), ("gradient", (batch, n_outputs))):
            values = getattr(result, name)
            if not (isinstance(values, np.ndarray) and values.shape == shape):
                got = f"shape {values.shape}" if isinstance(values, np.ndarray) else type(values).__name__
                raise PluginError(f"loss {self.registration.name!r} from {self.registration.distribution!r}: returned "
                                  f"{type(result).__name__} whose {name} is {got}, expected an array of shape "
                                  f"{shape} (a LossResult for {batch} samples of {n_outputs} outputs)")
            if values.dtype.kind not in "iuf":  # (strings failed in isfinite; complex met the core's own check)
                raise PluginError(f"loss {self.registration.name!r} from {self.registration.distribution!r}: its "
                                  f"{name} is an array of dtype {values.dtype}, expected real numbers")
            if not np.all(np.isfinite(values)):
                raise PluginError(f"loss {self.registration.name!r} from {self.registration.distribution!r}: its "
                                  f"{name} contains NaN or inf (a silent output neuron must give a finite loss "
                                  "without gradient)")
        if not self.gradient_checked:
            self._check_gradient(np.array(output_times, dtype=np.float64), labels, result)
        return result

    def _check_gradient(self, times: np.ndarray, labels: np.ndarray, result) -> None:
        """Once, on a batch with spike times: warn where `result.gradient` is not the derivative
        of the batch mean of `result.per_sample` (central finite differences, a whole output
        column of the batch at a time: a sample's loss depends on its own times only), as with a
        flipped sign or a gradient not divided by the batch size; training follows the gradient."""
        spiking = np.isfinite(times)
        if not spiking.any():
            return
        object.__setattr__(self, "gradient_checked", True)
        step = 1e-6 * max(1.0, float(np.abs(times[spiking]).max()))
        differences = np.zeros_like(times)
        try:
            for k in range(times.shape[1]):
                shifted = [times.copy(), times.copy()]
                shifted[0][spiking[:, k], k] += step
                shifted[1][spiking[:, k], k] -= step
                plus, minus = (np.asarray(self.loss(_read_only_view(t), labels).per_sample, dtype=np.float64)
                               for t in shifted)
                differences[:, k] = (plus - minus) / (2 * step * len(times))
        except Exception:  # (a loss that fails on shifted times: the training's own calls will say so)
            return
        gradient, differences = result.gradient[spiking], differences[spiking]
        scale = max(np.linalg.norm(gradient), np.linalg.norm(differences))
        if not np.isfinite(differences).all() or scale == 0:
            return
        error = np.linalg.norm(gradient - differences) / scale
        if error > _GRADIENT_TOLERANCE:
            warnings.warn(f"loss {self.registration.name!r} from {self.registration.distribution!r}: its gradient is "
                          "not the derivative of the batch mean of its per_sample losses (relative difference "
                          f"{error:.2g} to finite differences on a batch of {len(times)}); training follows the "
                          "gradient: check its sign and that it is divided by the batch size", UserWarning,
                          stacklevel=4)


@dataclass(frozen=True)
class _CheckedEncoder:
    """A registered encoder whose answers are checked: a plugin's failure, an input count that
    is not a positive integer or spike times that are not a float64 array of shape
    (samples, inputs) are a `PluginError` naming the encoder."""

    encoder: object
    registration: Registration

    def _refused(self, what: str) -> PluginError:
        return PluginError(f"encoder {self.registration.name!r} from {self.registration.distribution!r}: {what}")

    @property
    def copies(self) -> int | None:
        """Consecutive copies the encoder makes of each input (its `repeat`), None if it has no
        such setting (or a method of that name); any other `repeat` than a positive integer is
        refused (ignored, the copies went unchecked)."""
        copies = getattr(self.encoder, "repeat", None)
        if copies is None or callable(copies):
            return None
        if isinstance(copies, (bool, np.bool_)) or not isinstance(copies, (int, np.integer)) or copies < 1:
            raise self._refused(f"its repeat, the consecutive copies it makes of each input, is {copies!r}, not a "
                                "positive integer")
        return int(copies)

    def n_inputs(self, n_features: int) -> int:
        count = call_plugin(self.registration, "encoder", lambda: self.encoder.n_inputs(n_features),
                            "counting its inputs (n_inputs)", arguments_checked=True)
        if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)) or count < 1:
            raise self._refused(f"n_inputs({n_features}) returned {count!r}, not a positive integer")
        return int(count)

    def __call__(self, features):
        times = _called(self.registration, lambda: self.encoder(features), "encoding features", "features")
        expected = (len(features), self.n_inputs(np.shape(features)[1]))
        if not (isinstance(times, np.ndarray) and times.dtype == np.float64 and times.shape == expected):
            shown = f"{times.dtype} array of shape {times.shape}" if isinstance(times, np.ndarray) else \
                type(times).__name__
            raise self._refused(f"returned a {shown} for features of shape {np.shape(features)}, not a float64 "
                                f"array of shape {expected}")
        if not (times > -np.inf).all():  # (x > -inf is False exactly for NaN and -inf; silence is +inf)
            sample, line = np.argwhere(~(times > -np.inf))[0]
            raise self._refused(f"returned spike time {float(times[sample, line])!r} for input {line} of sample "
                                f"{sample} (a time, or +inf for no spike)")
        return times


def component(kind: str, name: str, config: TrainingConfig, options: dict):
    """The registered `kind` `name`, built from the config fields named after its parameters
    (``loss_delta`` -> ``delta`` for losses, ``t_early`` for encoders) plus `options`.  A field
    left at its declared default is not passed: the component's own default holds (the core's
    components have the fields' defaults; a plugin's may differ), or, for a parameter without one,
    the field's default is its value."""
    factory = registry().get(kind, name).obj
    prefix = COMPONENT_FIELD_PREFIX[kind]
    values = config.to_dict()
    every_parameter = inspect.signature(factory).parameters
    # (named ones only: a factory's **options is not the setting loss_options)
    signature = {p: spec for p, spec in every_parameter.items() if spec.kind not in (spec.VAR_POSITIONAL,
                                                                                       spec.VAR_KEYWORD)}
    parameters = {p: values[prefix + p] for p, spec in signature.items() if values.get(prefix + p) is not None and (
        values[prefix + p] != _FIELD_DEFAULTS.get(prefix + p) or spec.default is inspect.Parameter.empty)}
    for p, spec in signature.items():  # a field at its default, a component with another default: say which holds
        field = prefix + p
        if field in _FIELD_DEFAULTS and p not in parameters and p not in options \
                and spec.default is not inspect.Parameter.empty and spec.default != _FIELD_DEFAULTS[field]:
            warnings.warn(f"{kind} {name!r}: its own default {p} = {spec.default!r} holds, not {field} = "
                          f"{_FIELD_DEFAULTS[field]!r} (the setting's default); to choose, set {field} or "
                          f"{kind}_options.{p}", UserWarning, stacklevel=2)
    _warn_unused_fields(kind, name, values, factory)
    if not any(p.kind is p.VAR_KEYWORD for p in every_parameter.values()):
        misplaced = sorted(set(options) & set(_FIELD_DEFAULTS) - set(signature))
        if misplaced:
            raise InvalidValueError(f"{kind}_options: {kind} {name!r} has no parameter {misplaced[0]}; {misplaced[0]} "
                                    f"is a training setting of its own (in a config file: in its own section, not "
                                    f"[{kind}])")
        _refuse_unknown_options(kind, name, sorted(set(options) - set(signature), key=str), signature)
    served = sorted(p for p in set(options) & set(signature) if prefix + p in _FIELD_DEFAULTS
                    and not _chooses_field_default(p, options[p], parameters, signature[p].default, prefix))
    if served:  # one place per value: the field (which metrics.json records as used)
        raise InvalidValueError(f"{kind}_options: set {', '.join(prefix + p for p in served)} instead of the "
                                f"option {', '.join(served)} ({kind} {name!r} takes it from that setting)")
    built = build_registered(kind, name, {**parameters, **options})
    checked = {"loss": _CheckedLoss, "encoder": _CheckedEncoder}.get(kind)
    return checked(built, registry().get(kind, name)) if checked else built


def _refuse_unknown_options(kind: str, name: str, unknown: list, signature: dict) -> None:
    """Refuse (`UnknownOptionError`) `kind`_options the component has no parameter for; the
    allowed ones are those no setting of its own serves (``loss_delta`` serves ``delta``), and a
    misspelt one of those is pointed to its setting."""
    if not unknown:
        return
    prefix = COMPONENT_FIELD_PREFIX[kind]
    served = {p: prefix + p for p in signature if prefix + p in _FIELD_DEFAULTS}
    own = [p for p in signature if p not in served]
    close = closest_name(str(unknown[0]), signature)
    hint = "" if not close else f" (did you mean {close}?)" if close not in served else \
        f" (did you mean {close}? It is the setting {served[close]})"
    settings = f"; settings of their own: {', '.join(served.values())}" if served else ""
    raise UnknownOptionError(f"{kind}_options: {kind} {name!r}: unknown parameter(s) {shown_names(unknown)}{hint}; "
                             f"allowed: {', '.join(own) or '(none)'}{settings}", names=unknown)


def _chooses_field_default(parameter: str, value, parameters: dict, own_default, prefix: str) -> bool:
    """Whether an option gives `parameter` its field's default, which a field left at its default
    does not pass, over the component's other `own_default` (the one use of such an option)."""
    field_default = _FIELD_DEFAULTS[prefix + parameter]
    return parameter not in parameters and value == field_default and own_default != field_default


def _warn_unused_fields(kind: str, name: str, values: dict, factory) -> None:
    """Warn about the `kind`'s settings (e.g. ``loss_xi``) set away from their default that the
    component `name` has no parameter for: they would be recorded in metrics.json, not used."""
    prefix = COMPONENT_FIELD_PREFIX[kind]
    for field in unused_component_fields(kind, factory):
        if values.get(field) != _FIELD_DEFAULTS.get(field):
            parameters = inspect.signature(factory).parameters
            takes = ", ".join(prefix + p for p in parameters if prefix + p in _FIELD_DEFAULTS) or "none of them"
            keywords = [p for p, spec in parameters.items() if spec.kind is spec.VAR_KEYWORD]
            hint = f"; its **{keywords[0]} takes {kind}_options" if keywords else ""
            warnings.warn(f"{kind} {name!r} has no parameter {field[len(prefix):]}: {field} = {values[field]!r} is not "
                          f"used (of these settings it takes {takes}{hint})", UserWarning, stacklevel=3)


def check_components(config: TrainingConfig) -> None:
    """Refuse before anything runs what building the run would refuse first: the dataset's
    loader takes the dataset options, the loss and the encoder are built, the backend's option
    names are checked against its factory (the backend itself is not started).  Errors name the
    setting (e.g. ``loss_options: ...``)."""
    with _naming_the_setting("dataset"):
        check_dataset_options(config.dataset, config.dataset_options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the run itself says them)
        for kind in ("loss", "encoder"):
            with _naming_the_setting(kind):
                component(kind, getattr(config, kind), config, getattr(config, f"{kind}_options"))
    with _naming_the_setting("backend"):
        check_parameter_names(f"backend {config.backend!r}", registry().get("backend", config.backend).obj,
                              config.backend_options, "option")


@contextlib.contextmanager
def _naming_the_setting(kind: str):
    """An `InvalidValueError` inside, prefixed with the setting it comes from (``<kind>_options``
    or ``<kind>``) unless it names one already."""
    try:
        yield
    except InvalidValueError as exc:
        if str(exc).startswith(f"{kind}_options:"):
            raise
        raise InvalidValueError(f"{kind}_options: {exc}") from None
