"""Trials of a sweep: one training run each, identified by a hash of its settings.

A trial's folder is ``runs/<kind>-h<hidden>-s<seed>-<id>``, where ``id`` is the first 12 hex digits
of the SHA-256 of the trial's resolved settings (without result-neutral backend options and
options given at their factory's default): the same settings always land in the same
folder (a finished trial is never redone, an interrupted one resumes from its checkpoint,
whatever executor ran it), other settings in another one (never mixed up).  A run in a trial's
folder whose recorded settings are not the trial's (it was resumed to other epochs, say) is not
the trial's result: `Trial.finished` says no, and `Trial.recorded_identity` and
`Trial.differences` say what differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from delgrad_core._errors import FileFormatError
from delgrad_core._plugins import registered_neutral_options
from delgrad_core.training._config import (
    LATER_SETTINGS, TrainingConfig, config_with_defaults, result_settings, setting_differences, without_default_options)
from delgrad_core.training._run_folder import RunFolder

__all__ = ["Trial", "plan_trials", "recorded_settings", "train_trial", "trial_id"]

_AXES = ("delays", "hidden", "seed")  # what a sweep sets per trial


def trial_id(resolved_settings: dict) -> str:
    """12 hex digits of the SHA-256 of the settings (canonical JSON)."""
    text = json.dumps(resolved_settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def recorded_settings(folder: Path) -> dict | None:
    """The settings recorded by the run in `folder`: those of its metrics.json when finished, else
    its checkpoint's; None without a run or with unreadable ones."""
    run = RunFolder(folder)
    try:
        metrics = run.finished_metrics()
        if metrics is not None:
            stored = metrics.get("config")
            return stored if isinstance(stored, dict) else None
        if run.checkpoint.exists():
            return run.checkpoint_settings()
    except FileFormatError:
        return None
    return None


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its settings, id, folder, and the settings its result depends on
    (`identity`, those its id is the hash of, as JSON values; in a folder an earlier version
    named, the hash of them with options at their default as given, see `_trial_folder`)."""

    settings: dict
    id: str
    folder: Path
    identity: dict

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def finished(self) -> bool:
        """Whether the trial's folder holds the trial's finished run."""
        return self.result() is not None

    def result(self) -> dict | None:
        """The final metrics of the trial's finished run; None if unfinished or if the run in its
        folder has other settings (it is not this trial's result)."""
        metrics = RunFolder(self.folder).finished_metrics()
        if metrics is None:
            return None
        identity = self._identity_of(metrics.get("config"))  # (None: damaged, named where the row is made)
        return metrics if identity is None or identity == self.identity else None

    def recorded_identity(self) -> dict | None:
        """The settings the result of the run in the trial's folder (finished or not) depends
        on, as in `identity`; None without a run or with recorded settings that cannot be read
        (a damaged file is named where it is read)."""
        return self._identity_of(recorded_settings(self.folder))

    def differences(self, identity: dict) -> dict:
        """The settings in which `identity` differs from the trial's: {name: (its, the trial's)}."""
        return setting_differences(identity, self.identity)

    def _identity_of(self, recorded) -> dict | None:
        """A run's `recorded` settings (its metrics.json's or checkpoint's config) reckoned as a
        trial's identity, resolved and without the result-neutral options of the trial's backend
        (recorded settings that make no config, edited or damaged ones, as they are); None if
        they are not a table."""
        if not isinstance(recorded, dict):
            return None
        try:
            recorded = TrainingConfig.from_dict(recorded, check_components=False).resolved().to_dict()
        except (ValueError, TypeError):
            pass
        return _result_settings(recorded, registered_neutral_options(self.identity["backend"]))


def _result_settings(resolved: dict, neutral, *, as_given: bool = False) -> dict:
    """The settings a result depends on (`result_settings` without the `neutral` backend
    options, and without the options given at their factory's default unless `as_given`), as
    JSON values, so that changing a result-neutral backend option, or writing out an option's
    default, does not make a finished trial look like another one."""
    settings = result_settings(resolved, neutral)
    settings = {key: value for key, value in (settings if as_given else without_default_options(settings)).items()
                if key not in LATER_SETTINGS or value != LATER_SETTINGS[key]}
    return json.loads(json.dumps(settings))


def plan_trials(base_settings: dict, hidden_sizes, delay_kinds, n_seeds: int, out_dir: Path) -> list[Trial]:
    """Every (delay kind, hidden size, seed) trial, validated before anything runs.  Values of
    the axes in `base_settings` are replaced by the sweep's own (with a warning naming those that
    differ from every trial's)."""
    values = {"delays": list(delay_kinds), "hidden": list(hidden_sizes), "seed": list(range(n_seeds))}
    replaced = [f"{axis} = {base_settings[axis]!r}" for axis in _AXES
                if axis in base_settings and values[axis] != [base_settings[axis]]]
    if replaced:
        warnings.warn(f"the sweep's own hidden sizes, delay kinds and seeds replace {', '.join(replaced)} of the "
                      f"base settings (set them with --hidden, --delays and --seeds)", UserWarning, stacklevel=2)
    trials = []
    for kind in delay_kinds:
        for hidden in hidden_sizes:
            # (checked and resolved once per kind and size: the seed changes no other setting, and
            # checking each trial's took 2 ms, minutes for a sweep of 100,000 seeds and every SLURM task)
            first = config_with_defaults(dict(base_settings, delays=kind, hidden=hidden, seed=0)).resolved().to_dict()
            neutral = registered_neutral_options(first["backend"])
            identity, given = _result_settings(first, neutral), _result_settings(first, neutral, as_given=True)
            for seed in range(n_seeds):
                settings = dict(base_settings, delays=kind, hidden=hidden, seed=seed)
                own = dict(identity, seed=seed)
                cell = Path(out_dir) / "runs" / f"{kind}-h{hidden}-s{seed}"
                folder = _trial_folder(cell, own, dict(given, seed=seed))
                trials.append(Trial(settings, folder.name.rsplit("-", 1)[1], folder, own))
    return trials


def _trial_folder(cell: Path, identity: dict, given: dict) -> Path:
    """The folder of the trial of `identity` in `cell` (a kind, size and seed): the one named
    after its id; where there is none, but one named after the trial's settings as `given` (with
    options at their factory's default), that one: sweeps named their folders so before such
    options were left out of a trial's identity."""
    folder = cell.with_name(f"{cell.name}-{trial_id(identity)}")
    if given != identity and not folder.exists():
        earlier = cell.with_name(f"{cell.name}-{trial_id(given)}")
        if earlier.exists():
            return earlier
    return folder


def train_trial(settings: dict, folder: str, should_stop=None, threads: int = 1) -> dict:
    """Run (or resume) one trial with `threads` kernel threads (sweeps parallelise over
    processes first; the results do not depend on the thread count); returns its final
    metrics.  Importable by worker processes of any executor."""
    os.environ["DELGRAD_NUM_THREADS"] = str(threads)
    from delgrad_core.training._run import run_training

    resume = RunFolder(folder).checkpoint.exists()
    with _warnings_named(Path(folder).name):
        return run_training(config_with_defaults(settings), folder, resume=resume, progress=False, plots=False,
                            should_stop=should_stop)


@contextlib.contextmanager
def _warnings_named(trial_name: str):
    """Within: each warning shown starts with `trial_name` (a sweep's trials warn side by side)."""
    shown = warnings.showwarning
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *place, **more: shown(f"{trial_name}: {message}", *place, **more)
        yield
