"""A complete training run into an output folder: train (or resume), test, save, plot."""

from __future__ import annotations

import warnings

from delgrad_core._backend import close_after_work
from delgrad_core._errors import DelgradError
from delgrad_core.training._config import TrainingConfig
from delgrad_core.training._plots import plot_run
from delgrad_core.training._run_folder import RunFolder
from delgrad_core.training._trainer import Trainer

__all__ = ["run_training", "TrainingStopped"]


class TrainingStopped(DelgradError):
    """Training stopped early on request (at an epoch boundary, checkpoint written).

    `folder` is the run folder, `what` says what happened (e.g. "stopped after epoch 3 of 10;
    the run resumes from there"); the message is "FOLDER: WHAT".
    """

    def __init__(self, folder, what: str):
        super().__init__(str(folder), what)  # (both in args: the error crosses process pools)
        self.folder, self.what = str(folder), what

    def __str__(self) -> str:
        return f"{self.folder}: {self.what}"


def run_training(config: TrainingConfig, out_dir, *, resume: bool = False, progress: bool = True,
                 backend=None, plots: bool = True, should_stop=None) -> dict:
    """Train `config` into the run folder `out_dir` and return the final metrics (as in
    metrics.json).  The folder is locked for the whole run; a folder that holds a run is refused
    unless `resume`, which continues from its checkpoint.  `should_stop()` is asked before every
    epoch; if it says yes, `TrainingStopped` is raised there (the run is resumable).
    """
    folder = RunFolder(out_dir)
    with folder.claim(resume=resume), Trainer(config, backend=backend, out_dir=folder, resume=resume) as trainer:
        trainer.fit(progress=progress, should_stop=should_stop)
        if trainer.epoch < trainer.config.epochs:
            raise TrainingStopped(folder.path, f"stopped after epoch {trainer.epoch} of {trainer.config.epochs}; " + (
                "the run resumes from there" if folder.checkpoint.exists() else "nothing was trained: start it anew"))
        test, final_test = trainer.finish()
        summary = trainer.summary(test, final_test)
        if plots:
            plot_run(folder.path, summary["epochs"], trainer.network, test.output_spike_times, test.labels,
                     trainer.test_set.class_names, trainer.test_set.features, _decision_plane(trainer))
        # (a failure to close is no reason to resume: a resume would meet it again)
        close_after_work(trainer, "the run is complete, its results are written")
    return summary


def _decision_plane(trainer):
    """The trainer's decision plane, or None (no decision map) with a warning if computing it
    fails, e.g. the dataset's plane on the full grid (the 3 x 3 check before training passed; the
    run is written)."""
    try:
        return trainer.decision_plane()
    except DelgradError as exc:
        warnings.warn(f"decision plane: {exc}; decision_map.png is not drawn (the run's results are written)",
                      UserWarning, stacklevel=3)
        return None
