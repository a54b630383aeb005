"""`delgrad sweep`: the parameter-efficiency study (hidden sizes x delay kinds x seeds)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from delgrad_core._atomic import atomic_write_text
from delgrad_core._cpu_count import MAX_JOBS
from delgrad_core.cli import interrupted_status, main, no_writes_once_stopped, show_line, stop_if_interrupted
from delgrad_core.cli._outputs import check_output_file
from delgrad_core._errors import DelgradError, InvalidValueError
from delgrad_core.cli._settings import (
    BACKEND_OPTION, DATASET_OPTION, DELAY_CHOICES, CONFIG_FILE, SET_OPTION, check_out_names, command_line_settings,
    check_thread_variable, given_once, refuse_no_default_backend, refuse_set_twice, with_its_file)
from delgrad_core.cli._unused_settings import chosen_settings, warn_unused_settings

__all__ = ["sweep"]


def _int_list(ctx, param, value):
    try:
        return list(dict.fromkeys(int(v) for v in value.split(",")))  # (each value once)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _kind_list(ctx, param, value):
    kinds = [v.strip() for v in value.split(",")]
    bad = [k for k in kinds if k not in DELAY_CHOICES]
    if bad:
        raise click.BadParameter(f"expected comma-separated delay kinds from {', '.join(DELAY_CHOICES)}; got "
                                 f"{', '.join(repr(k) for k in bad)} in {value!r}")
    return list(dict.fromkeys(kinds))  # (each kind once)


def _refuse_sweep_axes(settings: dict) -> None:
    """Refuse --set for the settings a sweep sets per trial."""
    for key, option in (("hidden", "--hidden"), ("delays", "--delays"), ("seed", "--seeds")):
        if key in settings:
            raise click.UsageError(f"--set {key}=...: the sweep sets {key} per trial; give it with {option}")


@main.command()
@click.option("--hidden", multiple=True, default=["5,10,15,20,25,30"], show_default=True,
              callback=given_once(_int_list), help="Comma-separated hidden sizes (give the option once).")
@click.option("--delays", multiple=True, default=["none,axonal,dendritic,synaptic"], show_default=True,
              callback=given_once(_kind_list), help="Comma-separated delay kinds (give the option once).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Seeds 0..N-1 per cell.")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.  [default: --config's, else 300]")
@click.option("--jobs", type=click.IntRange(min=1, max=MAX_JOBS), default=None,
              help=f"Parallel processes (or workers of the embedded Dask cluster), 1 to {MAX_JOBS}; never more than "
                   "the runs to do.  [default: CPUs]")
@click.option("--config", "config_file", **CONFIG_FILE,
              help="TOML file with further TrainingConfig settings for every run (or a run's metrics.json: its "
                   "settings).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/sweep", show_default=True)
@click.option("--backend", help="Backend name for every run.  [default: reference]")
@BACKEND_OPTION
@click.option("--dataset", help="Dataset name for every run.  [default: --config's, else yin_yang]")
@DATASET_OPTION
@click.option("--executor", type=click.Choice(["process", "dask"]), default="process", show_default=True,
              help="Where trials run: a local process pool, or Dask (pip install 'delgrad[dask]').")
@click.option("--scheduler", metavar="ADDRESS",
              help="With --executor dask: join this scheduler instead of starting a local cluster.")
@click.option("--trial", type=click.IntRange(min=0),
              help="Run (or resume) only trial number N here (SLURM array tasks).")
@click.option("--slurm-script", type=click.Path(dir_okay=False, path_type=Path),
              help="Write an sbatch --array script that runs this sweep one trial per task, and exit.")
@SET_OPTION
def sweep(hidden, delays, seeds, epochs, jobs, config_file, out_dir, backend, backend_options, dataset,
          dataset_options, executor, scheduler, trial, slurm_script, set_settings):
    """Parameter-efficiency study: hidden sizes x delay kinds x seeds (resumable)."""
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._sweep import (
        SweepError, SweepInterrupted, check_runnable, plan_sweep, refuse_unusable_runs, run_sweep, run_trial,
        sweep_job_script)

    check_thread_variable()
    _refuse_sweep_axes(set_settings)
    if trial is not None and (executor == "dask" or scheduler is not None):
        raise click.UsageError("--trial runs its trial in this process: not with --executor dask or --scheduler")
    if trial is not None and slurm_script is not None:  # (the script was written and --trial ignored)
        raise click.UsageError("--trial runs one trial now and --slurm-script writes a job script of all; give one")
    if jobs is not None and trial is not None:  # (ignored without a word, as the options below were)
        raise click.UsageError("--trial runs its one trial in this process: leave --jobs out")
    if slurm_script is not None and (executor == "dask" or scheduler is not None or jobs is not None):
        raise click.UsageError("--slurm-script writes a job script whose array tasks each run one trial (--trial): "
                               "leave --executor dask, --scheduler and --jobs out")
    if jobs is not None and scheduler is not None:  # (it was ignored without a word)
        raise click.UsageError("--jobs sets the workers of a cluster the sweep starts itself; with --scheduler the "
                               "cluster's own workers decide how many trials run at once: leave --jobs out")
    if scheduler is not None:
        from delgrad_core.training._dask_executor import refuse_in_process_address

        try:
            refuse_in_process_address(scheduler)
        except InvalidValueError as exc:
            raise click.UsageError(str(exc)) from None
    check_out_names(out_dir)
    options = {"epochs": epochs, "backend": backend, "dataset": dataset}
    refuse_set_twice(set_settings, {**options, "backend_options": backend_options, "dataset_options": dataset_options})
    try:
        base = command_line_settings(config_file, options, set_settings, backend_options, dataset_options)
    except InvalidValueError as exc:
        raise click.UsageError(str(exc)) from None
    refuse_no_default_backend(base.get("backend"))
    grid = (base, hidden, delays, seeds, Path(out_dir))
    try:
        configs = [config_with_defaults(dict(base, delays=kind, hidden=hidden[0], seed=0)) for kind in delays]
        warn_unused_settings(chosen_settings(base, config_file, set_settings), configs, f"--delays {','.join(delays)}",
                             sweep=True)
        if slurm_script is not None:
            check_output_file(slurm_script, "--slurm-script", force=False, inputs=[config_file])
            trials = plan_sweep(*grid)  # (checked before the script is written)
            refuse_unusable_runs(trials, show_line, elsewhere=True)
            check_runnable(trials, show_line, elsewhere=True)
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
            try:
                with no_writes_once_stopped():
                    atomic_write_text(slurm_script, sweep_job_script(command, n_trials, os.getcwd()), os_strings=True)
            except OSError as exc:  # (a file system that takes no new files there, a full disk, ...)
                raise click.ClickException(f"--slurm-script: {slurm_script} cannot be written: "
                                           f"{exc.strerror or exc}") from None
            click.echo(f"{slurm_script}: {n_trials} array task{'s' if n_trials != 1 else ''}; submit with: sbatch "
                       f"{shlex.quote(str(slurm_script))}")
            return
        if trial is not None:
            run_trial(*grid, trial, echo=show_line)
            return
        table = run_sweep(*grid, jobs=jobs, executor=executor, scheduler=scheduler, echo=show_line,
                          should_stop=stop_if_interrupted)
    except InvalidValueError as exc:
        raise click.UsageError(with_its_file(exc, config_file, options, set_settings, backend_options,
                                             dataset_options)) from None
    except SweepInterrupted as exc:
        click.echo(exc.table)
        click.echo(str(exc), err=True)
        sys.exit(interrupted_status())
    except SweepError as exc:
        click.echo(exc.table)
        raise click.ClickException(" ".join(str(exc).split())) from None
    except OSError as exc:  # (e.g. a full disk, while a run or the results were written)
        if isinstance(exc, DelgradError) or slurm_script:  # (e.g. missing dataset files: it says what to do)
            raise
        raise DelgradError(f"{exc}; the runs that finished are kept, each in its folder: run the same command again "
                           "once the cause is removed, to train the others and write the results") from None
    click.echo(table)
    sys.stdout.flush()
