"""Progress of a training run: a bar on a terminal, a line every few epochs in a log file."""

from __future__ import annotations

import sys

__all__ = ["EpochProgress"]

_LINES_PER_RUN = 30


class EpochProgress:
    """Report finished epochs; `enabled` False reports nothing."""

    def __init__(self, total: int, initial: int, description: str, enabled: bool):
        from tqdm.auto import tqdm

        self.total = total
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self.every = max(1, round(total / _LINES_PER_RUN))
        self.bar = tqdm(total=total, initial=initial, disable=not self.interactive, desc=description, unit="epoch")

    def update(self, metrics) -> None:
        self.bar.set_postfix(loss=f"{metrics.train_loss:.4f}", train=f"{metrics.train_accuracy:.3f}",
                             val=f"{metrics.validation_accuracy:.3f}")
        self.bar.update(1)
        if self.enabled and not self.interactive and (metrics.epoch % self.every == 0 or metrics.epoch == self.total):
            print(f"epoch {metrics.epoch}/{self.total}: loss {metrics.train_loss:.4f}, train "
                  f"{100 * metrics.train_accuracy:.1f} %, validation {100 * metrics.validation_accuracy:.1f} %",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
