"""Progress of a training run: a bar on a terminal, a line every few epochs in a log file, and
within an epoch that takes long (large image networks) the batches done so far."""

from __future__ import annotations

import sys
import time

__all__ = ["EpochProgress"]

_LINES_PER_RUN = 30
_BATCH_LINE_SECONDS = 30.0  # in a log file: a line on the batches done at most this often within an epoch
_BATCH_BAR_SECONDS = 0.5  # on a terminal: the bar shows the batches done at most this often


class EpochProgress:
    """Report finished epochs, and the batches of a long epoch; `enabled` False reports nothing.
    `clock` gives seconds (time.monotonic; a test passes its own)."""

    def __init__(self, total: int, initial: int, description: str, enabled: bool, clock=time.monotonic):
        from tqdm.auto import tqdm

        self.total = total
        self.enabled = enabled
        self.interactive = enabled and sys.stderr.isatty()
        self.every = max(1, round(total / _LINES_PER_RUN))
        self.bar = tqdm(total=total, initial=initial, disable=not self.interactive, desc=description, unit="epoch")
        self.clock = clock
        self.postfix: dict[str, str] = {}
        self.epoch_started = self.last_shown = clock()

    def batch_done(self, epoch: int, done: int, batches: int) -> None:
        """`done` of the `batches` of epoch number `epoch` (from 1) are finished."""
        if not self.enabled or done >= batches:
            return
        now = self.clock()
        if self.interactive and now - self.last_shown >= _BATCH_BAR_SECONDS:
            self.bar.set_postfix(self.postfix | {"batch": f"{done}/{batches}"})
            self.last_shown = now
        elif not self.interactive and now - self.last_shown >= _BATCH_LINE_SECONDS:
            print(f"epoch {epoch}/{self.total}: {done} of {batches} batches done, {now - self.epoch_started:.0f} s "
                  f"into the epoch", file=sys.stderr, flush=True)
            self.last_shown = now

    def update(self, metrics) -> None:
        self.postfix = {"loss": f"{metrics.train_loss:.4f}", "train": f"{metrics.train_accuracy:.3f}",
                        "val": f"{metrics.validation_accuracy:.3f}"}
        self.bar.set_postfix(self.postfix)
        self.bar.update(1)
        if self.enabled and not self.interactive and (metrics.epoch % self.every == 0 or metrics.epoch == self.total):
            print(f"epoch {metrics.epoch}/{self.total}: loss {metrics.train_loss:.4f}, train "
                  f"{100 * metrics.train_accuracy:.1f} %, validation {100 * metrics.validation_accuracy:.1f} %",
                  file=sys.stderr, flush=True)
        self.epoch_started = self.last_shown = self.clock()

    def close(self) -> None:
        self.bar.close()
