"""Forward+backward throughput of the compiled kernels against a vectorised NumPy baseline.

    python benchmarks/bench_kernels.py [--quick] [--json out.json]

For every network size the baseline (`_numpy_baseline`) is first checked against
`delgrad_core.forward/backward` (max abs differences are printed), then one training step
(forward of the whole network, backward with a random output gradient) is timed for the compiled
kernels with 1 and 2 threads and for the baseline.  Each timing is the median of repeated runs;
nothing is asserted about speed.  Times in units of tau_s, tau_m = 2 tau_s, threshold 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import delgrad_core

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _numpy_baseline  # noqa: E402  (sibling module of this script)

__all__ = ["Case", "CASES", "build", "check_agreement", "check_variants", "time_step", "main"]

BATCH = 150
THREADS = (1, 2)
GRAZING_GUARD = 0.2  # max_weight_term of the DelGrad reference code, used in the agreement check


@dataclass(frozen=True)
class Case:
    """A benchmark network: sizes, delay kind, per-layer weight N(mean, std), input statistics."""

    name: str
    sizes: tuple[int, ...]
    delay_kind: str
    weights: tuple[tuple[float, float], ...]
    silent_fraction: float = 0.0
    max_delay: float = 1.0
    tau_m: float = 2.0


CASES = (
    Case("4-30-3 synaptic", (4, 30, 3), "synaptic", ((1.0, 1.0), (1.0, 1.0))),
    Case("4-120-3 none", (4, 120, 3), "none", ((1.0, 1.0), (0.5, 0.5))),
    Case("784-350-10 none", (784, 350, 10), "none", ((0.006, 0.02), (0.04, 0.05)), silent_fraction=0.3),
)


def build(case: Case, batch: int, seed: int = 0):
    """Network, input spike times (uniform in [0.15, 2] tau_s as in the Yin-Yang encoding, a
    `silent_fraction` of them +inf) and a random output gradient dL/dt."""
    rng = np.random.default_rng(seed)
    network = delgrad_core.Network.feedforward(
        list(case.sizes),
        delay_kind=case.delay_kind,
        neuron=delgrad_core.NeuronParameters(threshold=1.0, tau_m=case.tau_m, tau_s=1.0),
        seed=seed,
    )
    for layer, (mean, std) in zip(network.layers, case.weights):
        projection = layer.projection
        projection.weights = rng.normal(mean, std, projection.weights.shape)
        if projection.delays is not None:
            projection.delays = rng.uniform(0.0, case.max_delay, projection.delays.shape)
    network.validate()
    inputs = rng.uniform(0.15, 2.0, (batch, case.sizes[0]))
    inputs[rng.random(inputs.shape) < case.silent_fraction] = np.inf
    output_gradient = rng.normal(0.0, 1.0, (batch, case.sizes[-1]))
    return network, inputs, output_gradient


def compiled_step(n_threads: int):
    """One forward+backward with the compiled kernels on `n_threads` threads."""

    def step(network, inputs, output_gradient, max_weight_term=None):
        times = delgrad_core.forward(network, inputs, n_threads=n_threads)
        gradients = delgrad_core.backward(
            network, inputs, times, output_gradient, max_weight_term=max_weight_term, n_threads=n_threads
        )
        return times, gradients

    return step


def numpy_step(network, inputs, output_gradient, max_weight_term=None):
    """One forward+backward with the NumPy baseline."""
    times = _numpy_baseline.forward(network, inputs)
    return times, _numpy_baseline.backward(network, inputs, times, output_gradient, max_weight_term)


def _max_abs(left, right) -> float:
    """Max |left - right| over entries finite in both; inf if the +inf patterns differ."""
    left, right = np.asarray(left), np.asarray(right)
    if not np.array_equal(np.isfinite(left), np.isfinite(right)):
        return float("inf")
    finite = np.isfinite(left)
    return float(np.max(np.abs(left[finite] - right[finite]), initial=0.0))


def check_agreement(network, inputs, output_gradient) -> dict:
    """Max abs differences between compiled and NumPy spike times and gradients (without and
    with the grazing guard; both backward passes run at the compiled spike times)."""
    compiled_times = delgrad_core.forward(network, inputs, n_threads=1)
    numpy_times = _numpy_baseline.forward(network, inputs)
    report = {"spike_times": max(_max_abs(a, b) for a, b in zip(compiled_times, numpy_times))}
    for label, guard in (("", None), ("guarded_", GRAZING_GUARD)):
        ours = delgrad_core.backward(
            network, inputs, compiled_times, output_gradient, max_weight_term=guard, n_threads=1
        )
        theirs = _numpy_baseline.backward(network, inputs, compiled_times, output_gradient, guard)
        pairs = list(zip(ours.layers, theirs.layers))
        report[label + "weights"] = max(_max_abs(a.weights, b.weights) for a, b in pairs)
        report[label + "thresholds"] = max(_max_abs(a.threshold, b.threshold) for a, b in pairs)
        if pairs[0][0].delays is not None:
            report[label + "delays"] = max(_max_abs(a.delays, b.delays) for a, b in pairs)
        report[label + "input_times"] = _max_abs(ours.input_spike_times, theirs.input_spike_times)
        report[label + "dropped"] = [(a.dropped, b.dropped) for a, b in pairs]
    report["spiking_fraction"] = [float(np.isfinite(t).mean()) for t in compiled_times]
    return report


def check_variants() -> dict:
    """Agreement of the baseline on every delay kind and both closed forms (tau_m/tau_s = 1, 2)
    on a small 4-10-3 network with 20 % silent inputs; not timed."""
    report = {}
    for kind in ("none", "axonal", "dendritic", "synaptic"):
        for tau_m in (1.0, 2.0):
            case = Case(f"4-10-3 {kind} tau_m={tau_m:g}", (4, 10, 3), kind, ((1.0, 1.0), (1.0, 1.0)),
                        silent_fraction=0.2, tau_m=tau_m)
            agreement = check_agreement(*build(case, 40, seed=2))
            report[case.name] = agreement
            worst = max(v for k, v in agreement.items() if isinstance(v, float))
            print(f"[check] {case.name}: max abs diff {worst:.2e}, dropped {agreement['guarded_dropped']}")
    return report


def time_step(step, arguments, repeats: int, min_seconds: float) -> float:
    """Median wall time of one call of step(*arguments): each of `repeats` runs calls it often
    enough to last `min_seconds` (timeit-style), after one warm-up call."""
    step(*arguments)
    start = time.perf_counter()
    step(*arguments)
    once = time.perf_counter() - start
    number = max(1, int(np.ceil(min_seconds / max(once, 1e-9))))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            step(*arguments)
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs)


def _implementations() -> dict:
    steps = {f"compiled {n}t": compiled_step(n) for n in THREADS}
    steps["numpy"] = numpy_step
    return steps


def _epoch(step, network, inputs, output_gradient, batch: int | None):
    """Forward+backward over all samples, in one batch (batch None) or in batches of `batch`."""
    n = inputs.shape[0]
    size = n if batch is None else batch
    for begin in range(0, n, size):
        step(network, inputs[begin : begin + size], output_gradient[begin : begin + size])


def run(repeats: int, min_seconds: float, epoch_samples: int) -> dict:
    """Agreement checks, throughput table and the 5000-sample timings; prints as it goes."""
    steps = _implementations()
    results = {"throughput": [], "epoch": [], "agreement": check_variants()}
    header = f"{'network':<18}" + "".join(f"{name + ' [1/s]':>18}" for name in steps)
    header += "".join(f"{name + '/numpy':>16}" for name in steps if name != "numpy")
    rows = []
    for case in CASES:
        network, inputs, output_gradient = build(case, BATCH)
        agreement = check_agreement(network, inputs, output_gradient)
        results["agreement"][case.name] = agreement
        print(f"[check] {case.name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in agreement.items()), flush=True)
        rates = {}
        for name, step in steps.items():
            seconds = time_step(step, (network, inputs, output_gradient), repeats, min_seconds)
            rates[name] = BATCH / seconds
            print(f"[time]  {case.name}: {name}: {seconds * 1e3:.3f} ms per batch of {BATCH}", flush=True)
        results["throughput"].append({"network": case.name, "batch": BATCH, "samples_per_second": rates})
        row = f"{case.name:<18}" + "".join(f"{rates[name]:>18.0f}" for name in steps)
        row += "".join(f"{rates[name] / rates['numpy']:>16.1f}" for name in steps if name != "numpy")
        rows.append(row)
    print(f"\nForward+backward throughput, batch {BATCH}, median of {repeats} runs (samples/s)")
    print(header)
    print("\n".join(rows))

    case = CASES[0]
    network, inputs, output_gradient = build(case, epoch_samples, seed=1)
    n_batches = -(-epoch_samples // BATCH)
    print(f"\n{case.name}: forward+backward over {epoch_samples} samples, median of {repeats} runs (s)")
    print(f"{'implementation':<16}{'1 batch':>12}{f'{n_batches} batches':>14}")
    for name, step in steps.items():
        one = time_step(_epoch, (step, network, inputs, output_gradient, None), repeats, 0.0)
        many = time_step(_epoch, (step, network, inputs, output_gradient, BATCH), repeats, 0.0)
        results["epoch"].append(
            {"implementation": name, "samples": epoch_samples, "one_batch_s": one,
             "batches": n_batches, "batch_size": BATCH, "batched_s": many}
        )
        print(f"{name:<16}{one:>12.4f}{many:>14.4f}")
    return results


def _fmt(value) -> str:
    return f"{value:.2e}" if isinstance(value, float) else str(value)


def _environment() -> dict:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "delgrad_core": delgrad_core.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repeats (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument("--epoch-samples", type=int, default=5000, help="samples of the epoch timing")
    args = parser.parse_args(argv)
    if args.epoch_samples < 1:
        parser.error(f"--epoch-samples: expected a positive integer, got {args.epoch_samples}")
    repeats, min_seconds = (3, 0.05) if args.quick else (7, 0.3)
    environment = _environment()
    print("environment: " + ", ".join(f"{k}={v}" for k, v in environment.items()), flush=True)
    results = {"environment": environment, "repeats": repeats, **run(repeats, min_seconds, args.epoch_samples)}
    results["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    main()
