"""The parameter-efficiency study of DelGrad (Göltz, Weber et al. 2025, Fig. 3): test error
against number of parameters and against hidden size, per delay kind, over seeds.

Each run trains in its own process into ``out/runs/<kind>-h<hidden>-s<seed>``; a run whose
``metrics.json`` already has a test accuracy is not redone, and an interrupted one resumes from
its checkpoint.  Results go to ``out/sweep.csv`` and ``out/sweep.png``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from delgrad_core._atomic import atomic_write_text
from delgrad_core.training._config import config_for_backend
from delgrad_core.training._trainer import CHECKPOINT_NAME, METRICS_NAME

__all__ = ["run_sweep", "sweep_rows", "summarise", "SweepError"]

CSV_FIELDS = ["delays", "hidden", "seed", "n_parameters", "test_accuracy", "test_error", "wall_seconds"]


class SweepError(RuntimeError):
    """Some runs failed; `table` summarises the runs that finished."""

    def __init__(self, message: str, table: str):
        super().__init__(message)
        self.table = table


def _run_dir(out_dir: Path, kind: str, hidden: int, seed: int) -> Path:
    return out_dir / "runs" / f"{kind}-h{hidden}-s{seed}"


def _finished(run_dir: Path) -> dict | None:
    path = run_dir / METRICS_NAME
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    return metrics if "test_accuracy" in metrics else None


def _train_one(settings: dict, run_dir: str) -> dict:
    """Worker: one run with one kernel thread (the sweep parallelises over processes)."""
    os.environ["DELGRAD_NUM_THREADS"] = "1"
    from delgrad_core.training._run import run_training

    run_dir = Path(run_dir)
    resume = (run_dir / CHECKPOINT_NAME).exists()
    return run_training(config_for_backend(settings), run_dir, resume=resume, progress=False, plots=False)


def _row(metrics: dict) -> dict:
    config = metrics["config"]
    return {
        "delays": config["delays"],
        "hidden": config["hidden"],
        "seed": config["seed"],
        "n_parameters": metrics["n_parameters"],
        "test_accuracy": metrics["test_accuracy"],
        "test_error": 1.0 - metrics["test_accuracy"],
        "wall_seconds": metrics["wall_seconds"],
    }


def sweep_rows(out_dir: Path) -> list[dict]:
    """One row per finished run found under `out_dir`."""
    rows = []
    for run_dir in sorted((Path(out_dir) / "runs").glob("*")):
        metrics = _finished(run_dir)
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
    from delgrad_core.training._plots import _figure, plots_available

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
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_sweep(base_settings: dict, hidden_sizes, delay_kinds, n_seeds: int, out_dir: Path, *,
              jobs: int | None = None, echo=print) -> str:
    """Run every missing (kind, hidden, seed) cell, then write sweep.csv and sweep.png.

    Returns the summary table as text.
    """
    out_dir = Path(out_dir)
    pending = []
    for kind in delay_kinds:
        for hidden in hidden_sizes:
            for seed in range(n_seeds):
                settings = dict(base_settings, delays=kind, hidden=hidden, seed=seed)
                config_for_backend(settings)  # fail before starting any process
                run_dir = _run_dir(out_dir, kind, hidden, seed)
                if _finished(run_dir) is None:
                    pending.append((settings, run_dir))
    total = len(delay_kinds) * len(hidden_sizes) * n_seeds
    echo(f"sweep: {total - len(pending)} of {total} runs already finished, {len(pending)} to do")
    failed: list[str] = []
    if pending:
        from tqdm.auto import tqdm

        with ProcessPoolExecutor(max_workers=jobs or os.cpu_count()) as pool:
            futures = {pool.submit(_train_one, s, str(d)): d for s, d in pending}
            for future in tqdm(as_completed(futures), total=len(futures), desc="sweep", unit="run"):
                try:
                    metrics = future.result()
                except Exception as exc:  # one failed run must not cost the others
                    failed.append(f"{futures[future].name}: {type(exc).__name__}: {exc}")
                    echo(f"FAILED {failed[-1]}")
                    continue
                echo(f"{futures[future].name}: test accuracy {100 * metrics['test_accuracy']:.2f} %")
    rows = sweep_rows(out_dir)
    summary = summarise(rows)

    csv_text = io.StringIO()
    writer = csv.DictWriter(csv_text, fieldnames=CSV_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "sweep.csv", csv_text.getvalue())
    atomic_write_text(out_dir / "sweep_summary.json", json.dumps(summary, indent=2))
    _plot(summary, out_dir / "sweep.png")
    table = _table(summary)
    if failed:
        raise SweepError(f"{len(failed)} run(s) failed (the others are saved; run the sweep again to "
                         "retry them):\n" + "\n".join(failed), table=table)
    return table
