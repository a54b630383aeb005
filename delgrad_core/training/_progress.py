"""Progress of a training run: a bar on a terminal, a line every few epochs in a log file, and
within an epoch that takes long (large image networks) the batches done so far."""

from __future__ import annotations

import sys
import time

__all__ = ["EpochProgress", "progress_bar"]

_LINES_PER_RUN = 30
_BATCH_LINE_SECONDS = 30.0  # in a log file: a line on the batches done at most this often within an epoch
_BATCH_BAR_SECONDS = 0.5  # on a terminal: the bar shows the batches done at most this often
_BAR_ROWS = 24  # the rows tqdm is told the terminal has (it hid every bar on one that says it has 0: a
# pseudo-terminal of unknown size)


def progress_bar(**options):
    """A tqdm progress bar (`options` as tqdm takes them) on stderr, shown on a terminal of
    unknown size too, whose failing writes end its output, not the work (`_BarStream`)."""
    from tqdm.auto import tqdm

    return tqdm(file=_BarStream(sys.stderr), nrows=_BAR_ROWS, **options)


class _BarStream:
    """`stream` for a progress bar: a write that fails (e.g. into a closed pipe: `2>&1 | head`)
    ends the bar's output, not the work (raised inside tqdm, it also left tqdm's lock held, on
    which processes forked later waited forever)."""

    def __init__(self, stream):
        self._stream = stream
        self._broken = False

    def __getattr__(self, name):  # (what tqdm asks of its stream: encoding, fileno, ...)
        return getattr(self._stream, name)

    def __eq__(self, other) -> bool:  # (tqdm.write clears the bars on the stream it writes to)
        return self._stream == getattr(other, "_stream", other)

    def __hash__(self) -> int:
        return hash(self._stream)

    def write(self, text: str) -> None:
        self._call("write", text)
        self._call("flush")  # (older tqdm wrote a closed bar's last newline unflushed: a buffered stream held it)

    def flush(self) -> None:
        self._call("flush")

    def _call(self, method: str, *args) -> None:
        if not self._broken:
            try:
                getattr(self._stream, method)(*args)
            except (OSError, ValueError):  # (ValueError: a closed file)
                self._broken = True


class EpochProgress:
    """Report finished epochs, and the batches of a long epoch; `enabled` False reports nothing.
    `clock` gives seconds (time.monotonic; a test passes its own)."""

    def __init__(self, total: int, initial: int, description: str, enabled: bool, clock=time.monotonic):
        self.total = total
        self.enabled = enabled and sys.stderr is not None  # (None: its file descriptor was closed)
        self.interactive = self.enabled and sys.stderr.isatty()
        self.every = max(1, round(total / _LINES_PER_RUN))
        self.bar = progress_bar(total=total, initial=initial, disable=not self.interactive, desc=description,
                                unit="epoch")
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
            self._line(f"epoch {epoch}/{self.total}: {done} of {batches} batches done, "
                       f"{now - self.epoch_started:.0f} s into the epoch")
            self.last_shown = now

    def update(self, metrics) -> None:
        self.postfix = {"loss": f"{metrics.train_loss:.4f}", "train": f"{metrics.train_accuracy:.3f}",
                        "val": f"{metrics.validation_accuracy:.3f}"}
        self.bar.set_postfix(self.postfix)
        self.bar.update(1)
        if self.enabled and not self.interactive and (metrics.epoch % self.every == 0 or metrics.epoch == self.total):
            self._line(f"epoch {metrics.epoch}/{self.total}: loss {metrics.train_loss:.4f}, train "
                       f"{100 * metrics.train_accuracy:.1f} %, validation {100 * metrics.validation_accuracy:.1f} %")
        self.epoch_started = self.last_shown = self.clock()

    def _line(self, text: str) -> None:
        """A progress line on stderr; one that cannot be written (e.g. into a closed pipe: `2>&1 |
        head`) ends the reports, not the run (as tqdm's bar does)."""
        try:
            print(text, file=sys.stderr, flush=True)
        except (OSError, ValueError):  # (ValueError: a closed file)
            self.enabled = False

    def close(self) -> None:
        self.bar.close()
