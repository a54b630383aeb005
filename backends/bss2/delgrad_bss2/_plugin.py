"""Entry point of the "delgrad.backends" group: registers `bss2-emulator` with its static
capabilities and the training settings of DelGrad's BrainScaleS-2 experiments (Göltz, Weber,
Kriener et al. 2025): the chip's operating point (its threshold as the backend option
`threshold` says), inputs duplicated 5x (as often as the backend option `input_duplication`
says), 30 hidden neurons, batch 40, Adam 0.002, loss Delta 0.3, delays 2.0 + 1.5 sigmoid(raw)
tau."""

from delgrad_core import InvalidValueError, hookimpl
from delgrad_core.plugin_tools import checked_number

from delgrad_bss2._backend import Bss2EmulatorBackend
from delgrad_bss2._config import INPUT_DUPLICATION, ChipConfig
from delgrad_bss2._mapping import chip_capabilities

__all__ = ["TRAINING_DEFAULTS", "delgrad_register_backends", "training_defaults"]

TRAINING_DEFAULTS = {
    "delays": "axonal",  # the chip has delay elements on its input lines (DelGrad's hardware setup)
    "tau_ratio": 1.0,
    "threshold": ChipConfig().threshold,
    "encoder_options": {"repeat": INPUT_DUPLICATION},
    "hidden": 30,
    "batch_size": 40,
    "weight_lr": 0.002,
    "delay_lr": 0.002,
    "weight_init_mean": [1.0, 0.075],
    "weight_init_std": [0.12, 0.15],
    "loss_delta": 0.3,
    "silent_limit_hidden": 0.05,
    "silent_limit_output": 0.05,
    "delay_parametrisation": "sigmoid",
    "delay_shift": 2.0,
    "delay_scale": 1.5,
    "delay_init_std": 0.5,
    "shared_input_delays": INPUT_DUPLICATION,  # the copies of an input share its delay element: one delay to train
    # validation and test in jobs of the training batch: the trial-to-trial noise is drawn per
    # job, so one job of 1000 samples would be one draw shared by every sample
    "evaluation_batch_size": 40,
}


def _valid(value, name: str, low, high=None, **bounds):
    """`value` as `checked_number` takes it, None if it refuses it."""
    try:
        return checked_number(value, name, low, high, **bounds)
    except InvalidValueError:
        return None


def training_defaults(options: dict) -> dict:
    """`TRAINING_DEFAULTS` with the inputs repeated, and their delays shared, as often as the chip
    takes lines as copies of one input (the backend option `input_duplication`): a chip set to
    duplicate inputs 2x trains on inputs repeated 2x, not 5x (whose copies would straddle its
    delay elements); and the network's threshold at the chip's (the option `threshold`).  An
    invalid option keeps its default (the backend refuses it when built); numpy's numbers count
    as the backend takes them."""
    defaults = dict(TRAINING_DEFAULTS)
    rows = _valid(options.get("synapse_rows", ChipConfig.synapse_rows), "synapse_rows", 2, integer=True)
    duplication = _valid(options.get("input_duplication", INPUT_DUPLICATION), "input_duplication", 1,
                         (rows or ChipConfig.synapse_rows) // 2, integer=True)
    if duplication is not None:
        defaults.update(encoder_options={"repeat": duplication}, shared_input_delays=duplication)
    threshold = _valid(options.get("threshold", ChipConfig.threshold), "threshold", 0, low_open=True)
    if threshold is not None:
        defaults["threshold"] = threshold
    return defaults


@hookimpl
def delgrad_register_backends(register):
    register("bss2-emulator", Bss2EmulatorBackend,
             description="emulated BrainScaleS-2 chip: 6-bit weights, delay elements, fixed-pattern spread, "
                         "noise, calibration",
             capabilities=chip_capabilities(ChipConfig(), INPUT_DUPLICATION), training_defaults=training_defaults)
