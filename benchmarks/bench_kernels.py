"""Forward+backward throughput of the compiled kernels against the kernels of the revision this
work started from and a vectorised NumPy baseline.

    python benchmarks/bench_kernels.py [--quick] [--json out.json] [--plot scaling.png]
                                       [--baseline-revision REV] [--no-scaling]

For every network the baseline (`_numpy_baseline`) and the old kernels (`_old_kernels`: built
from git revision REV in a scratch directory) are first checked against
`delgrad_core.forward/backward` (max abs differences are printed), then one training step
(forward of the whole network, backward with a random output gradient) is timed for the old and
the current kernels with 1 and 2 threads (all computing dL/d(input times) too), for the current
kernels as a training step calls them ("train": without dL/d(input times), which training does
not use; the parameter gradients are the same bit for bit) and for the baseline, interleaved
round by round so that a change of the machine's load hits all of them alike.  Each timing is the
median of repeated runs; nothing is asserted about speed.  A scaling series (hidden size, inputs,
batch; old and new kernels) records samples/s and the peak of the memory allocated through
Python per step (tracemalloc: NumPy arrays, not the kernels' per-thread C scratch of
O(n_pre + n_post) doubles).  Times in units of tau_s, tau_m = 2 tau_s, threshold 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import delgrad_core
from delgrad_core.training import GrazingGuard

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _numpy_baseline  # noqa: E402  (sibling modules of this script)
import _old_kernels  # noqa: E402
from _script import environment, output_path, positive_int, write_figure, write_json  # noqa: E402

__all__ = ["Case", "CASES", "Implementation", "build", "check_agreement", "check_variants", "time_steps",
           "scaling", "main"]

BATCH = 150
THREADS = (1, 2)
GRAZING_GUARD = 0.2  # max_weight_term of the DelGrad reference code, used in the agreement checks
# Targets of the layer-wide kernels: samples/s (forward + backward, batch 150) and 2-thread speed-up;
# 784-350-10 as a training step runs it ("train": no dL/d(input times), which training never uses).
TARGETS = {
    "784-350-10 none": {"train 2t": 5000.0, "train 2t / train 1t": 1.7},
    "4-30-3 synaptic": {"new 1t / old 1t": 1.0, "new 2t / old 2t": 1.0},
}


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


@dataclass(frozen=True)
class Implementation:
    """Forward and backward of one implementation; `backward` takes the grazing guard's
    max_weight_term (None: exact gradients)."""

    forward: object
    backward: object

    def step(self, network, inputs, output_gradient):
        """One training step: forward of the whole network, backward at its spike times."""
        times = self.forward(network, inputs)
        return times, self.backward(network, inputs, times, output_gradient, None)


def kernels(propagation, n_threads: int, input_gradient: bool = True) -> Implementation:
    """The compiled kernels of `propagation` (`delgrad_core`, or an old revision's `_propagation`);
    `input_gradient` False: the backward pass as a training step asks for it (today's kernels only)."""

    def backward(network, inputs, times, output_gradient, max_weight_term):
        guard = None if max_weight_term is None else GrazingGuard(max_weight_term)
        lean = {} if input_gradient else {"input_gradient": False}
        return propagation.backward(network, inputs, times, output_gradient, guard=guard, n_threads=n_threads,
                                    **lean)

    return Implementation(lambda network, inputs: propagation.forward(network, inputs, n_threads=n_threads), backward)


NUMPY = Implementation(_numpy_baseline.forward, _numpy_baseline.backward)


def _max_abs(left, right) -> float:
    """Max |left - right| over entries finite in both; inf if the +inf patterns differ."""
    left, right = np.asarray(left), np.asarray(right)
    if not np.array_equal(np.isfinite(left), np.isfinite(right)):
        return float("inf")
    finite = np.isfinite(left)
    return float(np.max(np.abs(left[finite] - right[finite]), initial=0.0))


def check_agreement(network, inputs, output_gradient, other: Implementation = NUMPY) -> dict:
    """Max abs differences between today's kernels and `other` in spike times and gradients,
    without and with the grazing guard (both backward passes at today's spike times);
    `counts` lists ((no_crossing, guarded) ours, theirs) per layer."""
    ours = kernels(delgrad_core, 1)
    times = ours.forward(network, inputs)
    report = {"spike_times": max(_max_abs(a, b) for a, b in zip(times, other.forward(network, inputs)))}
    for label, guard in (("", None), ("guarded_", GRAZING_GUARD)):
        mine = ours.backward(network, inputs, times, output_gradient, guard)
        theirs = other.backward(network, inputs, times, output_gradient, guard)
        pairs = list(zip(mine.layers, theirs.layers))
        report[label + "weights"] = max(_max_abs(a.weights, b.weights) for a, b in pairs)
        report[label + "thresholds"] = max(_max_abs(a.threshold, b.threshold) for a, b in pairs)
        if pairs[0][0].delays is not None:
            report[label + "delays"] = max(_max_abs(a.delays, b.delays) for a, b in pairs)
        report[label + "input_times"] = _max_abs(mine.input_spike_times, theirs.input_spike_times)
        report[label + "counts"] = [[[a.no_crossing, a.guarded], [b.no_crossing, b.guarded]] for a, b in pairs]
    report["spiking_fraction"] = [float(np.isfinite(t).mean()) for t in times]
    return report


def _worst(report: dict) -> float:
    return max(v for v in report.values() if isinstance(v, float))


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
            print(f"[check] {case.name}: max abs diff {_worst(agreement):.2e}, "
                  f"(no_crossing, guarded) ours/numpy {agreement['guarded_counts']}")
    return report


def time_steps(implementations: dict, arguments, repeats: int, min_seconds: float) -> tuple[dict, dict]:
    """Median and shortest wall time of one step per implementation.  After one warm-up call
    each, `repeats` rounds run every implementation in turn, each often enough to last
    `min_seconds`.  On shared cores the shortest round is the one least disturbed by other work."""
    number = {}
    for name, implementation in implementations.items():
        implementation.step(*arguments)
        start = time.perf_counter()
        implementation.step(*arguments)
        number[name] = max(1, int(np.ceil(min_seconds / max(time.perf_counter() - start, 1e-9))))
    runs = {name: [] for name in implementations}
    for _ in range(repeats):
        for name, implementation in implementations.items():
            start = time.perf_counter()
            for _ in range(number[name]):
                implementation.step(*arguments)
            runs[name].append((time.perf_counter() - start) / number[name])
    return ({name: statistics.median(values) for name, values in runs.items()},
            {name: min(values) for name, values in runs.items()})


def peak_memory(implementation: Implementation, arguments) -> float:
    """Peak of the memory allocated through Python (MB) during one step, above what was allocated
    before it (tracemalloc traces NumPy's array buffers)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        implementation.step(*arguments)
        return (tracemalloc.get_traced_memory()[1] - before) / 2**20
    finally:
        tracemalloc.stop()


def _implementations(old, training: bool = False) -> dict:
    """old and new kernels with 1 and 2 threads, all with input gradients; with `training` also
    today's kernels as a training step runs them ("train")."""
    steps = {}
    if old is not None:
        steps.update({f"old {n}t": kernels(old, n) for n in THREADS})
    steps.update({f"new {n}t": kernels(delgrad_core, n) for n in THREADS})
    if training:
        steps.update({f"train {n}t": kernels(delgrad_core, n, input_gradient=False) for n in THREADS})
    return steps


def _targets(throughput: list) -> list:
    """Each target with the value measured from the medians (and from the fastest rounds) and
    whether the median meets it."""
    rows = []
    for entry in throughput:
        for quantity, goal in TARGETS.get(entry["network"], {}).items():
            parts = quantity.split(" / ")
            values = []
            for rates in (entry["samples_per_second"], entry["samples_per_second_best"]):
                if not all(part in rates for part in parts):
                    break
                values.append(rates[parts[0]] / rates[parts[1]] if len(parts) == 2 else rates[parts[0]])
            else:
                rows.append({"network": entry["network"], "quantity": quantity, "target": goal,
                             "measured": values[0], "measured_fastest_rounds": values[1],
                             "met": bool(values[0] >= goal)})
    return rows


def run(repeats: int, min_seconds: float, epoch_samples: int, old) -> dict:
    """Agreement checks, throughput table and the epoch timings; prints as it goes."""
    steps = _implementations(old, training=True)
    results = {"throughput": [], "epoch": [], "agreement": check_variants()}
    names = list(steps) + ["numpy"]
    header = f"{'network':<18}" + "".join(f"{name + ' [1/s]':>16}" for name in names)
    rows = []
    for case in CASES:
        network, inputs, output_gradient = build(case, BATCH)
        agreement = {"numpy": check_agreement(network, inputs, output_gradient)}
        if old is not None:
            agreement["old"] = check_agreement(network, inputs, output_gradient, kernels(old, 1))
        results["agreement"][case.name] = agreement
        for other, report in agreement.items():
            print(f"[check] {case.name} vs {other}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in report.items()),
                  flush=True)
        seconds, best = time_steps(steps, (network, inputs, output_gradient), repeats, min_seconds)
        numpy_seconds, numpy_best = time_steps({"numpy": NUMPY}, (network, inputs, output_gradient), repeats,
                                               min_seconds)
        seconds.update(numpy_seconds)
        best.update(numpy_best)
        rates = {name: BATCH / seconds[name] for name in names}
        for name in names:
            print(f"[time]  {case.name}: {name}: {seconds[name] * 1e3:.3f} ms per batch of {BATCH} "
                  f"(fastest round {best[name] * 1e3:.3f} ms)", flush=True)
        results["throughput"].append({"network": case.name, "batch": BATCH, "samples_per_second": rates,
                                      "samples_per_second_best": {name: BATCH / best[name] for name in names}})
        rows.append(f"{case.name:<18}" + "".join(f"{rates[name]:>16.0f}" for name in names))
    print(f"\nForward+backward throughput, batch {BATCH}, median of {repeats} runs (samples/s)")
    print(header)
    print("\n".join(rows))
    results["targets"] = _targets(results["throughput"])
    for row in results["targets"]:
        print(f"target {row['network']}: {row['quantity']} >= {row['target']:g}: measured {row['measured']:.2f} "
              f"({'met' if row['met'] else 'NOT met'}; fastest rounds {row['measured_fastest_rounds']:.2f})")

    case = CASES[0]
    network, inputs, output_gradient = build(case, epoch_samples, seed=1)
    n_batches = -(-epoch_samples // BATCH)
    print(f"\n{case.name}: forward+backward over {epoch_samples} samples, median of {repeats} runs (s)")
    print(f"{'implementation':<16}{'1 batch':>12}{f'{n_batches} batches':>14}")
    for name, implementation in {**steps, "numpy": NUMPY}.items():
        one = _epoch_seconds(implementation, network, inputs, output_gradient, None, repeats)
        many = _epoch_seconds(implementation, network, inputs, output_gradient, BATCH, repeats)
        results["epoch"].append(
            {"implementation": name, "samples": epoch_samples, "one_batch_s": one,
             "batches": n_batches, "batch_size": BATCH, "batched_s": many}
        )
        print(f"{name:<16}{one:>12.4f}{many:>14.4f}")
    return results


def _epoch_seconds(implementation, network, inputs, output_gradient, batch, repeats) -> float:
    """Median time of forward+backward over all samples, in one batch (batch None) or in batches."""
    size = inputs.shape[0] if batch is None else batch

    def epoch():
        for begin in range(0, inputs.shape[0], size):
            implementation.step(network, inputs[begin : begin + size], output_gradient[begin : begin + size])

    epoch()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        epoch()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


# The scaling series: one parameter varied around 784-350-10 (batch 150) at a time.
SCALING = {
    "hidden": [30, 100, 350, 1000],
    "inputs": [4, 16, 64, 196, 784],
    "batch": [1, 10, 100, 1000],
}


def _scaled_case(n_inputs: int, n_hidden: int) -> Case:
    """784-350-10 with the weights scaled so that each neuron's mean input stays the same."""
    base = CASES[2]
    (mean_1, std_1), (mean_2, std_2) = base.weights
    return dataclasses.replace(
        base,
        name=f"{n_inputs}-{n_hidden}-10 none",
        sizes=(n_inputs, n_hidden, 10),
        weights=((mean_1 * 784 / n_inputs, std_1 * np.sqrt(784 / n_inputs)),
                 (mean_2 * 350 / n_hidden, std_2 * np.sqrt(350 / n_hidden))),
    )


def scaling(repeats: int, min_seconds: float, old) -> dict:
    """samples/s and peak memory per step while the hidden size, the inputs or the batch vary."""
    steps = _implementations(old)
    series = {}
    for parameter, values in SCALING.items():
        series[parameter] = []
        for value in values:
            n_inputs = value if parameter == "inputs" else 784
            n_hidden = value if parameter == "hidden" else 350
            batch = value if parameter == "batch" else BATCH
            case = _scaled_case(n_inputs, n_hidden)
            arguments = build(case, batch, seed=3)
            seconds, best = time_steps(steps, arguments, repeats, min_seconds)
            memory = {name: peak_memory(step, arguments) for name, step in steps.items() if name.endswith("1t")}
            entry = {"network": case.name, "batch": batch,
                     "samples_per_second": {name: batch / s for name, s in seconds.items()},
                     "samples_per_second_best": {name: batch / s for name, s in best.items()},
                     "peak_memory_mb": memory,
                     "spiking_fraction": [float(np.isfinite(t).mean()) for t in delgrad_core.forward(*arguments[:2])]}
            series[parameter].append(entry)
            print(f"[scale] {parameter}={value}: {case.name}, batch {batch}: "
                  + ", ".join(f"{name} {rate:.0f}/s" for name, rate in entry["samples_per_second"].items())
                  + "; peak MB " + ", ".join(f"{name} {mb:.1f}" for name, mb in memory.items()), flush=True)
    return series


def plot_scaling(series: dict, path: Path) -> None:
    """samples/s (top) and peak memory per step (bottom) against each scaled parameter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"hidden": "hidden neurons (784 inputs, batch 150)", "inputs": "inputs (350 hidden, batch 150)",
              "batch": "batch (784-350-10)"}
    figure, axes = plt.subplots(2, len(series), figsize=(4.2 * len(series), 7), sharex="col")
    for column, (parameter, entries) in enumerate(series.items()):
        x = SCALING[parameter]
        for name in entries[0]["samples_per_second"]:
            style = "-" if name.startswith("new") else "--"
            axes[0, column].plot(x, [e["samples_per_second"][name] for e in entries], style, marker="o", label=name)
        for name in entries[0]["peak_memory_mb"]:
            style = "-" if name.startswith("new") else "--"
            axes[1, column].plot(x, [e["peak_memory_mb"][name] for e in entries], style, marker="o",
                                 label=name.replace(" 1t", ""))
        for row in range(2):
            axes[row, column].set_xscale("log")
            axes[row, column].set_yscale("log")
            axes[row, column].grid(True, which="both", alpha=0.3)
        axes[1, column].set_xlabel(labels[parameter])
    axes[0, 0].set_ylabel("samples / s (forward + backward)")
    axes[1, 0].set_ylabel("peak memory per step [MB]")
    axes[0, 0].legend()
    axes[1, 0].legend()
    figure.suptitle("delgrad kernels, tau_m = 2 tau_s, no delays: old (per neuron) vs new (layer-wide)")
    figure.tight_layout()
    try:
        write_figure(figure, path)
    finally:
        plt.close(figure)


def _fmt(value) -> str:
    return f"{value:.2e}" if isinstance(value, float) else str(value)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--quick", action="store_true", help="fewer and shorter repeats (smoke run)")
    parser.add_argument("--json", type=output_path, help="also write the results to this JSON file")
    parser.add_argument("--plot", type=output_path, help="draw the scaling series into this PNG file")
    parser.add_argument("--epoch-samples", type=positive_int, default=5000, help="samples of the epoch timing")
    parser.add_argument("--baseline-revision",
                        help="git revision whose kernels are timed as 'old' (default: "
                             f"{_old_kernels.BASELINE_REVISION}; if it cannot be built, today's kernels only)")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling series")
    args = parser.parse_args(argv)
    if args.no_scaling and args.plot is not None:
        parser.error("--plot: draws the scaling series, which --no-scaling skips; give one of them")
    if args.plot is not None and args.json is not None and args.plot.resolve() == args.json.resolve():
        parser.error(f"--plot and --json: both name {args.plot}; give two files")
    repeats, min_seconds = (3, 0.05) if args.quick else (7, 0.3)
    environment_before = environment()
    print("environment: " + ", ".join(f"{k}={v}" for k, v in environment_before.items()), flush=True)
    old, baseline_commit = _old_kernels_or_none(parser, args.baseline_revision)
    results = {"environment": environment_before, "repeats": repeats,
               "baseline_revision": (args.baseline_revision or _old_kernels.BASELINE_REVISION) if old else None,
               "baseline_commit": baseline_commit,
               **run(repeats, min_seconds, args.epoch_samples, old)}
    if not args.no_scaling:
        results["scaling"] = scaling(repeats, min_seconds, old)
    results["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json is not None:
        write_json(args.json, results)
    if args.plot is not None:
        plot_scaling(results["scaling"], args.plot)
    return results


def _old_kernels_or_none(parser, revision: str | None):
    """The old kernels and the commit they were built from, or (None, None) when the default
    revision cannot be built (e.g. outside a git checkout); a revision the user gave that cannot
    be built ends the run before any timing."""
    given = revision or _old_kernels.BASELINE_REVISION
    try:
        commit = _old_kernels.resolve(given)
        old = _old_kernels.load(commit)
    except RuntimeError as exc:
        if revision is not None:
            parser.error(f"--baseline-revision: {exc}")
        print(f"old kernels: not available ({exc}); timing today's kernels only", flush=True)
        return None, None
    print(f"old kernels: built from {given} ({commit[:12]})", flush=True)
    return old, commit


if __name__ == "__main__":
    main()
