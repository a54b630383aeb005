"""Atomic, durable file writes: write to a temporary file beside the target, fsync it, rename it
over the target, fsync the directory (for a link: over the file it points to).

A crash or an exception mid-write leaves the previous file (if any) untouched; after a normal
return the new file survives a power cut.  Files get the usual permissions (0666 minus the
umask), not the 0600 of temporary files.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from delgrad_core._errors import InvalidValueError

__all__ = ["atomic_write", "atomic_write_text", "fsync_directory", "write_to"]


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def fsync_directory(path: str | os.PathLike) -> None:
    """Make a rename or a new file in directory `path` durable (where the platform allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(handle)` on a temporary file and move it to `path` once complete.  A link is
    followed (the file it points to is replaced, the link stays); a device, pipe or socket at
    `path` is refused (a rename would replace it with a file)."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():
        raise InvalidValueError(f"{path}: exists and is not a regular file (a folder, device, pipe or socket); "
                                "write to a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), _FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        fsync_directory(path.parent)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    data = text.encode()
    return atomic_write(path, lambda handle: handle.write(data))


def write_to(target, write: Callable[[BinaryIO], None], what: str, field: str = "target") -> Path | None:
    """`write` to `target`: a path (atomically; returns the path) or a writable binary file
    object (returns None).  Anything else is refused naming the argument `field` and `what`."""
    if isinstance(target, (str, os.PathLike)):
        return atomic_write(target, write)
    text = isinstance(target, io.TextIOBase)
    if text or not callable(getattr(target, "write", None)):
        raise InvalidValueError(f"{field}: expected a file path or a writable binary file object for the {what}, "
                                f"got {type(target).__name__}{' (a text file)' if text else ''}")
    write(target)
    return None
