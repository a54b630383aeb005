"""What the benchmark scripts share: command-line number types, output files checked before any
timing and written atomically, and the environment a run was taken in.

A benchmark runs for minutes; a wrong output path found at its end loses the run, so `--json`
and `--plot` are checked when the options are read, and written only once complete.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

import delgrad_core
from delgrad_core._atomic import atomic_write, atomic_write_text, followed_path
from delgrad_core._errors import InvalidValueError

__all__ = ["positive_int", "output_path", "write_json", "write_figure", "environment"]

_REPOSITORY = Path(__file__).resolve().parent.parent


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def output_path(text: str) -> Path:
    """argparse type: a file path the results can be written to at the end (an existing file
    is replaced).  Refused now: a folder or other non-file at the path, a file where a folder
    of the path should be, a folder that cannot be written in, a link into a missing folder."""
    path = Path(text)
    try:
        path = followed_path(path)
    except InvalidValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if path.exists() and not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a file; give a file path")
    existing = next(folder for folder in (path.absolute().parent, *path.absolute().parents) if folder.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {existing} is a file, not a folder; give a path whose folders "
                                         "are folders")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: the folder {existing} cannot be written in")
    return path


def _finite_or_none(value):
    """`value` with each NaN or infinity (an undefined rate, spike patterns that differ) as None:
    JSON has neither, and jq and JavaScript refuse files that hold them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def write_json(path: Path, data: dict) -> None:
    """`data` as indented JSON at `path` (NaN and infinities as null), atomically (a failed write
    leaves any earlier file)."""
    atomic_write_text(path, json.dumps(_finite_or_none(data), indent=2, allow_nan=False) + "\n")
    print(f"wrote {path}", flush=True)


def write_figure(figure, path: Path) -> None:
    """A matplotlib `figure` as PNG at `path`, atomically."""
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=110))
    print(f"wrote {path}", flush=True)


def _git_revision() -> str | None:
    """HEAD of the checkout these scripts are in, "+modified" if it has uncommitted changes;
    None outside a git checkout."""
    def git(*arguments) -> str:
        return subprocess.run(["git", "-C", str(_REPOSITORY), *arguments], check=True, capture_output=True,
                              text=True).stdout.strip()

    try:
        revision = git("rev-parse", "--short=12", "HEAD")
        modified = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return None
    return revision + ("+modified" if modified else "")


def _compiler() -> str | None:
    """First line of `$CC --version` (else `cc`): the C compiler a build from source here uses."""
    try:
        return subprocess.run([*os.environ.get("CC", "cc").split(), "--version"], check=True, capture_output=True,
                              text=True).stdout.splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None


def _version(module_name: str) -> str | None:
    try:
        return __import__(module_name).__version__
    except ImportError:
        return None


def environment() -> dict:
    """The machine, versions and load a run was taken in."""
    return {
        "git_revision": _git_revision(),
        "delgrad_core": delgrad_core.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "compiler": _compiler(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }
