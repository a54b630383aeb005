"""Trials of a sweep: one training run each, identified by a hash of its settings.

A trial's folder is ``runs/<kind>-h<hidden>-s<seed>-<id>``, where ``id`` is the first 12 hex digits
of the SHA-256 of the trial's resolved settings: the same settings always land in the same
folder (a finished trial is never redone, an interrupted one resumes from its checkpoint,
whatever executor ran it), other settings in another one (never mixed up).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from delgrad_core.training._config import config_with_defaults, result_settings
from delgrad_core.training._run_folder import RunFolder

__all__ = ["Trial", "plan_trials", "train_trial", "trial_id"]

_AXES = ("delays", "hidden", "seed")  # what a sweep sets per trial


def trial_id(resolved_settings: dict) -> str:
    """12 hex digits of the SHA-256 of the settings (canonical JSON)."""
    text = json.dumps(resolved_settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its settings, id, and folder."""

    settings: dict
    id: str
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def finished(self) -> bool:
        return RunFolder(self.folder).finished_metrics() is not None


# settings added after sweeps were recorded: left out of a trial's identity while at their
# default, so that the trials of earlier sweeps keep their ids (and are not run again)
_LATER_SETTINGS = {"dataset_options": {}}


def _result_settings(resolved: dict) -> dict:
    """The settings a result depends on (`result_settings`), so that changing a result-neutral
    backend option does not make a finished trial look like another one."""
    from delgrad_core._plugins import registry

    factory = registry().get("backend", resolved["backend"]).obj
    neutral = getattr(factory, "result_neutral_options", frozenset()) if isinstance(factory, type) else frozenset()
    return {key: value for key, value in result_settings(resolved, neutral).items()
            if key not in _LATER_SETTINGS or value != _LATER_SETTINGS[key]}


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
            for seed in range(n_seeds):
                settings = dict(base_settings, delays=kind, hidden=hidden, seed=seed)
                identity = trial_id(_result_settings(config_with_defaults(settings).resolved().to_dict()))
                folder = Path(out_dir) / "runs" / f"{kind}-h{hidden}-s{seed}-{identity}"
                trials.append(Trial(settings, identity, folder))
    return trials


def train_trial(settings: dict, folder: str, should_stop=None, threads: int = 1) -> dict:
    """Run (or resume) one trial with `threads` kernel threads (sweeps parallelise over
    processes first; the results do not depend on the thread count); returns its final
    metrics.  Importable by worker processes of any executor."""
    os.environ["DELGRAD_NUM_THREADS"] = str(threads)
    from delgrad_core.training._run import run_training

    resume = RunFolder(folder).checkpoint.exists()
    return run_training(config_with_defaults(settings), folder, resume=resume, progress=False, plots=False,
                        should_stop=should_stop)
