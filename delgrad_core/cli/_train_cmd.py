"""`delgrad train`, `delgrad evaluate` and `delgrad sweep`."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import click

from delgrad_core._atomic import atomic_write_text
from delgrad_core.cli import interrupted_status, main, no_writes_once_stopped, stop_if_interrupted
from delgrad_core.cli._outputs import check_output_file
from delgrad_core._errors import BackendError, FileFormatError, InvalidValueError
from delgrad_core._ir import DelayKind

_DELAY_CHOICES = [kind.value for kind in DelayKind]
SEEDS = click.IntRange(0, 2**63 - 1)  # (the seeds delgrad_core._execution.MAX_SEED allows)


def _one_or_list(value, kind, name):
    """'30' -> 30, '128,64' -> [128, 64] (the config checks the values)."""
    if value is None:
        return None
    try:
        items = [kind(item.strip()) for item in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected one value or a comma-separated list, got {value!r}",
                                 param_hint=f"--{name}") from None
    return items[0] if len(items) == 1 else items


def _given_once(parse):
    """A callback of a list option declared `multiple` only to notice repeats: a repeated
    --hidden or --delays is refused (click keeps the last silently), then `parse` reads the one."""
    def callback(ctx, param, values):
        if len(values) > 1:
            name = param.opts[0]
            raise click.BadParameter(f"given {len(values)} times ({', '.join(map(repr, values))}); give one {name} "
                                     f"with a comma-separated list, e.g. {name} {','.join(values)}")
        return parse(ctx, param, values[0] if values else None)
    return callback


def _parse_key_values(ctx, param, values) -> dict:
    from delgrad_core._options import parse_key_values

    try:
        return parse_key_values(values, param.opts[0])
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_settings(ctx, param, values) -> dict:
    """The TrainingConfig settings of --set KEY=VALUE (VALUE read as JSON when it can be); a
    name that is not a setting is refused, naming the settings."""
    import dataclasses
    import difflib

    from delgrad_core._options import parse_key_values
    from delgrad_core.training import TrainingConfig

    try:
        settings = parse_key_values(values, "--set")
    except InvalidValueError as exc:
        raise click.UsageError(str(exc)) from None
    known = sorted(spec.name for spec in dataclasses.fields(TrainingConfig))
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise click.UsageError(f"--set: {key} is not a setting{hint}; the settings (docs/training.md): "
                                   f"{', '.join(known)}")
    return settings


_OPTION_OF = {"backend_options": "--backend-option", "dataset_options": "--dataset-option"}  # (else --<name>)


def _refuse_set_twice(settings: dict, options: dict) -> None:
    """Refuse a --set setting also given by its own option (`options`: setting -> the value of
    its option, None or {} if not given)."""
    for key in sorted(settings):
        if options.get(key) not in (None, {}):
            option = _OPTION_OF.get(key, f"--{key.replace('_', '-')}")
            raise click.UsageError(f"--set {key}={_typed(settings[key])}: {key} is given by {option} too; give it once")


def _typed(value) -> str:
    """A --set VALUE as typed: a string as itself (unless it reads as JSON), else JSON."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            return value
    return json.dumps(value)


class _RegularFile(click.Path):
    """An existing regular file (a FIFO or device passes click's `exists` and is read forever)."""

    def __init__(self):
        super().__init__(exists=True, dir_okay=False)

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        if not os.path.isfile(path):
            self.fail(f"{click.format_filename(path)!r} is not a regular file (a FIFO, device or socket); give a "
                      "TOML file", param, ctx)
        return path


BACKEND_OPTION = click.option(
    "--backend-option", "backend_options", multiple=True, metavar="KEY=VALUE", callback=_parse_key_values,
    help="Option for the backend (repeatable); VALUE is read as JSON when it can be, e.g. chip=3.")
SET_OPTION = click.option(
    "--set", "set_settings", multiple=True, metavar="KEY=VALUE", callback=_parse_settings,
    help="A TrainingConfig setting without an option of its own (repeatable; docs/training.md), over --config's; "
         "VALUE is read as JSON when it can be, e.g. weight_lr=0.01 or keep_best=false.")
DATASET_OPTION = click.option(
    "--dataset-option", "dataset_options", multiple=True, metavar="KEY=VALUE", callback=_parse_key_values,
    help="Option for the dataset's loader (repeatable; docs/datasets.md), e.g. size=14 for 14 x 14 images.")


def _with_tables(settings: dict, **tables) -> dict:
    """`settings` with option tables given on the command line (e.g. backend_options) laid over
    its own tables of those names."""
    merged = dict(settings)
    for key, given in tables.items():
        if given:
            own = settings.get(key, {})
            if not isinstance(own, dict):
                raise InvalidValueError(f"{key}: expected a table (dict) of settings, got {own!r}")
            merged[key] = {**own, **given}
    return merged


def _absolute_paths(settings: dict) -> dict:
    """`settings` (given now: a config file's and the command line's) with the relative paths
    of options named ``*_file``, ``*_dir`` or ``directory`` made absolute: a run records them
    and is resumed or evaluated from anywhere.  (URLs are left alone.)"""
    def absolute(name, value):
        is_path = (name.endswith(("_file", "_dir")) or name == "directory") and isinstance(value, str) \
            and value and "://" not in value
        return os.path.abspath(os.path.expanduser(value)) if is_path else value

    return {key: {name: absolute(name, value) for name, value in table.items()}
            if key in ("backend_options", "dataset_options") and isinstance(table, dict) else table
            for key, table in settings.items()}


def _fresh_out_dir() -> Path:
    """runs/train-YYYYmmdd-HHMMSS, with a suffix if it exists; created here (exclusively, so
    that two runs started in the same second get two folders)."""
    base = Path("runs") / datetime.now().strftime("train-%Y%m%d-%H%M%S")
    path, n = base, 1
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                path.mkdir()
                return path
            except FileExistsError:
                path = base.with_name(f"{base.name}-{n}")
                n += 1
    except OSError as exc:  # (a read-only or full file system, no permission, "runs" a file, ...)
        raise click.UsageError(f"the default output folder {path} cannot be made in the current folder "
                               f"({os.getcwd()!r}: {exc.strerror or exc}); give --out with a folder to write "
                               "the run to") from None


def _shortened(text: str, limit: int = 100) -> str:
    """`text`, its middle left out if it is longer than `limit` characters."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...({len(text) - limit + 20} characters)...{text[-(limit // 2 - 20):]}"


def _check_out_names(out_dir: str) -> None:
    """Refuse an --out whose folder names (or whole path) are longer than the file system
    allows, as a usage error naming --out (not the operating system's error echoing it)."""
    from delgrad_core._atomic import check_file_name

    path = Path(out_dir)
    for part in [path, *path.parents]:
        if part.name:
            try:
                check_file_name(part)
            except InvalidValueError:
                size = len(os.fsencode(part.name))
                raise click.UsageError(f"--out: the folder name {_shortened(part.name)!r} is {size} bytes long, "
                                       "more than the file system allows; choose a shorter name") from None
    size = len(os.fsencode(os.path.abspath(out_dir)))
    if size >= 4096:  # (PATH_MAX on Linux; the run's files are longer still)
        raise click.UsageError(f"--out: the path {_shortened(out_dir)!r} is {size} bytes long, more than the file "
                               "system allows; choose a shorter one")


def _settings(config_file, options: dict, set_settings: dict | None = None) -> dict:
    """Config file values, overridden by the options given on the command line and the settings
    of --set (a file that is not TOML, or holds a bad setting, is a usage error)."""
    from delgrad_core.training import load_config

    try:
        values = load_config(config_file) if config_file else {}
    except (FileFormatError, InvalidValueError) as exc:  # (a --config file that is not TOML, or a bad setting)
        raise click.UsageError(str(exc)) from None
    given = {k: (f"--{k.replace('_', '-')} {_shown(v)}", v) for k, v in options.items() if v is not None}
    given.update({k: (f"--set {k}={_typed(v)}", v) for k, v in (set_settings or {}).items()})
    for key in sorted(set(given) & set(values)):
        typed, value = given[key]
        if value != values[key]:
            click.echo(f"note: {typed} replaces {key} = {values[key]!r} of {config_file}", err=True)
    values.update({key: value for key, (_, value) in given.items()})
    return values


_PLUGIN_SETTINGS = ("backend", "dataset", "loss", "encoder")  # (settings naming what a plugin registers)


def _refuse_not_installed(stored: dict, given: dict, where, what: str, kinds=_PLUGIN_SETTINGS) -> None:
    """Refuse a run whose own settings (`stored`) name a backend, dataset, loss or encoder (of
    `kinds`) that is not installed (not any more), unless another one is `given` here instead:
    the run is fine, the plugin is missing (not a usage error, not a damaged file).  `what`: the
    end of the message ({option}: --backend, ... for the kind)."""
    from delgrad_core._errors import UnknownNameError
    from delgrad_core._plugins import own_kind_hint, provider_hint, registry

    for kind in kinds:
        name = stored.get(kind)
        if given.get(kind) is not None or not isinstance(name, str):
            continue
        installed = registry().names(kind)
        if name in installed:
            continue
        facts = [f"installed: {', '.join(installed)}" if installed else f"no {kind} is installed"]
        facts += [hint for hint in [provider_hint(kind, name) or ("" if installed else own_kind_hint(kind))] if hint]
        raise UnknownNameError(f"{where}: the run was trained with {kind} {name!r}, which is not installed "
                               f"({'; '.join(facts)}); {what.replace('{option}', f'--{kind}')}")


def _refuse_no_backend(name: str | None) -> None:
    """Refuse to train with no backend installed at all (only the core): not a usage error."""
    from delgrad_core._errors import UnknownNameError
    from delgrad_core._plugins import DEFAULT_BACKEND, not_installed, registry

    if not registry().names("backend"):
        raise UnknownNameError(not_installed("backend", name or DEFAULT_BACKEND, []))


def _check_stored(stored: dict, checkpoint, given: dict | None = None) -> None:
    """Refuse a checkpoint whose own settings are not valid (edited or damaged), naming it: not a
    usage error, as none of them was given here.  One naming a plugin that is not installed is
    refused as such (the checkpoint is fine); one replaced in `given` (the settings given here)
    is checked as given."""
    from delgrad_core._plugins import registry
    from delgrad_core.training import config_with_defaults

    given = given or {}
    _refuse_not_installed(stored, given, checkpoint, "the checkpoint is fine: install it, then resume again")
    replaced = {kind: given[kind] for kind in _PLUGIN_SETTINGS if given.get(kind) is not None}
    if not all(isinstance(name, str) and name in registry().names(kind) for kind, name in replaced.items()):
        return  # (refused as given here, a usage error, when the settings are checked)
    stored = {key: value for key, value in stored.items()
              if not any(key == f"{kind}_options" and replaced[kind] != stored.get(kind) for kind in replaced)}
    try:
        config_with_defaults({**stored, **replaced}, merge_options=False)
    except InvalidValueError as exc:
        raise FileFormatError(f"{checkpoint}: its stored settings are refused ({exc}); a damaged or edited "
                              "checkpoint") from None


def _shown(value) -> str:
    """A command-line value as it was typed: 8,6 for a list."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


@main.command()
@click.option("--backend", help="Backend name (see `delgrad backends`).  [default: reference]")
@click.option("--dataset", help="Dataset name (see docs/datasets.md).  [default: yin_yang]")
@click.option("--hidden", multiple=True,
              callback=_given_once(lambda ctx, param, value: _one_or_list(value, int, "hidden")),
              help="Hidden neurons: 30, or one size per hidden layer: 128,64.  [default: 30]")
@click.option("--delays", multiple=True,
              callback=_given_once(lambda ctx, param, value: _one_or_list(value, str, "delays")),
              help="Delay kind (none, axonal, dendritic, synaptic), or one per layer: axonal,none.  "
                   "[default: synaptic]")
@click.option("--tau-ratio", type=float, help="tau_m / tau_s, from 0.01 to 1e6.  [default: 2]")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.  [default: 300]")
@click.option("--batch-size", type=click.IntRange(min=1), help="Mini-batch size.  [default: 150]")
@click.option("--seed", type=int, help="Random seed.  [default: 0]")
@click.option("--loss", help="Loss name (built in: squared, crossentropy; plugins may add more).  [default: squared]")
@click.option("--config", "config_file", type=_RegularFile(),
              help="TOML file with any TrainingConfig setting (top level, a [train] table, or the sections of "
                   "docs/training.md).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Output folder.  [default: a fresh runs/train-<time>]")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@BACKEND_OPTION
@DATASET_OPTION
@SET_OPTION
def train(backend, dataset, hidden, delays, tau_ratio, epochs, batch_size, seed, loss, config_file, out_dir, resume,
          no_progress, backend_options, dataset_options, set_settings):
    """Train a classifier on --dataset; write metrics.json, network.npz and plots into --out.

    The defaults shown are those of Yin-Yang on the reference backend; a backend or dataset may
    register its own (bss2-emulator: axonal delays, tau ratio 1, batch 40, ...).  metrics.json
    records every setting used.
    """
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._config import LATER_SETTINGS
    from delgrad_core.training._run import run_training
    from delgrad_core.datasets import DatasetOptionsError
    from delgrad_core.training._run_folder import RunFolder
    from delgrad_core.training._trainer import BackendOptionsError

    options = dict(backend=backend, dataset=dataset, hidden=hidden, delays=delays, tau_ratio=tau_ratio,
                   epochs=epochs, batch_size=batch_size, seed=seed, loss=loss)
    _refuse_set_twice(set_settings, {**options, "backend_options": backend_options, "dataset_options": dataset_options})
    if resume and not out_dir:
        raise click.UsageError("--resume needs --out, the folder of the run to continue")
    if out_dir == "":
        raise click.UsageError("--out: expected a folder name, got ''")
    if out_dir:
        _check_out_names(out_dir)
    try:
        settings = _absolute_paths(_with_tables(_settings(config_file, options, set_settings),
                                                backend_options=backend_options, dataset_options=dataset_options))
        if not resume:  # (a resumed run's own backend is named below)
            _refuse_no_backend(settings.get("backend"))
        stored = RunFolder(out_dir).checkpoint_settings() if resume else {}
        if stored:  # the run's own settings (final), under what is given here (resume refuses changes)
            stored = {**LATER_SETTINGS, **stored}  # (what a run recorded before a setting existed trained with)
            _check_stored(stored, RunFolder(out_dir).checkpoint, settings)
            for name in ("backend", "dataset"):  # (another one named here: its options are not the run's)
                if settings.get(name) not in (None, stored.get(name)):
                    stored = {key: value for key, value in stored.items() if key != f"{name}_options"}
            tables = {key: settings.pop(key, None) for key in ("backend_options", "dataset_options")}
            settings = _with_tables({**stored, **settings}, **tables)
        config = config_with_defaults(settings, merge_options=not stored)
    except InvalidValueError as exc:
        raise click.UsageError(str(exc)) from None
    out = Path(out_dir) if out_dir else _fresh_out_dir()
    started = time.perf_counter()
    try:
        with no_writes_once_stopped():
            summary = run_training(config, out, resume=resume, progress=not no_progress,
                                   should_stop=stop_if_interrupted)
    except (BackendOptionsError, DatasetOptionsError) as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt:
        if RunFolder(out).checkpoint.exists():
            click.echo(f"\ninterrupted; {_resume_hint(out, config.epochs)}", err=True)
        else:
            click.echo("\ninterrupted before the first epoch finished; nothing to resume", err=True)
        sys.exit(interrupted_status())
    except BackendError as exc:  # (e.g. a service that stays away): the epochs done are kept
        if not RunFolder(out).checkpoint.exists():
            raise
        caveat = "" if exc.retryable else " once the cause is removed (the run's own settings would meet it again)"
        raise BackendError(f"{exc}; {_resume_hint(out, config.epochs)}{caveat}") from None
    finally:
        if not out_dir:  # a folder this command chose and made: removed if the run wrote nothing
            with contextlib.suppress(OSError):
                out.rmdir()
    click.echo(
        f"test accuracy {100 * summary['test_accuracy']:.2f} % (network of epoch {summary['selected_epoch']}; "
        f"{summary['n_parameters']} parameters; trained {summary['wall_seconds']:.1f} s, this command took "
        f"{time.perf_counter() - started:.1f} s)  ->  {out}"
    )


def _resume_hint(out: Path, epochs: int) -> str:
    """How to continue the run in `out` to `epochs` (named when the checkpoint still holds
    another target: a resume to more epochs stopped before its first new one)."""
    from delgrad_core.training._run_folder import RunFolder

    folder = RunFolder(out)
    target = "" if folder.checkpoint_settings().get("epochs") == epochs else f" --epochs {epochs}"
    command = f"delgrad train --out {shlex.quote(str(out))} --resume{target}"
    if folder.checkpoint_epoch() >= epochs:
        return f"every epoch is trained and saved, but not all the run's results are written: finish them with " \
               f"{command}"
    return f"the last finished epoch is saved: continue with {command}"


def _run_settings(path: Path) -> tuple[Path, dict, dict]:
    """(network file, the run's settings, its metrics) for a run folder or a network file;
    settings and metrics are {} for a network file outside a finished run folder."""
    from delgrad_core.training._config import shown_setting
    from delgrad_core.training._run_folder import RunFolder

    folder = RunFolder(path if path.is_dir() else path.parent)
    network_file = folder.network if path.is_dir() else path
    metrics = folder.finished_metrics()
    if metrics is None or network_file != folder.network:
        if path.is_dir():
            raise InvalidValueError(f"{path}: not a finished run folder (no metrics.json with a test accuracy)")
        return network_file, {}, {}
    if not network_file.is_file():
        raise InvalidValueError(f"{path}: the run folder has no network file ({network_file.name}); it was deleted "
                                "or moved")
    _check_accuracy(metrics["test_accuracy"], folder.metrics)
    if "config" not in metrics:
        raise FileFormatError(f"{folder.metrics}: not the metrics of a finished run (no 'config', the table of the "
                              "run's settings); a damaged or edited file")
    settings = metrics["config"]
    if not isinstance(settings, dict) or not settings:
        raise FileFormatError(f"{folder.metrics}: its 'config' is not a table of the run's settings (got "
                              f"{shown_setting(settings)}); a damaged or edited file")
    return network_file, settings, metrics


def _check_accuracy(accuracy, metrics_file: Path) -> None:
    """Refuse a finished run's test accuracy that is not a number in [0, 1] (a damaged or edited
    metrics.json, as `delgrad sweep` refuses it)."""
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)) or not 0 <= accuracy <= 1:
        raise FileFormatError(f"{metrics_file}: not the metrics of a finished run (test_accuracy: expected a number "
                              f"in [0, 1], got {json.dumps(accuracy)}); a damaged or edited file")


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--backend", help="Backend name.  [default: the run's, else reference]")
@click.option("--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True)
@click.option("--dataset", help="Dataset name.  [default: the run's, else yin_yang]")
@click.option("--seed", type=SEEDS,
              help="Seed of the noise on noisy backends (each job of the evaluation gets its own, drawn from it).  "
                   "[default: the run's test seed (its recorded test accuracy is repeated exactly), else 0]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--config", "config_file", type=_RegularFile(),
              help="TOML file with the dataset, encoder and backend settings of a network file (e.g. the config it "
                   "was trained with: all its settings are checked as by train --config, only those are used).  "
                   "[default: the defaults]")
@BACKEND_OPTION
@DATASET_OPTION
def evaluate(path, backend, split, dataset, seed, as_json, config_file, backend_options, dataset_options):
    """First-spike accuracy of a trained network on a dataset split.

    PATH is a run folder (its network.npz, evaluated with the run's own dataset, encoder and
    backend settings) or a network file (a network file holds no encoding: the settings of
    --config, else Yin-Yang with the default encoder, with a note saying so).
    """
    import numpy as np

    from delgrad_core._errors import FileFormatError
    from delgrad_core._execution import MAX_SEED
    from delgrad_core._losses import accuracy
    from delgrad_core._serialization import load_network
    from delgrad_core.datasets import DatasetOptionsError, load_dataset
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component
    from delgrad_core.training._evaluation import check_fits_dataset, draw_seed, output_spike_times
    from delgrad_core.training._trainer import BackendOptionsError, built_backend

    network_file, stored, metrics = _run_settings(path)
    if stored and config_file:
        raise click.UsageError(f"--config: {path} is evaluated with its run's own settings; --config gives those of "
                               "a network file outside a run folder")
    if seed is None:
        seed = metrics.get("test_seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise FileFormatError(f"{path}: metrics.json: test_seed: expected an integer in [0, 2**63 - 1], "
                                  f"got {seed!r}")
    given = stored or _absolute_paths(_settings(config_file, {}))
    settings = {key: given[key] for key in ("dataset", "dataset_options", "encoder", "t_early", "t_late",
                                             "encoder_options", "backend", "backend_options",
                                             "evaluation_batch_size") if key in given}
    settings.update({k: v for k, v in {"backend": backend, "dataset": dataset}.items() if v is not None})
    if backend is not None and backend != given.get("backend"):
        settings.pop("backend_options", None)
        settings.pop("evaluation_batch_size", None)
    if dataset is not None and dataset != given.get("dataset"):
        settings.pop("dataset_options", None)
    # given on the command line: over the run's own
    settings = _with_tables(settings, **_absolute_paths({"backend_options": backend_options,
                                                         "dataset_options": dataset_options}))
    def refused(exc: InvalidValueError) -> Exception:
        """A usage error if settings were given here; else the run's own settings are at fault."""
        if not stored:
            return click.UsageError(str(exc))
        hint = (f" (settings: the run's, from {path}/metrics.json, and those given here; --backend, --backend-option, "
                "--dataset and --dataset-option choose others)")
        given_here = backend or dataset or backend_options or dataset_options
        return click.UsageError(f"{exc}{hint}") if given_here else InvalidValueError(f"{exc}{hint}")

    if stored:
        source = f" (settings: the run's, from {path}/metrics.json)"
        _refuse_not_installed(stored, {"backend": backend, "dataset": dataset}, path,
                              "the run folder is fine: install it to evaluate the run as trained, or name another "
                              "with {option}" + source, kinds=("backend", "dataset"))
        _refuse_not_installed(stored, {}, path, "the run folder is fine: install it to evaluate the run" + source,
                              kinds=("encoder",))
    try:
        config = config_with_defaults(settings, merge_options=not stored)  # (a run's stored tables are final)
    except InvalidValueError as exc:
        raise refused(exc) from None
    network = load_network(network_file)
    try:
        data = load_dataset(config.dataset, split, **config.dataset_options)
    except DatasetOptionsError as exc:
        raise refused(exc) from None
    recorded = metrics.get("dataset_digests")
    if isinstance(recorded, dict) and split in recorded and recorded[split] != data.digest() and \
            (config.dataset, config.dataset_options) == (stored.get("dataset"), stored.get("dataset_options")):
        warnings.warn(f"the {split} split of {config.dataset!r} differs from the one {path} recorded (its files "
                      "changed): the accuracy is this data's", UserWarning, stacklevel=1)
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
        calibration = target.calibrate(network, seed=stored.get("seed", seed))  # (as the run was calibrated)
        calibrated_for = metrics.get("calibration_key") if config.backend == stored.get("backend") else None
        if calibrated_for is not None and calibrated_for != calibration.cache_key:
            warnings.warn(f"{path} was trained on a backend calibrated as {calibrated_for!r}; this one calibrates as "
                          f"{calibration.cache_key!r} (another chip, device or option set): the accuracy is this "
                          f"one's", UserWarning, stacklevel=1)
        job_seeds = np.random.default_rng(seed)  # every job its own seed, all from --seed
        output = output_spike_times(target, network, encoder(data.features), calibration,
                                    lambda: draw_seed(job_seeds), config.evaluation_batch_size)
    stop_if_interrupted()  # (a stop signal some code swallowed: no result is reported)
    report = {"network": str(network_file), "backend": target.name, "dataset": config.dataset, "split": split,
              "n_samples": len(data.labels), "accuracy": accuracy(output, data.labels)}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"{split} accuracy on {target.name}: {100 * report['accuracy']:.2f} % ({report['n_samples']} samples)")
    if not stored and not config_file:
        click.echo(f"note: {network_file} is a network file, which holds no encoding: evaluated with the "
                   "default encoder settings (--config gives those it was trained with)", err=True)


def _int_list(ctx, param, value):
    try:
        return list(dict.fromkeys(int(v) for v in value.split(",")))  # (each value once)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _kind_list(ctx, param, value):
    kinds = [v.strip() for v in value.split(",")]
    bad = [k for k in kinds if k not in _DELAY_CHOICES]
    if bad:
        raise click.BadParameter(f"expected comma-separated delay kinds from {', '.join(_DELAY_CHOICES)}; got "
                                 f"{', '.join(repr(k) for k in bad)} in {value!r}")
    return list(dict.fromkeys(kinds))  # (each kind once)


def _refuse_sweep_axes(settings: dict) -> None:
    """Refuse --set for the settings a sweep sets per trial."""
    for key, option in (("hidden", "--hidden"), ("delays", "--delays"), ("seed", "--seeds")):
        if key in settings:
            raise click.UsageError(f"--set {key}=...: the sweep sets {key} per trial; give it with {option}")


@main.command()
@click.option("--hidden", multiple=True, default=["5,10,15,20,25,30"], show_default=True,
              callback=_given_once(_int_list), help="Comma-separated hidden sizes (give the option once).")
@click.option("--delays", multiple=True, default=["none,axonal,dendritic,synaptic"], show_default=True,
              callback=_given_once(_kind_list), help="Comma-separated delay kinds (give the option once).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds 0..N-1 per cell.")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.  [default: --config's, else 300]")
@click.option("--jobs", type=click.IntRange(min=1, max=256), default=None,
              help="Parallel processes (or workers of the embedded Dask cluster), 1 to 256; never more than "
                   "the runs to do.  [default: CPUs]")
@click.option("--config", "config_file", type=_RegularFile(),
              help="TOML file with further TrainingConfig settings for every run.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/sweep", show_default=True)
@click.option("--backend", help="Backend name for every run.  [default: reference]")
@BACKEND_OPTION
@click.option("--dataset", help="Dataset name for every run.  [default: --config's, else yin_yang]")
@DATASET_OPTION
@click.option("--executor", type=click.Choice(["process", "dask"]), default="process", show_default=True,
              help="Where trials run: a local process pool, or Dask (pip install 'delgrad[dask]').")
@click.option("--scheduler", metavar="ADDRESS",
              help="With --executor dask: join this scheduler instead of starting a local cluster.")
@click.option("--trial", type=click.IntRange(min=0), help="Run (or resume) only trial number N here (SLURM array tasks).")
@click.option("--slurm-script", type=click.Path(dir_okay=False, path_type=Path),
              help="Write an sbatch --array script that runs this sweep one trial per task, and exit.")
@SET_OPTION
def sweep(hidden, delays, seeds, epochs, jobs, config_file, out_dir, backend, backend_options, dataset,
          dataset_options, executor, scheduler, trial, slurm_script, set_settings):
    """Parameter-efficiency study: hidden sizes x delay kinds x seeds (resumable)."""
    from delgrad_core.training._sweep import (
        SweepError, SweepInterrupted, check_runnable, plan_sweep, refuse_unusable_runs, run_sweep, run_trial,
        sweep_job_script)

    _refuse_sweep_axes(set_settings)
    options = {"epochs": epochs, "backend": backend, "dataset": dataset}
    _refuse_set_twice(set_settings, {**options, "backend_options": backend_options, "dataset_options": dataset_options})
    try:
        base = _absolute_paths(_with_tables(_settings(config_file, options, set_settings),
                                            backend_options=backend_options, dataset_options=dataset_options))
    except InvalidValueError as exc:
        raise click.UsageError(str(exc)) from None
    echo = lambda line: click.echo(line, err=True)  # noqa: E731
    grid = (base, hidden, delays, seeds, Path(out_dir))
    try:
        if slurm_script is not None:
            check_output_file(slurm_script, "--slurm-script", force=False, inputs=[config_file])
            trials = plan_sweep(*grid)  # (checked before the script is written)
            refuse_unusable_runs(trials, echo, elsewhere=True)
            check_runnable(trials, echo, elsewhere=True)
            command = ["delgrad", "sweep", "--hidden", ",".join(map(str, hidden)), "--delays", ",".join(delays),
                       "--seeds", str(seeds), "--out", str(out_dir)]
            command += ["--epochs", str(epochs)] if epochs is not None else []
            command += ["--config", str(config_file)] if config_file else []
            command += ["--backend", backend] if backend else []
            command += ["--dataset", dataset] if dataset else []
            command += [arg for flag, values in (("--backend-option", backend_options),
                                                 ("--dataset-option", dataset_options), ("--set", set_settings))
                        for key, value in values.items() for arg in (flag, f"{key}={json.dumps(value)}")]
            n_trials = len(hidden) * len(delays) * seeds
            with no_writes_once_stopped():
                atomic_write_text(slurm_script, sweep_job_script(command, n_trials), os_strings=True)
            click.echo(f"{slurm_script}: {n_trials} array tasks; submit with: sbatch {shlex.quote(str(slurm_script))}")
            return
        if trial is not None:
            run_trial(*grid, trial, echo=echo)
            return
        table = run_sweep(*grid, jobs=jobs, executor=executor, scheduler=scheduler, echo=echo)
    except InvalidValueError as exc:
        raise click.UsageError(str(exc)) from None
    except SweepInterrupted as exc:
        click.echo(exc.table)
        click.echo(str(exc), err=True)
        sys.exit(interrupted_status())
    except SweepError as exc:
        click.echo(exc.table)
        raise click.ClickException(" ".join(str(exc).split())) from None
    click.echo(table)
    sys.stdout.flush()
