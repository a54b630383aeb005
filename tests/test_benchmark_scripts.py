"""The benchmark scripts as a user runs them: a bad option ends the run at once (exit 2, the
option named), before minutes of timing, and the old kernels' scratch folder never stays."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *arguments], capture_output=True, text=True,
                          timeout=120)


def _refused(script: str, *arguments: str) -> str:
    result = _run(script, *arguments)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "[time]" not in result.stdout and "samples/s" not in result.stdout  # (nothing was timed)
    return result.stderr


@pytest.mark.parametrize("script", ["bench_kernels.py", "bench_bss2.py", "bench_hil.py"])
def test_a_json_path_that_cannot_be_written_is_refused_before_any_timing(script, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "is a file, not a folder" in _refused(script, "--json", str(blocker / "out.json"))
    assert "exists and is not a file" in _refused(script, "--json", str(tmp_path))


def test_a_plot_path_that_cannot_be_written_is_refused_before_any_timing(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if _can_write_in(locked):  # (root writes anywhere)
        pytest.skip("this user can write in a read-only folder")
    assert "cannot be written in" in _refused("bench_kernels.py", "--plot", str(locked / "scaling.png"))


def _can_write_in(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("")
    except PermissionError:
        return False
    return True


def test_bench_kernels_refuses_a_plot_without_the_scaling_series(tmp_path):
    message = _refused("bench_kernels.py", "--no-scaling", "--plot", str(tmp_path / "scaling.png"))
    assert "--plot" in message and "--no-scaling" in message


def test_bench_kernels_refuses_the_same_file_for_plot_and_json(tmp_path):
    out = str(tmp_path / "out")
    assert "both name" in _refused("bench_kernels.py", "--plot", out, "--json", out)


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_bench_kernels_refuses_a_number_of_epoch_samples_below_one(value):
    assert "--epoch-samples" in _refused("bench_kernels.py", "--epoch-samples", value)


@pytest.mark.parametrize("option", ["--batch", "--jobs", "--rounds", "--in-flight", "--client-jobs"])
@pytest.mark.parametrize("value", ["0", "1.5", "x"])
def test_bench_hil_refuses_counts_that_are_not_positive_integers(option, value):
    assert option in _refused("bench_hil.py", option, value)


@pytest.mark.parametrize(("arguments", "said"), [
    (["--device", "nope"], "unknown backend 'nope'; choose one of"),
    (["--device-option", "chip"], "--device-option: expected KEY=VALUE"),
    (["--device-option", "chip=abc"], "chip: expected an integer"),
    (["--device-option", "chipp=1"], "did you mean chip?"),
], ids=["unknown device", "option without a value", "option value", "unknown option"])
def test_bench_hil_refuses_a_device_or_device_option_the_device_does_not_know(arguments, said):
    assert said in _refused("bench_hil.py", *arguments)


def _in_git_checkout() -> bool:
    try:
        return subprocess.run(["git", "-C", str(BENCHMARKS), "rev-parse", "HEAD"], capture_output=True).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _in_git_checkout(), reason="the old kernels are built from git history")
@pytest.mark.parametrize("revision", ["no-such-revision", "origin/no/such/branch"])
def test_bench_kernels_refuses_a_baseline_revision_git_does_not_know(revision):
    message = _refused("bench_kernels.py", "--baseline-revision", revision, "--no-scaling")
    assert f"--baseline-revision: {revision!r} names no commit" in message


def _module(name: str):
    """The benchmarks' module `name` (e.g. "_old_kernels"), imported from its file."""
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_json_results_hold_null_for_nan_and_infinity_which_json_readers_refuse(tmp_path):
    """(bench_hil's steady rate without a steady window is NaN, bench_kernels' difference of spike
    patterns that differ inf: jq and JavaScript refused the file.)"""
    _module("_script").write_json(tmp_path / "out.json", {"rate": float("nan"), "agreement": {
        "spike_times": float("inf"), "weights": 1e-12}, "counts": [(1, -float("inf"))]})
    text = (tmp_path / "out.json").read_text()
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON")) == {
        "rate": None, "agreement": {"spike_times": None, "weights": 1e-12}, "counts": [[1, None]]}


@pytest.mark.skipif(not _in_git_checkout(), reason="the old kernels are built from git history")
def test_an_interrupted_build_of_the_old_kernels_leaves_no_scratch_folder(tmp_path, monkeypatch):
    old_kernels = _module("_old_kernels")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    def interrupted(*arguments, **keywords):
        raise KeyboardInterrupt

    monkeypatch.setattr(old_kernels.subprocess, "run", _runs_git_then(interrupted, old_kernels.subprocess.run))
    with pytest.raises(KeyboardInterrupt):
        old_kernels.load("HEAD")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not _in_git_checkout(), reason="the old kernels are built from git history")
def test_old_kernels_of_a_revision_whose_propagation_needs_more_are_refused_naming_why(monkeypatch):
    """(--baseline-revision of a later revision ended in a ModuleNotFoundError traceback)"""
    old_kernels = _module("_old_kernels")
    monkeypatch.setattr(old_kernels.subprocess, "run", _runs_git_then(lambda *a, **k: None, old_kernels.subprocess.run))

    def imported(path, name):
        if path.suffix == ".py":
            raise ModuleNotFoundError("No module named 'delgrad_core._cpus'")
        return object()

    monkeypatch.setattr(old_kernels, "_import_from", imported)
    with pytest.raises(RuntimeError, match=r"^the _propagation.py of [0-9a-f]{12} cannot run on its kernels alone \(No "
                                           r"module named 'delgrad_core._cpus'\); revisions laid out as 88f2207 can$"):
        old_kernels.load("HEAD")


@pytest.mark.slow
@pytest.mark.skipif(not _in_git_checkout(), reason="the old kernels are built from git history")
def test_old_kernels_loaded_first_leave_todays_code_on_todays_kernels():
    """(a Cython module registers itself in sys.modules under the name it was compiled as: old
    kernels loaded before today's were run by today's forward, in a script timing the two)"""
    pytest.importorskip("Cython", reason="building old kernels needs Cython (installed for the editable install "
                                         "the benchmarks use, not with the package)")
    script = ("import _old_kernels\n"
              "old = _old_kernels.load('HEAD')\n"
              "import delgrad_core._propagation as today\n"
              "print(today._layer is old._layer, today._layer.__name__)")
    result = subprocess.run([sys.executable, "-c", script], cwd=BENCHMARKS, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "delgrad_core._layer"]


def _runs_git_then(replacement, run):
    """`subprocess.run` for git commands, `replacement` for the first other one (Cython)."""
    def patched(command, *arguments, **keywords):
        if command[0] == "git":
            return run(command, *arguments, **keywords)
        return replacement(command, *arguments, **keywords)

    return patched
