"""The conformance suite catches wrong backends: run it in a subprocess against deliberate bugs."""

import ast
import importlib.util
import os
import re
import subprocess
import sys
from xml.etree import ElementTree

import numpy as np
import pytest

from delgrad_core import Capabilities
from delgrad_core.testing import conformance_cases, write_distribution

WRONG_BACKEND = """
    import numpy as np
    from delgrad_core import (Backend, Capabilities, ConformanceProfile, DelayKind, ExecutionResult, Layer, Network,
                              NeuronParameters, Population, Projection, UnsupportedNetworkError, forward, hookimpl)
    from delgrad_core._capabilities import apply_constraints

    class WrongBackend(Backend):
        '''The ideal model with optional bugs switched on by options.'''

        name = "wrong"

        def __init__(self, shift=0.0, exact=False, nan_silence=False, hide_synaptic=False, hardware=False,
                     ignore_limits=False, many_reversed=False, unseeded_noise=False, output_stretch=1.0,
                     silenced_outputs=0, acausal=0.0, random_jitter=0.0, profile_dict=False, calibration_error="",
                     neuron_budget=0, refuse_at_run_time=False, max_batch_size=None, max_median_error=0.01,
                     causality_tolerance=0.02, max_inputs=None, hash_seeded=False, token_file=None,
                     delay_cap=None, delay_cap_in_represent=False, tau_ratio=None, batch_cut=None,
                     input_copies=None, first_copy_only=False, unshared_copy_delays=False, copies_of_any_count=False,
                     copies_without_delays=False, max_layers=None, neuron_bug="", weight_limit=None,
                     dead_after_first=False, fan_in_cut=None, exact_tolerance=1e-9, represent_in_place=False,
                     early_arrivals=0.0, squeezed=False, reads_calibration=False, min_silence_agreement=0.95,
                     unsupported="", shared_buffers=False, defaults_bug=""):
            self.shift, self.exact = shift, exact
            self.nan_silence, self.hide_synaptic = nan_silence, hide_synaptic
            self.hardware, self.ignore_limits = hardware, ignore_limits
            self.many_reversed = many_reversed
            self.shared_buffers = shared_buffers  # the bug: _execute_many fills one buffer per shape for every job
            self.unseeded_noise = unseeded_noise  # the bug: declares seeded noise, ignores the seed
            self.output_stretch = output_stretch  # the bug: output times stretched around the first input
            self.silenced_outputs = silenced_outputs  # the bug: this many spiking output entries come back silent
            # the bug: one output spike this many tau_s before its first input arrives (behind a hidden layer;
            # without one it would come before the sample's first input, which execute itself refuses)
            self.acausal = acausal
            self.random_jitter = random_jitter  # the bug: declares determinism, adds unseeded noise (tau_s)
            self.profile_dict = profile_dict  # the bug: conformance_profile() returns a dict
            self.calibration_error = calibration_error  # the bug: calibrate raises RuntimeError(this)
            self.neuron_budget = neuron_budget  # no bug: networks of more neurons are refused for lack of resources
            self.refuse_at_run_time = refuse_at_run_time  # (by _execute instead of check_resources)
            self.max_batch_size, self.max_median_error = max_batch_size, max_median_error
            self.causality_tolerance = causality_tolerance
            self.max_inputs = max_inputs  # no bug: a declared fan-in limit
            self.hash_seeded = hash_seeded  # the bug: its noise is seeded by hash(), another in every process
            self.delay_cap = delay_cap  # the bug: longer delays run as this one (tau_s), declared range or not
            self.delay_cap_in_represent = delay_cap_in_represent  # (there, instead of silently when running)
            self.tau_ratio = tau_ratio  # no bug: the one tau ratio it runs
            self.batch_cut = batch_cut  # the bug: samples beyond this many in a job come back silent (undeclared)
            self.input_copies = input_copies  # no bug: declares that inputs come in copies (which run as any input)
            self.first_copy_only = first_copy_only  # the bug: only the first copy of an input drives its neurons
            self.unshared_copy_delays = unshared_copy_delays  # the bug: represent leaves the copies their own delays
            self.copies_of_any_count = copies_of_any_count  # the bug: takes copies of a count no multiple of them
            self.copies_without_delays = copies_without_delays  # the bug: takes copies without axonal delays too
            self.max_layers = max_layers  # no bug: a declared depth limit
            self.neuron_bug = neuron_bug  # the bug: every neuron runs with theta 1, tau_s 1 or the first one's values
            self.weight_limit = weight_limit  # no bug: a declared weight limit
            self.dead_after_first = dead_after_first  # the bug: every layer after the first stays silent
            self.fan_in_cut = fan_in_cut  # the bug: inputs of a neuron beyond this many drive nothing (undeclared)
            self.exact_tolerance = exact_tolerance  # (an exact backend's own tolerance)
            self.represent_in_place = represent_in_place  # the bug: represent clips the weights it is given
            # the bug: reports arrival times, 40 % of them up to this early (tau_s), never before their spike was sent
            self.early_arrivals = early_arrivals
            self.squeezed = squeezed  # the bug: arrays of one sample or one neuron come back squeezed
            self.reads_calibration = reads_calibration  # the bug: declares it needs none, fails without one
            self.min_silence_agreement = min_silence_agreement
            self.unsupported = unsupported  # no bug: the check it declares unsupported
            if token_file is not None:  # no bug: an option naming a file, relative to the working folder
                open(token_file).close()

        def conformance_profile(self):
            if self.profile_dict:
                return {"max_median_error": 0.1}
            return ConformanceProfile(max_median_error=self.max_median_error,
                                      causality_tolerance=self.causality_tolerance,
                                      exact_tolerance=self.exact_tolerance,
                                      min_silence_agreement=self.min_silence_agreement,
                                      unsupported={self.unsupported: "declared"} if self.unsupported else {})

        def _calibrate(self, network, seed, progress):
            if self.calibration_error:
                raise RuntimeError(self.calibration_error)
            return super()._calibrate(network, seed, progress)

        def _beyond_budget(self, network):
            n_neurons = sum(network.sizes[1:])
            if self.neuron_budget and n_neurons > self.neuron_budget:
                return f"{n_neurons} neurons, the substrate has {self.neuron_budget}"
            return None

        def check_resources(self, network):
            return None if self.refuse_at_run_time else self._beyond_budget(network)

        @property
        def capabilities(self):
            if self.hardware:  # like a chip: ratio 1, axonal delays on a grid, 6-bit weights
                return Capabilities(delay_kinds={"none", "axonal"}, tau_ratios=(1.0,), weight_limit=2.1,
                                    weight_resolution=1 / 30, delay_range=(0.5, 3.0), delay_resolution=1 / 48,
                                    max_layers=2, max_layer_size=64, exact=self.exact)
            kinds = set(DelayKind) - ({DelayKind.SYNAPTIC} if self.hide_synaptic else set())
            return Capabilities(delay_kinds=kinds, exact=self.exact, seed_independent=not self.unseeded_noise,
                                max_batch_size=self.max_batch_size, max_inputs=self.max_inputs,
                                tau_ratios=None if self.tau_ratio is None else (self.tau_ratio,),
                                input_copies=self.input_copies, max_layers=self.max_layers,
                                weight_limit=self.weight_limit)

        def represent(self, network):
            if self.ignore_limits:  # the bug: declares limits but runs the network as it is
                return network
            if self.represent_in_place:
                for layer in network.layers:
                    np.clip(layer.projection.weights, -1.0, 1.0, out=layer.projection.weights)
                return network
            if self.unshared_copy_delays:  # the bug: the copies keep their own delays (the base class shares them)
                return network
            network = super().represent(network)
            return self._capped(network) if self.delay_cap_in_represent else network

        def _capped(self, network):
            if self.delay_cap is None:
                return network
            return apply_constraints(network, Capabilities(delay_range=(0.0, self.delay_cap)))

        def check_supported(self, network):
            if not self.hide_synaptic:  # the bug: declares no synaptic delays but never refuses
                super().check_supported(network)

        def _execute_many(self, requests):
            if self.many_reversed:  # the bug: several jobs in flight come back in the wrong order
                return [self._execute(request) for request in requests[::-1]]
            if self.shared_buffers:  # (so all but the last job of a shape return another job's times)
                buffers, results = {}, []
                for request in requests:
                    result = self._execute(request)
                    times = [buffers.setdefault(times.shape, np.empty(times.shape))
                             for times in result.layer_spike_times]
                    for buffer, own in zip(times, result.layer_spike_times):
                        buffer[...] = own
                    results.append(ExecutionResult(times, result.metadata, result.arrival_times))
                return results
            return super()._execute_many(requests)

        def _execute(self, request):
            problem = self._beyond_budget(request.network) if self.refuse_at_run_time else None
            if problem:
                raise UnsupportedNetworkError(f"backend 'wrong' cannot place the network: {problem}",
                                              capability="resources")
            network = request.network if self.delay_cap_in_represent else self._capped(request.network)
            if self.first_copy_only and network.input.size % self.input_copies == 0:
                first = network.layers[0]
                weights = np.where((np.arange(network.input.size) % self.input_copies == 0)[:, None],
                                   first.projection.weights, 0.0)
                projection = Projection(weights, first.projection.delay_kind, first.projection.delays)
                network = Network(network.input, [Layer(first.population, projection), *network.layers[1:]])
            if self.fan_in_cut is not None:
                network = Network(network.input, [
                    Layer(layer.population, Projection(np.where(np.arange(layer.projection.n_pre)[:, None]
                                                                < self.fan_in_cut,
                                                                layer.projection.weights, 0.0),
                                                       layer.projection.delay_kind, layer.projection.delays))
                    for layer in network.layers])
            if self.neuron_bug:
                network = Network(network.input, [Layer(Population(layer.population.name, layer.population.size,
                                                                   self._wrong_neuron(layer.population)),
                                                        layer.projection) for layer in network.layers])
            inputs = request.input_spike_times
            copies_taken = self.copies_of_any_count and network.input.size % self.input_copies or \
                self.copies_without_delays and not network.input.size % self.input_copies
            if copies_taken:  # (the first whole groups, as copies of their first line)
                grouped = network.input.size // self.input_copies * self.input_copies
                inputs = inputs.copy()
                inputs[:, :grouped] = np.repeat(inputs[:, :grouped:self.input_copies], self.input_copies, axis=1)
            times = [t + self.shift for t in forward(network, inputs)]
            output = times[-1]
            if self.output_stretch != 1.0:
                first_input = request.input_spike_times.min(axis=1, keepdims=True)
                spiking = np.isfinite(output)
                output[spiking] = (first_input + self.output_stretch * (output - first_input))[spiking]
            output.flat[np.flatnonzero(np.isfinite(output))[:self.silenced_outputs]] = np.inf
            if self.acausal and len(times) > 1 and np.isfinite(output).any():
                pre = times[-2]
                delays = request.network.layers[-1].projection.delay_matrix()
                first_arrival = (pre[:, :, None] + delays[None]).min(axis=1)
                sample, neuron = np.argwhere(np.isfinite(output))[0]
                output[sample, neuron] = first_arrival[sample, neuron] - self.acausal
            if self.random_jitter:
                times = [t + np.random.uniform(0.0, self.random_jitter, t.shape) for t in times]
            if self.hash_seeded:
                noise = np.random.default_rng(abs(hash("noise")))
                times = [t + noise.uniform(0.0, 1e-3, t.shape) for t in times]
            if self.nan_silence:
                times = [np.where(np.isinf(t), np.nan, t) for t in times]
            if self.dead_after_first:
                times = [times[0], *(np.full_like(t, np.inf) for t in times[1:])]
            if self.batch_cut is not None:
                for t in times:
                    t[self.batch_cut:] = np.inf
            if self.reads_calibration:
                request.calibration.cache_key
            if self.squeezed:
                times = [np.squeeze(t) for t in times]
            return ExecutionResult(times, {},
                                   arrival_times=self._arrivals(request, times) if self.early_arrivals else None)

        def _arrivals(self, request, times):
            noise, arrivals = np.random.default_rng(0), []
            for sent, layer in zip([request.input_spike_times, *times[:-1]], request.network.layers):
                nominal = sent[:, :, None] + layer.projection.delay_matrix()[None]
                early = np.where(noise.random(nominal.shape) < 0.4,
                                 noise.uniform(0, self.early_arrivals, nominal.shape), 0)
                arrivals.append(np.maximum(nominal - early, sent[:, :, None]))
            return arrivals

        def _wrong_neuron(self, population):
            neuron, shape = population.neuron, (population.size,)
            threshold, tau_m, tau_s = (np.broadcast_to(value, shape) for value in (neuron.threshold, neuron.tau_m,
                                                                                    neuron.tau_s))
            return {"threshold": lambda: NeuronParameters(1.0, tau_m, tau_s),
                    "tau_s": lambda: NeuronParameters(threshold, tau_m / tau_s, 1.0),
                    "first": lambda: NeuronParameters(threshold[0], tau_m[0], tau_s[0])}[self.neuron_bug]()

    def raising_factory(**options):
        raise RuntimeError("cannot open /dev/mychip0")

    class Misregistered(WrongBackend):
        name = "wrong-misregistered"  # (registered with a weight limit it does not have)

    def wrong_training_defaults(options):  # (the option `defaults_bug` picks a bug of the registered defaults)
        return {"no_table": "axonal", "copies_unrepeated": {"delays": "axonal"}}.get(options.get("defaults_bug"), {})

    @hookimpl
    def delgrad_register_backends(register):
        register("wrong", WrongBackend, training_defaults=wrong_training_defaults)
        register("wrong-raising", raising_factory, capabilities=Capabilities())
        register("wrong-raising-nocaps", raising_factory)
        register("wrong-misregistered", Misregistered, capabilities=Capabilities(delay_kinds=set(DelayKind),
                                                                                 weight_limit=8.0))
"""

VARIED_NEURONS = next(case for case in conformance_cases(Capabilities()) if case.id.endswith("-neurons-vary"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    write_distribution(root, "delgrad-wrong-backend", "0.1", {"wrong_backend": WRONG_BACKEND},
                       {"delgrad.backends": {"wrong": "wrong_backend"}})
    return root


def _run_suite(site, options, backend="wrong", pytest_args=()):
    env = {key: value for key, value in os.environ.items() if key != "DELGRAD_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "1000"  # full failure reasons in the short summary
    args = [sys.executable, "-m", "pytest", "--pyargs", "delgrad_core.testing", "--delgrad-backend", backend,
            "-q", "-rf", "-p", "no:cacheprovider", "-W", "ignore::pytest.PytestAssertRewriteWarning", *pytest_args]
    for option in options:
        args += ["--delgrad-backend-option", option]
    process = subprocess.run(args, cwd=site, env=env, capture_output=True, text=True, timeout=300)
    failed = re.findall(r"^FAILED \S+::(\w+)(\[[^\]]*\])?", process.stdout, flags=re.MULTILINE)
    return process, [name + params for name, params in failed]


def test_suite_passes_without_bugs(site):
    process, failed = _run_suite(site, [])
    assert process.returncode == 0, process.stdout[-3000:]
    assert failed == []
    assert "delgrad conformance suite: tested backend 'wrong'" in process.stdout  # (the test ids do not say)
    assert "judged" not in process.stdout  # (the default tolerances)


def test_the_summary_shows_the_tolerances_a_backend_declares_for_itself(site):
    """(a passing run's summary did not show that the backend had loosened its own bounds)"""
    process, _ = _run_suite(site, ["max_median_error=0.1", "causality_tolerance=0.05"])
    assert process.returncode == 0, process.stdout[-3000:]
    assert "delgrad conformance suite: tested backend 'wrong' from distribution 'delgrad-wrong-backend' 0.1 with " \
           "options {'max_median_error': 0.1, " \
           "'causality_tolerance': 0.05}\n  judged statistically, with its own max_median_error 0.1 (default 0.01), " \
           "causality_tolerance 0.05 (default 0.02)\n" in process.stdout


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Statistical mode: a 0.05 tau_s shift breaks the median limit of 0.01 tau_s.
        (["shift=0.05"], {f"test_agreement_with_reference[{case.id}]" for case in conformance_cases(Capabilities())}
         | {"test_a_large_batch_agrees_in_every_part"}),
        # Exact mode: even 1e-6 is far beyond the exact tolerance.
        (["shift=1e-6", "exact=true"], {f"test_agreement_with_reference[{case.id}]" for case in
                                        conformance_cases(Capabilities())} | {"test_a_large_batch_agrees_in_every_part",
                                                                              "test_a_job_of_one_sample_and_layers_of_one_neuron"}),
        (["hide_synaptic=true"], {"test_refuses_unsupported_before_running[delay_kinds-synaptic]"}),
        (["many_reversed=true"], {"test_execute_many_matches_execute"}),
        # (passed the whole suite, whose jobs for execute_many were all of other sizes, and trained on
        # other jobs' spike times: execute_many now refuses results that share memory)
        (["shared_buffers=true"], {"test_execute_many_matches_execute"}),
        (["unseeded_noise=true"], {"test_seed_dependent_when_declared"}),
        (["hash_seeded=true"], {"test_another_process_runs_a_request_the_same"}),
        # (passed the whole suite, whose other jobs are small, and trained skipping most steps)
        (["batch_cut=64"], {"test_a_large_batch_agrees_in_every_part"}),
        # (with max_batch_size = 64 the check was skipped, as the first case has 32 samples: only the
        # training check, whose batches are larger, failed)
        (["batch_cut=40", "max_batch_size=64"], {"test_a_large_batch_agrees_in_every_part",
                                                 "test_one_epoch_of_exact_gradients_lowers_the_loss"}),
        # (each passed the whole suite, whose other cases have theta = 1 and tau_s = 1 for every neuron)
        *[([f"neuron_bug={bug}"], {f"test_agreement_with_reference[{VARIED_NEURONS.id}]"})
          for bug in ("threshold", "tau_s", "first")],
        # (each passed the whole suite: the median of the arrivals' errors was 0; no job had one sample or
        # a layer of one neuron; every job was given a calibration)
        (["early_arrivals=0.5", "exact=true"], {f"test_arrival_times_are_consistent[{case.id}]"
                                                 for case in conformance_cases(Capabilities())
                                                 if "-none-" not in case.id}),
        (["squeezed=true"], {"test_a_job_of_one_sample_and_layers_of_one_neuron"}),
        (["reads_calibration=true"], {"test_runs_without_a_calibration_unless_it_needs_one"}),
    ],
    ids=["shifted-statistical", "shifted-exact", "no-refusal", "many-out-of-order", "many-sharing-buffers",
         "seed-ignored", "seed-per-process", "undeclared-batch-limit", "undeclared-batch-limit-below-64",
         "threshold-ignored", "tau_s-ignored", "first-neuron-for-all", "early-arrivals", "squeezed",
         "needs-an-undeclared-calibration"],
)
def test_suite_fails_for_a_wrong_backend(site, options, expected):
    process, failed = _run_suite(site, options)
    assert process.returncode == 1, process.stdout[-3000:]
    assert set(failed) == expected and len(failed) == len(expected)


_DECLARE_AGREEMENT = "declare 'agreement' unsupported instead, with the reason"
_DECLARE_TOLERANCES = "this check reads them whatever the backend declares unsupported: declare tolerances within"


@pytest.mark.parametrize("options, named, check, advice", [
    (["max_median_error=1.0"], "max_median_error 1 tau_s (at most 0.5)", "test_agreement_with_reference",
     _DECLARE_AGREEMENT),
    (["causality_tolerance=2"], "causality_tolerance 2 tau_s (at most 0.5)", "test_no_spike_before_its_inputs_arrive",
     _DECLARE_TOLERANCES),
    (["min_silence_agreement=0"], "min_silence_agreement 0 (at least 0.5)", "test_agreement_with_reference",
     _DECLARE_AGREEMENT),
    (["min_silence_agreement=0", "unsupported=agreement"], "min_silence_agreement 0 (at least 0.5)",
     "test_delays_over_the_declared_range", _DECLARE_TOLERANCES),
])
def test_suite_fails_a_profile_too_loose_to_mean_anything(site, options, named, check, advice):
    """(a backend declaring max_median_error 1e9 and min_silence_agreement 0 passed with spike
    times 3 tau_s off; only the summary showed its tolerances.  The advice to declare the check
    unsupported was given for checks that cannot be)"""
    process, failed = _run_suite(site, options)
    assert process.returncode == 1 and check in " ".join(failed), process.stdout[-3000:]
    assert "test_agreement_with_reference" not in " ".join(failed) or "unsupported=agreement" not in options
    output = " ".join(process.stdout.split())
    assert f"conformance_profile() is looser than the suite accepts: {named}" in output
    assert advice in output


def test_tolerances_no_check_reads_may_be_anything(site):
    """(an exact backend, judged by exact_tolerance alone, failed 38 checks for a statistical
    tolerance it never uses)"""
    process, failed = _run_suite(site, ["exact=true", "min_silence_agreement=0", "max_median_error=5",
                                        "causality_tolerance=5"])
    assert process.returncode == 0 and failed == [], process.stdout[-3000:]


def test_suite_refuses_to_test_a_backend_name_two_distributions_register(tmp_path, monkeypatch):
    """(a clone registering the same name from a distribution sorted first was tested instead,
    and passed; only a warning said so)"""
    monkeypatch.delenv("DELGRAD_STRICT_PLUGINS", raising=False)  # (strict, loading fails on the clash itself)
    write_distribution(tmp_path, "delgrad-wrong-backend", "0.1", {"wrong_backend": WRONG_BACKEND},
                       {"delgrad.backends": {"wrong": "wrong_backend"}})
    write_distribution(tmp_path, "a-wrong-clone", "2.0", {"wrong_clone": WRONG_BACKEND},
                       {"delgrad.backends": {"wrong-clone": "wrong_clone"}})
    process, _ = _run_suite(tmp_path, [])
    assert process.returncode == 2, process.stdout[-3000:] + process.stderr[-3000:]  # (a collection error)
    assert "--delgrad-backend wrong: two distributions register backend 'wrong': 'a-wrong-clone' 2.0 (kept) and " \
           "'delgrad-wrong-backend' 0.1 (ignored); the suite would test the kept one" in process.stderr + process.stdout


def test_registered_capabilities_are_checked_also_when_options_are_given(site):
    """(with any --delgrad-backend-option, even one at its default, the registered capabilities
    went unchecked: a backend registering a weight limit it does not have passed)"""
    process, failed = _run_suite(site, ["shift=0.0"], backend="wrong-misregistered")
    assert failed == ["test_name_and_capabilities"], process.stdout[-3000:]
    assert "backend 'wrong-misregistered' registers other capabilities than it reports when built without options " \
           "(weight_limit: registered 8.0, reported None)" in process.stdout


def test_suite_passes_a_backend_of_one_neuron_layer_and_checks_its_agreement(site):
    """(with max_layers = 1 the refusal checks used two-layer networks, so the backend named
    max_layers instead of the capability checked, every case needed two layers and was skipped,
    and one check ended in an IndexError)"""
    process, failed = _run_suite(site, ["max_layers=1"], pytest_args=["-rA"])
    assert process.returncode == 0 and failed == [], process.stdout[-3000:]
    assert "PASSED test_conformance.py::test_agreement_with_reference[4-3-none-ratio2]" in process.stdout
    process, failed = _run_suite(site, ["max_layers=1", "shift=0.05"])
    assert "test_agreement_with_reference[4-3-none-ratio2]" in failed, process.stdout[-3000:]


def test_suite_passes_a_backend_that_runs_one_sample_per_job(site):
    """(the suite sent jobs of up to 7 samples whatever max_batch_size declared, and failed it)"""
    process, failed = _run_suite(site, ["max_batch_size=1"])
    assert process.returncode == 0 and failed == [], process.stdout[-3000:]


def test_suite_fails_when_silence_is_not_infinity(site):
    process, failed = _run_suite(site, ["nan_silence=true"])
    assert process.returncode == 1
    assert "test_silence_is_positive_infinity" in failed
    reasons = [line for line in process.stdout.splitlines() if line.startswith("FAILED")]
    assert reasons and all("contains NaN" in line for line in reasons), "\n".join(reasons)


EVERY_CASE = conformance_cases(Capabilities())


def _for_every_case(test: str) -> set:
    return {f"{test}[{case.id}]" for case in EVERY_CASE}


def _reasons(process, test: str) -> list:
    """The short-summary lines of the failures of `test`."""
    return [line for line in process.stdout.splitlines() if line.startswith("FAILED") and f"::{test}" in line]


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        # Output times 1.4 x as far from the first input: ~0.4-0.9 tau_s off, hidden layer exact.
        (["output_stretch=1.4"], r"layer 1 \('output', \d+ neurons\): median \|error\| [\d.]+ tau_s over \d+ spikes, "
                                 r"allowed < 0.01 \(max_median_error\)\. The reference runs represent\(network\)"),
        # 5 of the 96 output entries silent (0.948 agree), but 5 of the 416 entries of all layers (0.988); in
        # the wide case 5 of 320 (0.984, it passes).
        (["silenced_outputs=5"], r"layer 1 \('output', 3 neurons\): silent/spiking agreement 0.948, needs >= 0.95 "
                                 r"\(min_silence_agreement\)\. The reference runs represent\(network\)"),
    ],
    ids=["output-stretched", "outputs-silenced"],
)
def test_a_wrong_output_layer_fails_on_its_own(site, options, reason):
    """Each layer is judged alone: right hidden times do not hide a wrong output layer."""
    process, failed = _run_suite(site, options)
    training = {"test_one_epoch_of_exact_gradients_lowers_the_loss"}  # (silenced outputs may stall it too)
    # stretched outputs also stretch the shifts of the delay lines, whose neurons are outputs
    delay_lines = {f"test_delays_over_the_declared_range[{kind}]" for kind in ("axonal", "dendritic", "synaptic")}
    large_batch = {"test_a_large_batch_agrees_in_every_part"}  # (5 silenced outputs fall in one job's first quarter)
    cases = [case for case in EVERY_CASE if options == ["output_stretch=1.4"] or case.network.sizes[-1] == 3]
    assert set(failed) - training - delay_lines - large_batch == {f"test_agreement_with_reference[{case.id}]"
                                                                   for case in cases}, process.stdout[-3000:]
    for case in cases:
        [line] = [line for line in _reasons(process, "test_agreement_with_reference") if f"[{case.id}]" in line]
        assert f"case {case.id}: statistical (ConformanceProfile) agreement with the reference fails in " in line, line
        assert re.search(reason.replace("layer 1", f"layer {len(case.network.layers) - 1}"), line), line


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # One output spike 0.1 tau_s before its first input arrives: the statistics do not notice.
        (["acausal=0.1"], _for_every_case("test_no_spike_before_its_inputs_arrive")),
        # A lax agreement bound (0.1 tau_s) does not make the causality check lax.
        (["acausal=0.05", "max_median_error=0.1"], _for_every_case("test_no_spike_before_its_inputs_arrive")),
        # An exact backend has (almost) no tolerance.
        (["acausal=1e-6", "exact=true"],
         _for_every_case("test_no_spike_before_its_inputs_arrive") | _for_every_case("test_agreement_with_reference")
         | {"test_a_large_batch_agrees_in_every_part", "test_a_job_of_one_sample_and_layers_of_one_neuron"}),
        # A timestamp offset like BrainScaleS-2's (0.015 tau_s), above the default agreement bound of 0.01 tau_s,
        # is within the default causality tolerance (0.02 tau_s).
        (["acausal=0.015"], set()),
        # A backend may declare a larger one.
        (["acausal=0.05", "causality_tolerance=0.06"], set()),
    ],
    ids=["statistical", "lax-agreement", "exact", "within-tolerance", "declared-tolerance"],
)
def test_a_spike_before_its_inputs_arrive_fails(site, options, expected):
    process, failed = _run_suite(site, options)
    assert set(failed) == expected and len(failed) == len(expected), process.stdout[-3000:]
    for line in _reasons(process, "test_no_spike_before_its_inputs_arrive"):
        assert re.search(r"case \S+: layer \d \('output', \d+ neurons\): 1 spike\(s\) before the first arrival of "
                         r"the neuron's inputs \(spike times before it \+ delays\), e\.g\. neuron \d of sample \d+ "
                         r"at [\d.]+ tau_s, its first input arrives at [\d.]+ tau_s; allowed early by at most "
                         r"(causality_tolerance 0.02 tau_s|"
                         r"exact_tolerance 1e-09 \(1 \+ \|t\|\))$", line), line


@pytest.mark.parametrize("backend", ["wrong-raising", "wrong-raising-nocaps"])
def test_a_factory_that_raises_is_one_error_naming_the_backend(site, backend):
    """With or without registered capabilities: one message, no traceback, not one error per test."""
    process, _ = _run_suite(site, [], backend=backend)
    lines = process.stdout.splitlines()
    assert process.returncode != 0 and "1 error" in lines[-1], process.stdout[-3000:]
    assert any(line.startswith(f"--delgrad-backend {backend}: ") and f"backend {backend!r}" in line
               and line.endswith("RuntimeError: cannot open /dev/mychip0") for line in lines), process.stdout[-3000:]
    assert not [line for line in lines if line.startswith("E ")], process.stdout[-3000:]


def _outcomes(report) -> dict:
    """{test id: (outcome, message)} from a junit XML report; outcome "passed", "skipped", "failure" or "error"."""
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        ends = [(child.tag, child.get("message", "")) for child in case if child.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name")] = ends[0] if ends else ("passed", "")
    return outcomes


CALIBRATION_FAILED = ("--delgrad-backend wrong: calibrate(seed=0) raised BackendError: backend 'wrong' failed while "
                      "calibrating: RuntimeError: no reference clock; the checks that need a calibration are skipped")


@pytest.mark.parametrize(("selection", "reported_by"), [
    ([], "test_calibration_round_trip"),
    (["-k", "agreement"], f"test_agreement_with_reference[{EVERY_CASE[0].id}]"),  # (wherever the first one is)
], ids=["all", "selected"])
def test_a_calibration_that_raises_is_one_error_naming_the_backend(site, tmp_path, selection, reported_by):
    """Calibrated once: the first test that needs it shows the error and the plugin's traceback, and
    the others are skipped pointing there (not one error per check); the run still fails."""
    report = tmp_path / "report.xml"
    process, _ = _run_suite(site, ["calibration_error=no reference clock"],
                            pytest_args=[*selection, f"--junitxml={report}"])
    assert process.returncode == 1 and "1 error" in process.stdout.splitlines()[-1], process.stdout[-3000:]
    assert CALIBRATION_FAILED in process.stdout.splitlines(), process.stdout[-3000:]
    assert "wrong_backend.py" in process.stdout and "raise RuntimeError(self.calibration_error)" in process.stdout
    outcomes = _outcomes(report)
    assert {name for name, (outcome, _) in outcomes.items() if outcome in ("failure", "error")} == {reported_by}
    skipped = {name for name, (outcome, message) in outcomes.items() if outcome == "skipped" and message ==
               f"backend 'wrong': calibrate(seed=0) failed (its error is reported by {reported_by})"}
    assert skipped >= _for_every_case("test_agreement_with_reference") - {reported_by}, outcomes
    if not selection:
        assert skipped >= {"test_execute_many_matches_execute", "test_one_epoch_of_exact_gradients_lowers_the_loss",
                           "test_delgrad_train_sets_up_a_run_with_the_registered_defaults"}


SMALL_NETWORKS = {"test_calibration_round_trip", "test_silence_is_positive_infinity",
                  "test_seed_dependent_when_declared", "test_execute_many_matches_execute",
                  "test_one_epoch_of_exact_gradients_lowers_the_loss"}


@pytest.mark.parametrize(("where", "refused"), [
    ([], SMALL_NETWORKS | {"test_rejects_inputs_of_wrong_shape", "test_refuses_batches_above_the_declared_limit"}),
    (["refuse_at_run_time=true"], SMALL_NETWORKS),  # (the other two pass: their requests are refused before running)
], ids=["check_resources", "at-run-time"])
def test_a_network_refused_for_resources_is_skipped(site, tmp_path, where, refused):
    """A substrate of 4 neurons refuses every network the suite runs, for lack of resources: each
    check that needs one is skipped, saying so, and the run passes."""
    report = tmp_path / "report.xml"
    process, _ = _run_suite(site, ["neuron_budget=4", "unseeded_noise=true", "max_batch_size=64", *where],
                            pytest_args=[f"--junitxml={report}"])
    assert process.returncode == 0, process.stdout[-3000:]
    resources = re.compile(r"backend refuses the network for lack of resources: backend 'wrong' cannot place the "
                           r"network: \d+ neurons, the substrate has 4$")
    outcomes = _outcomes(report)
    skipped = {name for name, (outcome, message) in outcomes.items()
               if outcome == "skipped" and resources.match(message)}
    assert skipped >= refused | _for_every_case("test_agreement_with_reference"), outcomes
    # (the run passes, and its summary says how little it checked)
    assert re.search(rf"^  {len(skipped)} of \d+ checks skipped: the backend refused their networks for lack of "
                     r"resources \(no agreement check ran: it was not compared with the reference model; give it "
                     r"options with more resources\)$", process.stdout, flags=re.MULTILINE), process.stdout[-3000:]


@pytest.mark.parametrize(("max_inputs", "expected"), [
    (3, ("skipped", r"backend declares it cannot run this case: .* \(max_inputs: 3\)")),  # (Yin-Yang: 4 inputs)
    (6, ("passed", "")),  # (trains 4-6-3 instead of 4-10-3)
])
def test_the_training_check_fits_a_fan_in_limit_or_is_skipped(site, tmp_path, max_inputs, expected):
    """(a backend declaring max_inputs below 10 failed the training check on its own refusal)"""
    report = tmp_path / "report.xml"
    process, _ = _run_suite(site, [f"max_inputs={max_inputs}"],
                            pytest_args=["-k", "lowers_the_loss", f"--junitxml={report}"])
    assert process.returncode == 0, process.stdout[-3000:]
    outcome, message = _outcomes(report)["test_one_epoch_of_exact_gradients_lowers_the_loss"]
    assert outcome == expected[0] and re.match(expected[1], message), (outcome, message)


def test_a_false_determinism_declaration_is_named(site):
    process, failed = _run_suite(site, ["random_jitter=1e-3"])
    assert process.returncode == 1, process.stdout[-3000:]
    assert set(failed) >= {f"test_deterministic_when_declared[{case.id}]" for case in (EVERY_CASE[0], EVERY_CASE[-1])}
    for test, declaration in [("test_deterministic_when_declared", "deterministic=True"),
                              ("test_seed_independent_when_declared", "seed_independent=True")]:
        reasons = _reasons(process, test)
        assert reasons and all(f"the backend declares {declaration} (" in line and "spike times differ" in line
                               for line in reasons), "\n".join(reasons)


def test_a_profile_that_is_not_a_conformance_profile_is_named(site):
    process, failed = _run_suite(site, ["profile_dict=true"])
    assert "test_name_and_capabilities" in failed and "test_agreement_with_reference[4-10-3-none-ratio2]" in failed
    reasons = [line for line in process.stdout.splitlines() if line.startswith("FAILED")]
    assert all("WrongBackend.conformance_profile() returned a dict; expected a delgrad_core.ConformanceProfile" in line
               for line in reasons), "\n".join(reasons)


def test_every_assert_of_the_suite_says_what_is_wrong():
    """An editable install loads the suite through its import hook, so pytest does not rewrite its
    asserts: a bare `assert` would fail with nothing but "AssertionError"."""
    path = importlib.util.find_spec("delgrad_core.testing.test_conformance").origin
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read())
    bare = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert) and node.msg is None]
    assert bare == [], f"asserts without a message at lines {bare} of {path}"


HARDWARE = Capabilities(delay_kinds={"none", "axonal"}, tau_ratios=(1.0,), weight_limit=2.1, weight_resolution=1 / 30,
                        delay_range=(0.5, 3.0), delay_resolution=1 / 48, max_layers=2, max_layer_size=64)


def test_cases_follow_the_declared_capabilities():
    cases = conformance_cases(HARDWARE)
    assert [case.id for case in cases] == ["4-10-3-none-ratio1", "4-10-3-axonal-ratio1",
                                           "4-10-3-axonal-ratio1-neurons-vary", "8-40-10-none-ratio1"]
    for case in cases:
        for layer in case.network.layers:
            neuron = layer.population.neuron
            assert np.array_equal(neuron.tau_m, neuron.tau_s)
            assert np.all(np.asarray(neuron.threshold) == 1.0) != case.id.endswith("-neurons-vary")
            assert layer.projection.delay_kind.value in ("none", "axonal")
            assert abs(layer.projection.weights).max() <= 2.1
            if layer.projection.delays is not None:
                assert layer.projection.delays.min() >= 0.5 and layer.projection.delays.max() <= 3.0
    deep = conformance_cases(Capabilities(delay_kinds={"synaptic"}, tau_ratios=(2.0,), max_inputs=6))
    assert [case.id for case in deep] == ["4-6-3-synaptic-ratio2", "4-6-6-3-synaptic-ratio2",
                                          "4-6-3-synaptic-ratio2-neurons-vary"]


def test_cases_come_in_copies_where_the_backend_takes_copies():
    """Each of 4 inputs 5 times (a chip duplicating its inputs): the copies spike together and
    share their input's delay, and split its weights unevenly (a backend driving every copy with
    one copy's weight must disagree), so a group drives like the one input."""
    copies = Capabilities(input_copies=5, delay_kinds={"axonal"}, tau_ratios=(1.0,))
    plain = Capabilities(delay_kinds={"axonal"}, tau_ratios=(1.0,))
    *in_copies, independent, varied, wide = conformance_cases(copies)
    assert varied.id == "20-10-3-axonal-ratio1-neurons-vary" and wide.id == "40-40-10-axonal-ratio1"
    assert independent.id == "4-10-3-axonal-ratio1" and independent.network.input.size == 4  # (4: no multiple of 5)
    for case, single in zip(in_copies, conformance_cases(plain)[:-2], strict=True):
        assert case.id == "20" + single.id[1:]  # (20-10-3-axonal-ratio1 for 4-10-3-axonal-ratio1, ...)
        times = case.input_spike_times.reshape(len(case.input_spike_times), 4, 5)
        assert (times == times[:, :, :1]).all() and np.isinf(times).any()
        first = case.network.layers[0].projection
        np.testing.assert_allclose(first.weights.reshape(4, 5, -1).sum(axis=1),
                                   single.network.layers[0].projection.weights)
        assert (np.abs(first.weights[0::5] - first.weights[1::5]) > 0.01 * np.abs(first.weights[0::5])).mean() > 0.9
        np.testing.assert_array_equal(first.delays[::5], single.network.layers[0].projection.delays)
        assert (first.delays.reshape(4, 5) == first.delays[::5, None]).all()
    odd = Capabilities(input_copies=3, max_inputs=10)  # (10 inputs: no copies of 3; the independent case: 4)
    sizes = {case.id: case.network.input.size for case in conformance_cases(odd)}
    assert sizes.pop("4-10-3-axonal-ratio2") == 4 and set(sizes.values()) == {10}


def test_a_backend_that_takes_inputs_in_copies_is_checked_with_copies(site):
    """(the cases had 4 inputs, so a backend taking 5 copies per input never ran its copies: one
    that drives its neurons with only the first copy of each input passed)"""
    process, failed = _run_suite(site, ["input_copies=5"])
    assert process.returncode == 0, process.stdout[-3000:]
    cases = [case.id for case in conformance_cases(Capabilities(input_copies=5))]
    process, failed = _run_suite(site, ["input_copies=5", "first_copy_only=true"])
    expected = {f"test_agreement_with_reference[{case}]" for case in cases if case.startswith(("20-", "40-"))}
    assert set(failed) == expected | {"test_a_large_batch_agrees_in_every_part",
                                      "test_copies_of_an_input_share_one_delay"}, process.stdout[-3000:]
    process, failed = _run_suite(site, ["input_copies=5", "unshared_copy_delays=true"])
    assert failed == ["test_copies_of_an_input_share_one_delay"], process.stdout[-3000:]
    assert "represent gives the copies of an input different delays" in " ".join(
        _reasons(process, "test_copies_of_an_input_share_one_delay"))
    process, failed = _run_suite(site, ["input_copies=5", "copies_without_delays=true"])
    assert "test_agreement_with_reference[20-10-3-none-ratio2-independent]" in failed and all(
        "independent" in name for name in failed), process.stdout[-3000:]
    process, failed = _run_suite(site, ["input_copies=3", "copies_of_any_count=true"])
    grouped = {"test_agreement_with_reference[4-10-3-axonal-ratio2]",  # (its "copies" take the first one's time)
               "test_no_spike_before_its_inputs_arrive[4-10-3-axonal-ratio2]"}
    assert set(failed) == grouped, process.stdout[-3000:]


@pytest.mark.parametrize("options, reason", [
    (["defaults_bug=no_table"], "its training_defaults(options) returned str, not a table of settings"),
    (["defaults_bug=copies_unrepeated", "input_copies=2", "tau_ratio=2"],
     "backend 'wrong' takes every 2 consecutive input lines as copies of one input"),
], ids=["no-table", "copies-unrepeated"])
def test_registered_training_defaults_that_fail_delgrad_train_fail_the_suite(site, options, reason):
    """(each passed the whole suite, and `delgrad train --backend wrong` failed out of the box)"""
    process, failed = _run_suite(site, options)
    assert failed == ["test_delgrad_train_sets_up_a_run_with_the_registered_defaults"], process.stdout[-3000:]
    assert "delgrad train --backend wrong fails out of the box" in process.stdout and reason in process.stdout, \
        process.stdout[-3000:]


def test_suite_passes_a_hardware_like_backend_and_catches_its_bugs(site):
    process, failed = _run_suite(site, ["hardware=true"])
    assert process.returncode == 0, process.stdout[-3000:]
    process, failed = _run_suite(site, ["hardware=true", "ignore_limits=true"])
    assert process.returncode == 1
    assert set(failed) == {f"test_represent_respects_the_declared_limits[{case.id}]"
                           for case in conformance_cases(HARDWARE)}
    process, failed = _run_suite(site, ["hardware=true", "shift=0.05"])
    assert set(failed) == {f"test_agreement_with_reference[{case.id}]" for case in conformance_cases(HARDWARE)} \
        | {"test_a_large_batch_agrees_in_every_part"}


@pytest.mark.parametrize("where", ["execute", "represent"])
def test_delays_beyond_a_cap_below_the_declared_range_fail(site, where):
    """A chip declaring delays up to 3 tau_s that runs (or represents) them capped at 2: the cases
    draw their delays from the range's first tau_s and do not see it; the delay lines do."""
    options = ["hardware=true", "delay_cap=2.0", f"delay_cap_in_represent={str(where == 'represent').lower()}"]
    process, failed = _run_suite(site, options)
    assert process.returncode == 1, process.stdout[-3000:]
    assert failed == ["test_delays_over_the_declared_range[axonal]"]
    reason = " ".join(_reasons(process, "test_delays_over_the_declared_range"))
    expected = "are represented as [2.0, 2.0" if where == "represent" else "the line with delay 3 tau_s spikes a median"
    assert expected in reason, reason


def test_the_delay_lines_fit_a_small_fan_in_and_a_low_tau_ratio(site):
    """(with at most 7 inputs per neuron the delay lines were skipped, so a capped delay passed;
    at tau ratio 0.1 their neurons were silent in the ideal model: a 'suite error')"""
    delay_lines = {f"test_delays_over_the_declared_range[{kind}]" for kind in ("axonal", "dendritic", "synaptic")}
    process, failed = _run_suite(site, ["max_inputs=7", "delay_cap=2.0"])
    assert set(failed) == delay_lines, process.stdout[-3000:]
    process, failed = _run_suite(site, ["tau_ratio=0.1", "exact=true"])
    assert process.returncode == 0, process.stdout[-3000:]


@pytest.mark.parametrize("scope", ["session", "function"])
def test_a_conftest_swapping_in_another_backend_is_refused(tmp_path, scope):
    """The cases are made from the named backend's capabilities, before fixtures run.  (A
    function-scoped override ended in pytest's ScopeMismatch errors, one per check.)"""
    (tmp_path / "conftest.py").write_text(
        "import pytest\nfrom delgrad_core import Capabilities\nfrom delgrad_core.testing import MockBackend\n\n"
        f"@pytest.fixture(scope={scope!r})\ndef delgrad_backend():\n"
        "    yield MockBackend(name='unregistered', capabilities=Capabilities(max_batch_size=16))\n")
    (tmp_path / "test_mine.py").write_text("from delgrad_core.testing.test_conformance import *  # noqa: F403\n")
    env = {key: value for key, value in os.environ.items() if key != "DELGRAD_BACKEND"}  # (tox sets it)
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 4, process.stdout[-2000:] + process.stderr[-2000:]
    assert "ERROR: the delgrad_backend fixture is defined again in conftest: the conformance suite tests registered " \
           "backends only" in process.stderr, process.stderr[-2000:]


def test_an_unknown_backend_is_one_error_naming_the_choices(tmp_path):
    process = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
                              "delgrad_core.testing", "--delgrad-backend", "nope"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert process.returncode != 0 and "unknown backend 'nope'; choose one of" in process.stdout
    assert "1 error" in process.stdout.splitlines()[-1]  # not one per check


@pytest.mark.parametrize("given_as", ["option", "environment"])
def test_an_empty_backend_name_is_refused_not_taken_as_the_default(tmp_path, given_as):
    """`--delgrad-backend "$BACKEND"` with the variable unset must not test 'reference' and pass."""
    env = {key: value for key, value in os.environ.items() if key != "DELGRAD_BACKEND"}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "delgrad_core.testing"]
    if given_as == "option":
        args += ["--delgrad-backend", ""]
    else:
        env["DELGRAD_BACKEND"] = " "
    process = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode != 0 and " passed" not in process.stdout.splitlines()[-1], process.stdout[-2000:]
    name = "--delgrad-backend" if given_as == "option" else "$DELGRAD_BACKEND"
    assert f"{name} is empty: name the backend to test" in process.stdout


def test_an_option_naming_a_file_relative_to_the_working_folder_passes(site):
    """(the fresh-process check ran the backend in another folder, where the file was not found)"""
    (site / "token").write_text("t")
    process, failed = _run_suite(site, ["token_file=token"])
    assert process.returncode == 0 and failed == [], process.stdout[-3000:]


def test_a_small_weight_limit_still_compares_spikes(site):
    """(the cases clipped weights of N(1, 1) to the declared limit: at 0.45 every neuron of the
    ideal model stayed silent, and a chip whose layers after the first never spike passed)"""
    process, failed = _run_suite(site, ["weight_limit=0.45"])
    assert process.returncode == 0, process.stdout[-3000:]
    process, failed = _run_suite(site, ["weight_limit=0.45", "dead_after_first=true"])
    cases = conformance_cases(Capabilities(weight_limit=0.45))
    assert {f"test_agreement_with_reference[{case.id}]" for case in cases} <= set(failed), process.stdout[-3000:]


def test_a_low_tau_ratio_still_compares_spikes(site):
    """(at tau_m = 0.1 tau_s every case was silent in the ideal model, so a backend whose later
    layers never spike passed)"""
    process, failed = _run_suite(site, ["tau_ratio=0.1", "dead_after_first=true"])
    cases = conformance_cases(Capabilities(tau_ratios=(0.1,)))
    assert {f"test_agreement_with_reference[{case.id}]" for case in cases} <= set(failed), process.stdout[-3000:]


def test_an_undeclared_fan_in_limit_fails_on_the_wide_case(site):
    """(the cases had at most 10 inputs per neuron: a backend cutting every input from the 12th on
    passed, and trained Yin-Yang's 30 hidden neurons into 28 % test accuracy)"""
    process, failed = _run_suite(site, ["fan_in_cut=12"])
    assert "test_agreement_with_reference[8-40-10-none-ratio2]" in failed, process.stdout[-3000:]
    assert all("8-40-10" in name or "large_batch" in name or "lowers_the_loss" in name for name in failed), failed
    [reason] = [line for line in _reasons(process, "test_agreement_with_reference") if "8-40-10" in line]
    assert "this is the widest case: a fan-in or layer size the backend cannot run and does not declare " \
           "(max_inputs, max_layer_size, or a refusal in check_resources) shows here" in reason, reason


def test_an_exact_backend_slightly_off_is_told_it_may_declare_itself_statistical(site):
    """(the hints named represent, calibration and batch limits only, for times 1e-6 off)"""
    process, failed = _run_suite(site, ["shift=1e-6", "exact=true"], pytest_args=["-k", "agreement_with_reference"])
    reasons = _reasons(process, "test_agreement_with_reference")
    assert reasons and all("declare Capabilities(exact=False) to be judged statistically" in line
                           for line in reasons), process.stdout[-3000:]
    assert not any("widest case" in line for line in reasons if "8-40-10" not in line), reasons


def test_an_exact_backend_cannot_declare_a_loose_tolerance(site):
    """(exact=True with exact_tolerance 10 passed with every spike 0.5 tau_s late)"""
    process, failed = _run_suite(site, ["exact=true", "exact_tolerance=10.0", "shift=0.5"])
    assert process.returncode == 1 and "test_agreement_with_reference[4-10-3-none-ratio2]" in failed
    assert "backend 'wrong' (WrongBackend) declares exact=True with exact_tolerance 10; an exact backend matches " \
           "the ideal model to at most 1e-06" in process.stdout, process.stdout[-3000:]


def test_a_represent_that_changes_its_argument_is_named(site):
    """(the suite handed represent its own cases' networks: one clipping them in place changed
    the cases under the suite, which then blamed itself: 'suite error: a delay line is silent')"""
    process, failed = _run_suite(site, ["represent_in_place=true"])
    assert process.returncode == 1 and "suite error" not in process.stdout, process.stdout[-3000:]
    assert "represent receives a read-only snapshot" in process.stdout, process.stdout[-3000:]


@pytest.mark.parametrize("sizes, copies, message", [
    ([5, 2], 2, r"copies: the 5 inputs \(sizes\[0\]\) are no whole number of groups of 2 copies"),  # (made 4 inputs)
    ([4, 2], 0, r"copies: expected an integer >= 1, got 0"),  # (ZeroDivisionError)
    ([4, 2], 1.5, r"copies: expected an integer >= 1, got 1.5"),
    (["4", 2], 1, r"sizes: expected a list or tuple of positive integers, got \['4', 2\]"),  # (TypeError)
])
def test_make_network_refuses_inputs_that_are_no_whole_groups_of_copies(sizes, copies, message):
    from delgrad_core import InvalidValueError
    from delgrad_core.testing import make_network

    with pytest.raises(InvalidValueError, match=f"^{message}$"):
        make_network(sizes, copies=copies)


def test_make_network_splits_each_inputs_weights_over_its_copies():
    from delgrad_core.testing import make_network

    single = make_network([2, 3], seed=5).layers[0].projection.weights
    copied = make_network([6, 3], seed=5, copies=3).layers[0].projection.weights
    assert copied.shape == (6, 3)
    np.testing.assert_allclose(copied.reshape(2, 3, 3).sum(axis=1), single, rtol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda testing: testing.MockBackend(3), r"handler: expected None or a function of an ExecutionRequest, got int"),
    (lambda testing: testing.MockBackend(name=""), r"name: expected a non-empty string, got ''"),
    (lambda testing: testing.conformance_cases(3), r"capabilities: expected a delgrad_core.Capabilities, got int"),
    (lambda testing: testing.supported_setting(3), r"caps: expected a delgrad_core.Capabilities, got int"),
    (lambda testing: testing.delay_lines(3, "axonal"), r"capabilities: expected a delgrad_core.Capabilities, got int"),
    (lambda testing: testing.delay_lines(Capabilities(), "axonal", n_lines="3"), r"n_lines: expected an integer"),
    (lambda testing: testing.make_network([4, 2], capabilities=3),
     r"capabilities: expected a delgrad_core.Capabilities, got int"),
])
def test_the_testing_helpers_refuse_arguments_of_the_wrong_kind_naming_them(call, message):
    """(an AttributeError from deep inside, a TypeError, or a MockBackend that failed only when run)"""
    from delgrad_core import InvalidValueError, testing

    with pytest.raises(InvalidValueError, match=f"^{message}"):
        call(testing)


def test_the_default_cases_are_every_kind_at_every_ratio_then_deep_varied_and_wide():
    """docs/backends.md: every kind at ratios 2, 1 and 1.5 on 4-10-3, a two-hidden-layer chain, the
    neurons-vary case (last kind, first ratio) and the wide 8-40-10 case (simplest kind, first ratio)."""
    kinds = ("none", "axonal", "dendritic", "synaptic")
    assert [case.id for case in EVERY_CASE] == [f"4-10-3-{kind}-ratio{ratio}" for ratio in ("2", "1", "1.5")
                                                for kind in kinds] + [
        "4-8-6-3-synaptic-ratio2", "4-10-3-synaptic-ratio2-neurons-vary", "8-40-10-none-ratio2"]


@pytest.mark.parametrize("caps", [Capabilities(), HARDWARE, Capabilities(input_copies=5, tau_ratios=(1.0,))],
                         ids=["default", "hardware", "copies"])
def test_case_inputs_are_32_samples_in_the_encoding_range_with_one_input_silent_in_the_first_quarter(caps):
    """(docs/backends.md: inputs in [0.15, 2.0] tau_s, the first case's 32 samples, one input +inf in a quarter;
    not the same input in every case)"""
    silent_lines = set()
    for case in conformance_cases(caps):
        times = case.input_spike_times
        assert times.shape == (32, case.network.input.size), case.id
        finite = times[np.isfinite(times)]
        assert finite.min() >= 0.15 and finite.max() < 2.0, case.id
        silent = np.isinf(times)
        assert silent[:8].any(axis=0).sum() >= 1 and not silent[8:].any(), case.id
        assert (silent[:8] == silent[0]).all(), case.id  # (the same line(s) in every sample of the quarter)
        silent_lines.add(int(np.flatnonzero(silent[0])[-1]) // (caps.input_copies or 1))
    assert len(silent_lines) > 1


def test_cases_keep_to_a_declared_batch_limit():
    assert {case.input_spike_times.shape[0] for case in conformance_cases(Capabilities(max_batch_size=4))} == {4}


@pytest.mark.parametrize("limit", [0.45, 1.0])
@pytest.mark.parametrize("vary", [False, True])
def test_a_weight_limit_below_2_scales_weights_and_thresholds_by_half_of_it_before_clipping(limit, vary):
    """docs/backends.md: weights of N(1, 1) at threshold 1 scaled by limit / 2 (the same spike times), then clipped."""
    from delgrad_core.testing import make_network

    plain = make_network((4, 10, 3), "axonal", seed=3, neurons_vary=vary)
    limited = make_network((4, 10, 3), "axonal", seed=3, neurons_vary=vary,
                           capabilities=Capabilities(weight_limit=limit))
    for ours, theirs in zip(limited.layers, plain.layers, strict=True):
        np.testing.assert_allclose(ours.projection.weights,
                                   np.clip(theirs.projection.weights * limit / 2, -limit, limit))
        np.testing.assert_allclose(ours.population.neuron.threshold, np.asarray(theirs.population.neuron.threshold)
                                   * limit / 2)
        np.testing.assert_array_equal(ours.projection.delays, theirs.projection.delays)


def test_case_delays_lie_in_the_first_tau_s_of_the_declared_range():
    """docs/backends.md: delays drawn from the first tau_s of the declared delay range (HARDWARE: [0.5, 1.5))."""
    delays = [layer.projection.delays for case in conformance_cases(HARDWARE) for layer in case.network.layers
              if layer.projection.delays is not None]
    assert delays and all(d.min() >= 0.5 and d.max() < 1.5 for d in delays)


def test_dendritic_delays_stay_one_per_neuron_when_the_inputs_come_in_copies():
    from delgrad_core.testing import make_network

    single = make_network([4, 3], "dendritic", seed=2).layers[0].projection.delays
    copied = make_network([8, 3], "dendritic", seed=2, copies=2).layers[0].projection.delays
    np.testing.assert_array_equal(copied, single)


@pytest.mark.parametrize("caps, lines", [
    (Capabilities(), 4), (Capabilities(input_copies=3), 12),
    (Capabilities(input_copies=2, max_inputs=8), 8),  # (exactly at the fan-in limit)
    (Capabilities(input_copies=5, max_inputs=10), 4),  # (20 would exceed it)
])
def test_input_lines_are_4_inputs_in_copies_within_the_fan_in_limit(caps, lines):
    from delgrad_core.testing._cases import input_lines

    assert input_lines(caps) == lines


@pytest.mark.parametrize("caps, ids", [
    # (both limits: the smaller one caps every size)
    (Capabilities(max_inputs=6, max_layer_size=5, tau_ratios=(1.0,), delay_kinds={"none"}),
     ["4-5-3-none-ratio1", "4-5-5-3-none-ratio1", "4-5-3-none-ratio1-neurons-vary"]),
    # (copies of 2: the independent axonal case has 5 inputs, no multiple of 2)
    (Capabilities(input_copies=2, delay_kinds={"axonal", "none"}, tau_ratios=(1.0,)),
     ["8-10-3-none-ratio1", "8-10-3-axonal-ratio1", "8-8-6-3-axonal-ratio1", "5-10-3-axonal-ratio1",
      "8-10-3-none-ratio1-independent", "8-10-3-axonal-ratio1-neurons-vary", "16-40-10-none-ratio1"]),
    # (5 inputs exceed max_inputs 4: no independent axonal case)
    (Capabilities(input_copies=2, max_inputs=4, delay_kinds={"axonal", "none"}, tau_ratios=(1.0,)),
     ["4-4-3-none-ratio1", "4-4-3-axonal-ratio1", "4-4-4-3-axonal-ratio1", "4-4-3-none-ratio1-independent",
      "4-4-3-axonal-ratio1-neurons-vary"]),
    # (10 inputs are no whole groups of 3: no case in copies, so none needs independent inputs)
    (Capabilities(input_copies=3, max_inputs=10, delay_kinds={"none"}, tau_ratios=(1.0,)),
     ["10-10-3-none-ratio1", "10-8-6-3-none-ratio1", "10-10-3-none-ratio1-neurons-vary"]),
], ids=["two-size-limits", "copies-of-2", "copies-beyond-the-fan-in", "copies-not-taken"])
def test_cases_fit_the_declared_limits_and_copies(caps, ids):
    cases = conformance_cases(caps)
    assert [case.id for case in cases] == ids
    for case in cases:
        sizes = case.network.sizes
        assert max(sizes[:-1]) <= (caps.max_inputs or np.inf) and max(sizes[1:]) <= (caps.max_layer_size or np.inf)
        if case.id.endswith("-independent"):  # (each line its own time: not in copies)
            times = case.input_spike_times.reshape(len(case.input_spike_times), -1, caps.input_copies)
            assert (times[:, :, 1:] != times[:, :, :1]).any(axis=(0, 2)).all(), case.id


def test_cases_at_a_low_tau_ratio_spike_in_a_quarter_of_every_layers_entries():
    """docs/backends.md: thresholds halved until each layer spikes in at least a quarter of its entries."""
    from delgrad_core import forward

    for case in conformance_cases(Capabilities(tau_ratios=(0.1,))):
        for times in forward(case.network, case.input_spike_times):
            assert np.isfinite(times).mean() >= 0.25, case.id


@pytest.mark.parametrize("caps, setting", [
    (Capabilities(), ("none", 2.0)), (HARDWARE, ("none", 1.0)),
    (Capabilities(delay_kinds={"synaptic", "dendritic"}, tau_ratios=(0.5, 3.0)), ("dendritic", 0.5)),
])
def test_the_supported_setting_is_the_simplest_kind_and_a_supported_ratio(caps, setting):
    from delgrad_core.testing import supported_setting

    kind, ratio = supported_setting(caps)
    assert (kind.value, ratio) == setting


@pytest.mark.parametrize("caps, span, group, weight", [
    (Capabilities(), (0.0, 4.0), 1, 6.0),  # (no declared range: [0, 4] tau_s)
    (HARDWARE, (0.5, 3.0), 3, 2.1),  # (weight: the limit, on the 1/30 grid)
    (Capabilities(weight_limit=0.7, weight_resolution=0.3), (0.0, 4.0), 10, 0.6),  # (0.7 rounded down to the grid)
])
def test_the_delay_lines_spread_over_the_whole_range_each_neuron_on_its_own_group(caps, span, group, weight):
    """docs/backends.md: up to eight neurons, each driven by its own group of coincident inputs of
    weight 6 (or the limit) through one delay, the delays spread evenly from the start to the end of the range."""
    from delgrad_core.testing import delay_lines

    for kind in sorted(caps.delay_kinds - {"none"}):
        lines = delay_lines(caps, kind)
        np.testing.assert_allclose(lines.delays, np.linspace(*span, 8))
        assert (lines.group, lines.weight) == (group, pytest.approx(weight))
        assert lines.input_spike_times.shape == (32, 8 * group)
        assert (lines.input_spike_times == lines.input_spike_times[:, :1]).all()
        shifted = lines.delays[::-1] + 0.25  # (delays other than its own: the network takes them)
        projection = lines.network(shifted).layers[0].projection
        expected = np.kron(np.eye(8), np.ones((group, 1)))  # (line i drives neuron i // group)
        np.testing.assert_array_equal(projection.weights, expected * lines.weight)
        np.testing.assert_allclose(projection.delay_matrix()[expected == 1], np.repeat(shifted, group))


@pytest.mark.parametrize("caps, n_lines, group", [
    (Capabilities(max_inputs=7), 7, 1),  # (every line within the fan-in limit)
    (Capabilities(input_copies=5, max_inputs=5), 4, 1),  # (4 lines: no whole group of 5 copies)
    (Capabilities(input_copies=2), 8, 2),  # (groups rounded up to whole copies)
    (Capabilities(input_copies=2, max_inputs=4), 2, 2),  # (rounded up to exactly the fan-in left: half of 4)
    (Capabilities(weight_limit=3.0, max_inputs=4), 2, 2),  # (6 / 3 = 2 lines spike, exactly that fan-in)
    (Capabilities(max_layer_size=1), None, None),  # (fewer than two neurons fit)
])
def test_the_delay_lines_fit_the_declared_limits_and_copies(caps, n_lines, group):
    from delgrad_core.testing import delay_lines

    lines = delay_lines(caps, "axonal")
    assert (None, None) == (n_lines, group) if lines is None else (lines.delays.size, lines.group) == (n_lines, group)


def test_the_delay_lines_keep_to_a_declared_batch_limit():
    from delgrad_core.testing import delay_lines

    assert delay_lines(Capabilities(max_batch_size=4), "axonal").input_spike_times.shape == (4, 8)


def test_the_plugin_reads_backend_options_as_json_and_refuses_others_as_a_usage_error():
    """docs/plugins.md: VALUE read as JSON when it can be, else kept as a string; a malformed option
    is a usage error naming --delgrad-backend-option (not a traceback naming another option)."""
    from delgrad_core.testing.plugin import parse_backend_options

    assert parse_backend_options(["port=1234", "fast=true", "host=example.org", "chips=[1,2]"]) == \
        {"port": 1234, "fast": True, "host": "example.org", "chips": [1, 2]}
    with pytest.raises(pytest.UsageError, match=r"^--delgrad-backend-option: expected KEY=VALUE with KEY an "
                                                r"identifier, got 'dt'$"):
        parse_backend_options(["dt"])


class _Config:
    """The parts of a pytest config the plugin reads, and the cleanups it adds."""

    def __init__(self, name=None, options=()):
        self.values, self.cleanups = {"delgrad_backend": name, "delgrad_backend_option": list(options)}, []

    def getoption(self, name):
        return self.values[name]

    def add_cleanup(self, function):
        self.cleanups.append(function)


@pytest.mark.parametrize("name, environment, selected", [
    (None, None, "reference"), (None, "example", "example"), ("reference", "example", "reference"),
])
def test_the_plugin_selects_the_backend_from_the_option_then_the_environment(monkeypatch, name, environment, selected):
    from delgrad_core.testing.plugin import selected_backend

    monkeypatch.delenv("DELGRAD_BACKEND", raising=False)
    if environment is not None:
        monkeypatch.setenv("DELGRAD_BACKEND", environment)
    assert selected_backend(_Config(name, ["dt=0.01"])) == (selected, {"dt": 0.01})


def test_the_plugin_closes_the_backend_it_built_at_the_end_of_the_session(monkeypatch):
    """(with --collect-only no test uses the fixture, which would close it)"""
    from delgrad_core.testing.plugin import backend_under_test

    monkeypatch.delenv("DELGRAD_BACKEND", raising=False)
    config = _Config()
    backend = backend_under_test(config)
    assert backend_under_test(config) is backend and backend.name == "reference" and not backend.closed
    for cleanup in config.cleanups:
        cleanup()
    assert backend.closed


def test_a_backend_that_cannot_be_built_is_named_with_delgrads_message_or_the_exception_type():
    from delgrad_core import InvalidValueError
    from delgrad_core.testing.plugin import _build_failure

    message = "backend 'x': dt: expected a number"
    assert _build_failure(InvalidValueError(message)) == message
    assert _build_failure(RuntimeError("no chip")) == "building the backend failed: RuntimeError: no chip"


def _report(nodeid, when="call", skipped_for=None):
    return type("Report", (), {"nodeid": nodeid, "when": when,
                               "longrepr": None if skipped_for is None else ("file", 1, f"Skipped: {skipped_for}")})()


@pytest.mark.parametrize("agreement, line", [
    ("passed", "1 of 4 checks skipped: the backend refused their networks for lack of resources"),
    ("skipped", "2 of 4 checks skipped: the backend refused their networks for lack of resources (no agreement "
                "check ran: it was not compared with the reference model; give it options with more resources)"),
])
def test_the_summary_counts_the_checks_skipped_for_lack_of_resources(agreement, line):
    from delgrad_core.testing.plugin import _skipped_for_resources

    refused = "backend refuses the network for lack of resources: too many neurons"
    stats = {"passed": [_report("t::test_a"), _report("t::test_a", when="setup")], "failed": [_report("t::test_b")],
             "skipped": [_report("t::test_c", skipped_for=refused)]}
    stats["passed" if agreement == "passed" else "skipped"].append(
        _report("t::test_agreement_with_reference[4-10-3]", skipped_for=refused if agreement == "skipped" else None))
    assert _skipped_for_resources(stats) == [line]
    assert _skipped_for_resources({"passed": stats["passed"]}) == []


def test_the_summary_names_an_exact_backends_own_tolerances_and_the_checks_it_declares_unsupported():
    from delgrad_core import ConformanceProfile
    from delgrad_core.testing.plugin import _judged_by

    profile = ConformanceProfile(exact_tolerance=1e-7, max_median_error=0.05, min_silence_agreement=0.9,
                                 unsupported={"agreement": "a device's fixed pattern"})
    backend = type("Backend", (), {"capabilities": Capabilities(exact=True),
                                   "conformance_profile": lambda self: profile})()
    assert _judged_by(backend) == [
        "judged exactly, with its own exact_tolerance 1e-07 (default 1e-09), max_median_error 0.05 (default 0.01)",
        "declares 'agreement' unsupported, skipped: a device's fixed pattern"]


ONLY_ITS_GROUP = """
    import delgrad_core._plugins as plugins

    def pytest_configure(config):
        '''Plugins of the group "delgrad.wrong_alone" only: the default backend is not installed.'''
        plugins._default_registry = plugins.PluginRegistry(group="delgrad.wrong_alone").discover()
        assert plugins.registry().names("backend") == ["wrong", "wrong-misregistered", "wrong-raising",
                                                       "wrong-raising-nocaps"], plugins.registry().names("backend")
"""


def test_the_suite_passes_where_the_default_backend_is_not_installed(tmp_path):
    """A third party's backend installed without delgrad-reference (its one-epoch training check
    built a config naming the default backend: "backend: 'reference' is not installed")."""
    # (in the group the suite's own processes read as well: they run jobs elsewhere and see every plugin)
    write_distribution(tmp_path, "delgrad-wrong-alone", "0.1", {"wrong_backend": WRONG_BACKEND,
                                                                "only_its_group": ONLY_ITS_GROUP},
                       {group: {"wrong": "wrong_backend"} for group in ("delgrad.wrong_alone", "delgrad.backends")})
    process, failed = _run_suite(tmp_path, [], pytest_args=["-p", "only_its_group"])
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert failed == [] and " passed" in process.stdout
