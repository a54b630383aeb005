"""On-disk cache of calibrations: one npz file (arrays + JSON document, no pickle) per key,
written atomically by `Calibration.save`.

Directory: $DELGRAD_BSS2_CACHE (a relative path: from the working directory when it is read;
set but empty counts as unset, blank is refused), else $XDG_CACHE_HOME/delgrad/bss2 (an
absolute path; a relative one is ignored, as the XDG Base Directory specification asks), else
~/.cache/delgrad/bss2.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path

from delgrad_core import Calibration, InvalidValueError
from delgrad_core.plugin_tools import temporaries

__all__ = ["CACHE_ENV", "cache_directory", "cache_path", "load_cached", "store"]

CACHE_ENV = "DELGRAD_BSS2_CACHE"
STALE_TEMPORARY_SECONDS = 3600  # a temporary file of an entry's atomic write this old is left by a killed process


def cache_directory() -> Path:
    """The cache's folder, always an absolute path (see the module's documentation)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit and not explicit.strip():
        raise InvalidValueError(f"${CACHE_ENV} is blank ({explicit!r}): set it to the calibration cache's folder, or "
                                "unset it for the default ($XDG_CACHE_HOME/delgrad/bss2, else ~/.cache/delgrad/bss2)")
    if explicit:
        return Path(explicit).absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "delgrad" / "bss2"


def cache_path(key: str) -> Path:
    return cache_directory() / f"{key}.npz"


def load_cached(key: str) -> Calibration | None:
    """The cached calibration of `key`, or None (missing; unreadable or foreign files are
    reported and ignored, and will be overwritten)."""
    path = cache_path(key)
    try:
        if not path.exists():
            return None
        calibration = Calibration.load(path)
    except OSError as exc:  # (raised by exists(): a folder that cannot be searched, a name too long, ...)
        warnings.warn(f"cannot read the calibration cache entry {path} ({exc.strerror}): calibrating anew",
                      stacklevel=3)
        return None
    except Exception as exc:  # (a cache entry is never worth a failed run: it is made again)
        warnings.warn(f"ignoring the unreadable cached calibration {path}: {type(exc).__name__}: {exc}",
                      stacklevel=3)
        return None
    if calibration.cache_key != key:
        warnings.warn(f"ignoring the cached calibration {path}: it holds key {calibration.cache_key!r}", stacklevel=3)
        return None
    return calibration


def _remove_link(path: Path) -> None:
    """Remove a link at an entry's name, with a warning: the atomic write follows links, and
    would overwrite the file it points to (which did not hold this calibration: a hit is not
    written) or create the missing folders of its target, outside the cache."""
    if path.is_symlink():
        state = "" if path.exists() else "dangling "
        warnings.warn(f"replacing the {state}link {path} -> {os.readlink(path)} in the calibration cache with the "
                      "calibration (what it points to is left as it is)", stacklevel=4)
        path.unlink()


def _remove_dead_temporaries(folder: Path) -> None:
    """Remove the temporary files of entries' atomic writes in `folder` not written to for
    `STALE_TEMPORARY_SECONDS`: left by a process killed mid-write (an entry is written in well
    under a second; processes share the folder without a lock, so a younger one may be another
    process's entry being written).  Other files are left alone; errors are ignored."""
    now = time.time()
    for temporary in temporaries(folder, ("*.npz",)):
        with contextlib.suppress(OSError):
            if now - temporary.lstat().st_mtime > STALE_TEMPORARY_SECONDS:
                temporary.unlink()


def store(calibration: Calibration) -> tuple[str, str]:
    """Write `calibration` to its place in the cache (atomically): ("stored", path); if the
    cache cannot be written, a warning and ("not_stored", path) (the calibration is still good)."""
    path = cache_path(calibration.cache_key)
    try:
        _remove_link(path)
        calibration.save(path)
        _remove_dead_temporaries(path.parent)
    except (OSError, InvalidValueError) as exc:  # (InvalidValueError names the path: a folder in the way, ...)
        reason = str(exc) if isinstance(exc, InvalidValueError) else f"{path}: {exc.strerror or exc}"
        warnings.warn(f"could not store the calibration in the cache ({reason}); going on without it (set "
                      f"{CACHE_ENV} to a writable folder, or pass the backend option cache=false)", stacklevel=3)
        return "not_stored", str(path)
    return "stored", str(path)
