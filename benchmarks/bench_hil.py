"""Throughput of the mock-hil service against the same device in-process.

    python benchmarks/bench_hil.py [--device NAME] [--device-option KEY=VALUE ...] [--batch 150]
                                   [--jobs 40] [--rounds 5] [--json results/bench_hil.json]

Network: 20-30-3 with axonal delays (4 inputs duplicated 5x, as on the chip), inputs uniform in
[0.15, 2] tau_s, weights and delays inside the device's limits, batch 150.  Every job is a
distinct request (its own seed, so its own job id: nothing comes from the service's cache).

Timed in the same run, in alternating rounds (the medians over rounds are reported, so drifting
load on shared cores hits both sides alike):

- ``in-process``: `device.execute(request)` on the device backend built in this process;
- ``service, 1 client``: `mock-hil` with its own local service, one job after another (what a
  training run does);
- ``service, 4 clients``: four client processes sharing that service, each sending jobs one after
  another; the service runs them one at a time on its device, in round-robin order.

The overhead is (time per job through the service, 1 client) / (time per job in-process) - 1.
Besides, the fixed costs of one job outside the device are timed: the request and result to and
from bytes, and the request's digest.  Nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time

import numpy as np

import delgrad_core as dg
from delgrad_core.testing import make_network

__all__ = ["build_requests", "main"]

SIZES = (20, 30, 3)


def build_requests(backend, n: int, batch: int, first_seed: int = 0) -> list[dg.ExecutionRequest]:
    """`n` distinct requests (seeds first_seed..) of the benchmark network on `backend`."""
    caps = backend.capabilities
    ratio = 1.0 if caps.supports_ratio(1.0) else caps.tau_ratios[0]
    network = make_network(SIZES, "axonal", ratio, seed=0, capabilities=caps)
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (batch, SIZES[0]))
    calibration = backend.calibrate(network, seed=0)
    ran = backend.represent(network)
    return [dg.ExecutionRequest(ran, inputs, calibration, first_seed + i) for i in range(n)]


def _seconds_per_job(backend, requests) -> float:
    started = time.perf_counter()
    for request in requests:
        backend.execute(request)
    return (time.perf_counter() - started) / len(requests)


def _client(address: str, token: str, n: int, batch: int, first_seed: int, start, results) -> None:
    from delgrad_hil import HilBackend

    with HilBackend(address, token=token) as backend:
        requests = build_requests(backend, n, batch, first_seed)
        start.wait()
        started = time.perf_counter()
        for request in requests:
            backend.execute(request)
        results.put((started, time.perf_counter()))


def _concurrent_rate(service, n_clients: int, n: int, batch: int, first_seed: int) -> float:
    """Jobs per second of `n_clients` client processes sharing `service`."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    clients = [context.Process(target=_client, args=(service.address, service.token, n, batch,
                                                     first_seed + 1000 * k, start, results))
               for k in range(n_clients)]
    for client in clients:
        client.start()
    time.sleep(3.0)  # the clients import, connect and calibrate before the start
    start.set()
    spans = [results.get(timeout=600) for _ in clients]
    for client in clients:
        client.join()
    return n_clients * n / (max(end for _, end in spans) - min(begin for begin, _ in spans))


def _fixed_costs(request, result) -> dict:
    """Milliseconds of the work a job through the service adds outside the device (medians)."""
    def median_ms(work, repeats=200):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            work()
            times.append(time.perf_counter() - started)
        return 1e3 * statistics.median(times)

    request_bytes, result_bytes = request.to_bytes(), result.to_bytes()
    return {
        "request_to_bytes_ms": median_ms(request.to_bytes),
        "request_from_bytes_and_digest_ms": median_ms(lambda: dg.ExecutionRequest.from_bytes(request_bytes).digest),
        "result_to_bytes_ms": median_ms(result.to_bytes),
        "result_from_bytes_ms": median_ms(lambda: dg.ExecutionResult.from_bytes(result_bytes)),
        "request_bytes": len(request_bytes),
        "result_bytes": len(result_bytes),
    }


def main(argv=None) -> dict:
    from delgrad_core._options import parse_key_values

    from delgrad_hil import HilBackend, LocalService

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="reference")
    parser.add_argument("--device-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument("--jobs", type=int, default=40, help="jobs per round and client")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    options = parse_key_values(args.device_option, "--device-option")
    load_before = os.getloadavg()

    in_process, one_client, four_clients = [], [], []
    with dg.get_backend(args.device, **options) as device, \
            HilBackend(device=args.device, device_options=options) as hil:
        warm_up = 3  # jobs first run on each side (threads, caches, the connection)
        local = build_requests(device, warm_up + args.jobs * args.rounds, args.batch)
        remote = build_requests(hil, warm_up + args.jobs * args.rounds, args.batch, first_seed=10**6)
        _seconds_per_job(device, local[:warm_up])
        _seconds_per_job(hil, remote[:warm_up])
        shared = LocalService(args.device, options)
        shared.start()
        try:
            for k in range(args.rounds):
                chunk = slice(warm_up + k * args.jobs, warm_up + (k + 1) * args.jobs)
                in_process.append(_seconds_per_job(device, local[chunk]))
                one_client.append(_seconds_per_job(hil, remote[chunk]))
                four_clients.append(_concurrent_rate(shared, 4, args.jobs, args.batch, first_seed=10**7 * (k + 1)))
        finally:
            shared.stop()
        costs = _fixed_costs(local[0], device.execute(local[0]))

    seconds_local, seconds_remote = statistics.median(in_process), statistics.median(one_client)
    report = {
        "device": args.device, "device_options": options, "network": "-".join(map(str, SIZES)) + " axonal",
        "batch": args.batch, "jobs_per_round": args.jobs, "rounds": args.rounds,
        "in_process": {"jobs_per_s": 1 / seconds_local, "samples_per_s": args.batch / seconds_local,
                       "ms_per_job": 1e3 * seconds_local},
        "service_1_client": {"jobs_per_s": 1 / seconds_remote, "samples_per_s": args.batch / seconds_remote,
                             "ms_per_job": 1e3 * seconds_remote},
        "service_4_clients": {"jobs_per_s": statistics.median(four_clients),
                              "samples_per_s": args.batch * statistics.median(four_clients)},
        "overhead_1_client": seconds_remote / seconds_local - 1,
        "fixed_costs": costs,
        "per_round_ms_per_job": {"in_process": [1e3 * s for s in in_process],
                                 "service_1_client": [1e3 * s for s in one_client]},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
    }
    print(f"device {args.device!r}, {report['network']}, batch {args.batch}, {args.rounds} rounds of {args.jobs} jobs "
          f"(load {load_before[0]:.2f} -> {report['load_average']['after'][0]:.2f})")
    for name in ("in_process", "service_1_client", "service_4_clients"):
        row = report[name]
        print(f"  {name:18s} {row['jobs_per_s']:8.1f} jobs/s {row['samples_per_s']:10.0f} samples/s")
    print(f"  overhead of the service (1 client): {100 * report['overhead_1_client']:.1f} %")
    print("  fixed costs per job: " + ", ".join(f"{k} {v:.3g}" for k, v in costs.items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
    return report


if __name__ == "__main__":
    main()
