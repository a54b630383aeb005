"""The installed distribution's version: one source, pyproject.toml, read from the package
metadata (on first use: reading it takes longer than importing delgrad_core)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__", "distribution_version"]


def distribution_version(distribution: str) -> str:
    """The version of installed `distribution`, or "unknown" (a source tree on sys.path without
    an installation)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


__version__ = distribution_version("delgrad")
