"""Trainable parameters: float shadow weights and raw delays, and how they map onto a network.

Delays stay non-negative through a parametrisation (docs/model.md §3): either
``delay = shift + scale * sigmoid(raw)`` (DelGrad reference code) or ``delay = raw`` clipped to
``[0, delay_max]`` after each step.  Weight constraints (clipping, quantisation: the backend's, and optionally the
config's) act on the copy the backend runs; gradients flow straight through to the float shadow
weights.
"""

from __future__ import annotations

import warnings

import numpy as np

from delgrad_core._capabilities import Capabilities, inputs_in_copies
from delgrad_core._errors import InvalidValueError, UnsupportedNetworkError
from delgrad_core._ir import DelayKind, Network, NeuronParameters, check_type
from delgrad_core._npz import MAX_ARRAY_ELEMENTS
from delgrad_core._propagation import NetworkGradients
from delgrad_core.training._config import TrainingConfig

__all__ = ["SettingsConflictError", "TrainableNetwork", "build_network", "check_input_copies",
           "check_shared_input_delays", "check_supported"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _sigmoid_slope(x: np.ndarray) -> np.ndarray:
    """d sigmoid / dx = e^-|x| / (1 + e^-|x|)^2, to full relative precision at every x (sigmoid (1 - sigmoid)
    lost it beyond |x| ~ 15, 2e-4 at |x| = 30, and was exactly 0 from |x| ~ 37 on)."""
    decay = np.exp(-np.abs(x))
    return decay / (1.0 + decay) ** 2


def build_network(config: TrainingConfig, n_inputs: int, n_classes: int) -> Network:
    """The network of a run: n_inputs - hidden... - n_classes, tau_s = 1, tau_m = tau_ratio.  A
    projection too large for a network file (a hidden size too large for the data's inputs) is
    a `SettingsConflictError` naming `hidden`."""
    check_type(config, TrainingConfig, "config")
    neuron = NeuronParameters(threshold=config.threshold, tau_m=config.tau_ratio, tau_s=1.0)
    sizes = [n_inputs, *config.hidden_sizes, n_classes]
    for n_pre, n_post in zip(sizes[:-1], sizes[1:]):
        if n_pre * n_post > MAX_ARRAY_ELEMENTS:
            raise SettingsConflictError(
                f"hidden: {config.hidden!r} makes a {n_pre} x {n_post} projection of {n_pre * n_post:,} weights, more "
                f"than the {MAX_ARRAY_ELEMENTS:,} a network file may hold (the data has {n_inputs} input lines); "
                "choose smaller hidden sizes")
    return Network.feedforward(sizes, delay_kind=config.delay_kinds, neuron=neuron, seed=None)


class SettingsConflictError(InvalidValueError):
    """Training settings that do not fit the backend or the data, found when the network is built
    (a usage error on the command line)."""


def check_shared_input_delays(config: TrainingConfig, n_inputs: int, input_copies: int | None = None) -> None:
    """Refuse a `shared_input_delays` k that would tie lines of different inputs: k must divide
    the `input_copies` the encoder makes of each input (its repeat, if it has one) and the
    `n_inputs` input lines; and the first layer's delays must be axonal (without delays there
    it has nothing to share).  (Checked with the network, after the backend has judged the
    delay kinds: a backend's default of k must not hide the backend's refusal.)"""
    shared, kind = config.shared_input_delays, config.delay_kinds[0]
    if shared == 1 or kind == DelayKind.NONE.value:
        return
    fix = "(--set shared_input_delays=N, or in the config; a backend may set it by default)"
    if kind != DelayKind.AXONAL.value:
        raise SettingsConflictError(f"shared_input_delays: {shared} needs axonal delays in the first layer (the input "
                                f"lines' own), got {kind!r}; set it to 1 {fix}")
    if input_copies is not None and input_copies % shared:
        copies = f"the encoder makes {input_copies} of each (its repeat); set it to a divisor of {input_copies}" \
            if input_copies > 1 else "the encoder makes one of each (its repeat is 1); set it to 1"
        raise SettingsConflictError(f"shared_input_delays: {shared} would share one delay between copies of different "
                                f"inputs: {copies} {fix}")
    if n_inputs % shared:
        raise SettingsConflictError(f"shared_input_delays: {shared} does not divide the {n_inputs} input lines into "
                                "groups of copies; set it to the number of copies the encoder makes of each input, "
                                f"or 1 {fix}")


def check_supported(backend, network: Network, n_features: int) -> None:
    """`backend.check_supported(network)`; where the backend takes fewer inputs per neuron than
    the network's input lines, its refusal says that the encoder makes them of the data's
    `n_features` features (245 lines of a 7 x 7 image, repeated 5 times, read as a number
    nobody chose)."""
    try:
        backend.check_supported(network)
    except UnsupportedNetworkError as exc:
        limit = backend.capabilities.max_inputs
        if exc.capability != "max_inputs" or limit is None or network.input.size <= limit:
            raise
        raise UnsupportedNetworkError(
            f"{exc}: the encoder makes {network.input.size} input lines of the data's {n_features} features; fewer "
            "features (e.g. a smaller image size) or fewer lines per feature (encoder_options.repeat, pairs) fit",
            capability="max_inputs") from None


def check_input_copies(backend, network: Network, encoder_copies: int | None) -> None:
    """Refuse input lines `backend` would take as copies of one input that are not: its
    `Capabilities.input_copies` c divides the network's input lines and its first layer has
    axonal delays (one delay per c lines), but the encoder repeats every feature a number of
    times (`encoder_copies`, its `repeat`) that is no multiple of c.  An encoder without a
    `repeat` (None) cannot be checked: a warning says so."""
    copies, n_inputs = backend.capabilities.input_copies or 1, network.input.size
    if not inputs_in_copies(network, copies) or (encoder_copies is not None and encoder_copies % copies == 0):
        return
    taken = (f"backend {backend.name!r} takes every {copies} consecutive input lines as copies of one input sharing "
             f"one delay (it declares input_copies = {copies}, and the {n_inputs} lines are a multiple of it)")
    if encoder_copies is None:
        warnings.warn(f"{taken}; the encoder has no repeat setting, so whether its lines come in such copies is not "
                      "checked", UserWarning, stacklevel=3)
        return
    raise SettingsConflictError(
        f"encoder_options: {taken}, but the encoder makes {encoder_copies} of each input (its repeat): it would run "
        f"different inputs as copies; set encoder_options.repeat to a multiple of {copies} "
        f"(--set 'encoder_options={{\"repeat\": {copies}}}'), or choose a backend option that takes no copies")


def _check_network_fits(network: Network, config: TrainingConfig) -> None:
    """Refuse a `network` other than the one `config` describes (hidden sizes, delay kinds): the
    parameters follow the network, the initialisation and learning rates the config."""
    hidden = [layer.population.size for layer in network.layers[:-1]]
    kinds = [layer.projection.delay_kind.value for layer in network.layers]
    if hidden != config.hidden_sizes or kinds != config.delay_kinds:
        raise InvalidValueError(f"config: hidden {config.hidden_sizes} and delays {config.delay_kinds} describe "
                                f"another network than the one given (hidden {hidden}, delays {kinds}); give the "
                                "config of that network (build_network(config, ...) makes it)")


class TrainableNetwork:
    """Holds the optimiser's parameters (``params``) and writes them into ``network``.

    Parameter names: ``layers.K.weights`` (shadow weights) and ``layers.K.delays`` (raw delay
    parameters); ``group_of`` maps each to "weights" or "delays".  With `shared_input_delays`
    k > 1, the first layer's axonal delays have one raw parameter per group of k consecutive
    input lines (the copies of an input; `input_copies`: how many the encoder makes, if known),
    and each group's gradient is the sum of its lines'.
    """

    def __init__(self, network: Network, config: TrainingConfig, *, input_copies: int | None = None):
        self.network = check_type(network, Network, "network")
        self.config = check_type(config, TrainingConfig, "config").resolved()  # (the delay kind's defaults)
        # the config's own weight constraints, applied before the backend's (stricter, never needed)
        self._weight_constraints = Capabilities(weight_limit=config.weight_limit,
                                                weight_resolution=config.weight_resolution)
        _check_network_fits(network, self.config)
        first = network.layers[0].projection
        check_shared_input_delays(self.config, first.n_pre, input_copies)
        # lines per delay parameter, per layer: the first layer's axonal delays may be shared
        self._lines_per_delay = [self.config.shared_input_delays if k == 0 and first.delay_kind is DelayKind.AXONAL
                                 else 1 for k in range(len(network.layers))]
        self.params: dict[str, np.ndarray] = {}
        self.group_of: dict[str, str] = {}
        for k, layer in enumerate(network.layers):
            self.params[f"layers.{k}.weights"] = layer.projection.weights.copy()
            self.group_of[f"layers.{k}.weights"] = "weights"
            if layer.projection.delay_kind is not DelayKind.NONE:
                delays = layer.projection.delays
                shared = self._lines_per_delay[k]
                self.params[f"layers.{k}.delays"] = np.zeros(delays.size // shared) if shared > 1 else \
                    np.zeros_like(delays)
                self.group_of[f"layers.{k}.delays"] = "delays"

    @property
    def n_parameters(self) -> int:
        """Trained parameters: weights and delays, a delay shared by input copies once."""
        return sum(param.size for param in self.params.values())

    def initialise(self, rng: np.random.Generator) -> None:
        """Draw weights N(weight_init_mean, weight_init_std) (one value for every layer, or a list
        with one per layer) and raw delays N(delay_init_mean, delay_init_std) (sigmoid raw
        values; for clipping, the delays they map to)."""
        config = self.config
        if not isinstance(rng, np.random.Generator):
            raise InvalidValueError(f"rng: expected a numpy Generator (e.g. np.random.default_rng(seed)), got {rng!r}")

        def of_layer(value, k):
            return value[k] if isinstance(value, list) else value

        with np.errstate(over="ignore"):  # (values beyond float range: refused below, named after their settings)
            for name, param in self.params.items():
                if self.group_of[name] == "weights":
                    k = int(name.split(".")[1])
                    param[...] = rng.normal(of_layer(config.weight_init_mean, k), of_layer(config.weight_init_std, k),
                                            param.shape)
                else:
                    raw = rng.normal(config.delay_init_mean, config.delay_init_std, param.shape)
                    if config.delay_parametrisation == "sigmoid":
                        param[...] = raw
                    else:
                        param[...] = config.delay_shift + config.delay_scale * _sigmoid(raw)
            self.constrain()
            self.apply()
        try:
            self.network.validate()
        except InvalidValueError as exc:  # (named after the settings the values were drawn from)
            raise InvalidValueError(f"the initial network drawn from {self._init_settings(str(exc))} is refused: "
                                    f"{exc}") from None
        self._warn_of_weights_rounded_to_zero()

    def _warn_of_weights_rounded_to_zero(self) -> None:
        """Warn where the config's weight_resolution rounds every initial weight of a layer to 0
        (a resolution of 100 taken for a number of levels: the network starts silent)."""
        if self.config.weight_resolution is None:
            return
        zeroed = [k for k, layer in enumerate(self.network.layers)
                  if not layer.projection.weights.any() and self.params[f"layers.{k}.weights"].any()]
        if zeroed:
            layers = f"layer{'s' if len(zeroed) > 1 else ''} {', '.join(map(str, zeroed))}"
            warnings.warn(f"weight_resolution {self.config.weight_resolution!r} rounds every initial weight of "
                          f"{layers} to 0 (drawn from {self._init_settings('.weights')}): it is the step between "
                          "weights (e.g. 1/30), not their number of levels", UserWarning, stacklevel=3)

    def _init_settings(self, refusal: str) -> str:
        """The settings of the initial values that `refusal` (of the network) is about."""
        names = ("weight_init_mean", "weight_init_std") if ".weights" in refusal else \
            ("delay_init_mean", "delay_init_std", "delay_parametrisation", "delay_shift", "delay_scale")
        return ", ".join(f"{name} = {getattr(self.config, name)!r}" for name in names)

    def constrain(self) -> None:
        """Project raw delays back into bounds (clip parametrisation only)."""
        if self.config.delay_parametrisation != "clip":
            return
        upper = np.inf if self.config.delay_max is None else self.config.delay_max
        for name, param in self.params.items():
            if self.group_of[name] == "delays":
                np.clip(param, 0.0, upper, out=param)

    def effective_weights(self, shadow: np.ndarray) -> np.ndarray:
        """Shadow weights under the config's own limit and resolution (if it sets any); the
        backend's `represent` applies the substrate's constraints on top."""
        return self._weight_constraints.constrain_weights(shadow)

    def delays_from_raw(self, raw: np.ndarray) -> np.ndarray:
        if self.config.delay_parametrisation == "sigmoid":
            return self.config.delay_shift + self.config.delay_scale * _sigmoid(raw)
        return raw.copy()

    def apply(self) -> None:
        """Write the current parameters into the network (in place)."""
        for k, layer in enumerate(self.network.layers):
            layer.projection.weights[...] = self.effective_weights(self.params[f"layers.{k}.weights"])
            raw = self.params.get(f"layers.{k}.delays")
            if raw is not None:
                layer.projection.delays[...] = self._lines_of(self.delays_from_raw(raw), k)

    def _lines_of(self, delays: np.ndarray, k: int) -> np.ndarray:
        """Layer k's delays per line from its delays per parameter."""
        shared = self._lines_per_delay[k]
        return np.repeat(delays, shared) if shared > 1 else delays

    def _groups_of(self, line_gradients: np.ndarray, k: int) -> np.ndarray:
        """Layer k's gradients per delay parameter (summed over the lines sharing it)."""
        shared = self._lines_per_delay[k]
        return line_gradients.reshape(-1, shared).sum(axis=1) if shared > 1 else line_gradients

    def parameter_gradients(self, gradients: NetworkGradients) -> dict[str, np.ndarray]:
        """dL/d(params) from the network gradients (chain rule through the delay map)."""
        grads = {}
        for k, layer_grad in enumerate(gradients.layers):
            grads[f"layers.{k}.weights"] = layer_grad.weights
            raw = self.params.get(f"layers.{k}.delays")
            if raw is not None:
                delays = self._groups_of(layer_grad.delays, k)
                if self.config.delay_parametrisation == "sigmoid":
                    grads[f"layers.{k}.delays"] = delays * self.config.delay_scale * _sigmoid_slope(raw)
                else:
                    grads[f"layers.{k}.delays"] = delays
        return grads
