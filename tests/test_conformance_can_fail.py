"""The conformance suite catches wrong backends: run it in a subprocess against deliberate bugs."""

import os
import re
import subprocess
import sys

import pytest

from delgrad_core import Capabilities
from delgrad_core.testing import conformance_cases, write_distribution

WRONG_BACKEND = """
    import numpy as np
    from delgrad_core import Backend, Capabilities, DelayKind, ExecutionResult, forward, hookimpl

    class WrongBackend(Backend):
        '''The ideal model with optional bugs switched on by options.'''

        name = "wrong"

        def __init__(self, shift=0.0, exact=False, nan_silence=False, hide_synaptic=False, hardware=False,
                     ignore_limits=False, many_reversed=False, unseeded_noise=False):
            self.shift, self.exact = shift, exact
            self.nan_silence, self.hide_synaptic = nan_silence, hide_synaptic
            self.hardware, self.ignore_limits = hardware, ignore_limits
            self.many_reversed = many_reversed
            self.unseeded_noise = unseeded_noise  # the bug: declares seeded noise, ignores the seed

        @property
        def capabilities(self):
            if self.hardware:  # like a chip: ratio 1, axonal delays on a grid, 6-bit weights
                return Capabilities(delay_kinds={"none", "axonal"}, tau_ratios=(1.0,), weight_limit=2.1,
                                    weight_resolution=1 / 30, delay_range=(0.5, 3.0), delay_resolution=1 / 48,
                                    max_layers=2, max_layer_size=64, exact=self.exact)
            kinds = set(DelayKind) - ({DelayKind.SYNAPTIC} if self.hide_synaptic else set())
            return Capabilities(delay_kinds=kinds, exact=self.exact, seed_independent=not self.unseeded_noise)

        def represent(self, network):
            if self.ignore_limits:  # the bug: declares limits but runs the network as it is
                return network
            return super().represent(network)

        def check_supported(self, network):
            if not self.hide_synaptic:  # the bug: declares no synaptic delays but never refuses
                super().check_supported(network)

        def _execute_many(self, requests):
            if self.many_reversed:  # the bug: several jobs in flight come back in the wrong order
                return [self._execute(request) for request in requests[::-1]]
            return super()._execute_many(requests)

        def _execute(self, request):
            times = [t + self.shift for t in forward(request.network, request.input_spike_times)]
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
    env["COLUMNS"] = "1000"  # full failure reasons in the short summary
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
        (["shift=0.05"], {f"test_agreement_with_reference[{case.id}]" for case in conformance_cases(Capabilities())}),
        # Exact mode: even 1e-6 is far beyond the exact tolerance.
        (["shift=1e-6", "exact=true"], {f"test_agreement_with_reference[{case.id}]" for case in conformance_cases(Capabilities())}),
        (["hide_synaptic=true"], {"test_refuses_unsupported_before_running[delay_kinds-synaptic]"}),
        (["many_reversed=true"], {"test_execute_many_matches_execute"}),
        (["unseeded_noise=true"], {"test_seed_dependent_when_declared"}),
    ],
    ids=["shifted-statistical", "shifted-exact", "no-refusal", "many-out-of-order", "seed-ignored"],
)
def test_suite_fails_for_a_wrong_backend(site, options, expected):
    process, failed = _run_suite(site, options)
    assert process.returncode == 1, process.stdout[-3000:]
    assert set(failed) == expected and len(failed) == len(expected)


def test_suite_fails_when_silence_is_not_infinity(site):
    process, failed = _run_suite(site, ["nan_silence=true"])
    assert process.returncode == 1
    assert "test_silence_is_positive_infinity" in failed
    reasons = [line for line in process.stdout.splitlines() if line.startswith("FAILED")]
    assert reasons and all("contains NaN" in line for line in reasons), "\n".join(reasons)


HARDWARE = Capabilities(delay_kinds={"none", "axonal"}, tau_ratios=(1.0,), weight_limit=2.1, weight_resolution=1 / 30,
                        delay_range=(0.5, 3.0), delay_resolution=1 / 48, max_layers=2, max_layer_size=64)


def test_cases_follow_the_declared_capabilities():
    cases = conformance_cases(HARDWARE)
    assert [case.id for case in cases] == ["4-10-3-none-ratio1", "4-10-3-axonal-ratio1"]
    for case in cases:
        for layer in case.network.layers:
            neuron = layer.population.neuron
            assert neuron.tau_m == neuron.tau_s == 1.0
            assert layer.projection.delay_kind.value in ("none", "axonal")
            assert abs(layer.projection.weights).max() <= 2.1
            if layer.projection.delays is not None:
                assert layer.projection.delays.min() >= 0.5 and layer.projection.delays.max() <= 3.0
    deep = conformance_cases(Capabilities(delay_kinds={"synaptic"}, tau_ratios=(2.0,), max_inputs=6))
    assert [case.id for case in deep] == ["4-6-3-synaptic-ratio2", "4-6-6-3-synaptic-ratio2"]


def test_suite_passes_a_hardware_like_backend_and_catches_its_bugs(site):
    process, failed = _run_suite(site, ["hardware=true"])
    assert process.returncode == 0, process.stdout[-3000:]
    process, failed = _run_suite(site, ["hardware=true", "ignore_limits=true"])
    assert process.returncode == 1
    assert set(failed) == {f"test_represent_respects_the_declared_limits[{case.id}]" for case in conformance_cases(HARDWARE)}
    process, failed = _run_suite(site, ["hardware=true", "shift=0.05"])
    assert set(failed) == {f"test_agreement_with_reference[{case.id}]" for case in conformance_cases(HARDWARE)}


def test_a_conftest_swapping_in_another_backend_is_refused(tmp_path):
    """The cases are made from the named backend's capabilities, before fixtures run."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\nfrom delgrad_core import Capabilities\nfrom delgrad_core.testing import MockBackend\n\n"
        "@pytest.fixture(scope='session')\ndef delgrad_backend():\n"
        "    yield MockBackend(name='unregistered', capabilities=Capabilities(max_batch_size=16))\n")
    (tmp_path / "test_mine.py").write_text("from delgrad_core.testing.test_conformance import *  # noqa: F403\n")
    env = {key: value for key, value in os.environ.items() if key != "DELGRAD_BACKEND"}  # (tox sets it)
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 4, process.stdout[-2000:]
    assert "returns backend 'unregistered', but the cases were made for 'reference'" in process.stdout


def test_an_unknown_backend_is_one_error_naming_the_choices(tmp_path):
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
                              "delgrad_core.testing", "--delgrad-backend", "nope"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert process.returncode != 0 and "unknown backend 'nope'; choose one of" in process.stdout
    assert "1 error" in process.stdout.splitlines()[-1]  # not one per check
