"""Checks of a checkpoint against the trainer that resumes from it: the same result-changing
settings and data, the history it was written after, and parameter arrays of this network
(docs/training.md, "Resuming").  Each refusal names the file and what differs."""

from __future__ import annotations

import numpy as np

from delgrad_core._errors import FileFormatError, InvalidValueError
from delgrad_core.datasets._dataset import changed_splits
from delgrad_core.training._config import (
    OPTION_TABLES, TrainingConfig, option_defaults, result_settings, setting_differences, shown_setting,
    without_default_options)
from delgrad_core.training._history import EpochMetrics, epoch_metrics, history_digest
from delgrad_core.training._run_folder import RunFolder

__all__ = ["check_same_settings", "check_same_data", "checkpoint_history", "parameter_arrays"]


def check_same_settings(state: dict, config: TrainingConfig, neutral, path) -> None:
    """Refuse to resume the checkpoint at `path`, whose checked `state` this is, with other
    settings than it was written with (but `epochs`, the backend options in `neutral`, which
    never change a result, and options given on one side only at their factory's default)."""
    saved = _compared(_normalised(dict(state.get("config", {}), epochs=config.epochs)), neutral)
    current = _compared(config.to_dict(), neutral)
    if saved == current:
        return
    differences = setting_differences(saved, current)
    changes = "; ".join(f"{k}: {shown_setting(then)} in the checkpoint, {shown_setting(now)} now"
                        for k, (then, now) in differences.items())
    as_given = _compared_as_given(saved, current)
    note = (f" (compared as given, a change even at the value the factory takes without them: {', '.join(as_given)}, "
            "options given on one side only whose factory declares no default for them, e.g. takes them as **options)"
            if as_given else "")
    raise InvalidValueError(f"resume: the checkpoint {path} was written with different settings ({changes}); "
                            f"resume with the run's own settings{note}")


def check_same_data(state: dict, dataset: str, digests: dict) -> None:
    """Refuse to resume on splits of `dataset` whose `digests` differ from those the run began
    with (none in checkpoints written before runs recorded them)."""
    trained_on = state.get("dataset_digests")
    changed = changed_splits(trained_on, digests) if isinstance(trained_on, dict) else []
    if changed:
        raise InvalidValueError(f"resume: the {', '.join(changed)} split(s) of dataset {dataset!r} differ from those "
                                "the run began with (its files changed, other dataset options, a loader that does not "
                                "give the same data twice, or a split the run was given in Python: Trainer.train_set = "
                                "...); resume with the data it was trained on")


def checkpoint_history(folder: RunFolder, state: dict) -> list[EpochMetrics]:
    """The history of the checkpoint's epochs in `folder`, each record checked, and the history
    the checkpoint was written after (the digest its `state` records; none in older ones)."""
    history = [epoch_metrics(record, number, folder)
               for number, record in enumerate(folder.read_history(state["epochs_recorded"]), start=1)]
    recorded = state.get("history_digest")
    if recorded is not None and recorded != history_digest(history):
        raise FileFormatError(f"{folder.history_file}: its first {len(history)} lines are not the history "
                              f"{folder.checkpoint} was written after (a checkpoint copied from another run, "
                              "or an edited history); a run resumes from its own checkpoint and history: put "
                              f"back this run's {folder.checkpoint.name}, or resume the other run in its own "
                              "folder (copy a run folder whole, with cp -r)")
    return history


def parameter_arrays(data, params: dict[str, np.ndarray], prefix: str, path, *, required: bool) -> dict:
    """The checkpoint's arrays stored as `prefix` + a parameter's name (the parameters, the kept
    epoch's, the average, the optimiser's moments), each checked to have that parameter's shape
    and finite values: one for every parameter, or (unless `required`) none.  An array of a
    parameter this network does not have means the checkpoint is of another network (e.g. its
    stored settings were edited)."""
    stored = [name[len(prefix):] for name in data.names if name.startswith(prefix)]
    foreign = [name for name in stored if name not in params]
    missing = [name for name in params if name not in stored]
    if foreign:
        raise FileFormatError(f"{path}: holds {prefix}{foreign[0]}, a parameter this network does not have (a "
                              "checkpoint of another network, or edited settings)")
    if missing and (stored or required):
        raise FileFormatError(f"{path}: {prefix}{missing[0]} is missing (a damaged or edited checkpoint)")
    arrays = {}
    for name in stored:
        array = data.array(prefix + name, shape=params[name].shape, kind="f")
        if not np.isfinite(array).all():
            raise FileFormatError(f"{path}: {prefix}{name} holds NaN or inf (a damaged or edited checkpoint)")
        arrays[prefix + name] = array
    return arrays


def _compared(settings: dict, neutral) -> dict:
    """`settings` as a resume compares them: without the backend options in `neutral` and the
    options given at their factory's default."""
    return without_default_options(result_settings(settings, neutral))


def _compared_as_given(saved: dict, current: dict) -> list[str]:
    """The options (``backend_options.NAME``) in just one of the option tables of `saved` and
    `current` of the same component whose factory declares no default to compare them with."""
    names = []
    for kind in OPTION_TABLES:
        then, now = saved.get(f"{kind}_options"), current.get(f"{kind}_options")
        if isinstance(then, dict) and isinstance(now, dict) and saved.get(kind) == current.get(kind):
            defaults = option_defaults(kind, current.get(kind))
            names += [f"{kind}_options.{name}" for name in sorted(set(then) ^ set(now)) if name not in defaults]
    return names


def _normalised(settings: dict) -> dict:
    """Stored settings as this version writes them (e.g. `hidden = [5]` of an older run as 5),
    or as they are if they do not make a config."""
    try:  # (the shape of the values only: the run's components are checked where they are built)
        return TrainingConfig.from_dict(settings, check_components=False).to_dict()
    except (InvalidValueError, TypeError):
        return settings
