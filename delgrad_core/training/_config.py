"""Training configuration: one validated, JSON/TOML-serialisable record of every setting.

Defaults are DelGrad's ideal-simulation Yin-Yang settings (docs/model.md §5): tau_m = 2 tau_s,
threshold 1, Adam, 300 epochs, batch 150, learning rate x0.95 every 20 epochs, shift-invariant
squared error with Delta = 0.2, and per-delay-kind learning rates and initialisation.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from delgrad_core._ir import DelayKind
from delgrad_core._errors import InvalidValueError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TrainingConfig", "load_config"]

# DelGrad's reference learning rates and weight initialisation per delay kind (docs/model.md §5);
# dendritic has no published setting, so it uses the axonal one.
_KIND_DEFAULTS = {
    "none": {"weight_lr": 0.02, "delay_lr": 0.0, "weight_init_mean": 0.5, "weight_init_std": 1.0},
    "axonal": {"weight_lr": 0.005, "delay_lr": 0.005, "weight_init_mean": 1.0, "weight_init_std": 1.0},
    "dendritic": {"weight_lr": 0.005, "delay_lr": 0.005, "weight_init_mean": 1.0, "weight_init_std": 1.0},
    "synaptic": {"weight_lr": 0.01, "delay_lr": 0.003, "weight_init_mean": 1.0, "weight_init_std": 1.0},
}

_CHOICES = {
    "delays": tuple(k.value for k in DelayKind),
    "delay_parametrisation": ("sigmoid", "clip"),
}


@dataclass
class TrainingConfig:
    """Every setting of a training run.  `None` learning rates/initialisation take the
    DelGrad default for the chosen delay kind (see `resolved()`)."""

    # task and network
    dataset: str = "yin_yang"
    hidden: int = 30
    delays: str = "synaptic"
    tau_ratio: float = 2.0
    threshold: float = 1.0
    encoder: str = "latency"
    t_early: float = 0.15
    t_late: float = 2.0
    encoder_options: dict = field(default_factory=dict)
    # optimisation
    epochs: int = 300
    batch_size: int = 150
    seed: int = 0
    weight_lr: float | None = None
    delay_lr: float | None = None
    lr_decay: float = 0.95
    lr_decay_every: int = 20
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_init_mean: float | None = None
    weight_init_std: float | None = None
    delay_init_mean: float = 0.0
    delay_init_std: float = 0.25
    # loss
    loss: str = "squared"
    loss_delta: float = 0.2
    loss_xi: float = 0.2
    loss_alpha: float = 0.005
    loss_beta: float = 1.0
    loss_options: dict = field(default_factory=dict)
    max_weight_term: float | None = 0.2
    # delay parametrisation: delay = shift + scale * sigmoid(raw), or clip(raw, 0, delay_max)
    delay_parametrisation: str = "sigmoid"
    delay_shift: float = 0.0
    delay_scale: float = 1.0
    delay_max: float | None = None
    # hardware-style weight constraints (None: off); the optimiser keeps float shadow weights
    weight_limit: float | None = None
    weight_resolution: float | None = None
    # silent-neuron handling: skip the step and bump input weights of silent neurons when the
    # silent fraction of a layer exceeds its limit (hidden layers, output layer)
    silent_limit_hidden: float = 0.3
    silent_limit_output: float = 0.0
    silent_bump: float | None = 0.0005
    # per-neuron revival: a hidden neuron silent in more than this fraction of a batch's samples
    # gets silent_bump added to its input weights, without skipping the step (None: off)
    silent_neuron_limit: float | None = None
    # model selection: keep the epoch with the best validation accuracy as the trained network
    keep_best: bool = True
    # execution
    backend: str = "reference"
    backend_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise InvalidValueError(f"{name}: {value!r} is not allowed; choose one of {', '.join(allowed)}")
        from delgrad_core._plugins import registry

        for name, kind in (("dataset", "dataset"), ("loss", "loss"), ("encoder", "encoder")):
            allowed = registry().names(kind)
            if getattr(self, name) not in allowed:
                raise InvalidValueError(f"{name}: {getattr(self, name)!r} is not allowed; choose one of {', '.join(allowed)}")
        positive_ints = ("hidden", "epochs", "batch_size", "lr_decay_every")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidValueError(f"{name}: expected a positive integer, got {value!r}")
        positive = ("tau_ratio", "threshold", "lr_decay", "adam_eps", "loss_xi", "loss_beta", "delay_scale")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InvalidValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        optional_positive = ("weight_lr", "max_weight_term", "weight_limit", "weight_resolution", "delay_max",
                             "weight_init_std", "silent_bump")
        for name in optional_positive:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise InvalidValueError(f"{name}: must be > 0 or unset, got {value!r}")
        for name in ("silent_limit_hidden", "silent_limit_output", "silent_neuron_limit"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise InvalidValueError(f"{name}: must be a fraction in [0, 1], got {value!r}")
        if self.delay_lr is not None and self.delay_lr < 0:
            raise InvalidValueError(f"delay_lr: must be >= 0, got {self.delay_lr!r}")
        if not 0 <= self.t_early < self.t_late:
            raise InvalidValueError(f"t_early, t_late: need 0 <= t_early < t_late, got {self.t_early}, {self.t_late}")
        if self.delay_shift < 0:
            raise InvalidValueError(f"delay_shift: must be >= 0, got {self.delay_shift!r}")
        if not isinstance(self.keep_best, bool):
            raise InvalidValueError(f"keep_best: expected true or false, got {self.keep_best!r}")
        for name in ("backend_options", "loss_options", "encoder_options"):
            if not isinstance(getattr(self, name), dict):
                raise InvalidValueError(f"{name}: expected a table (dict)")

    def resolved(self) -> "TrainingConfig":
        """A copy with the per-delay-kind defaults filled in."""
        defaults = _KIND_DEFAULTS[self.delays]
        updates = {name: value for name, value in defaults.items() if getattr(self, name) is None}
        return dataclasses.replace(self, **updates)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidValueError(f"config: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


def load_config(path: str | Path) -> dict:
    """Read a TOML file of settings (top-level keys or a [train] table) as a dict."""
    with open(path, "rb") as handle:
        values = tomllib.load(handle)
    if "train" in values and isinstance(values["train"], dict):
        values = values["train"]
    values = {key.replace("-", "_"): value for key, value in values.items()}
    TrainingConfig.from_dict(values)  # validate early, naming the bad setting
    return values
