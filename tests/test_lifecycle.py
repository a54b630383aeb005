"""Backends are released on success, error and Ctrl-C in train, evaluate and sweep, and the
command line reports backend failures in one line, run as a user runs it (real processes, a
real installed plugin)."""

import os
import subprocess
import sys

import pytest

from delgrad_core.testing import write_distribution

CLOSING = """
    import os
    from delgrad_core import (Backend, BackendUnavailable, Capabilities, ExecutionResult, forward, hookimpl)

    class ClosingBackend(Backend):
        '''The ideal model; logs close() with the process id; can fail or be interrupted.'''

        name = "closing"
        capabilities = Capabilities(exact=True)

        def __init__(self, fail_after=None, interrupt_after=None):
            self.fail_after, self.interrupt_after, self.calls = fail_after, interrupt_after, 0

        def _execute(self, request):
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise BackendUnavailable("device service at tcp://127.0.0.1:1 is not answering")
            if self.interrupt_after is not None and self.calls > self.interrupt_after:
                raise KeyboardInterrupt
            return ExecutionResult(forward(request.network, request.input_spike_times), {})

        def _close(self):
            with open(os.environ["CLOSE_LOG"], "a") as log:
                log.write(f"{os.getpid()}\\n")

    @hookimpl
    def delgrad_register_backends(register):
        register("closing", ClosingBackend, capabilities=Capabilities(exact=True))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    write_distribution(root, "delgrad-closing", "1.0", {"closing_backend": CLOSING},
                       {"delgrad.backends": {"closing": "closing_backend"}})
    return root


def _delgrad(site, tmp_path, *args):
    log = tmp_path / "closed.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
               CLOSE_LOG=str(log), DELGRAD_STRICT_PLUGINS="1")
    process = subprocess.run([sys.executable, "-m", "delgrad_core.cli", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    closes = log.read_text().split() if log.exists() else []
    return process, closes


TRAIN = ["train", "--backend", "closing", "--epochs", "1", "--hidden", "4", "--delays", "none", "--no-progress"]


def test_train_closes_the_backend_on_success(site, tmp_path):
    process, closes = _delgrad(site, tmp_path, *TRAIN, "--out", "run")
    assert process.returncode == 0, process.stderr
    assert len(closes) == 1


def test_train_reports_an_unavailable_backend_in_one_line_and_closes_it(site, tmp_path):
    process, closes = _delgrad(site, tmp_path, *TRAIN, "--out", "run", "--backend-option", "fail_after=3")
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert lines == ["Error: backend 'closing': device service at tcp://127.0.0.1:1 is not answering"], process.stderr
    assert len(closes) == 1


def test_train_closes_the_backend_on_ctrl_c(site, tmp_path):
    process, closes = _delgrad(site, tmp_path, *TRAIN, "--out", "run", "--backend-option", "interrupt_after=3")
    assert process.returncode == 130 and "Traceback" not in process.stderr
    assert len(closes) == 1


@pytest.mark.parametrize(("option", "status"), [(None, 0), ("fail_after=0", 1), ("interrupt_after=0", 130)])
def test_evaluate_closes_the_backend(site, tmp_path, option, status):
    process, _ = _delgrad(site, tmp_path, *TRAIN, "--out", "run")
    assert process.returncode == 0, process.stderr
    (tmp_path / "closed.log").unlink()
    args = ["evaluate", "run/network.npz", "--backend", "closing"]
    if option:
        args += ["--backend-option", option]
    process, closes = _delgrad(site, tmp_path, *args)
    assert process.returncode == status, process.stderr
    assert "Traceback" not in process.stderr and len(closes) == 1


@pytest.mark.parametrize(("option", "status"), [(None, 0), ("fail_after=2", 1), ("interrupt_after=2", 130)])
def test_sweep_closes_the_backend_in_every_worker(site, tmp_path, option, status):
    args = ["sweep", "--backend", "closing", "--hidden", "3", "--delays", "none,axonal", "--seeds", "1",
            "--epochs", "1", "--jobs", "2", "--out", "sweep"]
    if option:
        args += ["--backend-option", option]
    process, closes = _delgrad(site, tmp_path, *args)
    assert process.returncode == status, process.stdout + process.stderr
    assert "Traceback" not in process.stderr
    # one backend per run, each closed in its worker, and the one that checked the grid first
    assert len(closes) == 3 and len(set(closes)) == 3
