"""A run's history: one `EpochMetrics` per epoch, as history.jsonl holds them (one JSON line
each), read back checked, and the digest a checkpoint records of the history it was written
after (docs/training.md)."""

from __future__ import annotations

import hashlib
import sys
import typing
from dataclasses import asdict, dataclass

from delgrad_core.training._run_folder import RunFolder, history_line

__all__ = ["EpochMetrics", "epoch_metrics", "history_digest"]


@dataclass
class EpochMetrics:
    """Per-epoch record; train metrics are averaged over the epoch's training batches."""

    epoch: int
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    learning_rate_factor: float
    skipped_steps: int
    no_crossing: int  # (sample, neuron) pairs spiking where the model has no upward crossing
    guarded: int  # (sample, neuron) pairs excluded by the grazing guard
    wall_seconds: float


_FIELDS = typing.get_type_hints(EpochMetrics)  # name -> int (a count) or float
# (low, high, in words) of the floats a trainer writes within bounds; the losses only finite (a plugin's may be < 0)
_BOUNDS = {**dict.fromkeys(("train_accuracy", "validation_accuracy"), (0.0, 1.0, "a number in [0, 1]")),
           **dict.fromkeys(("learning_rate_factor", "wall_seconds"), (0.0, sys.float_info.max, "a finite number >= 0"))}


def epoch_metrics(record: dict, number: int, folder: RunFolder) -> EpochMetrics:
    """Line `number` of the history, `record`, as the trainer writes it: every field, counts as
    whole numbers >= 0, the others as finite numbers (accuracies in [0, 1], the learning-rate
    factor and wall time >= 0); else an error naming the file and line."""
    missing = [name for name in _FIELDS if name not in record]
    unknown = [name for name in record if name not in _FIELDS]
    if missing or unknown:
        raise folder.history_fault(number, f"lacks {missing[0]}" if missing else f"has an unknown field {unknown[0]}")
    for name, kind in _FIELDS.items():
        value = record[name]
        if kind is int:
            expected = "a whole number >= 0"
            fits = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:  # (the bounds: no NaN, no infinity, no integer beyond the floats)
            low, high, expected = _BOUNDS.get(name, (-sys.float_info.max, sys.float_info.max, "a finite number"))
            fits = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
        if not fits:
            raise folder.history_fault(number, f"has {name} = {value!r}, expected {expected}")
    return EpochMetrics(**record)


def history_digest(history: list[EpochMetrics]) -> str:
    """SHA-256 (hex) of `history` as its lines in history.jsonl."""
    digest = hashlib.sha256()
    for metrics in history:
        digest.update(history_line(asdict(metrics)).encode())
    return digest.hexdigest()
