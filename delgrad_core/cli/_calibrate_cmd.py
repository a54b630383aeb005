"""`delgrad calibrate`: calibrate a backend and print what its calibration reports."""

from __future__ import annotations

import json
import time
import warnings

import click

from delgrad_core.cli import main, no_writes_once_stopped, stop_if_interrupted
from delgrad_core.cli._json_output import echo_json, json_output_kept_apart
from delgrad_core.cli._settings import BACKEND_OPTION, SEEDS, check_thread_variable, refuse_no_default_backend

__all__ = ["calibrate"]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(columns: list, rows: list) -> list[str]:
    """A table (column names, rows of values) as aligned text lines."""
    cells = [[str(c) for c in columns]] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]


def _is_table(summary) -> bool:
    return (isinstance(summary, dict) and isinstance(summary.get("columns"), list)
            and isinstance(summary.get("rows"), list)
            and all(isinstance(row, list) and len(row) == len(summary["columns"]) for row in summary["rows"]))


def _values(values: dict) -> list[str]:
    """The summary table of a calibration's values, then its other values; a calibration held in
    a value (e.g. a device's inside a client backend's: {"backend", "values", ...}) indented."""
    values, lines = dict(values), []
    if _is_table(values.get("summary")):  # the convention: {"columns": [...], "rows": [[...], ...]}
        summary = values.pop("summary")
        lines += _table(summary["columns"], summary["rows"])
    for key, value in values.items():
        inner = value.get("values") if isinstance(value, dict) else None
        if isinstance(inner, dict) and _is_table(inner.get("summary")):
            lines.append(f"{key} ({value.get('backend', 'calibration')}):")
            lines += ["  " + line for line in _values(inner)]
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return lines


def _in_key_order(values: dict) -> dict:
    """`values` with every table's keys sorted: the order of a calibration read from a cache, so
    that a fresh one is shown the same."""
    return json.loads(json.dumps(values, sort_keys=True))


def _report(backend_name: str, calibration, cache, seconds: float) -> list[str]:
    lines = [f"calibration of {backend_name!r} in {seconds:.2f} s (digest {calibration.digest[:16]})"]
    if cache is not None:
        status, path = cache
        lines.append({"hit": f"cache hit: loaded {path} (nothing was measured)",
                      "stored": f"stored in the cache: {path}"}.get(status, f"not stored in the cache: {path}"))
    lines += _values(_in_key_order(calibration.values))
    if not calibration.values and not calibration.arrays:
        lines.append("nothing to calibrate (the backend returns an empty calibration)")
    return lines


@main.command()
@click.option("--backend", default="reference", show_default=True, help="Backend name (see `delgrad backends`).")
@BACKEND_OPTION
@click.option("--chip", type=click.IntRange(min=0),
              help="Chip identity: the backend option `chip` (bss2-emulator; mock-hil's own service takes it as "
                   "--backend-option 'device_options={\"chip\": N}').")
@click.option("--seed", type=SEEDS, default=0, show_default=True, help="Seed passed to the calibration.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (values, digest, cache status, seconds).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_output_kept_apart
def calibrate(backend, backend_options, chip, seed, as_json, no_progress):
    """Calibrate a backend (e.g. a chip) and print what its calibration reports.

    A progress bar follows the backend's progress reports; then come the cache status (for
    backends that cache calibrations), the table in the calibration's values["summary"]
    ({"columns": [...], "rows": [[...], ...]}) and its other values, in the order of their keys.
    """

    from delgrad_core._backend import close_after_work
    from delgrad_core._errors import UnknownNameError
    from delgrad_core.training._progress import progress_bar
    from delgrad_core.training._trainer import BackendOptionsError, built_backend

    check_thread_variable()
    defaulted = click.get_current_context().get_parameter_source("backend") is click.core.ParameterSource.DEFAULT
    refuse_no_default_backend(None if defaulted else backend)
    options = backend_options  # (parsed by the option's callback: a new dict)
    if chip is not None:
        if options.get("chip", chip) != chip:
            raise click.UsageError(f"--chip {chip} contradicts --backend-option chip={options['chip']}")
        options["chip"] = chip
    try:
        target = built_backend(backend, options)
    except (BackendOptionsError, UnknownNameError) as exc:
        if chip is not None and "chip" in getattr(exc, "unknown_options", ()):  # (an option not given as such)
            raise click.UsageError(f"--chip: backend {backend!r} has no option chip, which --chip sets (e.g. of "
                                   "bss2-emulator; mock-hil's own service takes it as --backend-option "
                                   "'device_options={\"chip\": N}')") from None
        raise click.UsageError(str(exc)) from None
    with no_writes_once_stopped(), target:
        bars = []

        def progress(done: int, total: int) -> None:
            if not bars:  # a bar only for backends that report progress
                bars.append(progress_bar(total=total, disable=no_progress or as_json, unit="step",
                                         desc=f"calibrating {backend}"))
            bars[0].total = total
            bars[0].update(done - bars[0].n)

        started = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as told:  # (said after the bar, not glued to it)
                calibration = target.calibrate(seed=seed, progress=progress)
        finally:
            for bar in bars:
                bar.close()
            for warning in told:
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        seconds = time.perf_counter() - started
        cache = target.calibration_cache
        close_after_work(target, "the calibration is complete")  # (its result is reported)
    stop_if_interrupted()  # (a stop signal some code swallowed: no result is reported)
    if as_json:
        echo_json({"backend": backend, "digest": calibration.digest, "cache_key": calibration.cache_key,
                   "cache": None if cache is None else {"status": cache[0], "path": cache[1]},
                   "wall_seconds": seconds, "values": _in_key_order(calibration.values)})
    else:
        click.echo("\n".join(_report(backend, calibration, cache, seconds)))
