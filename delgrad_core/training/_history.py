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


def epoch_metrics(record: dict, number: int, folder: RunFolder) -> EpochMetrics:
    """Line `number` of the history, `record`, as the trainer writes it: every field, counts as
    whole numbers >= 0, the others as finite numbers; else an error naming the file and line."""
    missing = [name for name in _FIELDS if name not in record]
    unknown = [name for name in record if name not in _FIELDS]
    if missing or unknown:
        raise folder.history_fault(number, f"lacks {missing[0]}" if missing else f"has an unknown field {unknown[0]}")
    for name, kind in _FIELDS.items():
        value = record[name]
        if kind is int:
            fits = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        else:  # (abs: no NaN, no infinity, no integer beyond the floats)
            fits = isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= sys.float_info.max
        if not fits:
            expected = "a whole number >= 0" if kind is int else "a finite number"
            raise folder.history_fault(number, f"has {name} = {value!r}, expected {expected}")
    return EpochMetrics(**record)


def history_digest(history: list[EpochMetrics]) -> str:
    """SHA-256 (hex) of `history` as its lines in history.jsonl."""
    digest = hashlib.sha256()
    for metrics in history:
        digest.update(history_line(asdict(metrics)).encode())
    return digest.hexdigest()
