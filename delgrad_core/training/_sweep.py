"""The parameter-efficiency study of DelGrad (Göltz, Weber et al. 2025, Fig. 3): test error
against number of parameters and against hidden size, per delay kind, over seeds.

Each run trains in its own process into the run folder ``out/runs/<kind>-h<hidden>-s<seed>``.
A finished run is not redone and an interrupted one resumes from its checkpoint, but only if it
was made with the same settings: a run with other settings is refused with the differing
settings named (choose another folder).  A failed run does not stop the others.  Ctrl-C
cancels the queued runs, stops running ones at their next epoch boundary (their checkpoints
stay), writes ``sweep.csv`` from the finished runs and says how to resume.  Workers die with
the sweep.  Results go to ``out/sweep.csv``, ``sweep_summary.json`` and ``sweep.png``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import numpy as np

from delgrad_core._atomic import atomic_write_text
from delgrad_core._errors import DelgradError, FileFormatError, InvalidValueError, RunFolderError
from delgrad_core.training._config import config_for_backend
from delgrad_core.training._run import TrainingStopped
from delgrad_core.training._run_folder import RunFolder, folder_lock
from delgrad_core.training._workers import stop_requested, worker_pool

__all__ = ["run_sweep", "sweep_rows", "summarise", "SweepError", "SweepInterrupted"]

CSV_FIELDS = ["delays", "hidden", "seed", "epochs", "backend", "n_parameters", "test_accuracy", "test_error",
              "wall_seconds"]


class SweepError(DelgradError):
    """Some runs failed; `table` summarises the runs that finished."""

    def __init__(self, message: str, table: str):
        super().__init__(message)
        self.table = table


class SweepInterrupted(SweepError):
    """The sweep was interrupted; finished runs are saved and the rest resumes on a rerun."""


def _run_dir(out_dir: Path, kind: str, hidden: int, seed: int) -> Path:
    return out_dir / "runs" / f"{kind}-h{hidden}-s{seed}"


def _train_one(settings: dict, run_dir: str) -> dict:
    """Worker: one run with one kernel thread (the sweep parallelises over processes)."""
    os.environ["DELGRAD_NUM_THREADS"] = "1"
    from delgrad_core.training._run import run_training

    resume = RunFolder(run_dir).checkpoint.exists()
    return run_training(config_for_backend(settings), run_dir, resume=resume, progress=False, plots=False,
                        should_stop=stop_requested)


def _differences(stored: dict, wanted: dict) -> list[str]:
    return sorted(f"{key}: {stored.get(key)!r} here, {wanted.get(key)!r} wanted"
                  for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key))


def _check_same_settings(folder: RunFolder, wanted: dict) -> None:
    """Refuse a run folder made with other settings (a finished run's or a checkpoint's)."""
    metrics = folder.finished_metrics()
    if metrics is not None:
        stored = dict(metrics.get("config", {}))
    elif folder.checkpoint.exists():
        try:
            with folder.open_checkpoint() as checkpoint:
                stored = dict(checkpoint.json("trainer_state.json").get("config", {}))
        except FileFormatError:  # reported by the run itself, without stopping the others
            return
    else:
        return
    differing = _differences(stored, wanted)
    if differing:
        raise RunFolderError(f"{folder.path} was trained with other settings ({'; '.join(differing)}); use "
                             "another --out for these settings")


def _row(metrics: dict) -> dict:
    config = metrics["config"]
    return {
        "delays": config["delays"],
        "hidden": config["hidden"],
        "seed": config["seed"],
        "epochs": config["epochs"],
        "backend": config["backend"],
        "n_parameters": metrics["n_parameters"],
        "test_accuracy": metrics["test_accuracy"],
        "test_error": 1.0 - metrics["test_accuracy"],
        "wall_seconds": metrics["wall_seconds"],
    }


def sweep_rows(out_dir: Path) -> list[dict]:
    """One row per finished run found under `out_dir`."""
    rows = []
    for run_dir in sorted((Path(out_dir) / "runs").glob("*")):
        metrics = RunFolder(run_dir).finished_metrics()
        if metrics is not None:
            rows.append(_row(metrics))
    return sorted(rows, key=lambda r: (r["delays"], r["hidden"], r["seed"]))


def summarise(rows: list[dict]) -> list[dict]:
    """Median, min and max test error and accuracy per (delay kind, hidden size)."""
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["delays"], row["hidden"]), []).append(row)
    summary = []
    for (kind, hidden), group in sorted(cells.items()):
        errors = np.array([r["test_error"] for r in group])
        summary.append({
            "delays": kind, "hidden": hidden, "n_parameters": group[0]["n_parameters"], "seeds": len(group),
            "median_test_accuracy": float(1 - np.median(errors)),
            "median_test_error": float(np.median(errors)),
            "min_test_error": float(errors.min()), "max_test_error": float(errors.max()),
        })
    return summary


def _table(summary: list[dict]) -> str:
    lines = [f"{'delays':<10} {'hidden':>6} {'params':>7} {'seeds':>5} {'median acc %':>12} {'error range %':>15}"]
    for s in summary:
        lines.append(
            f"{s['delays']:<10} {s['hidden']:>6} {s['n_parameters']:>7} {s['seeds']:>5} "
            f"{100 * s['median_test_accuracy']:>12.2f} "
            f"{100 * s['min_test_error']:>6.2f}..{100 * s['max_test_error']:<6.2f}"
        )
    return "\n".join(lines)


def _plot(summary: list[dict], path: Path) -> None:
    from delgrad_core.training._plots import _figure, plots_available, save_figure

    if not plots_available():
        return
    plt = _figure()
    fig, (ax_params, ax_hidden) = plt.subplots(1, 2, figsize=(11, 4))
    for kind in sorted({s["delays"] for s in summary}):
        cells = [s for s in summary if s["delays"] == kind]
        for ax, key in ((ax_params, "n_parameters"), (ax_hidden, "hidden")):
            x = [c[key] for c in cells]
            median = np.array([100 * c["median_test_error"] for c in cells])
            low = median - [100 * c["min_test_error"] for c in cells]
            high = np.array([100 * c["max_test_error"] for c in cells]) - median
            ax.errorbar(x, median, yerr=[low, high], marker="o", capsize=3, label=kind)
    ax_params.set(xlabel="number of parameters", xscale="log", ylabel="test error [%]", yscale="log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax_params.xaxis.set_major_formatter(ScalarFormatter())
    ax_params.xaxis.set_minor_formatter(NullFormatter())
    ax_hidden.set(xlabel="hidden neurons", ylabel="test error [%]", yscale="log")
    for ax in (ax_params, ax_hidden):
        ax.grid(alpha=0.3, which="both")
        ax.legend(title="delays")
    fig.suptitle("Yin-Yang: median test error over seeds (bars: min..max)")
    fig.tight_layout()
    save_figure(fig, path)


def _plan(base_settings: dict, hidden_sizes, delay_kinds, n_seeds: int, out_dir: Path) -> tuple[list, int]:
    """(runs still to do as (settings, run folder), total runs); refuses mismatching folders."""
    pending, total = [], 0
    for kind in delay_kinds:
        for hidden in hidden_sizes:
            for seed in range(n_seeds):
                settings = dict(base_settings, delays=kind, hidden=hidden, seed=seed)
                wanted = config_for_backend(settings).resolved().to_dict()  # fails before any process starts
                folder = RunFolder(_run_dir(out_dir, kind, hidden, seed))
                _check_same_settings(folder, wanted)
                total += 1
                if folder.finished_metrics() is None:
                    pending.append((settings, folder.path))
    return pending, total


def _run_pending(pending: list, jobs: int | None, echo) -> tuple[list[str], bool]:
    """Run `pending` in a worker pool; returns (failure messages, interrupted)."""
    from tqdm.auto import tqdm

    failed: list[str] = []
    pool, stop_event = worker_pool(jobs or os.cpu_count() or 1)
    futures = {pool.submit(_train_one, settings, str(path)): path for settings, path in pending}
    remaining = set(futures)
    interrupted = False
    bar = tqdm(total=len(futures), desc="sweep", unit="run")
    try:
        while remaining:
            try:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                if interrupted:  # a second Ctrl-C: stop waiting for the running runs
                    raise
                interrupted = True
                stop_event.set()
                cancelled = sum(future.cancel() for future in remaining)
                echo(f"\ninterrupted: {cancelled} queued run(s) cancelled; running ones stop at their next "
                     "epoch boundary (Ctrl-C again to abandon them)")
                continue
            for future in done:
                bar.update(1)
                name = futures[future].name
                if future.cancelled():
                    continue
                try:
                    metrics = future.result()
                except TrainingStopped:
                    echo(f"{name}: stopped at an epoch boundary; it resumes from there")
                    continue
                except DelgradError as exc:
                    failed.append(f"{name}: {exc}")
                    echo(f"FAILED {failed[-1]}")
                    continue
                except Exception as exc:  # one failed run must not cost the others
                    failed.append(f"{name}: {type(exc).__name__}: {exc}")
                    echo(f"FAILED {failed[-1]}")
                    continue
                echo(f"{name}: test accuracy {100 * metrics['test_accuracy']:.2f} %")
    finally:
        bar.close()
        pool.shutdown(wait=not interrupted or not remaining, cancel_futures=True)
    return failed, interrupted


def _write_results(out_dir: Path) -> str:
    rows = sweep_rows(out_dir)
    summary = summarise(rows)
    csv_text = io.StringIO()
    writer = csv.DictWriter(csv_text, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "sweep.csv", csv_text.getvalue())
    atomic_write_text(out_dir / "sweep_summary.json", json.dumps(summary, indent=2))
    _plot(summary, out_dir / "sweep.png")
    return _table(summary)


def run_sweep(base_settings: dict, hidden_sizes, delay_kinds, n_seeds: int, out_dir: Path, *,
              jobs: int | None = None, echo=print) -> str:
    """Run every missing (kind, hidden, seed) cell, then write sweep.csv and sweep.png.

    Returns the summary table as text; raises `SweepError` if runs failed and `SweepInterrupted`
    after Ctrl-C (in both cases after writing the results of the finished runs).
    """
    out_dir = Path(out_dir)
    if not isinstance(n_seeds, int) or n_seeds < 1 or not hidden_sizes or not delay_kinds:
        raise InvalidValueError("sweep: needs at least one hidden size, delay kind and seed")
    with folder_lock(out_dir):
        pending, total = _plan(base_settings, hidden_sizes, delay_kinds, n_seeds, out_dir)
        echo(f"sweep: {total - len(pending)} of {total} runs already finished, {len(pending)} to do")
        failed, interrupted = _run_pending(pending, jobs, echo) if pending else ([], False)
        table = _write_results(out_dir)
    if interrupted:
        raise SweepInterrupted(f"sweep interrupted; {out_dir}/sweep.csv holds the finished runs; run the same "
                               "command again to resume the others", table=table)
    if failed:
        raise SweepError(f"{len(failed)} run(s) failed (the others are saved; run the sweep again to "
                         "retry them):\n" + "\n".join(failed), table=table)
    return table
