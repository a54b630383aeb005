"""The built-in and example backends pass the shipped conformance suite, run as a user runs it."""

import subprocess
import sys

import pytest

from delgrad_core import available_backends


@pytest.mark.parametrize("name", ["reference", "example"])
def test_backend_passes_the_conformance_suite(name, tmp_path):
    installed = {info.name for info in available_backends()}
    assert name in installed, f"backend {name!r} is not installed (installed: {sorted(installed)})"
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "delgrad_core.testing", "--delgrad-backend", name,
         "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    assert " passed" in process.stdout.splitlines()[-1]


def test_the_other_process_of_the_suite_imports_the_installed_package_not_the_working_folders(tmp_path):
    """(run from a source checkout after a regular install, the suite's other process imported the
    uncompiled delgrad_core of the working folder and failed; this fails only with a regular
    install, as CI's: an editable install's import hook finds the package before the folder)"""
    import subprocess
    import sys

    import numpy as np

    import delgrad_core as dg
    from delgrad_core.testing.test_conformance import _RUN_IN_ANOTHER_PROCESS

    (tmp_path / "delgrad_core").mkdir()
    (tmp_path / "delgrad_core" / "__init__.py").write_text("raise ImportError('the checkout, not the install')\n")
    request = dg.ExecutionRequest(dg.Network.feedforward([2, 3]), np.full((1, 2), 0.5))
    (tmp_path / "request.npz").write_bytes(request.to_bytes())
    process = subprocess.run([sys.executable, "-c", _RUN_IN_ANOTHER_PROCESS, "reference", "{}", "request.npz"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    assert (tmp_path / "request.npz.result").exists()
