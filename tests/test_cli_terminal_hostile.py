"""The command line in hostile terminals, pipes and scripts: a standard output or error closed
(`2>&-`), full (`> /dev/full`) or a pipe whose reader has gone (`2>&1 | head`), Ctrl-C while
--help loads the plugins, a terminal that hung up, progress bars on a terminal of unknown size,
lines shown under a progress bar, output paths longer than the file system allows."""

import errno
import importlib
import io
import os
import select
import signal
import subprocess
import sys
import threading
from types import SimpleNamespace

import click
import pytest

from delgrad_core.cli import main
from delgrad_core.testing import cli_runner


@pytest.fixture
def network_file(tmp_path):
    import delgrad_core as dg

    path = tmp_path / "net.npz"
    dg.save_network(dg.Network.feedforward([4, 5, 3], seed=0), path)
    return path


def _delgrad(*args, cwd, closed=(), unbuffered=False, **kwargs) -> subprocess.CompletedProcess:
    """`delgrad ARGS` in a new process run in `cwd`, with the standard streams numbered in
    `closed` closed (as `2>&-` does); its standard output buffered, as in a user's shell, unless
    `unbuffered` (PYTHONUNBUFFERED, which some CI machines set)."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE,
              "env": {**environment, "PYTHONUNBUFFERED": "1"} if unbuffered else environment, **kwargs}

    def close():
        for fd in closed:
            os.close(fd)

    return subprocess.run([sys.executable, "-m", "delgrad_core.cli", *args], cwd=cwd, preexec_fn=close,
                          timeout=120, **kwargs)


# -- a closed standard error: commands run as with 2>/dev/null, nothing of stderr goes to stdout ---------

def test_backends_lists_with_stderr_closed(tmp_path):
    result = _delgrad("backends", "--json", cwd=tmp_path, closed=[2])
    assert result.returncode == 0
    assert result.stdout.startswith(b'{\n  "backends": [')


def test_a_usage_error_with_stderr_closed_is_not_written_to_stdout(tmp_path):
    result = _delgrad("evaluate", "missing", "--json", cwd=tmp_path, closed=[2])
    assert result.returncode == 2
    assert result.stdout == b""


def _two_epochs_reported():
    """The progress of a 2-epoch run in a log file (no terminal), a batch line included."""
    from delgrad_core.training._progress import EpochProgress

    seconds = iter(range(0, 10_000, 100))
    progress = EpochProgress(2, 0, "test", True, clock=lambda: next(seconds))
    progress.batch_done(1, 1, 2)
    for epoch in (1, 2):
        progress.update(SimpleNamespace(epoch=epoch, train_loss=0.1, train_accuracy=0.5, validation_accuracy=0.5))
    progress.close()
    return progress


def test_progress_with_stderr_gone_reports_nothing(monkeypatch, capsys):
    """(Python's sys.stderr is None where file descriptor 2 is closed: training failed)"""
    monkeypatch.setattr(sys, "stderr", None)
    _two_epochs_reported()
    assert capsys.readouterr().out == ""


# -- --help and --version: errors writing them as any command's ---------------------------------------

@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["backends", "--json"]])
def test_output_into_a_full_device_is_a_one_line_error(tmp_path, args, unbuffered):
    """(with standard output buffered, as in a user's shell, the rest of the output failed again
    at Python's flush at exit: status 120 and "Exception ignored in: <_io.TextIOWrapper ...")"""
    with open("/dev/full", "w") as full:
        result = _delgrad(*args, cwd=tmp_path, stdout=full, unbuffered=unbuffered)
    assert result.returncode == 1
    assert result.stderr.decode() == "Error: [Errno 28] No space left on device\n"


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["train", "--help"]])
def test_help_into_a_closed_pipe_ends_as_other_commands(tmp_path, args):
    reader, writer = os.pipe()
    os.close(reader)  # (as `| head -1` once head has its line)
    try:
        result = _delgrad(*args, cwd=tmp_path, stdout=writer)
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (141, b"")


def test_ctrl_c_while_help_lists_the_plugins_commands_is_interrupted(monkeypatch):
    from delgrad_core import _plugins

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_plugins, "registry", interrupted)
    result = cli_runner().invoke(main, ["--help"])
    assert result.exit_code == 130, result.output
    assert result.stderr == "\ninterrupted\n"


# -- progress bars on a terminal that says it has no size (a pseudo-terminal of unknown size) -----------

@pytest.fixture
def sizeless_terminal():
    """A pseudo-terminal of 0 rows and 0 columns: (a text stream writing to it, a function that
    reads what was written)."""
    fcntl = pytest.importorskip("fcntl")
    termios = pytest.importorskip("termios")
    import struct

    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    stream = io.TextIOWrapper(io.FileIO(terminal, "w"), encoding="utf-8", line_buffering=True)

    def written() -> str:
        stream.flush()
        chunks = []
        while select.select([controller], [], [], 0.2)[0]:
            chunks.append(os.read(controller, 65536))
        return b"".join(chunks).decode()

    yield stream, written
    stream.close()
    os.close(controller)


def test_training_progress_is_shown_on_a_terminal_of_unknown_size(sizeless_terminal, monkeypatch):
    from delgrad_core.training._progress import EpochProgress

    terminal, written = sizeless_terminal
    monkeypatch.setattr(sys, "stderr", terminal)  # (in the test: pytest sets its own before)
    progress = EpochProgress(2, 0, "test", True)
    progress.update(SimpleNamespace(epoch=1, train_loss=0.1, train_accuracy=0.5, validation_accuracy=0.5))
    progress.close()
    assert "test: " in written()


def test_calibration_progress_is_shown_on_a_terminal_of_unknown_size(sizeless_terminal, monkeypatch, tmp_path):
    terminal, written = sizeless_terminal
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path))
    monkeypatch.setattr(sys, "stderr", terminal)
    main(["calibrate", "--backend", "bss2-emulator"], standalone_mode=False)
    assert "calibrating bss2-emulator: " in written()


# -- lines shown while a progress bar is: on a line of their own ----------------------------------------

def _lines_under_bars(stderr: str, marker: str) -> list[str]:
    """The lines of `stderr` that hold `marker`, as a terminal shows them (what follows the last
    carriage return)."""
    return [line.rsplit("\r", 1)[-1] for line in stderr.split("\n") if marker in line]


def test_a_sweeps_results_are_not_written_onto_its_progress_bar(tmp_path):
    arguments = ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1", "--jobs", "1",
                 "--out", str(tmp_path / "sweep")]
    result = cli_runner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    shown = _lines_under_bars(result.stderr, "test accuracy")
    assert len(shown) == 1 and shown[0].startswith("none-h3-s0-"), result.stderr
    table = result.stdout.splitlines()  # (the error range was wider than its header, and ended in spaces)
    assert table[0].startswith("delays") and len({len(line) for line in table}) == 1, result.stdout
    assert all(line == line.rstrip() for line in table), result.stdout


def test_a_warning_is_not_written_onto_a_progress_bar(capsys):
    from tqdm.auto import tqdm

    from delgrad_core.cli import show_warning

    with tqdm(total=2, desc="bar", file=sys.stderr) as bar:
        bar.update(1)
        show_warning("careful")
    assert _lines_under_bars(capsys.readouterr().err, "careful") == ["Warning: careful"]


# -- output paths longer than the file system allows: a usage error, not the system's 4 KB message -------

def _long_path(tmp_path, size: int) -> str:
    """A path of `size` bytes in `tmp_path`, in folders that do not exist yet."""
    folders = (str(tmp_path) + ("/" + "d" * 200) * 25)[:size - 2].rstrip("/")
    return folders + "/" + "x" * (size - len(folders) - 1)


@pytest.mark.parametrize("size", [4082, 5000])  # (4082: the path fits, its temporary file's does not)
def test_an_output_path_longer_than_the_file_system_allows_is_a_usage_error(tmp_path, network_file, size):
    out = _long_path(tmp_path, size)
    result = cli_runner().invoke(main, ["export", str(network_file), out, "--time-scale", "1e-6"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"Error: OUT: the path '{out[:50]}..." in message
    assert f"is {size} bytes long, more than the 4081 the file system allows" in message


def test_an_output_path_as_long_as_the_file_system_allows_is_written(tmp_path, network_file):
    out = _long_path(tmp_path, 4081)
    result = cli_runner().invoke(main, ["export", str(network_file), out, "--time-scale", "1e-6"])
    assert result.exit_code == 0, result.output
    assert os.path.isfile(out)


class _ClosedPipe(io.StringIO):
    """A stream whose reader has gone."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_progress_lines_into_a_closed_pipe_end_the_reports_not_the_run(monkeypatch):
    """(`delgrad train 2>&1 | head -1`: the run was lost, status 1)"""
    monkeypatch.setattr(sys, "stderr", _ClosedPipe())
    assert not _two_epochs_reported().enabled


@pytest.mark.parametrize("tqdm_loaded", [True, False])
def test_a_line_into_a_closed_pipe_is_left_out(monkeypatch, tqdm_loaded):
    """(`delgrad sweep 2>&1 | head -1`: the sweep ended at its next line, before its first run)"""
    from delgrad_core.cli import show_line

    if not tqdm_loaded:
        monkeypatch.delitem(sys.modules, "tqdm", raising=False)
    monkeypatch.setattr(sys, "stderr", _ClosedPipe())
    show_line("a trial finished")


@pytest.mark.parametrize("tqdm_loaded", [True, False])
def test_a_line_into_a_closed_file_is_left_out(monkeypatch, tqdm_loaded):
    """`show_line`: a line that cannot be written is left out and the command goes on, also into a
    stream that was closed (ValueError: I/O operation on closed file)."""
    from delgrad_core.cli import show_line

    if not tqdm_loaded:
        monkeypatch.delitem(sys.modules, "tqdm", raising=False)
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    show_line("a trial finished")


@pytest.mark.parametrize("tqdm_loaded", [True, False])
def test_a_line_reaches_a_buffered_stderr_at_once(monkeypatch, tqdm_loaded):
    """`show_line` flushes: a stderr that buffers (click < 8.2's test runner's, a wrapper around a
    file) held a line written through tqdm, which does not flush, and lost it."""
    from delgrad_core.cli import show_line

    importlib.import_module("tqdm")  # (its writer is used once tqdm is imported)

    if not tqdm_loaded:
        monkeypatch.delitem(sys.modules, "tqdm")
    written = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(written, encoding="utf-8"))
    show_line("a trial finished")
    assert written.getvalue() == b"a trial finished\n"


def test_a_progress_bars_last_line_reaches_a_buffered_stderr_when_it_closes(monkeypatch):
    """(tqdm 4.60, the oldest supported, wrote a closed bar's newline without flushing it)"""
    from delgrad_core.training._progress import progress_bar

    written = io.BytesIO()
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(written, encoding="utf-8"))
    with progress_bar(total=2, desc="steps", mininterval=0) as bar:
        bar.update(2)
    assert written.getvalue().startswith(b"\rsteps") and written.getvalue().endswith(b"\n")


def _tqdm_lock_is_free() -> bool:
    """Whether another thread can take tqdm's locks (a bar whose write failed left them held)."""
    from tqdm import tqdm

    taken = []

    def take() -> None:
        for lock in tqdm.get_lock().locks:
            taken.append(lock.acquire(timeout=2))
            if taken[-1]:
                lock.release()

    thread = threading.Thread(target=take)
    thread.start()
    thread.join()
    return all(taken)


def test_a_calibrations_bar_into_a_closed_pipe_is_left_out(monkeypatch, tmp_path, capsys):
    """(`delgrad calibrate 2>&1 | head -1`: the calibration ended at its bar's first line)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path))
    monkeypatch.setattr(sys, "stderr", _ClosedPipe())
    main(["calibrate", "--backend", "bss2-emulator"], standalone_mode=False)
    assert capsys.readouterr().out.startswith("calibration of 'bss2-emulator' in ")
    assert _tqdm_lock_is_free()


def test_a_sweeps_bar_into_a_closed_pipe_is_left_out(monkeypatch, tmp_path):
    """(`delgrad sweep 2>&1 | head -1`: the sweep ended at its bar's first line, before its first
    run, leaving tqdm's lock held)"""
    monkeypatch.setattr(sys, "stderr", _ClosedPipe())
    main(["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1", "--jobs", "1", "--out",
          str(tmp_path / "sweep")], standalone_mode=False)
    assert len((tmp_path / "sweep" / "sweep.csv").read_text().splitlines()) == 2
    assert _tqdm_lock_is_free()


# -- a stop reported into a terminal that hung up (SIGHUP): the signal's status, not 1 ------------------

class _HungUp(io.StringIO):
    """A terminal that hung up: writing fails."""

    def write(self, text):
        raise OSError(errno.EIO, "Input/output error")


@pytest.fixture
def hang_up_command(monkeypatch):
    """A command `hang-up` that receives SIGHUP; with `--handled` it reports the stop itself (as
    `train` does), into a terminal that hung up."""
    @click.command("hang-up")
    @click.option("--handled", is_flag=True)
    def hang_up(handled):
        try:
            signal.raise_signal(signal.SIGHUP)  # (the command's handler raises KeyboardInterrupt)
        except KeyboardInterrupt:
            monkeypatch.setattr(sys, "stderr", _HungUp())
            if not handled:
                raise
            click.echo("\ninterrupted; resume it", err=True)

    monkeypatch.setitem(main.commands, "hang-up", hang_up)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs SIGHUP")
@pytest.mark.parametrize("handled", [False, True])
def test_a_stop_reported_into_a_hung_up_terminal_ends_with_the_signals_status(hang_up_command, handled):
    result = cli_runner().invoke(main, ["hang-up", *(["--handled"] if handled else [])])
    assert result.exit_code == 128 + signal.SIGHUP, result.output
