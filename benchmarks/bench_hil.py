"""Throughput of the mock-hil service against the same device in-process.

    python benchmarks/bench_hil.py [--device NAME] [--device-option KEY=VALUE ...] [--batch 150]
                                   [--jobs 40] [--rounds 7] [--in-flight 4] [--client-jobs 80]
                                   [--json results/bench_hil.json]

Network: 20-30-3 with axonal delays (4 inputs duplicated 5x, as on the chip), inputs uniform in
[0.15, 2] tau_s, weights and delays inside the device's limits, batch 150.  Every job is a
distinct request (its own seed, so its own job id: nothing comes from the service's cache).

Timed in the same run, in alternating rounds (the medians over rounds are reported, so drifting
load on shared cores hits every side alike):

- ``in_process``: `device.execute(request)` on the device backend built in this process, one
  request after another (what a training run does);
- ``in_process_many``: `device.execute_many(requests)` in this process (what an evaluation does);
- ``service_1_client``: `mock-hil` with its own local service, one job after another;
- ``service_1_client_in_flight``: the same client's `execute_many`, `--in-flight` jobs at the
  service at once;
- ``service_4_clients``: four client processes sharing one service, each sending
  `--client-jobs` jobs one after another; the service runs them one at a time on its device, in
  round-robin order.  The rate is taken from the first start to the last end, which includes the
  clients' first jobs and the tail when fewer than four are left;
  ``service_4_clients_steady`` is the rate while all four send (from the last client's first
  result to the first client's last one).

The overheads are time per job through the service / time per job in-process - 1: one job
after another against `in_process`, jobs in flight against `in_process_many`, and four clients
(jobs per second of all four together) against `in_process`.  Besides, the fixed costs of one
job outside the device are timed: the request and result to and from bytes, and the request's
digest.  Nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import delgrad_core as dg
from delgrad_core.testing import make_network

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _script import environment, output_path, positive_int, write_json  # noqa: E402  (a sibling module)

__all__ = ["build_requests", "main"]

SIZES = (20, 30, 3)


def build_requests(backend, n: int, batch: int, first_seed: int = 0) -> list[dg.ExecutionRequest]:
    """`n` distinct requests (seeds first_seed..) of the benchmark network on `backend`."""
    caps = backend.capabilities
    ratio = 1.0 if caps.supports_ratio(1.0) else caps.tau_ratios[0]
    network = make_network(SIZES, "axonal", ratio, seed=0, capabilities=caps)
    copies = 5  # (each of 4 inputs duplicated 5x: copies spike together, as the encoder makes them,
    # and share one delay, as training with shared_input_delays gives them)
    first = network.layers[0].projection
    first.delays = np.repeat(first.delays[::copies], copies)
    inputs = np.repeat(np.random.default_rng(0).uniform(0.15, 2.0, (batch, SIZES[0] // copies)), copies, axis=1)
    calibration = backend.calibrate(network, seed=0)
    ran = backend.represent(network).frozen_copy()  # one snapshot that every request shares
    return [dg.ExecutionRequest(ran, inputs, calibration, first_seed + i) for i in range(n)]


def _seconds_per_job(backend, requests, *, many: bool = False) -> float:
    """Seconds per request: one `execute` after another, or one `execute_many` call."""
    started = time.perf_counter()
    if many:
        backend.execute_many(requests)
    else:
        for request in requests:
            backend.execute(request)
    return (time.perf_counter() - started) / len(requests)


def _client(address: str, token: str, n: int, batch: int, first_seed: int, start, results) -> None:
    from delgrad_hil import HilBackend

    with HilBackend(address, token=token) as backend:
        requests = build_requests(backend, n, batch, first_seed)
        start.wait()
        finished = [time.perf_counter()]
        for request in requests:
            backend.execute(request)
            finished.append(time.perf_counter())
        results.put(finished)


def _concurrent_rates(service, n_clients: int, n: int, batch: int, first_seed: int) -> tuple[float, float]:
    """Jobs per second of `n_clients` client processes sharing `service`: (over the whole span,
    first start to last end; in steady state, while all clients are sending).  The steady window
    runs from the moment the last client to start has its first result to the moment the first
    client to end has its last; the rate counts the results inside it.  (`perf_counter` is the
    system-wide monotonic clock on Linux, comparable between processes.)"""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    clients = [context.Process(target=_client, args=(service.address, service.token, n, batch,
                                                     first_seed + n * k, start, results))
               for k in range(n_clients)]
    for client in clients:
        client.start()
    time.sleep(3.0)  # the clients import, connect and calibrate before the start
    start.set()
    spans = [results.get(timeout=600) for _ in clients]  # each: start time, then each job's end
    for client in clients:
        client.join()
    whole = n_clients * n / (max(span[-1] for span in spans) - min(span[0] for span in spans))
    steady_from, steady_to = max(span[1] for span in spans), min(span[-1] for span in spans)
    if steady_to <= steady_from:  # (a client ended before another had its first result)
        return whole, float("nan")
    inside = sum(steady_from < end <= steady_to for span in spans for end in span[1:])
    return whole, inside / (steady_to - steady_from)


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


def _rate_row(seconds_per_job: float, batch: int) -> dict:
    return {"jobs_per_s": 1 / seconds_per_job, "samples_per_s": batch / seconds_per_job,
            "ms_per_job": 1e3 * seconds_per_job}


def main(argv=None) -> dict:
    from delgrad_core._options import parse_key_values

    from delgrad_hil import HilBackend, LocalService

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="bss2-emulator")
    parser.add_argument("--device-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--batch", type=positive_int, default=150)
    parser.add_argument("--jobs", type=positive_int, default=40,
                        help="jobs per round of each one-client and in-process side")
    parser.add_argument("--rounds", type=positive_int, default=7)
    parser.add_argument("--in-flight", type=positive_int, default=4,
                        help="jobs at the service at once for execute_many")
    parser.add_argument("--client-jobs", type=positive_int, default=80,
                        help="jobs per round of each of the four clients")
    parser.add_argument("--json", type=output_path, help="write the results to this file")
    args = parser.parse_args(argv)
    if args.client_jobs < 2:
        parser.error("--client-jobs: at least 2 (the steady rate is taken between the clients' first and last results)")
    try:  # (an unknown device or option: a usage error before any timing)
        options = parse_key_values(args.device_option, "--device-option")
        device = dg.get_backend(args.device, **options)
    except dg.DelgradError as exc:
        parser.error(str(exc))
    environment_before = environment()
    load_before = environment_before["load_average"]

    names = ("in_process", "in_process_many", "service_1_client", "service_1_client_in_flight")
    seconds = {name: [] for name in names}
    four_clients, four_clients_steady = [], []  # jobs/s per round: first start to last end; while all send
    with device, HilBackend(device=args.device, device_options=options, jobs_in_flight=args.in_flight) as hil:
        warm_up = 3  # jobs first run on each side (threads, caches, the connection)
        per_side = warm_up + args.jobs * args.rounds
        local = build_requests(device, 2 * per_side, args.batch)
        remote = build_requests(hil, 2 * per_side, args.batch, first_seed=10**6)
        # name -> (backend, requests, through execute_many)
        run_one = {"in_process": (device, local[:per_side], False), "in_process_many": (device, local[per_side:], True),
                   "service_1_client": (hil, remote[:per_side], False),
                   "service_1_client_in_flight": (hil, remote[per_side:], True)}
        for backend, requests, many in run_one.values():
            _seconds_per_job(backend, requests[:warm_up], many=many)
        shared = LocalService(args.device, options)
        shared.start()
        try:
            for k in range(args.rounds):
                chunk = slice(warm_up + k * args.jobs, warm_up + (k + 1) * args.jobs)
                order = names if k % 2 == 0 else names[::-1]
                for name in order:
                    backend, requests, many = run_one[name]
                    seconds[name].append(_seconds_per_job(backend, requests[chunk], many=many))
                whole, steady = _concurrent_rates(shared, 4, args.client_jobs, args.batch, first_seed=10**7 * (k + 1))
                four_clients.append(whole)
                four_clients_steady.append(steady)
        finally:
            shared.stop()
        costs = _fixed_costs(local[0], device.execute(local[0]))

    median = {name: statistics.median(values) for name, values in seconds.items()}
    rate_whole, rate_steady = statistics.median(four_clients), statistics.median(four_clients_steady)
    report = {
        "device": args.device, "device_options": options, "network": "-".join(map(str, SIZES)) + " axonal",
        "batch": args.batch, "jobs_per_round": args.jobs, "rounds": args.rounds, "in_flight": args.in_flight,
        **{name: _rate_row(median[name], args.batch) for name in names},
        "client_jobs": args.client_jobs,
        "service_4_clients_steady": {"jobs_per_s": rate_steady, "samples_per_s": args.batch * rate_steady},
        "service_4_clients": {"jobs_per_s": rate_whole, "samples_per_s": args.batch * rate_whole},
        "overhead_1_client": median["service_1_client"] / median["in_process"] - 1,
        "overhead_1_client_in_flight": median["service_1_client_in_flight"] / median["in_process_many"] - 1,
        "overhead_4_clients_steady": 1 / (median["in_process"] * rate_steady) - 1,
        "overhead_4_clients": 1 / (median["in_process"] * rate_whole) - 1,
        "fixed_costs": costs,
        "per_round_ms_per_job": {name: [1e3 * s for s in values] for name, values in seconds.items()},
        "per_round_4_clients_steady_jobs_per_s": four_clients_steady,
        "per_round_4_clients_jobs_per_s": four_clients,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "environment": environment_before,
    }
    print(f"device {args.device!r}, {report['network']}, batch {args.batch}, {args.rounds} rounds of {args.jobs} jobs "
          f"(load {load_before[0]:.2f} -> {report['load_average']['after'][0]:.2f})")
    for name in (*names, "service_4_clients_steady", "service_4_clients"):
        row = report[name]
        print(f"  {name:29s} {row['jobs_per_s']:8.1f} jobs/s {row['samples_per_s']:10.0f} samples/s")
    for name in ("overhead_1_client", "overhead_1_client_in_flight", "overhead_4_clients_steady",
                 "overhead_4_clients"):
        print(f"  {name:29s} {100 * report[name]:+.1f} %")
    print("  fixed costs per job: " + ", ".join(f"{k} {v:.3g}" for k, v in costs.items()))
    if args.json is not None:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
