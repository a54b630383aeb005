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
