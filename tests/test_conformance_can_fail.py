"""The conformance suite catches wrong backends: run it in a subprocess against deliberate bugs."""

import os
import re
import subprocess
import sys

import pytest

from delgrad_core.testing import conformance_cases, write_distribution

WRONG_BACKEND = """
    import numpy as np
    from delgrad_core import Backend, Capabilities, DelayKind, ExecutionResult, forward, hookimpl

    class WrongBackend(Backend):
        '''The ideal model with optional bugs switched on by options.'''

        name = "wrong"

        def __init__(self, shift=0.0, exact=False, nan_silence=False, hide_synaptic=False):
            self.shift, self.exact = shift, exact
            self.nan_silence, self.hide_synaptic = nan_silence, hide_synaptic

        @property
        def capabilities(self):
            kinds = set(DelayKind) - ({DelayKind.SYNAPTIC} if self.hide_synaptic else set())
            return Capabilities(delay_kinds=kinds, exact=self.exact)

        def check_supported(self, network):
            if not self.hide_synaptic:  # the bug: declares no synaptic delays but never refuses
                super().check_supported(network)

        def _execute(self, network, input_spike_times, calibration, seed):
            times = [t + self.shift for t in forward(network, input_spike_times)]
            if self.nan_silence:
                times = [np.where(np.isinf(t), np.nan, t) for t in times]
            return ExecutionResult(times, {})

    @hookimpl
    def delgrad_register_backends(register):
        register("wrong", WrongBackend)
"""

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    write_distribution(root, "delgrad-wrong-backend", "0.1", {"wrong_backend": WRONG_BACKEND},
                       {"delgrad.backends": {"wrong": "wrong_backend"}})
    return root


def _run_suite(site, options):
    env = {key: value for key, value in os.environ.items() if key != "DELGRAD_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    args = [sys.executable, "-m", "pytest", "--pyargs", "delgrad_core.testing", "--delgrad-backend", "wrong",
            "-q", "-rf", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    for option in options:
        args += ["--delgrad-backend-option", option]
    process = subprocess.run(args, cwd=site, env=env, capture_output=True, text=True, timeout=300)
    failed = re.findall(r"^FAILED \S+::(\w+)(\[[^\]]*\])?", process.stdout, flags=re.MULTILINE)
    return process, [name + params for name, params in failed]


def test_suite_passes_without_bugs(site):
    process, failed = _run_suite(site, [])
    assert process.returncode == 0, process.stdout[-3000:]
    assert failed == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Statistical mode: a 0.05 tau_s shift breaks the median limit of 0.01 tau_s.
        (["shift=0.05"], {f"test_agreement_with_reference[{case.id}]" for case in conformance_cases()}),
        # Exact mode: even 1e-6 is far beyond the exact tolerance.
        (["shift=1e-6", "exact=true"], {f"test_agreement_with_reference[{case.id}]" for case in conformance_cases()}),
        (["hide_synaptic=true"], {"test_refuses_unsupported_before_running[delay_kinds-synaptic]"}),
    ],
    ids=["shifted-statistical", "shifted-exact", "no-refusal"],
)
def test_suite_fails_for_a_wrong_backend(site, options, expected):
    process, failed = _run_suite(site, options)
    assert process.returncode == 1, process.stdout[-3000:]
    assert set(failed) == expected and len(failed) == len(expected)


def test_suite_fails_when_silence_is_not_infinity(site):
    process, failed = _run_suite(site, ["nan_silence=true"])
    assert process.returncode == 1
    assert "test_silence_is_positive_infinity" in failed
    assert {name.split("[")[0] for name in failed} <= {"test_silence_is_positive_infinity", "test_result_contract"}
