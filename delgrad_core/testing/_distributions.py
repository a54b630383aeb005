"""Write a minimal installed distribution (dist-info + module) so importlib.metadata finds it.

For testing plugin discovery: put `root` on sys.path (or PYTHONPATH) and the entry points
below are seen exactly like those of a pip-installed package.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

__all__ = ["write_distribution"]


def write_distribution(
    root, name: str, version: str, modules: dict[str, str], entry_points: dict[str, dict[str, str]]
) -> Path:
    """Create `<name>-<version>.dist-info` (METADATA, entry_points.txt) and `modules` under `root`.

    Parameters
    ----------
    root : path-like
        Directory that will be put on sys.path.
    modules : dict
        Module name -> source text (dedented).
    entry_points : dict
        Group -> {entry point name -> "module:attribute" or "module"}.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = root / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, points in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return dist_info
