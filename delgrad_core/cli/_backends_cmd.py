"""`delgrad backends`: list the installed backends and what they can run."""

from __future__ import annotations

import contextlib
import json
import sys

import click

from delgrad_core._errors import described
from delgrad_core.cli import main, show_warning

__all__ = ["backends"]


def _record(info) -> dict:
    """JSON-able record of one backend; a backend whose factory fails gets an `error` field instead."""
    try:
        return info.to_dict()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a broken backend must not hide the others (SystemExit too)
        return {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "description": info.description,
            "capabilities": None,
            "error": described(exc),
        }


def _summary(capabilities: dict | None) -> list[str]:
    """Table cells: delay kinds, tau ratios, exactness, calibration, limits."""
    if capabilities is None:
        return ["?"] * 5
    ratios = capabilities["tau_ratios"]
    limits = [
        f"{label}<={capabilities[key]:g}"
        for key, label in (("max_inputs", "in"), ("max_layer_size", "size"), ("max_layers", "layers"),
                           ("max_batch_size", "batch"), ("weight_limit", "|w|"))
        if capabilities[key] is not None
    ]
    limits += [f"{label}={capabilities[key]:g}" for key, label in (("weight_resolution", "dw"),
                                                                    ("delay_resolution", "dd"))
               if capabilities[key] is not None]
    if capabilities["delay_range"] is not None:
        limits.append("d in [{:g}, {:g}]".format(*capabilities["delay_range"]))
    if (capabilities.get("input_copies") or 1) > 1:
        limits.append(f"inputs in copies of {capabilities['input_copies']}")
    exactness = "exact" if capabilities["exact"] else "statistical"
    if not capabilities["seed_independent"]:
        exactness += ", seeded" if capabilities["deterministic"] else ", noisy"
    return [
        ",".join(capabilities["delay_kinds"]),
        "any" if ratios is None else ",".join(f"{r:g}" for r in ratios),
        exactness,
        "yes" if capabilities["needs_calibration"] else "no",
        " ".join(limits) or "-",
    ]


@main.command("backends")
@click.option("--json", "as_json", is_flag=True, help='Print JSON: {"backends": [...], "problems": [...]}.')
def backends(as_json: bool):
    """List installed backends (name, distribution, version, capabilities)."""
    from delgrad_core._plugins import own_kind_hint, registry

    plugins = registry()
    with contextlib.redirect_stdout(sys.stderr):  # (what a factory prints must not mix with the listing)
        records = [_record(info) for info in plugins.registrations("backend")]
    sys.stderr.flush()  # (before the listing, where stderr is buffered: a file, click < 8.2's test runner)
    if not records:
        click.echo(f"note: no backend is installed; {own_kind_hint('backend')}", err=True)
    if as_json:
        click.echo(json.dumps({"backends": records, "problems": plugins.problems}, indent=2))
        return
    header = ["NAME", "DISTRIBUTION", "VERSION", "DELAYS", "TAU RATIOS", "TIMES", "CALIBRATION", "LIMITS"]
    rows = [[r["name"], r["distribution"], r["version"]] + _summary(r["capabilities"]) for r in records]
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for record in records:
        if "error" in record:
            show_warning(f"backend {record['name']!r} cannot be built: {record['error']}")
    for problem in plugins.problems:  # (the registry warned of them when it loaded, maybe in this process)
        show_warning(" ".join(problem.split()))
