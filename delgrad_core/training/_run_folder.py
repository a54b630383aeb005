"""A run folder: the one place that knows a training run's file names, formats and rules.

    checkpoint.npz   parameters, optimiser and loop state after the last finished epoch
    history.jsonl    one JSON line per finished epoch (appended: linear I/O however long the run)
    metrics.json     the final summary with the whole history (written when the run finishes)
    network.npz      the trained network
    *.png            plots
    .lock            held (flock) by the process running in the folder

Rules: a folder that holds a run is never overwritten (resume it or choose another); only one
process works in a folder at a time; a run's files are its own (a symbolic link at one of their
names, as `cp -rs` makes, is refused: writing through it would change another run); every file
is written atomically and durably; an epoch is appended to the history before its checkpoint, so
on resume the history is cut back to the checkpoint's epoch (whatever the lines after it hold).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import threading
import time
from fnmatch import fnmatchcase
from pathlib import Path

from delgrad_core._atomic import (atomic_write, atomic_write_text, check_folder, checked_in_folder, fsync_directory,
                                  naming_the_file, temporaries)
from delgrad_core._errors import FileFormatError, FolderInUseError, InvalidValueError, RunFolderError
from delgrad_core._options import first_few
from delgrad_core._npz import NpzArchive, write_npz
from delgrad_core._serialization import save_network

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None

__all__ = ["RunFolder", "network_file_digest", "folder_lock", "STATE_KEY", "checked_state", "stored_settings",
           "history_line", "remove_stale_temporaries", "is_accuracy"]

CHECKPOINT_NAME = "checkpoint.npz"
HISTORY_NAME = "history.jsonl"
METRICS_NAME = "metrics.json"
NETWORK_NAME = "network.npz"
_LOCK_NAME = ".lock"
_WRITE_TEST = ".write-test"
_RUN_FILES = (CHECKPOINT_NAME, HISTORY_NAME, METRICS_NAME, NETWORK_NAME)
_WRITTEN_BY_RUN = (*_RUN_FILES, "*.png")  # name patterns of every file a run writes (the plots: *.png)
STATE_KEY = "trainer_state.json"  # the checkpoint's JSON document: loop state and settings
_HISTORY_ADVICE = ("a run resumes only with the history of its checkpoint's epochs: put back the run's own "
                   f"{HISTORY_NAME}, or train the run anew in another folder")


_HELD: dict = {}  # real path -> lock file of each folder this process holds
_HELD_LOCK = threading.Lock()  # held while a folder's lock is taken or let go, and across a fork


def is_accuracy(value) -> bool:
    """Whether `value` (a test accuracy read from a metrics.json) is a number in [0, 1]."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1


def _release_in_child() -> None:
    """In a child forked while folders are held: let go of the locks (a flock belongs to the open
    file, which the child shares; a child that outlived this process kept its folders locked).
    The descriptor is pointed at /dev/null, so the file object closes as usual."""
    global _HELD_LOCK
    for handle in _HELD.values():
        with contextlib.suppress(OSError, ValueError):  # (ValueError: a handle already closed)
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.dup2(null, handle.fileno(), inheritable=False)
            finally:
                os.close(null)
    _HELD.clear()
    _HELD_LOCK = threading.Lock()  # (the parent's was held across the fork)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=lambda: _HELD_LOCK.acquire(), after_in_parent=lambda: _HELD_LOCK.release(),
                        after_in_child=_release_in_child)


_LOCK_TRIES = 3


def _lock(handle, path: Path) -> None:
    """Take the exclusive lock of the open lock file `handle` of folder `path`, or refuse naming
    its holder."""
    if fcntl is None:
        return
    for attempt in range(_LOCK_TRIES):
        if attempt:
            time.sleep(0.01)  # (`RunFolder.writer` looks with a shared lock for a moment)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
    owner = _holder(handle)
    if owner == f"process {os.getpid()}":
        owner = "this process (a Trainer or claim of it not closed yet)"
    raise FolderInUseError(f"{path}: in use by {owner}; wait for it to finish or choose another folder")


def _holder(handle) -> str:
    """Who holds a lock file, as the open lock file `handle` says ("process N")."""
    handle.seek(0)
    return handle.read().strip() or "another process"


def _refuse_dangling_link(path: Path) -> None:
    """Refuse a folder path that is, or lies in, a symbolic link to nothing (it cannot be made),
    naming the link and its target."""
    if path.exists():
        return
    for link in (path, *path.parents):
        if link.is_symlink() and not link.exists():
            which = "" if link == path else f"{link} is "
            raise RunFolderError(f"{path}: {which}a symbolic link to {os.readlink(link)}, which does not exist (or "
                                 "is a loop of links); make the folder it points to, remove the link, or choose "
                                 "another folder")


def _refuse_linked_files(path: Path, patterns) -> None:
    """Refuse folder `path` if a file in it whose name matches one of `patterns` (files to be
    written there) is a symbolic link: writing it would change the file the link points to (the
    original of a folder copied with `cp -rs`)."""
    if not path.is_dir():
        return
    links = sorted((entry for entry in path.iterdir()
                    if entry.is_symlink() and any(fnmatchcase(entry.name, pattern) for pattern in patterns)),
                   key=lambda link: (link.name.startswith("."), link.name))  # (the run's files first)
    if links:
        others = [link.name for link in links[1:6]] + ([f"{len(links) - 6} more"] if len(links) > 6 else [])
        also = f"; {_listed(others)} {'is a symbolic link' if len(others) == 1 else 'are symbolic links'} too" \
            if others else ""
        targets = "the files they point to" if others else "the file it points to"
        raise RunFolderError(f"{path}: {links[0].name} is a symbolic link to {os.readlink(links[0])}{also}; writing "
                             f"there would change {targets}, but a folder's files must be its own: copy a folder "
                             "with cp -r, not as links (cp -rs), or replace the links with copies of their files")


def _listed(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


@contextlib.contextmanager
def folder_lock(path, files=()):
    """Create folder `path` and hold an exclusive lock on it (one process at a time), after
    checking that it can be written and that none of the files to be written there (name
    patterns `files`, and the lock) is a symbolic link; `RunFolderError` naming the folder
    otherwise."""
    path = Path(path)
    _refuse_dangling_link(path)
    # (a folder is removed at the end if nothing was written in it and it was made for this run:
    # it did not exist, or held only a lock left by a killed run; a user's empty folder stays)
    key = os.path.realpath(path)
    handle = None
    try:
        handle, found, made_here = _locked(path, key, files)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}")
            handle.flush()
            atomic_write_text(path / _WRITE_TEST, "")
            os.unlink(path / _WRITE_TEST)
        except OSError as exc:
            raise RunFolderError(f"{path}: cannot write here ({exc.strerror or exc})") from None
        given = Path(os.path.abspath(path))  # (a link on it re-pointed leads elsewhere than `key`)
        with checked_in_folder(given, _still_the_folder(path, {given, Path(key)}, handle)):
            yield path
    finally:  # (errors of the clean-up are not told: they replaced the error that ended the block, e.g.
        # a full disk, which the close's second flush of the lock file met again, or a lack of memory)
        if handle is not None:
            with contextlib.suppress(OSError):  # (while the lock is held: no other process takes over what goes)
                left = _entries(path)
                left.pop(_LOCK_NAME, None)
                if _is_current(handle, path / _LOCK_NAME) and (not left or left == found and _LOCK_NAME not in found):
                    (path / _LOCK_NAME).unlink()  # nothing was written (e.g. a folder of other files, refused)
                    if made_here:
                        path.rmdir()
            _let_go(key, handle)


def _let_go(key: str, handle) -> None:
    """Forget folder `key`'s lock file `handle` and close it, which lets the lock go."""
    with _HELD_LOCK:  # (a fork between forgetting the lock and letting it go would pass it on)
        if _HELD.get(key) is handle:
            del _HELD[key]
        with contextlib.suppress(OSError):
            handle.close()  # (the file is closed even when its flush fails)


_LOCK_ATTEMPTS = 5


def _locked(path: Path, key: str, files) -> tuple:
    """(open lock file, locked, recorded in _HELD; the folder's entries before; whether the
    folder was made for this run) of folder `path`, made if missing.  A lock file or folder that
    its last holder removed between this process opening and locking it is taken again."""
    missing = None  # (the last "no such file" met making the folder or its lock file)
    for _ in range(_LOCK_ATTEMPTS):
        if _other_than_a_folder(path):
            raise RunFolderError(f"{path}: exists and is not a folder")
        try:
            _refuse_linked_files(path, (_LOCK_NAME, _WRITE_TEST, *files))
            existed = path.exists()
            path.mkdir(parents=True, exist_ok=True)
            found = _entries(path)  # (a lock made here for a folder it then leaves as it was goes again)
            handle = open(path / _LOCK_NAME, "a+")
        except (FileNotFoundError, FileExistsError) as exc:
            missing = exc
            continue  # (the folder was removed since it was found, made or found made)
        except OSError as exc:
            raise RunFolderError(f"{path}: cannot use this folder ({exc.strerror or exc})") from None
        missing = None
        try:
            with _HELD_LOCK:  # (a fork between taking the lock and recording it would pass the lock on)
                _lock(handle, path)
                current = _is_current(handle, path / _LOCK_NAME)
                if current:
                    _HELD[key] = handle
            if current:
                listed = found.get(_LOCK_NAME)
                if listed is None or listed[0] == os.fstat(handle.fileno()).st_ino:
                    return handle, found, not existed or set(found) == {_LOCK_NAME}
                # (the lock file listed was another claim's, removed since: the folder is not ours to remove)
                return handle, {name: entry for name, entry in _entries(path).items() if name != _LOCK_NAME}, False
        except BaseException:
            _let_go(key, handle)
            raise
        _let_go(key, handle)
    if missing is not None:  # (e.g. /proc, where nothing new can be made, says "no such file")
        raise RunFolderError(f"{path}: cannot make the folder or its lock file ({missing.strerror or missing}, "
                             f"{_LOCK_ATTEMPTS} times): a file system that takes no new files there, or other "
                             "processes removing the folder as it is made; choose another folder")
    raise FolderInUseError(f"{path}: in use by other processes, which start and end runs there one after another "
                           "(its lock file was removed each time this process took it); wait for them to finish or "
                           "choose another folder")


def network_file_digest(path: Path) -> str:
    """SHA-256 (hex) of the content of the network file at `path`."""
    with NpzArchive(path, what="delgrad network") as archive:
        return archive.digest("")


def _check_regular_or_missing(path: Path) -> None:
    """Refuse a run file that is there as something other than a regular file: a folder, or a
    pipe, which would block its reader or writer for good."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # (missing, or unreadable: said where it is opened)
    if not stat.S_ISREG(mode):
        raise RunFolderError(f"{path}: exists and is not a regular file (a folder, device, pipe or socket); a run "
                             "writes its own file there: remove what is there, or choose another folder")


def _other_than_a_folder(path: Path) -> bool:
    """Whether something other than a folder is at `path` (one look: a folder removed between
    two looks is not taken for a file)."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def _is_current(handle, lock_path: Path) -> bool:
    """Whether the open file `handle` is the file at `lock_path` (not one removed since)."""
    try:
        now = os.stat(lock_path)
    except OSError:  # (gone, or its folder replaced by a file)
        return False
    opened = os.fstat(handle.fileno())
    return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)


def _entries(path: Path) -> dict:
    """Name -> (inode, size, modification time) of every entry of folder `path` (a file written
    in place or replaced changes its entry)."""
    entries = {}
    for entry in os.scandir(path):
        status = entry.stat(follow_symlinks=False)
        entries[entry.name] = (status.st_ino, status.st_size, status.st_mtime_ns)
    return entries


def _still_the_folder(path: Path, paths: set[Path], handle):
    """A check that folder `path` still holds the open lock file `handle` by each of `paths` (its
    absolute and its real path at the start): it was not moved, removed or replaced, nor a link on
    its path re-pointed; files written by its path would go to another folder, unlocked."""
    def check() -> None:
        if not all(_is_current(handle, folder / _LOCK_NAME) for folder in paths):
            raise RunFolderError(f"{path}: the folder was moved, removed or replaced while this process wrote in it; "
                                 "nothing more is written by its name (its files are where the folder went)")
    return check


def remove_stale_temporaries(folder, patterns) -> list[Path]:
    """Remove the temporary files of atomic writes of files named like `patterns` (and of the
    write test of `folder_lock`) from `folder`, which the caller holds locked (`folder_lock`):
    they are left by a process killed mid-write, as no other process writes there.  Other hidden
    files are left alone.  Returns those removed."""
    removed = []
    for stale in temporaries(folder, (*patterns, _WRITE_TEST)):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
    return removed


def history_line(record: dict) -> str:
    """An epoch's record as its line of history.jsonl."""
    return json.dumps(record, allow_nan=False) + "\n"


def stored_settings(state, checkpoint_path) -> dict:
    """The settings stored in a checkpoint's loop state `state`; missing or malformed ones (a
    damaged or edited checkpoint) are a `FileFormatError` naming `checkpoint_path`."""
    settings = state.get("config") if isinstance(state, dict) else None
    if not isinstance(settings, dict):
        shown = "missing" if settings is None else "not a table"
        raise FileFormatError(f"{checkpoint_path}: its settings are {shown} (a damaged or edited checkpoint)")
    return settings


# the checkpoint's loop state: name -> (types allowed, None allowed)
_STATE_NUMBERS = {"epoch": (int, False), "epochs_recorded": (int, False), "best_epoch": (int, False),
                  "elapsed_seconds": ((int, float), False), "best_validation_accuracy": ((int, float), False),
                  "bump_level": ((int, float), True)}


def checked_state(state: dict, path) -> dict:
    """The checkpoint's loop state with its numbers checked: a damaged or edited checkpoint is
    refused when read, not after an epoch of training."""
    for name, (kinds, optional) in _STATE_NUMBERS.items():
        value = state.get(name)
        if value is None and optional:
            continue
        low, high = (-1, 1) if name == "best_validation_accuracy" else (0, sys.float_info.max)  # (-1: none kept yet)
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            raise FileFormatError(f"{path}: the state's {name} is {value!r} (a damaged or edited checkpoint)")
    stored_settings(state, path)
    if state["epochs_recorded"] != state["epoch"]:  # (an epoch's line of history comes before its checkpoint)
        raise FileFormatError(f"{path}: the state records {state['epochs_recorded']} epochs of history for "
                              f"{state['epoch']} trained (a damaged or edited checkpoint)")
    if state["best_epoch"] > state["epoch"]:
        raise FileFormatError(f"{path}: the state's best_epoch is {state['best_epoch']}, after its last epoch "
                              f"{state['epoch']} (a damaged or edited checkpoint)")
    return state


class RunFolder:
    """The files of one training run in `path` (nothing is touched until a method is called)."""

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidValueError(f"out_dir: expected a folder path, got {type(path).__name__}")
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_NAME

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_NAME

    @property
    def network(self) -> Path:
        return self.path / NETWORK_NAME

    @property
    def history_file(self) -> Path:
        return self.path / HISTORY_NAME

    def holds_run(self) -> list[str]:
        """Names of the run files present (empty: the folder holds no run)."""
        return [name for name in _RUN_FILES if (self.path / name).exists()]

    def in_the_way(self) -> str | None:
        """What keeps a new run from this folder, which holds none (without its lock: a check
        before any trial of a sweep starts; `claim` checks again): a file where the folder
        should be, or other files a run could overwrite; None if nothing does."""
        if self.path.is_symlink() and not self.path.exists():
            return "a link to nothing, where the run's folder should be"
        if self.path.exists() and not self.path.is_dir():
            return "exists and is not a folder"
        if not self.path.is_dir() or self.holds_run():
            return None
        try:
            others = self._other_files()
        except OSError:  # (not readable: `claim` says why)
            return None
        return f"holds other files ({first_few(others)})" if others else None

    def _other_files(self) -> list[str]:
        """The names in the folder that are neither a run's files nor its lock, nor temporary
        files of interrupted writes (which `claim` removes)."""
        stale = {entry.name for entry in temporaries(self.path, (*_WRITTEN_BY_RUN, _WRITE_TEST))}
        return sorted(entry.name for entry in self.path.iterdir() if entry.name not in (_LOCK_NAME, *stale))

    def writer(self) -> str | None:
        """Who holds the folder's lock, as its lock file says ("process N"), or None if nobody
        does (or the file system has no locks)."""
        if fcntl is None:
            return None
        try:  # (opened without waiting, and only a regular file read: a pipe there would block)
            with open(os.open(self.path / _LOCK_NAME, os.O_RDONLY | os.O_NONBLOCK)) as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return None
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return _holder(handle)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        return None

    def finished_metrics(self) -> dict | None:
        """The final metrics of a finished run, else None."""
        if not self.metrics.exists():
            return None
        _check_regular_or_missing(self.metrics)
        try:
            metrics = json.loads(self.metrics.read_text())
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{self.metrics}: not readable JSON ({exc})") from None
        except RecursionError:
            raise FileFormatError(f"{self.metrics}: not readable JSON (nested too deeply)") from None
        return metrics if isinstance(metrics, dict) and "test_accuracy" in metrics else None

    # -- claiming the folder -------------------------------------------------------------------
    @contextlib.contextmanager
    def claim(self, *, resume: bool):
        """Create and lock the folder for one process; refuse a folder that holds a run unless
        resuming it, one with nothing to resume when resuming, and a new run in a folder that
        holds other files (they could be overwritten), or whose run files are symbolic links.
        Checks early that the folder is writable (a read-only file system or a file in the way
        fails here, not after an epoch)."""
        with folder_lock(self.path, _WRITTEN_BY_RUN):
            self._remove_stale_temporaries()
            present = self.holds_run()
            if present == [HISTORY_NAME] and not resume and len(self._history_lines()) <= 1:
                self.history_file.unlink()  # a run killed before its first checkpoint
                present = []
            if resume and not self.checkpoint.exists():
                raise RunFolderError(f"{self.path}: no {CHECKPOINT_NAME} to resume from")
            if not resume and present:
                advice = "resume it (--resume; from Python: resume=True) or " if CHECKPOINT_NAME in present else ""
                raise RunFolderError(f"{self.path}: already holds a run ({', '.join(present)}); {advice}choose "
                                     "another folder")
            others = self._other_files()
            if not resume and others:
                raise RunFolderError(f"{self.path}: holds other files ({first_few(others)}), which a run could "
                                     "overwrite; choose a new or empty folder")
            yield self

    def _history_bytes(self) -> bytes:
        """history.jsonl as it is (b"" without the file)."""
        _check_regular_or_missing(self.history_file)
        try:
            return self.history_file.read_bytes()
        except FileNotFoundError:
            return b""

    def _history_lines(self) -> list[bytes]:
        """The lines of history.jsonl as they are ([] without the file)."""
        return self._history_bytes().splitlines()

    def _remove_stale_temporaries(self) -> None:
        """Temporary files of this folder's atomic writes interrupted by a kill (safe: the folder
        is locked); other hidden files are left alone."""
        remove_stale_temporaries(self.path, _WRITTEN_BY_RUN)

    def remove_stale_temporaries_if_free(self) -> list[Path]:
        """Remove the temporary files of atomic writes killed mid-write from a folder this process
        does not work in (a finished run's), under the folder's lock, taken only if there are
        any; a folder another process works in, or that cannot be locked or written, is left as
        it is (its next claim removes them).  Returns those removed."""
        if fcntl is None or not temporaries(self.path, (*_WRITTEN_BY_RUN, _WRITE_TEST)):
            return []  # (without locks, a temporary could be another process's file being written)
        try:
            with folder_lock(self.path, _WRITTEN_BY_RUN):
                return remove_stale_temporaries(self.path, _WRITTEN_BY_RUN)
        except RunFolderError:
            return []

    # -- files ---------------------------------------------------------------------------------
    def write_checkpoint(self, arrays: dict) -> Path:
        return atomic_write(self.checkpoint, lambda handle: write_npz(handle, arrays))

    def open_checkpoint(self) -> NpzArchive:
        return NpzArchive(self.checkpoint, what="delgrad checkpoint")

    def checkpoint_settings(self) -> dict:
        """The settings the checkpoint was written with ({} without a checkpoint)."""
        if not self.checkpoint.exists():
            return {}
        with self.open_checkpoint() as checkpoint:
            return stored_settings(checkpoint.json(STATE_KEY), self.checkpoint)

    def checkpoint_epoch(self) -> int:
        """The epochs the checkpoint holds (0 without a checkpoint; a damaged one is a
        `FileFormatError` naming it)."""
        if not self.checkpoint.exists():
            return 0
        with self.open_checkpoint() as checkpoint:
            return checked_state(checkpoint.json(STATE_KEY), self.checkpoint)["epoch"]

    def append_history(self, record: dict) -> None:
        """Append one epoch's record as a JSON line, durably (in the folder this process holds)."""
        check_folder(self.path)
        _check_regular_or_missing(self.history_file)
        try:
            with open(self.history_file, "a", encoding="utf-8") as handle:
                handle.write(history_line(record))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            named = naming_the_file(exc, self.history_file)
            if named is exc:
                raise
            raise named from None
        fsync_directory(self.path)

    def read_history(self, n_epochs: int) -> list[dict]:
        """The records of the first `n_epochs` lines (the checkpoint's epochs), each a JSON object
        of its epoch; the lines after them are not read (`cut_history` removes them).  Nothing is
        written."""
        lines = self._history_lines()[:n_epochs]
        if len(lines) < n_epochs:
            raise FileFormatError(f"{self.history_file}: has {len(lines)} lines, the checkpoint {self.checkpoint.name} "
                                  f"is of epoch {n_epochs}; {_HISTORY_ADVICE}")
        return [self._history_record(line, number) for number, line in enumerate(lines, start=1)]

    def _history_record(self, line: bytes, number: int) -> dict:
        """Line `number` of the history: the JSON object of epoch `number`."""
        try:
            record = json.loads(line.decode("utf-8"))
        except ValueError as exc:  # (not UTF-8, or not JSON)
            raise self.history_fault(number, f"is not valid JSON ({type(exc).__name__}: {exc})") from None
        except RecursionError:
            raise self.history_fault(number, "is not valid JSON (nested too deeply)") from None
        if not isinstance(record, dict) or record.get("epoch") != number:
            raise self.history_fault(number, f"is not the record of epoch {number}")
        return record

    def history_fault(self, number: int, fault: str) -> FileFormatError:
        """The error naming the history's line `number` (one of the checkpoint's epochs), its `fault`
        and what to do."""
        return FileFormatError(f"{self.history_file}: line {number} {fault}; {_HISTORY_ADVICE}")

    def cut_history(self, n_epochs: int) -> None:
        """Cut the history back to its first `n_epochs` lines (the checkpoint's epochs): the lines
        after them (epochs whose checkpoint was never written, or anything appended since) go,
        whatever they hold; a last line without its newline (lost in a copy or an editor) gets it
        back, or the next epoch's record would be appended to it."""
        history = self._history_bytes()
        lines = history.splitlines()
        if len(lines) > n_epochs or not n_epochs or not history.endswith(b"\n"):
            kept = b"".join(line + b"\n" for line in lines[:n_epochs])
            atomic_write(self.history_file, lambda handle: handle.write(kept))

    def write_metrics(self, summary: dict) -> Path:
        return atomic_write_text(self.metrics, json.dumps(summary, indent=2) + "\n")

    def reopen(self) -> None:
        """Mark a finished run as unfinished (it trains on): its metrics.json, the mark of a finished
        run, goes (a run stopped before its new end would otherwise look finished at the old one)."""
        _check_regular_or_missing(self.metrics)
        if self.metrics.exists():
            self.metrics.unlink()
            fsync_directory(self.path)

    def write_network(self, network) -> str:
        """Write the trained network; the digest of what was written (metrics.json records it, so
        that a network file changed since is told from the run's)."""
        save_network(network, self.network)
        return network_file_digest(self.network)
