"""Loading the compiled kernels: the CPU features they were compiled for are checked first (a
build moved to a CPU without them is refused in words, not ended by an illegal instruction), and
OpenMP's idle threads are passive whichever module loads them first."""

import os
import subprocess
import sys
import textwrap

import pytest

from delgrad_core import DelgradError, _cpu
from delgrad_core._kernels import check_cpu


def _cpu_flags() -> set[str] | None:
    """This CPU's feature flags as GCC names them (None without /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as info:
            line = next(line for line in info if line.startswith("flags"))
    except (OSError, StopIteration):
        return None
    return {{"bmi1": "bmi"}.get(flag, flag.replace("_", ".")) for flag in line.split(":", 1)[1].split()}


def test_this_cpu_has_every_feature_the_kernels_were_compiled_for():
    assert _cpu.missing_feature() is None
    flags = _cpu_flags()
    if flags is not None:
        assert set(_cpu.required_features()) <= flags


def test_kernels_compiled_for_a_feature_this_cpu_lacks_are_refused_in_words():
    with pytest.raises(ImportError) as raised:
        check_cpu("avx512f", ["avx2", "avx512f"])
    assert isinstance(raised.value, DelgradError)
    assert str(raised.value).startswith("delgrad's kernels were compiled for CPUs with avx2, avx512f, and this CPU "
                                        "has no avx512f: a build made on another machine")
    check_cpu(None, ["avx2"])


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    """`code` in a new Python process (in `tmp_path`, not the checkout)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}, timeout=120)


def test_the_command_line_says_it_in_one_line(tmp_path):
    """(simulated: a _cpu module that reports a missing feature, before anything loads the kernels)"""
    result = _run("""
        import sys, types
        sys.modules["delgrad_core._cpu"] = types.SimpleNamespace(missing_feature=lambda: "avx512f",
                                                                 required_features=lambda: ["avx512f"])
        from delgrad_core.cli import main
        main(["train", "--epochs", "1", "--hidden", "3", "--out", "run"])
    """, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: delgrad's kernels were compiled for CPUs with avx512f, and this CPU has no "
                                    "avx512f")


@pytest.mark.parametrize("first", ["delgrad_core._nominal_slope", "delgrad_core._propagation", "delgrad_core"])
def test_the_kernels_load_with_passive_openmp_threads_whichever_module_loads_them(tmp_path, first):
    """(the module of the nominal slope imported them before the policy was set: libgomp, which
    reads it once, kept its spinning default)"""
    result = _run(f"""
        import importlib, os, sys
        seen = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "delgrad_core._layer":
                    seen.append(os.environ.get("OMP_WAIT_POLICY"))
                return None

        sys.meta_path.insert(0, Watch())
        module = importlib.import_module({first!r})
        if {first!r} == "delgrad_core":
            module.forward
        print(seen, os.environ.get("OMP_WAIT_POLICY"))
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['PASSIVE']", "None"]
