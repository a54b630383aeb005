"""`delgrad export --format nir` and `delgrad import`: NIR files (optional extra: pip install 'delgrad[nir]')."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from delgrad_core._errors import DelgradError, FileFormatError
from delgrad_core._nir_common import TIME_SCALE_RANGE_S
from delgrad_core.cli import main, no_writes_once_stopped
from delgrad_core.cli._outputs import check_output_file, kept_if_made_meanwhile

__all__ = ["export", "import_"]


class _Seconds(click.FloatRange):
    """A FloatRange that refuses NaN too (click lets it through)."""

    def convert(self, value, param, ctx):
        seconds = super().convert(value, param, ctx)
        if math.isnan(seconds):
            self.fail(f"{seconds} is not in the range {self._describe_range()}.", param, ctx)
        return seconds


_SECONDS = _Seconds(*TIME_SCALE_RANGE_S)
_FORCE = click.option("--force", is_flag=True, help="Replace OUT if it exists (never the input).")


def _fail(exc: Exception):
    """One-line error instead of a traceback."""
    raise click.ClickException(str(exc)) from None


def _network_file(network: str) -> str:
    """NETWORK as a network file: a run folder's network.npz, else as given."""
    from delgrad_core.cli._settings import check_not_a_run_file
    from delgrad_core.training._run_folder import RunFolder

    if not os.path.isdir(network):
        check_not_a_run_file(network, "NETWORK")
        return network
    path = RunFolder(network).network
    if not path.is_file():
        raise click.BadParameter(f"{network} is a folder without {path.name}: give a network file (.npz) or the "
                                 "folder of a finished run", param_hint="NETWORK")
    return str(path)


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # (the first bytes of an HDF5 file, as NIR graphs are written)


def _loaded_network(network_file: str):
    """The network in `network_file`; a NIR graph given instead is refused saying so."""
    from delgrad_core import load_network

    try:
        return load_network(network_file)
    except FileFormatError as exc:
        with open(network_file, "rb") as handle:
            if handle.read(len(_HDF5_SIGNATURE)) != _HDF5_SIGNATURE:
                raise
        raise FileFormatError(f"{exc}; it is an HDF5 file, as NIR graphs are: `delgrad import` converts a NIR graph "
                              "to a network file") from None


def _represented(network, network_file: Path, settings: dict):
    """`network` as the backend of a run with `settings` (from the `metrics.json` beside
    `network_file`) runs it (its `represent`)."""
    from delgrad_core.training._trainer import built_backend

    name = settings.get("backend")
    if not isinstance(name, str):  # (evaluate runs such a run on the default backend; only its own represents it)
        raise FileFormatError(f"{network_file.with_name('metrics.json')}: config.backend: expected the name of the "
                              f"backend the run was trained on, got {name!r} (a damaged or edited run folder); "
                              "without --represented the graph holds the trained parameters")
    with built_backend(name, settings.get("backend_options", {})) as backend:
        return backend.represent(network)


def _note_if_trained_on_a_representing_backend(given: str, network_file) -> None:
    """The note that the graph holds the trained parameters, where the run `network_file` belongs
    to was trained on a backend that may run them otherwise; none for a network file outside a
    finished run, or beside an unreadable metrics.json (the export needs only the network)."""
    from delgrad_core.cli._settings import run_settings, trained_on_a_representing_backend

    try:
        settings = run_settings(network_file)[1]
    except DelgradError:
        return
    note = trained_on_a_representing_backend(given, settings.get("backend")) if settings else None
    if note:
        click.echo(f"{note}; the graph holds the trained parameters as stored: --represented exports what the "
                   "backend runs", err=True)


@main.command("export")
@click.option("--format", "fmt", type=click.Choice(["nir"]), default="nir", show_default=True,
              help="Output format.")
@click.argument("network", type=click.Path(exists=True))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--time-scale", type=_SECONDS, required=True,
              help="Seconds per model time unit (NIR times are in seconds), e.g. 6e-6.")
@click.option("--represented", is_flag=True,
              help="Export the network as the run's backend runs it (its represent(): e.g. a chip's clipped and "
                   "quantised weights and shared delays), not the trained parameters; NETWORK must be a finished "
                   "run folder or its network.npz.")
@_FORCE
def export(fmt, network, out, time_scale, represented, force):
    """Write the network in NETWORK (a .npz file, or a run folder: its network.npz) to OUT as a NIR graph."""
    from delgrad_core.cli._run_network import check_run_network
    from delgrad_core.cli._settings import run_settings
    from delgrad_core.nir import NIRNotInstalledError, save_nir

    given, network = network, _network_file(network)
    free = check_output_file(out, "OUT", force=force, inputs=[network])
    try:
        net = _loaded_network(network)
        if represented:
            _, settings, metrics = run_settings(Path(network))
            if not settings:
                raise click.UsageError(f"--represented: {given} is not in a finished run folder, so no backend is "
                                       "named to represent it: give the run folder")
            check_run_network(Path(network), settings, metrics, net, "exported")
            net = _represented(net, Path(network), settings)
        else:
            _note_if_trained_on_a_representing_backend(given, Path(network))
        with no_writes_once_stopped(), kept_if_made_meanwhile(out, "OUT", free=free, force=force):
            path = save_nir(net, out, time_scale=time_scale)
    except (DelgradError, ValueError, KeyError, OSError, NIRNotInstalledError) as exc:  # (a backend: any of delgrad's)
        _fail(exc)
    kinds = _delay_kinds(net)
    shown = f", as backend {settings['backend']!r} runs it" if represented else ""
    click.echo(f"wrote {path} ({fmt}; {'-'.join(map(str, net.sizes))}, {kinds}, "
               f"1 model time unit = {time_scale:g} s{shown})")


@main.command("import")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--time-scale", type=_SECONDS,
              help="Seconds per model time unit.  [default: the one stored by delgrad in the graph]")
@click.option("--first-spike-only", is_flag=True,
              help="Accept hidden CubaLIF layers that could spike again after a reset, keeping first spikes only.")
@_FORCE
def import_(source, out, time_scale, first_spike_only, force):
    """Convert the NIR graph in SOURCE to a delgrad network file OUT (.npz)."""
    from delgrad_core import save_network
    from delgrad_core.nir import NIRNotInstalledError, load_nir

    free = check_output_file(out, "OUT", force=force, inputs=[source])
    try:
        net = load_nir(source, time_scale=time_scale, first_spike_only=first_spike_only)
        with no_writes_once_stopped(), kept_if_made_meanwhile(out, "OUT", free=free, force=force):
            path = save_network(net, out)
    except (ValueError, TypeError, OSError, NIRNotInstalledError) as exc:  # TypeError: malformed node values
        _fail(exc)
    kinds = _delay_kinds(net)
    click.echo(f"wrote {path} ({'-'.join(map(str, net.sizes))}, {kinds})")


def _delay_kinds(net) -> str:
    """The network's delays: "no delays", "axonal delays", or one kind per layer when they differ
    ("axonal,none,dendritic delays")."""
    kinds = [layer.projection.delay_kind.value for layer in net.layers]
    if set(kinds) == {"none"}:
        return "no delays"
    return f"{kinds[0] if len(set(kinds)) == 1 else ','.join(kinds)} delays"
