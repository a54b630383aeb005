"""Shared fixtures of the bss2-emulator tests: a private calibration cache for the session and
backends with chosen imperfections."""

import importlib.util

import pytest

import delgrad_core as dg

# Without the delgrad-bss2 distribution (e.g. a core-only install) these tests are not collected.
if importlib.util.find_spec("delgrad_bss2") is None:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session", autouse=True)
def calibration_cache(tmp_path_factory):
    """Calibrations of this session go to a fresh directory (never the user's cache)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path_factory.mktemp("bss2-cache")))
        yield


@pytest.fixture(scope="session")
def emulator():
    """``emulator(**options) -> (backend, calibration)``, built once per option set."""
    built = {}

    def make(**options):
        key = tuple(sorted(options.items()))
        if key not in built:
            backend = dg.get_backend("bss2-emulator", **options)
            built[key] = (backend, backend.calibrate(seed=0))
        return built[key]

    return make
