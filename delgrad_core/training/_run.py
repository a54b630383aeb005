"""A complete training run into an output folder: train (or resume), test, save, plot."""

from __future__ import annotations

from pathlib import Path

from delgrad_core._errors import InvalidValueError
from delgrad_core.training._config import TrainingConfig
from delgrad_core.training._plots import plot_run
from delgrad_core.training._trainer import CHECKPOINT_NAME, Trainer

__all__ = ["run_training"]


def run_training(config: TrainingConfig, out_dir, *, resume: bool = False, progress: bool = True,
                 backend=None, plots: bool = True) -> dict:
    """Train `config` into `out_dir` and return the final metrics (as in metrics.json).

    With `resume`, the checkpoint in `out_dir` is loaded first and training continues from it.
    """
    out_dir = Path(out_dir)
    with Trainer(config, backend=backend, out_dir=out_dir) as trainer:  # closes the backend it built
        if resume:
            if not (out_dir / CHECKPOINT_NAME).exists():
                raise InvalidValueError(f"resume: no {CHECKPOINT_NAME} in {out_dir}")
            trainer.load_checkpoint()
        trainer.fit(progress=progress)
        test, final_test = trainer.finish()
        summary = trainer.summary(test, final_test)
        if plots:
            plot_run(out_dir, summary["epochs"], trainer.network, test.output_spike_times, test.labels,
                     trainer.test_set.class_names)
    return summary
