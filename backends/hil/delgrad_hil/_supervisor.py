"""A local service process: ``delgrad hil serve`` on a free loopback port with a fresh token,
restarted when it has ended, stopped by `stop()`, and never outliving the process that started
it (the service watches its parent and exits when the parent is gone, however it ended).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import weakref

from delgrad_core import BackendUnavailable

from delgrad_hil._auth import TOKEN_ENV, new_token
from delgrad_hil._faults import FaultPlan

__all__ = ["LocalService", "how_it_ended", "watch_parent", "READY_PREFIX"]

log = logging.getLogger("delgrad_hil.supervisor")

READY_PREFIX = "delgrad-hil ready "
# The child runs the delgrad command line without the working directory on sys.path (python -m
# and -c would put it first; from a source checkout that would import the uncompiled tree).
_BOOT = "import sys; sys.path.pop(0); from delgrad_core.cli import main; main(prog_name='delgrad')"


def how_it_ended(status: int | None) -> str:
    """"killed by signal 9" for a process's negative return code -9, else "exit status N"."""
    return f"killed by signal {-status}" if status is not None and status < 0 else f"exit status {status}"


def watch_parent(parent_pid: int, interval_s: float = 0.2, leftovers=()) -> None:
    """Exit this process at once when `parent_pid` stops being its parent (the parent ended in
    any way, SIGKILL included: the process is then re-parented), removing the files in
    `leftovers` (what the parent would have removed).  Polling the parent id also works when
    the parent started this process from a thread that has ended since."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        log.warning("the parent process %d is gone; exiting", parent_pid)
        for path in leftovers:
            with contextlib.suppress(OSError):
                os.unlink(path)
        os._exit(0)

    threading.Thread(target=watch, name="delgrad-hil-parent-watch", daemon=True).start()


def _terminate(process: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it does not end within `timeout_s`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


class _Leftovers:
    """What a LocalService removes at exit if it is never stopped: its current process and its log."""

    def __init__(self, log_path: str):
        self.process: subprocess.Popen | None = None
        self.log_path = log_path
        self.owner_pid = os.getpid()


def _end(leftovers: _Leftovers) -> None:
    """End the process and remove the log of a LocalService that was never stopped (dropped, or
    alive at exit); only in the process that made it (a forked child inherits the clean-up)."""
    if os.getpid() != leftovers.owner_pid:
        return
    if leftovers.process is not None:
        _terminate(leftovers.process)
    with contextlib.suppress(OSError):
        os.unlink(leftovers.log_path)


class LocalService:
    """A service process owned by this process.

    Parameters
    ----------
    device : str
        Registered name of the device backend.
    device_options : dict, optional
        Options of the device (JSON values).
    faults : FaultPlan, optional
        Faults the service injects (kept across restarts).
    serve_arguments : list of str, optional
        Further options of ``delgrad hil serve`` (e.g. ``["--max-message-mb", "1"]``).
    startup_timeout_s : float
        How long to wait for the service to report that it serves.
    """

    def __init__(self, device: str, device_options: dict | None = None, faults: FaultPlan | None = None, *,
                 serve_arguments=(), startup_timeout_s: float = 120.0):
        self.device = device
        self.device_options = dict(device_options or {})
        self.faults = faults or FaultPlan()
        self.serve_arguments = list(serve_arguments)
        self.startup_timeout_s = float(startup_timeout_s)
        self.token = new_token()
        self.address: str | None = None
        self.restarts = 0
        descriptor, log_path = tempfile.mkstemp(prefix="delgrad-hil-", suffix=".log")
        os.close(descriptor)
        self._leftovers = _Leftovers(log_path)
        weakref.finalize(self, _end, self._leftovers)

    @property
    def _process(self) -> subprocess.Popen | None:
        return self._leftovers.process

    @property
    def _log_path(self) -> str:
        return self._leftovers.log_path

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the service (if it is not running) and wait until it serves."""
        if not self.alive:
            self._spawn(self.address or "tcp://127.0.0.1:0")

    def ensure_running(self) -> bool:
        """Restart the service if its process has ended (on the same port if it is free);
        True if it was restarted."""
        if self._process is None or self.alive:
            return False
        status = self._process.returncode
        self._release()
        self.restarts += 1
        log.warning("the local service ended (%s); restarting it", how_it_ended(status))
        try:
            self._spawn(self.address)
        except BackendUnavailable:
            self._spawn("tcp://127.0.0.1:0")
        return True

    def stop(self) -> None:
        """Stop the service (graceful, then killed) and remove its log, even when interrupted."""
        try:
            self._release()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self._log_path)

    def _release(self) -> None:
        if self._process is not None:
            _terminate(self._process)
            self._leftovers.process = None  # (after: an interrupted wait leaves the clean-up at exit in place)

    def _spawn(self, address: str) -> None:
        command = [sys.executable, "-c", _BOOT, "hil", "serve", "--device", self.device, "--address", address,
                   "--parent-pid", str(os.getpid()), "--log-file", self._log_path, "--shutdown-grace-s", "5"]
        for key, value in self.device_options.items():
            command += ["--device-option", f"{key}={json.dumps(value)}"]
        command += self.faults.arguments() + self.serve_arguments
        with open(self._log_path, "a") as log_file:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file,
                                       env={**os.environ, TOKEN_ENV: self.token}, text=True, start_new_session=True)
        self._leftovers.process = process
        line = self._ready_line(process)
        if not line.startswith(READY_PREFIX):
            self._release()
            raise BackendUnavailable(f"the local mock-hil service for device {self.device!r} did not start: "
                                     f"{self._log_tail() or 'no message'}", retryable=False)
        self.address = line[len(READY_PREFIX):].strip()

    def _ready_line(self, process: subprocess.Popen) -> str:
        deadline = time.monotonic() + self.startup_timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([process.stdout], [], [], min(remaining, 0.5))
            if readable:
                return process.stdout.readline()
            if process.poll() is not None:
                return ""
        return ""

    def _log_tail(self) -> str:
        try:
            with open(self._log_path) as handle:
                lines = [line.strip() for line in handle if line.strip()]
        except OSError:
            return ""
        return lines[-1] if lines else ""
