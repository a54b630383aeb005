"""Atomic, durable file writes: write to a temporary file beside the target, fsync it, rename it
over the target, fsync the directory (for a link: over the file it points to).

A crash or an exception mid-write leaves the previous file (if any) untouched; after a normal
return the new file survives a power cut.  Files get the usual permissions (0666 minus the
umask), not the 0600 of temporary files.  The temporary file is named ".NAME.XXXXXXXX.tmp",
NAME cut short where the file system's limit on names needs it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import tempfile
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO

from delgrad_core._errors import InvalidValueError

__all__ = ["atomic_write", "atomic_write_text", "check_file_name", "check_folder", "checked_before_commit",
           "checked_in_folder", "followed_path", "fsync_directory", "is_temporary_of", "naming_the_file",
           "temporaries", "write_to", "PATH_MAX", "TEMPORARY_EXTRA"]


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()
_NAME_MAX = 255  # bytes in a file name, where the file system does not say
PATH_MAX = 4096  # bytes of a path, with its end (Linux's)
TEMPORARY_EXTRA = len("..") + 8 + len(".tmp")  # what a temporary name adds (8: mkstemp's random characters)
_commit_checks: list[Callable[[], object]] = []  # called before each atomic write moves its file into place


@contextlib.contextmanager
def checked_before_commit(check: Callable[[], object]):
    """Within: `check()` is called before any atomic write moves its complete file into place;
    an exception it raises leaves the target as it was (e.g. the command line's
    `stop_if_interrupted`, for a stop signal whose `KeyboardInterrupt` some code swallowed)."""
    _commit_checks.append(check)
    try:
        yield
    finally:
        _commit_checks.remove(check)


# the path of a folder as given and its real path at the start -> called before each write into it
_folder_checks: dict[str, Callable[[], object]] = {}


@contextlib.contextmanager
def checked_in_folder(folder: str | os.PathLike, check: Callable[[], object]):
    """Within: `check()` is called before an atomic write moves its file into `folder` (named by
    its path as given, or by its real path at the start: a link on the path re-pointed meanwhile
    leads elsewhere, where the check refuses the write), and by `check_folder` (e.g. before an
    append there)."""
    keys = {os.path.abspath(folder), os.path.realpath(folder)}
    _folder_checks.update(dict.fromkeys(keys, check))
    try:
        yield
    finally:
        for key in keys:
            _folder_checks.pop(key, None)


def check_folder(folder: str | os.PathLike) -> None:
    """Call the check of `checked_in_folder` for a write into `folder`, if it has one."""
    if not _folder_checks:
        return
    check = _folder_checks.get(os.path.abspath(folder)) or _folder_checks.get(os.path.realpath(folder))
    if check is not None:
        check()


def naming_the_file(exc: OSError, path: str | os.PathLike) -> OSError:
    """`exc`, or for a failed write or flush, which names no file, the same error naming `path`."""
    if exc.filename is None and exc.errno is not None:
        return type(exc)(exc.errno, f"{exc.strerror} (writing {path})")
    return exc


def _name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system of the existing `folder` accepts."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - no pathconf (Windows) or no answer
        return _NAME_MAX
    return limit if limit > 0 else _NAME_MAX  # (-1: no limit given)


def check_file_name(path: str | os.PathLike) -> None:
    """Refuse a file name longer than the file system of its folder allows (where the folder
    does not exist yet: 255 bytes), naming `path`."""
    path = Path(path)
    size, limit = len(os.fsencode(path.name)), _name_max(path.parent)
    if size > limit:
        raise InvalidValueError(f"{path}: the file name is {size} bytes long, more than the {limit} the file system "
                                "allows; choose a shorter name")


def _temporary_file(path: Path) -> tuple[int, str]:
    """A new temporary file beside `path`, open for writing: (descriptor, name)."""
    room = _name_max(path.parent) - TEMPORARY_EXTRA
    name = path.name[:room]
    while len(os.fsencode(name)) > room:  # (characters of several bytes)
        name = name[:-1]
    try:
        return tempfile.mkstemp(dir=path.parent, prefix=f".{name}.", suffix=".tmp")
    except OSError as exc:  # (named after the file to write, not the temporary one)
        raise OSError(exc.errno, f"{exc.strerror} (making a temporary file beside it)", str(path)) from None


_FSYNC_REFUSED = {errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES, errno.EPERM}


def fsync_directory(path: str | os.PathLike) -> None:
    """Make a rename or a new file in directory `path` durable (where the platform allows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on directories; a failed one is told
        if exc.errno not in _FSYNC_REFUSED:
            raise type(exc)(exc.errno, f"{exc.strerror} (making the folder's new files durable)", str(path)) from None
    finally:
        os.close(fd)


def followed_path(path: Path) -> Path:
    """`path`, or the file the link at `path` points to; refused: a name too long, a loop of
    links, a link into a missing folder (no folders are made through a link)."""
    check_file_name(path)
    if not path.is_symlink():
        return path
    try:
        target = path.resolve()
    except RuntimeError:  # (a loop, before Python 3.13; later ones return a link)
        target = path
    if target.is_symlink():
        raise InvalidValueError(f"{path}: is a loop of symbolic links; remove it or write to another path")
    if not target.parent.is_dir():
        what = "is not a folder" if target.parent.exists() else "does not exist"
        raise InvalidValueError(f"{path}: is a symbolic link to {os.readlink(path)}, but the folder {target.parent} "
                                f"{what}; make the folder first, remove the link or write to another path")
    check_file_name(target)
    return target


_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]+\.tmp", re.DOTALL)  # (mkstemp's random characters)


def is_temporary_of(name: str, patterns) -> bool:
    """Whether file `name` is the temporary file of an atomic write (".NAME.XXXXXXXX.tmp", see
    `_temporary_file`) of a file whose NAME matches one of the name `patterns`."""
    match = _TEMPORARY.fullmatch(name)
    return match is not None and any(fnmatchcase(match["name"], pattern) for pattern in patterns)


def temporaries(folder, patterns) -> list[Path]:
    """The temporary files of atomic writes of files named like `patterns` in `folder` (none if
    it cannot be read)."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    return sorted(entry for entry in entries if is_temporary_of(entry.name, patterns) and not entry.is_dir())


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(handle)` on a temporary file and move it to `path` once complete; missing
    folders are made.  A link is followed (the file it points to is replaced, the link stays),
    into a folder that exists; a device, pipe or socket at `path` is refused (a rename would
    replace it with a file), and so is a name longer than the file system allows.  The checks
    of `checked_before_commit` come before the file is moved."""
    if not os.fspath(path):  # (Path("") is ".", the working folder)
        raise InvalidValueError("expected a file path to write, got ''")
    path = followed_path(Path(path))
    if path.exists() and not path.is_file():
        raise InvalidValueError(f"{path}: exists and is not a regular file (a folder, device, pipe or socket); "
                                "write to a file path")
    _make_folders(path)
    fd, tmp_name = _temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fchmod(handle.fileno(), _FILE_MODE)
            os.fsync(handle.fileno())
        for check in _commit_checks:
            check()
        check_folder(path.parent)
        os.replace(tmp_name, path)
        fsync_directory(path.parent)
    except OSError as exc:
        _remove(tmp_name)
        named = naming_the_file(exc, path)
        if named is exc:
            raise
        raise named from exc
    except BaseException:
        _remove(tmp_name)
        raise
    return path


def _make_folders(path: Path) -> None:
    """Make the missing folders of `path`; one of them that exists as something else (a file)
    is refused naming it (mkdir said only "File exists" or "Not a directory")."""
    in_the_way = next((folder for folder in path.parents if os.path.lexists(folder) and not folder.is_dir()), None)
    if in_the_way is not None:
        what = "a link to nothing" if in_the_way.is_symlink() and not in_the_way.exists() else "a file"
        raise InvalidValueError(f"{path}: {in_the_way} is not a folder but {what}; choose a path whose folders are "
                                "folders")
    path.parent.mkdir(parents=True, exist_ok=True)


def _remove(name: str) -> None:
    """Remove the temporary file `name` if it is there."""
    with contextlib.suppress(OSError):  # (an error here would hide the one that ended the write)
        os.unlink(name)


def atomic_write_text(path: str | os.PathLike, text: str, *, os_strings: bool = False) -> Path:
    """Write `text` (UTF-8) to `path` atomically.

    A path or command-line argument that is not valid in the file-system encoding reaches Python
    as surrogate escapes (one per byte); those are written as their original bytes.  With
    `os_strings` (a text made of such strings, e.g. a shell script repeating a command line) the
    whole text is encoded as `os.fsencode` does (the file-system encoding, which under a C locale
    is ASCII), so that every path in it names the same file; text the file-system encoding
    cannot hold is still written as UTF-8."""
    if not isinstance(text, str):
        raise InvalidValueError(f"text: expected a str, got {type(text).__name__} (bytes: use atomic_write)")
    data = None
    if os_strings:
        with contextlib.suppress(UnicodeEncodeError):
            data = os.fsencode(text)
    if data is None:
        data = text.encode("utf-8", "surrogateescape")
    return atomic_write(path, lambda handle: handle.write(data))


def write_to(target, write: Callable[[BinaryIO], None], what: str, field: str = "target") -> Path | None:
    """`write` to `target`: a path (atomically; returns the path) or a writable binary file
    object (returns None).  Anything else is refused naming the argument `field` and `what`."""
    if isinstance(target, (str, os.PathLike)):
        return atomic_write(target, write)
    text = isinstance(target, io.TextIOBase)
    closed = getattr(target, "closed", False) is True
    writable = getattr(target, "writable", None)
    read_only = callable(writable) and not closed and writable() is False
    if text or closed or read_only or not callable(getattr(target, "write", None)):
        why = " (a text file)" if text else " (closed)" if closed else " (open for reading only)" if read_only else ""
        raise InvalidValueError(f"{field}: expected a file path or a writable binary file object for the {what}, "
                                f"got {type(target).__name__}{why}")
    write(target)
    return None
