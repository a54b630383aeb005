"""`delgrad train`: train a classifier into a run folder, or resume one."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from delgrad_core.cli import interrupted_status, main, no_writes_once_stopped, stop_if_interrupted
from delgrad_core._errors import (BackendError, DelgradError, FileFormatError, InvalidValueError,
                                  UnsupportedNetworkError)
from delgrad_core.cli._settings import (
    BACKEND_OPTION, DATASET_OPTION, PLUGIN_SETTINGS, CONFIG_FILE, SET_OPTION, check_out_names, check_thread_variable,
    command_line_settings, given_once, one_or_list, refuse_no_default_backend, refuse_not_installed, refuse_set_twice,
    with_its_file, with_tables, without_replaced_options)
from delgrad_core.cli._unused_settings import chosen_settings, warn_unused_settings

__all__ = ["train"]


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


def _check_stored(stored: dict, checkpoint, given: dict | None = None) -> None:
    """Refuse a checkpoint whose own settings are not valid (edited or damaged), naming it: not a
    usage error, as none of them was given here.  One naming a plugin that is not installed is
    refused as such (the checkpoint is fine); one replaced in `given` (the settings given here)
    is checked as given."""
    from delgrad_core._plugins import registry
    from delgrad_core.training import config_with_defaults

    given = given or {}
    refuse_not_installed(stored, given, checkpoint, "the checkpoint is fine: {remedy}, then resume again")
    replaced = {kind: given[kind] for kind in PLUGIN_SETTINGS if given.get(kind) is not None}
    if not all(isinstance(name, str) and name in registry().names(kind) for kind, name in replaced.items()):
        return  # (refused as given here, a usage error, when the settings are checked)
    stored = without_replaced_options(stored, replaced, PLUGIN_SETTINGS)
    try:
        config_with_defaults({**stored, **replaced}, merge_options=False)
    except InvalidValueError as exc:
        raise FileFormatError(f"{checkpoint}: its stored settings are refused ({exc}); a damaged or edited "
                              "checkpoint") from None


@main.command()
@click.option("--backend", help="Backend name (see `delgrad backends`).  [default: reference]")
@click.option("--dataset", help="Dataset name (see docs/datasets.md).  [default: yin_yang]")
@click.option("--hidden", multiple=True,
              callback=given_once(lambda ctx, param, value: one_or_list(value, int, "hidden")),
              help="Hidden neurons: 30, or one size per hidden layer: 128,64.  [default: 30]")
@click.option("--delays", multiple=True,
              callback=given_once(lambda ctx, param, value: one_or_list(value, str, "delays")),
              help="Delay kind (none, axonal, dendritic, synaptic), or one per layer: axonal,none.  "
                   "[default: synaptic]")
@click.option("--tau-ratio", type=float, help="tau_m / tau_s, from 0.01 to 1e6.  [default: 2]")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.  [default: 300]")
@click.option("--batch-size", type=click.IntRange(min=1), help="Mini-batch size.  [default: 150]")
@click.option("--seed", type=int, help="Random seed.  [default: 0]")
@click.option("--loss", help="Loss name (built in: squared, crossentropy; plugins may add more).  [default: squared]")
@click.option("--config", "config_file", **CONFIG_FILE,
              help="TOML file with any TrainingConfig setting (top level, a [train] table, or the sections of "
                   "docs/training.md), or a run's metrics.json: the settings that run trained with.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Output folder.  [default: a fresh runs/train-<time>]")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--no-progress", is_flag=True, help="No progress bar (or progress lines in a log).")
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
    from delgrad_core.training._config import LATER_SETTINGS, shown_setting
    from delgrad_core.training._run import run_training
    from delgrad_core.datasets import DatasetOptionsError
    from delgrad_core.training._run_folder import RunFolder
    from delgrad_core.training._parameters import SettingsConflictError
    from delgrad_core.training._trainer import BackendOptionsError

    check_thread_variable()
    options = dict(backend=backend, dataset=dataset, hidden=hidden, delays=delays, tau_ratio=tau_ratio,
                   epochs=epochs, batch_size=batch_size, seed=seed, loss=loss)
    refuse_set_twice(set_settings, {**options, "backend_options": backend_options, "dataset_options": dataset_options})
    if resume and not out_dir:
        raise click.UsageError("--resume needs --out, the folder of the run to continue")
    if out_dir is not None:
        check_out_names(out_dir)
    try:
        settings = command_line_settings(config_file, options, set_settings, backend_options, dataset_options)
        given = chosen_settings(settings, config_file, set_settings)
        if not resume:  # (a resumed run's own backend is named below)
            refuse_no_default_backend(settings.get("backend"))
        stored = RunFolder(out_dir).checkpoint_settings() if resume else {}
        if stored:  # the run's own settings (final), under what is given here (resume refuses changes)
            stored = {**LATER_SETTINGS, **stored}  # (what a run recorded before a setting existed trained with)
            _check_stored(stored, RunFolder(out_dir).checkpoint, settings)
            stored = without_replaced_options(stored, settings, ("backend", "dataset"))  # (another one named here)
            tables = {key: settings.pop(key, None) for key in ("backend_options", "dataset_options")}
            settings = with_tables({**stored, **settings}, **tables)
        config = config_with_defaults(settings, merge_options=not stored)
    except InvalidValueError as exc:
        raise click.UsageError(with_its_file(exc, config_file, options, set_settings, backend_options,
                                             dataset_options)) from None
    warn_unused_settings(given, [config], f"delays = {shown_setting(config.delays)}")
    _note_small_network_rates(config)
    out = Path(out_dir) if out_dir else _fresh_out_dir()
    started = time.perf_counter()
    try:
        with no_writes_once_stopped():
            summary = run_training(config, out, resume=resume, progress=not no_progress,
                                   should_stop=stop_if_interrupted)
    except (BackendOptionsError, DatasetOptionsError, SettingsConflictError) as exc:
        raise click.UsageError(with_its_file(exc, config_file, options, set_settings, backend_options,
                                             dataset_options)) from None
    except UnsupportedNetworkError as exc:  # a capability the settings' network needs (not the device's resources)
        if exc.capability != "resources":
            raise click.UsageError(str(exc)) from None
        epoch = RunFolder(out).checkpoint_epoch()
        if not epoch:
            raise
        # (met as training moved spikes or delays: the run's own settings meet it again on resume)
        raise UnsupportedNetworkError(
            f"{exc} (met in epoch {epoch + 1}: the {epoch} epoch(s) before are saved in {out}, but a resume takes "
            "the run's own settings and would meet this again; a setting or backend option changed means a new run, "
            "in another --out)", capability="resources") from None
    except KeyboardInterrupt:
        if RunFolder(out).checkpoint.exists():
            click.echo(f"\ninterrupted; {_resume_hint(out, config.epochs)}", err=True)
        else:
            click.echo("\ninterrupted before the first epoch finished; nothing to resume", err=True)
        sys.exit(interrupted_status())
    except OSError as exc:  # (e.g. a full disk): the epochs done are kept
        if isinstance(exc, DelgradError):  # (e.g. missing dataset files: its message says what to do)
            raise
        if not RunFolder(out).checkpoint.exists():
            raise DelgradError(f"{exc}; no epoch was saved: run the same command again once the cause is removed") \
                from None
        raise DelgradError(f"{exc}; {_resume_hint(out, config.epochs)} once the cause is removed") from None
    except BackendError as exc:  # (e.g. a service that stays away): the epochs done are kept
        if not RunFolder(out).checkpoint.exists():
            raise
        caveat = "" if exc.retryable else " once the cause is removed" + (
            " (it may be a --backend-option given here)" if resume and backend_options else
            " (the run's own settings would meet it again)")
        raise BackendError(f"{exc}; {_resume_hint(out, config.epochs)}{caveat}") from None
    finally:
        if not out_dir:  # a folder this command chose and made: removed if the run wrote nothing
            with contextlib.suppress(OSError):
                out.rmdir()
    click.echo(
        f"test accuracy {100 * summary['test_accuracy']:.2f} % (network of epoch {summary['selected_epoch']}; "
        f"{summary['n_parameters']} parameters; trained {summary['wall_seconds']:.1f} s"
        f"{' in all its sessions' if resume else ''}, this command took "
        f"{time.perf_counter() - started:.1f} s)  ->  {out}"
    )


def _note_small_network_rates(config) -> None:
    """Say so when the learning rates are not the delay kind's defaults but those of DelGrad's
    5-hidden synaptic network (a rule of the defaults a user would not guess)."""
    rates = config.small_network_rates()
    if rates:
        shown = " and ".join(f"{name} {rate:g}" for name, rate in rates.items())
        click.echo(f"note: {shown}: a synaptic network of at most 5 hidden neurons trains by default with the "
                   "learning rates of DelGrad's 5-hidden network (set them to train with others)", err=True)


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
