"""`delgrad evaluate`: the accuracy of a run folder's network, or of a network file, on a split."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import click

from delgrad_core.cli import main, no_writes_once_stopped, stop_if_interrupted
from delgrad_core._errors import FileFormatError, InvalidValueError
from delgrad_core.cli._json_output import echo_json, json_output_kept_apart
from delgrad_core.cli._run_network import check_run_network, other_network
from delgrad_core.cli._settings import (
    BACKEND_OPTION, CONFIG_FILE, DATASET_OPTION, SEEDS, absolute_paths, check_not_a_run_file, check_thread_variable,
    given_settings, plugin_named, refuse_no_default_backend, refuse_not_installed, run_settings,
    trained_on_a_representing_backend, with_tables, without_replaced_options)

__all__ = ["evaluate"]

#: The settings an evaluation uses (a network file holds the rest).
_EVALUATION_SETTINGS = ("dataset", "dataset_options", "encoder", "t_early", "t_late", "encoder_options", "backend",
                        "backend_options", "evaluation_batch_size")


def _check_device(path: Path, metrics: dict, same_backend: bool, backend, calibration) -> tuple[bool, bool]:
    """Whether the run was trained on the device `backend` runs on (the same backend, or the
    same device behind another: mock-hil's service in-process and back), and whether it is set up
    otherwise now; warn when it is: another chip, calibration setting, calibration contents or
    device option, or another device behind mock-hil.  Runs from before identities were recorded
    are compared by calibration key, on the same backend."""
    from delgrad_core.training._identity import identity_changes, key_changes, recorded_identity
    from delgrad_core.training._run_folder import RunFolder

    metrics_file = RunFolder(path if path.is_dir() else path.parent).metrics
    recorded = recorded_identity(metrics.get("device_identity"), metrics_file)
    current = backend.device_identity(calibration)
    if recorded is not None:
        changes = list(identity_changes(recorded, current).values())
    elif same_backend and metrics.get("calibration_key") is not None:
        changes = list(key_changes(metrics["calibration_key"], calibration.cache_key).values())
    else:
        changes = []
    if changes:
        warnings.warn(f"{path} was trained on device {current['backend']!r} set up otherwise: {'; '.join(changes)}: "
                      "the accuracy is this one's", UserWarning, stacklevel=1)
    if same_backend and recorded is not None and recorded["backend"] != current["backend"]:  # (mock-hil's device)
        warnings.warn(f"{path} was trained on device {recorded['backend']!r}, and {backend.name!r} now runs device "
                      f"{current['backend']!r}: the accuracy is that device's", UserWarning, stacklevel=1)
        return False, True
    return same_backend or (recorded is not None and recorded["backend"] == current["backend"]), bool(changes)


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--backend", help="Backend name.  [default: the run's, else reference]")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--dataset", help="Dataset name.  [default: the run's, else yin_yang]")
@click.option("--seed", type=SEEDS,
              help="Seed of the noise on noisy backends (each job of the evaluation gets its own, drawn from it).  "
                   "[default: the run's test seed (its recorded test accuracy is repeated exactly), else 0]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--config", "config_file", **CONFIG_FILE,
              help="TOML file with the dataset, encoder and backend settings of a network file (e.g. the config it "
                   "was trained with, or its run's metrics.json: all its settings are checked as by train "
                   "--config, only those are used).  "
                   "[default: the defaults]")
@BACKEND_OPTION
@DATASET_OPTION
@json_output_kept_apart
def evaluate(path, backend, split, dataset, seed, as_json, config_file, backend_options, dataset_options):
    """First-spike accuracy of a trained network on a dataset split.

    PATH is a run folder (its network.npz, evaluated with the run's own dataset, encoder and
    backend settings) or a network file (a network file holds no encoding: the settings of
    --config, else Yin-Yang with the default encoder, with a note saying so).
    """
    import numpy as np

    from delgrad_core._backend import check_training_settings_of, close_after_work
    from delgrad_core._execution import MAX_SEED
    from delgrad_core._losses import accuracy
    from delgrad_core._plugins import built_neutral_options
    from delgrad_core._serialization import load_network
    from delgrad_core.datasets import DatasetOptionsError, load_dataset
    from delgrad_core.training import TrainingConfig, config_with_defaults
    from delgrad_core.training._components import component
    from delgrad_core.training._evaluation import check_fits_dataset, draw_seed, output_spike_times
    from delgrad_core.training._parameters import SettingsConflictError, check_input_copies
    from delgrad_core.training._trainer import BackendOptionsError, built_backend

    check_thread_variable()
    check_not_a_run_file(path, "PATH")
    network_file, stored, metrics = run_settings(path)
    if stored and config_file:
        raise click.UsageError(f"--config: {path} is evaluated with its run's own settings; --config gives those of "
                               "a network file outside a run folder")
    settings_edited = bool(stored) and _note_edited_settings(network_file.parent, stored)
    if seed is None:
        seed = metrics.get("test_seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise FileFormatError(f"{path}: metrics.json: test_seed: expected an integer in [0, 2**63 - 1], "
                                  f"got {seed!r}")
    given = stored or absolute_paths(given_settings(config_file, {}))
    settings = {key: given[key] for key in _EVALUATION_SETTINGS if key in given}
    named = {"backend": backend, "dataset": dataset}
    kept = without_replaced_options(settings, named, ("backend", "dataset"))
    for kind in ("backend", "dataset"):  # (said before the evaluation, which such options may make fail)
        left = settings.get(f"{kind}_options") if f"{kind}_options" not in kept else None
        if left:
            click.echo(f"note: the {kind} options {json.dumps(left)} of {plugin_named(settings, kind)!r} are not used "
                       f"with {named[kind]!r}; --{kind}-option gives its own", err=True)
    settings = kept
    if stored and dataset is not None and dataset != plugin_named(stored, "dataset"):  # (the output neurons are
        # the trained dataset's classes)
        click.echo(f"note: the run was trained on dataset {plugin_named(stored, 'dataset')!r}; evaluated on "
                   f"{dataset!r}, whose class k is scored as the run's output neuron k", err=True)
    if backend is not None and backend != plugin_named(given, "backend"):
        settings.pop("evaluation_batch_size", None)  # (the run's backend's jobs)
    settings.update({k: v for k, v in named.items() if v is not None})
    source = f" (settings: the run's, from {path}/metrics.json)"
    try:  # given on the command line: over the run's own
        settings = with_tables(settings, **absolute_paths({"backend_options": backend_options,
                                                             "dataset_options": dataset_options}))
    except InvalidValueError as exc:  # (a run's own table that is none: a --config file's was refused when read)
        raise InvalidValueError(f"{exc}{source}") from None

    def refused(exc: InvalidValueError) -> Exception:
        """A usage error if settings were given here; else the run's own settings are at fault."""
        if not stored:
            return click.UsageError(str(exc))
        hint = (f" (settings: the run's, from {path}/metrics.json, and those given here; --backend, --backend-option, "
                "--dataset and --dataset-option choose others)")
        given_here = backend or dataset or backend_options or dataset_options
        return click.UsageError(f"{exc}{hint}") if given_here else InvalidValueError(f"{exc}{hint}")

    if stored:
        refuse_not_installed(stored, {"backend": backend, "dataset": dataset}, path,
                              "the run folder is fine: {remedy} to evaluate the run as trained, or name another "
                              "with {option}" + source, kinds=("backend", "dataset"))
        refuse_not_installed(stored, {}, path, "the run folder is fine: {remedy} to evaluate the run" + source,
                              kinds=("encoder",))
    else:  # (a network file: on the default backend unless one is named, as train does)
        refuse_no_default_backend(settings.get("backend"))
    try:
        if stored and set(_EVALUATION_SETTINGS) <= set(settings):  # (the run's own: nothing left to default; a
            config = TrainingConfig.from_dict(settings)  # backend's defaults may ask a service that is not up yet)
        else:
            config = config_with_defaults(settings, merge_options=not stored)  # (a run's stored tables are final)
    except InvalidValueError as exc:
        raise refused(exc) from None
    network = load_network(network_file)
    file_changed = check_run_network(network_file, stored, metrics, network, "evaluated") if stored else False
    try:
        data = load_dataset(config.dataset, split, **config.dataset_options)
    except DatasetOptionsError as exc:
        raise refused(exc) from None
    if len(data) == 0:  # (said "output_times: accuracy of an empty batch is undefined")
        raise click.ClickException(f"dataset {config.dataset!r}, split {split!r}: holds no samples")
    _note_changed_data(path, metrics, stored, config, split, data)
    encoder = component("encoder", config.encoder, config, config.encoder_options)
    try:
        check_fits_dataset(network, encoder.n_inputs(data.n_features), data.n_classes, what=str(network_file))
    except InvalidValueError as exc:
        if stored or dataset is not None or config_file:
            raise
        raise InvalidValueError(f"{exc} ({config.dataset}, the default; --dataset, --backend or --config name the "
                                "network's task and encoding)") from None
    try:
        target = built_backend(config.backend, config.backend_options)
    except BackendOptionsError as exc:
        raise refused(exc) from None
    with no_writes_once_stopped(), target:
        check_training_settings_of(target, {key: getattr(config, key) for key in _EVALUATION_SETTINGS})
        try:  # (as training refuses it: a backend taking the encoder's distinct lines as copies of one input)
            check_input_copies(target, network, encoder.copies)
        except SettingsConflictError as exc:
            raise refused(exc) from None
        calibration = target.calibrate(network, seed=_calibration_seed(path, stored, seed))
        represented = target.represent_checked(network)
        changed = _changes(network, represented)  # (None: weights, delays and neurons as stored)
        as_stored = changed is None
        elsewhere = None  # (a note: another backend than the run's ran the trained parameters as stored)
        if stored and target.name != stored.get("backend") and as_stored:
            elsewhere = trained_on_a_representing_backend(path, stored.get("backend"))
        on_its_device, set_up_otherwise = _check_device(path, metrics, config.backend == stored.get("backend"), target,
                                                        calibration)
        if stored and on_its_device:
            changed = None  # (it ran as on the device it was trained on: no note)
        job_seeds = np.random.default_rng(seed)  # every job its own seed, all from --seed
        output = output_spike_times(target, network, encoder(data.features), calibration,
                                    lambda: draw_seed(job_seeds), config.evaluation_batch_size)
        repeatable = target.capabilities.deterministic  # (asked while open: mock-hil's comes from its service)
        close_after_work(target, "the evaluation is complete")  # (its result is reported)
    stop_if_interrupted()  # (a stop signal some code swallowed: no result is reported)
    report = {"network": str(network_file), "backend": target.name, "dataset": config.dataset, "split": split,
              "n_samples": len(data.labels), "accuracy": accuracy(output, data.labels)}
    if as_json:
        echo_json(report)
    else:
        click.echo(f"{split} accuracy on {target.name}: {100 * report['accuracy']:.2f} % "
                   f"({report['n_samples']} samples)")
    if not stored and not config_file:
        click.echo(f"note: {network_file} is a network file, which holds no encoding: evaluated with the "
                   "default encoder settings (--config gives those it was trained with)", err=True)
    if elsewhere:
        click.echo(f"{elsewhere}; {target.name!r} ran the trained parameters as stored", err=True)
    if changed:
        click.echo(f"note: {target.name!r} ran the network as it represents it, not as stored ({changed}; "
                   "its represent(): e.g. a chip's clipped and quantised weights and delays)", err=True)
    as_run = stored and split == "test" and seed == metrics.get("test_seed") \
        and _same_components(config, stored, ("backend", "dataset"), built_neutral_options(target, config.backend))
    if as_run and isinstance(metrics.get("test_accuracy"), float):
        differs = _differs_from_recorded(metrics["test_accuracy"], report["accuracy"], output, data.labels,
                                         repeatable, set_up_otherwise, file_changed, settings_edited)
        if differs:
            click.echo(f"note: {differs}", err=True)
    mismatches = other_network(given, network) if config_file else []
    if mismatches:
        click.echo(f"note: {config_file} describes another network than {network_file} ({'; '.join(mismatches)}): "
                   "the file's network is evaluated, with the settings file's dataset, encoder and backend "
                   "settings", err=True)


def _note_edited_settings(folder: Path, stored: dict) -> bool:
    """Note the evaluation settings (the backend's aside: a backend object given to the trainer
    is recorded by name only) in which the run's metrics.json, `stored`, differs from its
    checkpoint, and return whether it does: metrics.json was edited, and an accuracy unlike the
    recorded one is not the code's.  A missing or unreadable checkpoint says nothing (evaluate
    needs none)."""
    from delgrad_core._errors import DelgradError
    from delgrad_core.training._run_folder import RunFolder

    try:
        saved = RunFolder(folder).checkpoint_settings()
    except (OSError, DelgradError):
        return False
    edited = [f"{key} {json.dumps(stored[key])} (the checkpoint's: {json.dumps(saved[key])})"
              for key in _EVALUATION_SETTINGS if key not in ("backend", "backend_options")
              and key in saved and key in stored and saved[key] != stored[key]]
    if edited:
        click.echo(f"note: {folder}/metrics.json has other settings than the run's checkpoint: {'; '.join(edited)}; "
                   "edited since the run? Evaluated with those of metrics.json", err=True)
    return bool(edited)


def _same_components(config, stored: dict, kinds: tuple, neutral_options=frozenset()) -> bool:
    """Whether `config` names the components of `kinds` (e.g. backend, dataset) of the run's
    settings `stored` with the same options, but for options given at their default and backend
    options `neutral_options` (which do not change results): as a resume compares them."""
    from delgrad_core.training._config import result_settings, without_default_options

    def compared(settings):
        table = {key: settings.get(key) for kind in kinds for key in (kind, f"{kind}_options")}
        return without_default_options(result_settings(table, neutral_options))

    return compared(config.to_dict()) == compared(stored)


def _note_changed_data(path: Path, metrics: dict, stored: dict, config, split: str, data) -> None:
    """Warn when the run's own `split` (same dataset and options) is not the data it recorded:
    its files changed (or the run was given other data in Python), or the recorded digest is not
    one (a damaged or edited metrics.json)."""
    from delgrad_core.training._config import shown_setting

    recorded = metrics.get("dataset_digests")
    if not isinstance(recorded, dict) or split not in recorded or not _same_components(config, stored, ("dataset",)):
        return
    digest = recorded[split]
    if not (isinstance(digest, str) and re.fullmatch("[0-9a-f]{64}", digest)):
        warnings.warn(f"{path}: metrics.json: dataset_digests.{split} is {shown_setting(digest)}, not a SHA-256 "
                      "digest (a damaged or edited file): whether the data changed since the run is unknown",
                      UserWarning, stacklevel=1)
    elif digest != data.digest():
        warnings.warn(f"the {split} split of {config.dataset!r} differs from the one {path} recorded (its files "
                      "changed, or the run was given other data in Python): the accuracy is this data's", UserWarning,
                      stacklevel=1)


def _calibration_seed(path: Path, stored: dict, seed: int) -> int | None:
    """The seed the run was calibrated with (its setting `seed`: None or an integer), else `seed`;
    a damaged one is refused naming metrics.json (the backend's "seed: expected ..." did not say
    whose seed, and --seed sets another)."""
    from delgrad_core._execution import check_seed

    if "seed" not in stored:
        return seed
    try:
        return check_seed(stored["seed"])
    except InvalidValueError:
        raise FileFormatError(f"{path}: metrics.json: config.seed (the run's seed, which its backend was calibrated "
                              f"with): expected null or an integer in [0, 2**63 - 1], got {stored['seed']!r}") from None


def _differs_from_recorded(recorded: float, now: float, output, labels, deterministic: bool,
                           set_up_otherwise: bool = False, file_changed: bool = False,
                           settings_edited: bool = False) -> str | None:
    """How the test accuracy `now` of `output` (spike times of the run's network on its test split
    with its test seed, by a backend `deterministic` or not, on a device `set_up_otherwise` than
    the run's or not, of a network file `file_changed` since the run saved it or not, with
    settings `settings_edited` in metrics.json or not) differs from the one the run `recorded`,
    and why if a known change explains it; None if they agree."""
    import numpy as np

    if now == recorded:
        return None
    told = f"the run recorded a test accuracy of {100 * recorded:.2f} %, {100 * now:.2f} % now"
    times = np.asarray(output)
    lowest_first = np.argmin(times, axis=1)  # (the rule before ties counted as wrong)
    if np.mean((lowest_first == labels) & np.isfinite(times.min(axis=1))) == recorded:
        return (f"{told}: it was scored when a tie for the first output spike went to the lowest class; ties now "
                "count as wrong (docs/model.md §5.2)")
    if file_changed:
        return f"{told} (of the network file as it is now, as noted above)"
    if settings_edited:
        return f"{told} (with the settings of metrics.json noted above)"
    if set_up_otherwise:
        return f"{told} (on the device set up otherwise, as warned above)"
    if not deterministic:
        return f"{told} (the backend does not repeat its results for a seed)"
    return f"{told} (its backend, dataset or their code changed since)"


def _changes(network, represented) -> str | None:
    """How many weights, delays and neuron parameters `represented` (a backend's represent() of
    `network`) changed, and by how much at most (times in units of tau_s); None if it changed none."""
    import numpy as np

    parts = []
    for what, unit, of in (("weights", "", lambda layer: layer.projection.weights),
                           ("delays", " tau_s", lambda layer: layer.projection.delays),
                           ("thresholds", "", lambda layer: layer.neuron_arrays()[0]),
                           ("membrane time constants", " tau_s", lambda layer: layer.neuron_arrays()[1]),
                           ("synaptic time constants", " tau_s", lambda layer: layer.neuron_arrays()[2])):
        pairs = [(of(a), of(b)) for a, b in zip(network.layers, represented.layers) if of(a) is not None]
        if not pairs:
            continue
        moved = np.concatenate([np.abs(b - a).ravel() for a, b in pairs])
        n_changed = int(np.count_nonzero(moved))
        if n_changed:
            parts.append(f"{n_changed:,} of {moved.size:,} {what} changed, by up to {moved.max():.3g}{unit}")
    return "; ".join(parts) or None

