"""Warnings about settings given to `delgrad train` or `delgrad sweep` that nothing uses (a run's
metrics.json would record them as if they had taken effect)."""

from __future__ import annotations

import warnings

__all__ = ["chosen_settings", "warn_unused_settings"]

_DELAY_SETTINGS = ("delay_lr", "delay_init_mean", "delay_init_std", "delay_parametrisation", "delay_shift",
                   "delay_scale", "delay_max", "shared_input_delays")

_SILENT_SETTINGS = ("silent_limit_hidden", "silent_limit_output", "silent_neuron_limit")


def chosen_settings(settings: dict, config_file, set_settings: dict) -> set:
    """The names of `settings` the user chose: of the settings of a run's metrics.json given as
    --config (which records all of them, defaults too), only those --set gives again."""
    from delgrad_core.training._config import is_run_record, load_config

    recorded = set(load_config(config_file)) if config_file and is_run_record(config_file) else set()
    return set(settings) - (recorded - set(set_settings))


def warn_unused_settings(given: set, configs: list, delays_shown: str, *, sweep: bool = False) -> None:
    """Warn about the settings in `given` that none of `configs` (a run's, or one per delay kind
    of a sweep) uses: delay settings without delays, shared_input_delays without delays in the
    first layer, silent-neuron limits with the rules off.  `delays_shown` says where the delay
    kinds came from (``delays = "none"``, ``--delays none``)."""
    network, first_layer = ("no trial's network has", "no trial's first layer has") if sweep else \
        ("the network has no", "the first layer has no")
    unused = [name for name in _DELAY_SETTINGS if name in given]
    if unused and all(kind == "none" for config in configs for kind in config.delay_kinds):
        warnings.warn(f"{', '.join(unused)}: not used, {network} delays ({delays_shown})", UserWarning, stacklevel=2)
    elif "shared_input_delays" in given and all(config.delay_kinds[0] == "none" for config in configs):
        warnings.warn(f"shared_input_delays: not used, {first_layer} delays ({delays_shown}); it ties that layer's "
                      "axonal delays", UserWarning, stacklevel=2)
    unused = [name for name in _SILENT_SETTINGS if name in given]
    if unused and all(config.silent_bump is None for config in configs):
        warnings.warn(f"{', '.join(unused)}: not used, the silent-neuron rules are off (silent_bump = None)",
                      UserWarning, stacklevel=2)
