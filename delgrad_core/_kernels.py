"""The compiled kernels (`_layer`), loaded once for every module that uses them: after checking
that this CPU has the features they were compiled for, and with OpenMP's idle threads passive."""

from __future__ import annotations

import os

from delgrad_core._errors import DelgradError

__all__ = ["kernels", "check_cpu"]


class _CompiledForAnotherCpu(DelgradError, ImportError):
    """The kernels need a CPU feature this CPU lacks (a DelgradError: the command line says it in
    one line)."""


def check_cpu(missing: str | None, required: list[str]) -> None:
    """Refuse kernels compiled for a CPU feature (`missing`, of `required`) this CPU lacks: run,
    they would end the process with an illegal instruction, without a word."""
    if missing is not None:
        raise _CompiledForAnotherCpu(
            f"delgrad's kernels were compiled for CPUs with {', '.join(required)}, and this CPU has no {missing}: a "
            "build made on another machine (the default, -march=native, compiles for the building machine's CPU). "
            "Install delgrad again on this machine, or build it for any CPU with pip install -Csetup-args=-Dmarch= ...")


def _load():
    """Import the kernels (after `check_cpu`) with OMP_WAIT_POLICY=PASSIVE unless the environment
    sets it.

    The kernels run many short OpenMP regions; idle threads that spin (libgomp's default) stall
    them badly on shared cores.  libgomp reads the policy once, when it is loaded, so the
    variable is set only for the import and the host's environment is left as it was.
    """
    from delgrad_core import _cpu

    check_cpu(_cpu.missing_feature(), _cpu.required_features())
    if "OMP_WAIT_POLICY" in os.environ:
        from delgrad_core import _layer
        return _layer
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        from delgrad_core import _layer
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    return _layer


kernels = _load()
