"""A run folder's network file against the run's recorded settings and digest (`evaluate`,
`export --represented`)."""

from __future__ import annotations

import click

from delgrad_core._errors import FileFormatError, InvalidValueError

__all__ = ["check_run_network", "other_network"]


def check_run_network(network_file, stored: dict, metrics: dict, network, doing: str) -> bool:
    """Refuse a run's network file that its recorded settings do not describe (another network's
    hidden sizes, delay kinds, tau ratio or threshold: the run's files were mixed up or edited);
    whether its content differs from the network the run saved (its recorded digest; runs from
    before digests were recorded: False), with a note saying that it is `doing` (e.g. "evaluated")
    as it is now."""
    from delgrad_core.training._run_folder import network_file_digest

    try:
        mismatches = other_network(stored, network)
    except InvalidValueError as exc:
        raise FileFormatError(f"{network_file.with_name('metrics.json')}: config: {exc}") from None
    if mismatches:
        raise FileFormatError(f"{network_file}: not the network of the run its folder holds (the run's settings in "
                              f"metrics.json against the file: {'; '.join(mismatches)}); the folder's files were "
                              "mixed up or edited: to use this network, copy the file out of the run folder "
                              "(evaluate then takes its settings from --config)")
    recorded = metrics.get("network_digest")
    if not isinstance(recorded, str) or recorded == network_file_digest(network_file):
        return False
    click.echo(f"note: {network_file} is not the network the run saved (its content changed since): {doing} as it "
               "is now", err=True)
    return True


def other_network(given: dict, network) -> list[str]:
    """Where the network that the settings `given` (a --config file's, or a run's) would train
    differs from `network` in its hidden sizes, delay kinds, tau ratio or threshold, described; []
    if it does not."""
    import numpy as np

    from delgrad_core._plugins import registry
    from delgrad_core.training import TrainingConfig

    compared = ("hidden", "delays", "tau_ratio", "threshold")
    installed = registry().names("backend")  # (the probe reads the network's settings only: any installed backend
    # will do, where the default one is not installed)
    backend = installed[0] if installed and TrainingConfig.backend not in installed else TrainingConfig.backend
    probe = TrainingConfig(**{name: given[name] for name in compared if name in given}, backend=backend,
                           _check_components=False)
    kinds = probe.delays if isinstance(probe.delays, list) else [probe.delays] * (len(probe.hidden_sizes) + 1)
    found = {"hidden": list(network.sizes[1:-1]), "delays": [layer.projection.delay_kind.value
                                                             for layer in network.layers]}
    wanted = {"hidden": probe.hidden_sizes, "delays": kinds}
    differences = [f"{name} {wanted[name]} against {found[name]}" for name in ("hidden", "delays")
                   if name in given and wanted[name] != found[name]]
    neurons = [layer.population.neuron.as_arrays(layer.population.size) for layer in network.layers]
    held = {"tau_ratio": np.concatenate([tau_m / tau_s for _, tau_m, tau_s in neurons]),
            "threshold": np.concatenate([threshold for threshold, _, _ in neurons])}
    for name, values in held.items():
        if name in given and not np.allclose(values, getattr(probe, name), rtol=1e-12, atol=0.0):
            shown = f"{values[0]:g}" if np.all(values == values[0]) else f"{values.min():g}..{values.max():g}"
            differences.append(f"{name} {getattr(probe, name):g} against {shown}")
    return differences
