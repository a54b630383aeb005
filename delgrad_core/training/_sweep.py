"""The parameter-efficiency study of DelGrad (Göltz, Weber et al. 2025, Fig. 3): test error
against number of parameters and against hidden size, per delay kind, over seeds.

Every (delay kind, hidden size, seed) is a trial (`_trials`): a run folder named after its
settings' hash, so a finished trial is never redone, an interrupted one resumes from its
checkpoint and a trial with other settings gets its own folder (runs with other settings found
beside it are named, kept and not used; a run with other settings in a trial's own folder, e.g.
one resumed to more epochs, is refused before any trial starts, with the folder it belongs in;
so are finished trials trained on other data than the dataset gives now, and damaged finished
runs; finished trials of another device than the trials trained now are left out of the results).
Trials run on an executor (`_executors`): a local process pool by default, or Dask (embedded
local cluster, or an existing one, e.g. on SLURM).  A failed trial does not stop the others and
is retried by the next run.  Ctrl-C stops the sweep, writes ``sweep.csv`` from the finished
trials and says how to resume.  Results go to
``out/sweep.csv``, ``sweep_summary.json`` and ``sweep.png``.  ``sweep_job_script`` writes an
``sbatch --array`` script that runs one trial per array task with the same command.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from pathlib import Path

import numpy as np

from delgrad_core._atomic import atomic_write_text
from delgrad_core._backend import check_training_settings_of
from delgrad_core._errors import BackendUnavailable, DelgradError, FileFormatError, InvalidValueError, RunFolderError
from delgrad_core._ir import DelayKind
from delgrad_core.training._config import TrainingConfig, config_with_defaults, shown_setting
from delgrad_core.training._executors import Unfinished, finished_line, make_executor
from delgrad_core._options import first_few
from delgrad_core.training._run_folder import RunFolder, folder_lock, is_accuracy, remove_stale_temporaries
from delgrad_core.training._trials import Trial, plan_trials, recorded_settings, train_trial, trial_id

__all__ = ["plan_sweep", "check_runnable", "refuse_unusable_runs", "run_sweep", "run_trial", "sweep_rows",
           "summarise", "sweep_job_script",
           "SweepError", "SweepInterrupted"]

MAX_TRIALS = 100_000  # (planning takes ~0.2 ms a trial; a SLURM array is far smaller)
RESULT_FILES = ("sweep.csv", "sweep_summary.json", "sweep.png")
CSV_FIELDS = ["delays", "hidden", "seed", "epochs", "backend", "backend_options", "dataset", "dataset_options",
              "trial", "n_parameters", "test_accuracy", "test_error", "wall_seconds"]


class SweepError(DelgradError):
    """Some trials failed; `table` summarises the trials that finished."""

    def __init__(self, message: str, table: str = ""):
        super().__init__(message)
        self.table = table


class SweepInterrupted(SweepError):
    """The sweep was interrupted; finished trials are saved and the rest resumes on a rerun."""


_REDO = "; remove the file to train the run again"  # (what to do with a damaged metrics.json)


def _row(trial: Trial, metrics: dict) -> dict:
    try:
        config = metrics["config"]
        accuracy = metrics["test_accuracy"]
        if not is_accuracy(accuracy):
            raise ValueError(f"test_accuracy is {accuracy!r}")
        count, seconds = metrics["n_parameters"], metrics["wall_seconds"]
        if isinstance(count, bool) or not (isinstance(count, int) and count >= 1):
            raise ValueError(f"n_parameters is {count!r}, not a count of parameters")
        if isinstance(seconds, bool) or not (isinstance(seconds, (int, float)) and 0 <= seconds < math.inf):
            raise ValueError(f"wall_seconds is {seconds!r}, not a duration")
        return {
            "delays": config["delays"],
            "hidden": config["hidden"],
            "seed": config["seed"],
            "epochs": config["epochs"],
            "backend": config["backend"],
            # options as JSON, as the run recorded them (the trials of a sweep share them and its dataset)
            "backend_options": json.dumps(config.get("backend_options", {}), sort_keys=True),
            "dataset": config.get("dataset", TrainingConfig.dataset),
            "dataset_options": json.dumps(config.get("dataset_options", {}), sort_keys=True),
            "trial": trial.id,
            "n_parameters": count,
            "test_accuracy": accuracy,
            "test_error": _error_of(accuracy),
            "wall_seconds": seconds,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(f"{RunFolder(trial.folder).metrics}: not the metrics of a finished run "
                              f"({type(exc).__name__}: {exc}){_REDO}") from None


def _error_of(accuracy: float) -> float:
    """1 - `accuracy`, rounded to 12 decimals: a fraction of test samples, so 1 - 0.805 reads 0.195,
    not 0.19499999999999995 (the difference is far below one sample in a trillion)."""
    return round(1.0 - accuracy, 12)


def sweep_rows(trials: list[Trial]) -> list[dict]:
    """One row per finished trial of `trials` (a finished run with other settings in a trial's
    folder is not that trial's)."""
    rows = []
    for trial in trials:
        metrics = trial.result()
        if metrics is not None:
            rows.append(_row(trial, metrics))
    return sorted(rows, key=lambda r: (r["delays"], r["hidden"], r["seed"]))


_STATISTICS = ("median_test_accuracy", "median_test_error", "min_test_error", "max_test_error")


def summarise(rows: list[dict], planned=()) -> list[dict]:
    """Median, min and max test error and accuracy per (delay kind, hidden size).  `planned`:
    the (delay kind, hidden size, seed) of every trial of the sweep; each cell lists the seeds
    that have no result (`missing_seeds`), and a cell without any has `seeds` 0 and no
    statistics (null), so that an incomplete sweep's summary says so."""
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["delays"], row["hidden"]), []).append(row)
    done = {(row["delays"], row["hidden"], row["seed"]) for row in rows}
    missing: dict[tuple, list] = {}
    for kind, hidden, seed in planned:
        if (kind, hidden, seed) not in done:
            missing.setdefault((kind, hidden), []).append(seed)
            cells.setdefault((kind, hidden), [])
    summary = []
    for (kind, hidden), group in sorted(cells.items()):
        errors = np.array([r["test_error"] for r in group])
        statistics = dict.fromkeys(_STATISTICS) if not group else {  # (the accuracy's median as the runs give it)
            "median_test_accuracy": float(np.median([r["test_accuracy"] for r in group])),
            "median_test_error": float(np.median(errors)),
            "min_test_error": float(errors.min()), "max_test_error": float(errors.max()),
        }
        summary.append({
            "delays": kind, "hidden": hidden, "n_parameters": group[0]["n_parameters"] if group else None,
            "seeds": len(group), "missing_seeds": sorted(missing.get((kind, hidden), [])), **statistics,
        })
    return summary


def _table(summary: list[dict]) -> str:
    lines = [f"{'delays':<10} {'hidden':>6} {'params':>7} {'seeds':>5} {'median acc %':>12} {'error range %':>15}"]
    for s in summary:
        seeds = f"{s['seeds']}/{s['seeds'] + len(s['missing_seeds'])}" if s["missing_seeds"] else s["seeds"]
        if not s["seeds"]:
            lines.append(f"{s['delays']:<10} {s['hidden']:>6} {'-':>7} {seeds:>5} {'-':>12} {'-':>15}")
            continue
        errors = f"{100 * s['min_test_error']:.2f}..{100 * s['max_test_error']:.2f}"
        lines.append(f"{s['delays']:<10} {s['hidden']:>6} {s['n_parameters']:>7} {seeds:>5} "
                     f"{100 * s['median_test_accuracy']:>12.2f} {errors:>15}")
    return "\n".join(lines)


def _plot(summary: list[dict], dataset: str, path: Path, echo=print) -> None:
    """Draw `summary` as `path` (sweep.png).  An earlier figure that cannot be drawn anew (no
    results, or no matplotlib: a warning) is removed, with a note if results exist: it may show
    what the table no longer has."""
    from delgrad_core.training._plots import plain_text, pyplot, save_figure, warn_no_plots, why_no_plots

    has_results = any(s["seeds"] for s in summary)
    reason = why_no_plots() if has_results else None
    if not has_results or reason:
        if reason:
            warn_no_plots(reason, stacklevel=2)
            if path.exists():
                echo(f"note: removed {path}, drawn from an earlier collection of results: it cannot be drawn anew "
                     f"now ({reason})")
        path.unlink(missing_ok=True)
        return
    plt = pyplot()
    fig, (ax_params, ax_hidden) = plt.subplots(1, 2, figsize=(11, 4))
    for kind in sorted({s["delays"] for s in summary if s["seeds"]}):
        cells = [s for s in summary if s["delays"] == kind and s["seeds"]]
        for ax, key in ((ax_params, "n_parameters"), (ax_hidden, "hidden")):
            x = [c[key] for c in cells]
            median = np.array([100 * c["median_test_error"] for c in cells])
            low = median - [100 * c["min_test_error"] for c in cells]
            high = np.array([100 * c["max_test_error"] for c in cells]) - median
            ax.errorbar(x, median, yerr=np.vstack([low, high]), marker="o", capsize=3, label=kind)
    # (a log axis leaves out a cell of no test errors; its lower bars are cut at the axis)
    error_scale = "log" if all(s["median_test_error"] > 0 for s in summary if s["seeds"]) else "linear"
    ax_params.set(xlabel="number of parameters", xscale="log", ylabel="test error [%]", yscale=error_scale)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    counts = [s["n_parameters"] for s in summary if s["seeds"]]
    ax_params.xaxis.set_major_formatter(ScalarFormatter())
    # (within a decade no power of ten is on the axis: the minor ticks get the numbers)
    ax_params.xaxis.set_minor_formatter(ScalarFormatter() if max(counts) < 10 * min(counts) else NullFormatter())
    ax_hidden.set(xlabel="hidden neurons", ylabel="test error [%]", yscale=error_scale)
    for ax in (ax_params, ax_hidden):
        ax.grid(alpha=0.3, which="both")
        ax.legend(title="delays")
    fig.suptitle(f"{plain_text(dataset)}: median test error over seeds (bars: min..max)")
    fig.tight_layout()
    save_figure(fig, path)


def _other_settings(trials: list[Trial]) -> list[str]:
    """Runs beside the trials with the same kind, size and seed but other settings, with the
    settings that differ (they are kept and not used)."""
    notes = []
    for trial in trials:
        prefix = trial.name.rsplit("-", 1)[0]
        for sibling in sorted(trial.folder.parent.glob(f"{prefix}-*")):
            if sibling == trial.folder or not sibling.is_dir():
                continue
            stored = recorded_settings(sibling)
            if stored is None:
                continue
            wanted = trial.identity  # (what the result depends on: a default that changed too)
            differing = sorted(key for key in wanted if key in stored and stored[key] != wanted[key])
            notes.append(f"{sibling.name} (other settings: {', '.join(differing) or 'defaults'}) is kept and not used")
    cells = {trial.name.rsplit("-", 1)[0] for trial in trials}
    runs = trials[0].folder.parent if trials else None
    outside = [] if runs is None or not runs.is_dir() else \
        [d for d in runs.iterdir() if d.is_dir() and d.name.rsplit("-", 1)[0] not in cells]
    if outside:
        notes.append(f"{runs} holds {len(outside)} run folder(s) of other hidden sizes, delay kinds or seeds than "
                     "this sweep's; they are kept and not in its table")
    return notes


def _refuse_runs_of_other_settings(trials: list[Trial]) -> None:
    """Refuse (`RunFolderError`) trials whose folders hold a run, finished or not, with settings
    other than the trial's where results depend on them (e.g. resumed to more epochs): it is not
    the trial's result, and the trial cannot run there without taking it over.  The message names
    each folder, the settings that differ and the folder the run belongs in."""
    clashes = []
    for trial in trials:
        identity = trial.recorded_identity()
        if identity is not None and identity != trial.identity:
            clashes.append(_clash(trial, identity))
    if clashes:
        raise RunFolderError(f"{len(clashes)} run folder(s) of this sweep hold a run with other settings than their "
                             f"trial's: {first_few(clashes, '; ')}; move each to the folder named (the sweep keeps it "
                             "apart there) and run the sweep again: the trial then runs anew")


def _refuse_damaged_runs(trials: list[Trial]) -> None:
    """Refuse (`RunFolderError`) trials whose folders hold a finished run that cannot be used:
    a metrics.json that is not readable JSON or not the metrics of a finished run, or a finished
    run whose network.npz is missing.  The sweep would otherwise stop at the first one after the
    other trials ran, or count a run without its network as done; the message names each folder
    and what to remove to train it again."""
    problems = []
    for trial in trials:
        run = RunFolder(trial.folder)
        try:
            metrics = trial.result()
        except FileFormatError as exc:  # (not readable JSON; the message names the file)
            problems.append(f"{exc}{_REDO}")
            continue
        if metrics is None:
            continue
        try:
            _row(trial, metrics)
        except FileFormatError as exc:  # (names the file and what to do)
            problems.append(str(exc))
            continue
        if not run.network.exists():
            redo = (f"remove its {run.metrics.name} to finish the run again from its checkpoint"
                    if run.checkpoint.exists() else "remove the folder to train the run again")
            problems.append(f"{trial.folder}: a finished run without its {run.network.name}; {redo}")
    if problems:
        raise RunFolderError(f"{len(problems)} finished run(s) of this sweep are damaged, no trial started: "
                             f"{first_few(problems, '; ')} (then run the sweep again)")


def _runs_on_other_data(trials: list[Trial], echo=print, *, elsewhere: bool = False) -> dict[Path, str]:
    """The folders of finished trials trained on other data than the dataset gives here (its
    files changed, e.g. another DELGRAD_MNIST_DIR, or a worker that reads other files), each
    with the splits that differ: each run records the digests of its splits, as `train
    --resume` checks them.  The data is loaded once, only if a finished trial recorded digests
    (runs recorded before digests were are kept as they are).  When the trials run `elsewhere`
    and the dataset's files are not here, this is noted and not checked."""
    from delgrad_core.datasets import DatasetFilesNotFoundError, load_dataset
    from delgrad_core.datasets._registry import TRAINING_SPLITS
    from delgrad_core.datasets._dataset import changed_splits, split_digests

    recorded = {}
    for trial in trials:
        metrics = trial.result()
        digests = None if metrics is None else metrics.get("dataset_digests")
        if isinstance(digests, dict):
            recorded[trial.folder] = digests
    if not recorded:
        return {}
    config = config_with_defaults(trials[0].settings).resolved()  # (one dataset for every trial)
    try:
        current = split_digests(load_dataset(config.dataset, split, **config.dataset_options)
                                for split in TRAINING_SPLITS)
    except DatasetFilesNotFoundError as exc:
        if not elsewhere:
            raise
        echo(f"note: the data of the finished runs could not be checked here ({str(exc).splitlines()[0]})")
        return {}
    changed = {folder: changed_splits(digests, current) for folder, digests in recorded.items()}
    return {folder: f"the {', '.join(splits)} split(s)" for folder, splits in changed.items() if splits}


def _device_of(trial: Trial) -> dict | None:
    """The device identity a finished trial recorded (None: none, or from before runs recorded one)."""
    from delgrad_core._backend import is_device_identity

    identity = (trial.result() or {}).get("device_identity")
    return identity if is_device_identity(identity) else None


def _runs_on_other_devices(devices: dict[Path, dict | None], kept: list[Trial], trained: list[Trial]) -> \
        dict[Path, str]:
    """The folders of the finished trials `kept` from an earlier sweep whose device (in `devices`,
    by folder) differs from the one the trials `trained` now recorded (e.g. a mock-hil service that
    now owns another chip: its address is result-neutral, so the trials' settings do not tell),
    each with what differs; {} if nothing was trained now, or if those trials disagree among
    themselves."""
    from delgrad_core.training._identity import identity_changes

    current = [devices[trial.folder] for trial in trained]
    if not current or current[0] is None or any(other != current[0] for other in current):
        return {}
    changed = {trial.folder: identity_changes(devices[trial.folder], current[0])
               for trial in kept if devices[trial.folder] is not None}
    return {folder: "; ".join(changes.values()) for folder, changes in changed.items() if changes}


def _devices_disagree(devices: dict[Path, dict | None]) -> list[str]:
    """One line per device that `devices` (identities by run folder, None for none) name (how many
    runs, one folder), if there are more than one, else [].  A device is named by its calibration
    key, and where another one has the same key, also by its calibration digest and options."""
    folders_of: dict[str, list[Path]] = {}
    identity_of: dict[str, dict] = {}
    for folder, identity in devices.items():
        if identity is not None:
            text = json.dumps(identity, sort_keys=True)
            folders_of.setdefault(text, []).append(folder)
            identity_of[text] = identity
    keys = [identity["calibration_key"] for identity in identity_of.values()]

    def named(identity: dict) -> str:
        key = identity["calibration_key"]
        if keys.count(key) == 1:
            return f"calibrated as {key!r}"
        return (f"calibrated as {key!r} with calibration digest {identity['calibration_digest'][:12]} and device "
                f"options {json.dumps(identity.get('options') or {}, sort_keys=True)}")

    return [f"{len(folders)} run(s) {named(identity_of[text])} (e.g. {folders[0]})"
            for text, folders in folders_of.items()] if len(folders_of) > 1 else []


def _refuse_runs_on_other_data(trials: list[Trial], echo=print, *, elsewhere: bool = False) -> None:
    """Refuse (`RunFolderError`) finished trials trained on other data than the dataset gives now
    (`_runs_on_other_data`)."""
    stale = _runs_on_other_data(trials, echo, elsewhere=elsewhere)
    if stale:
        changed = [f"{name} ({reason})" for name, reason in stale.items()]
        raise RunFolderError(f"{len(stale)} finished run(s) of this sweep were trained on other data than dataset "
                             f"{_dataset_of(trials)!r} gives now (its files changed, or a loader that does not give "
                             f"the same data twice): {first_few(changed, '; ')}; no trial "
                             "started.  Sweep the current data into a new --out, or remove those run folders to train "
                             "them again; or sweep with the data they were trained on")


def _dataset_of(trials: list[Trial]) -> str:
    """The dataset the trials train on (one for every trial of a sweep)."""
    return config_with_defaults(trials[0].settings).dataset


def _refuse_blocked_folders(trials: list[Trial]) -> None:
    """Refuse (`RunFolderError`) trials whose run cannot start in their folder: a file there, or
    other files a run could overwrite (the trial failed after the others ran, as "run the sweep
    again to retry", which could never help)."""
    blocked = [f"{trial.folder}: {reason}" for trial in trials if (reason := RunFolder(trial.folder).in_the_way())]
    if blocked:
        raise RunFolderError(f"{len(blocked)} trial folder(s) of this sweep cannot take their run, no trial started: "
                             f"{first_few(blocked, '; ')}; move or remove what is there and run the sweep again")


def refuse_unusable_runs(trials: list[Trial], echo=print, *, elsewhere: bool = False) -> None:
    """Refuse, before any trial starts, trial folders holding runs of other settings, damaged
    finished runs, folders a run cannot start in and finished runs trained on other data
    (`elsewhere`: the data may be missing here, see `_refuse_runs_on_other_data`)."""
    _refuse_runs_of_other_settings(trials)
    _refuse_damaged_runs(trials)
    _refuse_blocked_folders(trials)
    _refuse_runs_on_other_data(trials, echo, elsewhere=elsewhere)


def _clash(trial: Trial, identity: dict) -> str:
    """A trial's folder that holds a run of other `identity`: what differs, and where it belongs."""
    changes = ", ".join(f"{key} {shown_setting(theirs)} (the trial's: {shown_setting(wanted)})"
                        for key, (theirs, wanted) in trial.differences(identity).items())
    belongs = trial.folder.with_name(f"{trial.name.rsplit('-', 1)[0]}-{trial_id(identity)}")
    taken = " (which exists already: keep one of the two)" if belongs.exists() else ""
    return f"{trial.folder} has {changes}, and belongs in {belongs}{taken}"


def _write_results(trials: list[Trial], out_dir: Path, echo=print, *, excluded=()) -> str:
    """sweep.csv, sweep_summary.json and sweep.png of the finished trials of `trials`, but those
    whose folders are `excluded`; the summary table as text."""
    rows = sweep_rows([trial for trial in trials if trial.folder not in excluded])
    summary = summarise(rows, [(t.settings["delays"], t.settings["hidden"], t.settings["seed"]) for t in trials])
    csv_text = io.StringIO()
    writer = csv.DictWriter(csv_text, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "sweep.csv", csv_text.getvalue())
    atomic_write_text(out_dir / "sweep_summary.json", json.dumps(summary, indent=2) + "\n")
    _plot(summary, _dataset_of(trials), out_dir / "sweep.png", echo)
    return _table(summary)


def check_runnable(trials: list[Trial], echo=print, *, elsewhere: bool = False) -> None:
    """Build the trials' backend with its options and let it check every distinct network of
    `trials`, before any of them runs: a bad option value or a delay kind the backend lacks would
    fail every trial one by one (and every task of a SLURM array).  When the trials run
    `elsewhere` (SLURM tasks, a remote Dask cluster), a backend that cannot be reached from here
    (a device service that is down) and a dataset whose files are not here are noted and left to
    each trial; otherwise they are errors (every trial would wait for the backend, then fail)."""
    from delgrad_core.datasets import DatasetFilesNotFoundError, load_dataset
    from delgrad_core.training._components import component
    from delgrad_core.training._parameters import (
        build_network, check_input_copies, check_shared_input_delays, check_supported)
    from delgrad_core.training._trainer import built_backend

    if not trials:
        return
    first = config_with_defaults(trials[0].settings).resolved()  # (one backend, dataset and encoder: the axes are
    try:  # hidden sizes, delay kinds and seeds)
        data = load_dataset(first.dataset, "train", **first.dataset_options)
    except DatasetFilesNotFoundError as exc:
        if not elsewhere:
            raise
        echo(f"note: the sweep's networks could not be checked here ({str(exc).splitlines()[0]}); each task checks "
             "its own")
        return
    encoder = component("encoder", first.encoder, first, first.encoder_options)
    n_inputs = encoder.n_inputs(data.n_features)
    shapes = {}
    for trial in trials:
        shapes.setdefault((json.dumps(trial.settings["hidden"]), json.dumps(trial.settings["delays"])), trial)
    try:
        with built_backend(first.backend, first.backend_options) as backend:
            for trial in shapes.values():
                config = config_with_defaults(trial.settings).resolved()
                check_training_settings_of(backend, config.to_dict())
                try:
                    network = build_network(config, n_inputs, data.n_classes)
                    check_supported(backend, network, data.n_features)
                    check_input_copies(backend, network, encoder.copies)
                    check_shared_input_delays(config, n_inputs, encoder.copies)
                except InvalidValueError as exc:
                    raise InvalidValueError(f"{trial.name}: {exc}{_other_kinds_hint(exc, backend)}") from None
    except BackendUnavailable as exc:
        if not elsewhere:  # (not retryable: reached, but refusing, e.g. a service owning another device)
            state = "cannot be reached now" if exc.retryable else "refuses to work"
            raise BackendUnavailable(f"the backend {state}, no trial started: {exc}",
                                     retryable=exc.retryable) from None
        echo(f"note: the backend could not check the sweep's networks now ({exc}); each trial checks its own")


def _check_backend_options(trial: Trial) -> None:
    """Build `trial`'s backend once, so that an option value it refuses is an error also when
    every trial is finished (a backend that cannot be reached now is left alone)."""
    from delgrad_core.training._trainer import built_backend

    config = config_with_defaults(trial.settings)
    try:
        built_backend(config.backend, config.backend_options).close()
    except BackendUnavailable:
        pass


def _other_kinds_hint(error: InvalidValueError, backend) -> str:
    """For a delay kind the backend lacks: how to sweep the kinds it has."""
    if getattr(error, "capability", None) != "delay_kinds":
        return ""
    kinds = ",".join(kind.value for kind in DelayKind if kind in backend.capabilities.delay_kinds)
    return f"; sweep the kinds it has with --delays {kinds}"


def _remove_stale_temporaries(out_dir: Path, finished: list[Trial]) -> None:
    """Remove the temporary files that atomic writes killed mid-write left in the sweep's folder
    `out_dir` (which the caller holds locked: only a process holding it writes the results) and in
    the folders of the `finished` trials (each under its own lock; one in use is left alone)."""
    remove_stale_temporaries(out_dir, RESULT_FILES)
    for trial in finished:
        RunFolder(trial.folder).remove_stale_temporaries_if_free()


def _axis(values, name: str, wanted: str, element_type: type) -> list:
    """The values of a sweep axis as a list, each once, in their order (numpy numbers as
    Python's); a string or a non-list, or a value not of `element_type` (a bool is no int), is
    refused naming `name` and what is `wanted`."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise InvalidValueError(f"sweep: {name}: expected a list of values, got {values!r}")
    plain = [value.item() if isinstance(value, np.generic) else value for value in values]
    for value in plain:
        if isinstance(value, bool) or not isinstance(value, element_type):
            raise InvalidValueError(f"sweep: {name}: expected {wanted}, got {value!r}")
    return list(dict.fromkeys(plain))


def plan_sweep(base_settings, hidden_sizes, delay_kinds, n_seeds, out_dir) -> list[Trial]:
    """The sweep's trials, every one's settings checked (nothing runs; `check_runnable` lets the
    backend check their networks)."""
    held = RunFolder(out_dir).holds_run()
    if held:
        raise RunFolderError(f"{out_dir}: holds a training run ({', '.join(held)}); a sweep needs a folder of its own")
    # (one hidden layer, one delay kind: the study's networks; its tables and folders name them so)
    hidden_sizes = _axis(hidden_sizes, "hidden_sizes", "whole numbers, the size of the networks' one hidden layer", int)
    delay_kinds = _axis(delay_kinds, "delay_kinds", "names of delay kinds, one for all layers of a network", str)
    if isinstance(n_seeds, (bool, np.bool_)) or not isinstance(n_seeds, (int, np.integer)):
        raise InvalidValueError(f"sweep: n_seeds: expected a whole number >= 1, got {n_seeds!r}")
    n_seeds = int(n_seeds)
    if n_seeds < 1 or not hidden_sizes or not delay_kinds:
        raise InvalidValueError("sweep: needs at least one hidden size, delay kind and seed")
    n_trials = len(hidden_sizes) * len(delay_kinds) * n_seeds
    if n_trials > MAX_TRIALS:
        raise InvalidValueError(f"sweep: {len(hidden_sizes)} hidden sizes x {len(delay_kinds)} delay kinds x {n_seeds} "
                                f"seeds are {n_trials:,} runs; at most {MAX_TRIALS:,}")
    # (absolute: a Dask worker resolves a relative folder in its own working directory, and the
    # sweep then wrote its table without the runs it had reported finished)
    return plan_trials(base_settings, hidden_sizes, delay_kinds, n_seeds, Path(out_dir).absolute())


def run_sweep(base_settings: dict, hidden_sizes, delay_kinds, n_seeds: int, out_dir: Path, *,
              jobs: int | None = None, executor: str = "process", scheduler: str | None = None, echo=print,
              should_stop=None) -> str:
    """Run every unfinished trial, then write sweep.csv, sweep_summary.json and sweep.png.
    Trial folders that hold runs with other settings, finished runs trained on other data and
    damaged finished runs are refused before any trial starts.

    Returns the summary table as text; raises `SweepError` if trials failed and
    `SweepInterrupted` after Ctrl-C (in both cases after writing the finished trials' results).
    `should_stop`, if given, is called while trials run and raises
    KeyboardInterrupt to stop them as Ctrl-C does.
    """
    out_dir = Path(out_dir)
    trials = plan_sweep(base_settings, hidden_sizes, delay_kinds, n_seeds, out_dir)
    refuse_unusable_runs(trials, echo, elsewhere=scheduler is not None)
    runner = make_executor(executor, jobs=jobs, scheduler=scheduler, should_stop=should_stop)
    pending = [trial for trial in trials if not trial.finished]
    check_runnable(pending, echo, elsewhere=scheduler is not None)  # (before the folder is made)
    if trials and not pending:
        _check_backend_options(trials[0])
    with folder_lock(out_dir, RESULT_FILES):
        for note in _other_settings(trials):
            echo(f"note: {note}")
        finished = [trial.finished for trial in trials]
        pending = [trial for trial, done in zip(trials, finished) if not done]
        _remove_stale_temporaries(out_dir, [trial for trial, done in zip(trials, finished) if done])
        echo(f"sweep: {len(trials) - len(pending)} of {len(trials)} runs already finished, {len(pending)} to do")
        unfinished, interrupted = runner.run(pending, echo) if pending else (Unfinished(), False)
        # (a worker of a shared cluster may read other data files than this process)
        on_other_data = _runs_on_other_data([trial for trial in pending if trial.finished], echo,
                                            elsewhere=True) if scheduler is not None else {}
        trained = [trial for trial in pending if trial.finished]
        devices = {trial.folder: _device_of(trial) for trial in trials}  # (an unfinished trial's: None)
        on_other_device = _runs_on_other_devices(devices, [trial for trial, done in zip(trials, finished) if done],
                                                 trained)
        excluded = {**on_other_data, **on_other_device}
        finished = {trial.name for trial in trials if trial.finished and trial.folder not in excluded}
        table = _write_results(trials, out_dir, echo, excluded=excluded)
    if interrupted:
        raise SweepInterrupted(f"sweep interrupted; {out_dir}/sweep.csv holds the finished runs; run the same "
                               "command again to resume the others", table=table)
    in_use = _still_in_use(unfinished.in_use, finished, echo)
    problems = [f"{len(lines)} run(s) {what}:\n" + "\n".join(lines) for lines, what in (
        (unfinished.failed, "failed (the others are saved; run the sweep again to retry them)"),
        ([f"{folder} ({splits})" for folder, splits in on_other_data.items()],
         f"were trained by workers on other data than dataset {_dataset_of(trials)!r} gives here (their files differ) "
         "and are left out of the results; give the workers the same data, remove those run folders and run the "
         "sweep again"),
        ([f"{folder} ({changes})" for folder, changes in on_other_device.items()],
         "were trained earlier on another device than the runs trained now and are left out of the results; remove "
         "those run folders and run the sweep again to train them on this device, or run the sweep into a new --out"),
        (in_use, "in use by another process (e.g. a SLURM task); run the sweep again when it has finished to "
                 "include them"),
    ) if lines]
    mixed = _devices_disagree({folder: identity for folder, identity in devices.items() if folder not in excluded})
    if mixed:
        problems.append(f"the finished runs were trained on {len(mixed)} devices (a service that owned another "
                        "chip?), and their accuracies are not comparable: " + "; ".join(mixed) + ". Remove the run "
                        "folders of the devices you do not want and run the sweep again")
    if problems:
        raise SweepError("\n".join(problems), table=table)
    return table


def _still_in_use(in_use: dict[str, str], finished: set[str], echo) -> list[str]:
    """The lines of the trials another process held (e.g. a SLURM task) and has not finished;
    those it has finished (`finished`) are noted."""
    for name in sorted(in_use.keys() & finished):
        echo(f"note: {name} was in use by another process, which has finished it since; its result is included")
    return [line for name, line in in_use.items() if name not in finished]


def run_trial(base_settings: dict, hidden_sizes, delay_kinds, n_seeds: int, out_dir: Path, index: int, *,
              echo=print) -> dict | None:
    """Run (or resume) trial number `index` of the sweep in this process (e.g. one SLURM array
    task); returns its metrics (None if it had finished already)."""
    trials = plan_sweep(base_settings, hidden_sizes, delay_kinds, n_seeds, Path(out_dir))
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or \
            not 0 <= index < len(trials):  # (True was trial 1; numpy's integers, as the axes take them)
        raise InvalidValueError(f"--trial: expected an index in [0, {len(trials) - 1}], got {index!r}")
    trial = trials[int(index)]
    refuse_unusable_runs([trial], echo)
    if trial.finished:
        echo(f"{trial.name}: finished already")
        return None
    check_runnable([trial], echo)
    try:
        metrics = train_trial(trial.settings, str(trial.folder))
    except DelgradError as exc:  # (said once, by the caller)
        raise SweepError(f"{trial.name}: {exc}") from None
    echo(finished_line(trial, metrics))  # (trained here: not a worker's result to look for)
    return metrics


def sweep_job_script(command: list[str], n_trials: int, folder: str, *, job_name: str = "delgrad-sweep",
                     time_limit: str = "02:00:00", memory: str = "2G", partition: str | None = None) -> str:
    """An ``sbatch`` script running trial ``$SLURM_ARRAY_TASK_ID`` of the sweep `command`
    (the ``delgrad sweep ...`` arguments) in `folder` (absolute: where its relative paths
    lead) in each of `n_trials` array tasks, one CPU each."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --array=0-{n_trials - 1}",
        "#SBATCH --cpus-per-task=1",
        f"#SBATCH --mem={memory}",
        f"#SBATCH --time={time_limit}",
    ]
    if partition:
        lines.append(f"#SBATCH --partition={partition}")
    lines += [
        f"#SBATCH --output={job_name}-%A_%a.log",
        "# One trial per array task; a task that is re-queued resumes from its checkpoint.",
        "# After all tasks: run the same command without --trial to collect sweep.csv (nothing is recomputed).",
        "set -euo pipefail",
        f"cd {shlex.quote(folder)}",
        "export DELGRAD_NUM_THREADS=1",
        " ".join(shlex.quote(part) for part in command) + ' --trial "$SLURM_ARRAY_TASK_ID"',
        "",
    ]
    return "\n".join(lines)
