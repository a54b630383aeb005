"""Throughput of the bss2-emulator backend against the reference backend, and calibration time.

    python benchmarks/bench_bss2.py [--quick] [--json out.json]

The network is the hardware-aware Yin-Yang one (20 input lines = 4 features x 5 copies, 30
hidden, 3 outputs, axonal delays in 2..3.5 tau, threshold 2.6, tau_m = tau_s), represented on
the chip; inputs are Yin-Yang-like latencies in [0.15, 2] tau, batch 150.  Both backends run the
same requests through `Backend.execute` (validation, `represent`, the substrate), so the numbers
are what a training loop sees.  Timings are medians of repeated runs, each lasting at least
0.5 s (0.2 s with --quick).  Calibration: a fresh calibration of chips 0-4 (no cache) and one
cache hit.  The machine's load average is recorded; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import delgrad_core as dg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import environment, output_path, write_json  # noqa: E402  (a sibling module)

__all__ = ["build", "samples_per_second", "calibration_seconds", "main"]

BATCH = 150


def build(seed: int = 0):
    """The represented 20-30-3 axonal network and one batch of inputs."""
    rng = np.random.default_rng(seed)
    network = dg.Network.feedforward([20, 30, 3], delay_kind="axonal", neuron=dg.NeuronParameters(2.6, 1.0, 1.0),
                                     weight_mean=1.0, weight_std=0.12, seed=seed)
    network.layers[1].projection.weights[...] = rng.normal(0.3, 0.4, (30, 3))
    network.layers[0].projection.delays[...] = np.repeat(rng.uniform(2.0, 3.5, 4), 5)
    network.layers[1].projection.delays[...] = rng.uniform(2.0, 3.5, 30)
    inputs = np.repeat(rng.uniform(0.15, 2.0, (BATCH, 4)), 5, axis=1)
    return network, inputs


def samples_per_second(backend, network, inputs, calibration, min_seconds: float, repeats: int) -> float:
    """Median over `repeats` runs of samples per second of `backend.execute` (new seed per call)."""
    rates, seed = [], 0
    backend.execute(network, inputs, calibration=calibration, seed=seed)
    for _ in range(repeats):
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < min_seconds:
            seed += 1
            backend.execute(network, inputs, calibration=calibration, seed=seed)
            calls += 1
        rates.append(calls * inputs.shape[0] / (time.perf_counter() - start))
    return statistics.median(rates)


def calibration_seconds(chips) -> tuple[list[float], float]:
    """Wall seconds of fresh calibrations of `chips`, and of one cache hit."""
    fresh = []
    for chip in chips:
        backend = dg.get_backend("bss2-emulator", chip=chip, cache=False)
        start = time.perf_counter()
        backend.calibrate()
        fresh.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as directory:
        os.environ["DELGRAD_BSS2_CACHE"] = directory
        dg.get_backend("bss2-emulator").calibrate()
        start = time.perf_counter()
        dg.get_backend("bss2-emulator").calibrate()
        hit = time.perf_counter() - start
    return fresh, hit


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--json", type=output_path, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    min_seconds, repeats = (0.2, 3) if args.quick else (0.5, 7)
    environment_before = environment()
    load_before = environment_before["load_average"]
    fresh, hit = calibration_seconds(range(5))
    emulator = dg.get_backend("bss2-emulator", cache=False)
    calibration = emulator.calibrate()
    network, inputs = build()
    network = emulator.represent(network)
    result = emulator.execute(network, inputs, calibration=calibration, seed=0)
    spiking = [float(np.isfinite(t).mean()) for t in result.layer_spike_times]
    rows = {"reference": samples_per_second(dg.get_backend("reference"), network, inputs, None, min_seconds, repeats)}
    for threads in (None, 1, 2):
        backend = dg.get_backend("bss2-emulator", cache=False, n_threads=threads)
        label = "bss2-emulator" + ("" if threads is None else f" {threads}t")
        rows[label] = samples_per_second(backend, network, inputs, calibration, min_seconds, repeats)
    report = {
        "environment": environment_before,
        "load_average_after": os.getloadavg(),
        "network": "20-30-3 axonal (4 features x 5 copies), batch 150",
        "spiking_fraction_hidden_output": spiking,
        "samples_per_second": rows,
        "chip_seconds_per_batch": result.metadata["chip_seconds"],
        "modelled_seconds_per_batch": result.metadata["modelled_seconds"],
        "calibration_seconds_fresh": fresh,
        "calibration_seconds_median": statistics.median(fresh),
        "calibration_seconds_cache_hit": hit,
    }
    print(f"load average before/after: {load_before[0]:.2f} / {report['load_average_after'][0]:.2f}")
    print(f"calibration (512 circuits, 256 delay elements): median {statistics.median(fresh):.2f} s fresh "
          f"(chips 0-4: {', '.join(f'{s:.2f}' for s in fresh)}), {hit * 1e3:.1f} ms from the cache")
    print(f"spiking fraction hidden/output: {spiking[0]:.2f} / {spiking[1]:.2f}")
    for label, rate in rows.items():
        print(f"{label:<18} {rate:>9.0f} samples/s")
    print(f"modelled hardware time per batch of {BATCH}: {result.metadata['modelled_seconds'] * 1e3:.1f} ms "
          f"({BATCH / result.metadata['modelled_seconds']:.0f} samples/s; chip time "
          f"{result.metadata['chip_seconds'] * 1e3:.1f} ms)")
    if args.json is not None:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
