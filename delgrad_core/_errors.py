"""One exception tree for everything a user or a plugin can run into.

Every error delgrad raises on purpose is a `DelgradError`; its `retryable` attribute says
whether trying the same thing again can help (a device that is busy or restarting) or not (a
network the backend cannot run).  The command line prints any `DelgradError` as one line and
exits non-zero.  Errors about invalid values also derive from `ValueError` (and lookups from
`LookupError`), so code written against the builtin types keeps working.

    DelgradError
    ├── InvalidValueError (ValueError)         bad argument, setting or array; names the field
    │   ├── UnsupportedNetworkError            the backend lacks a capability; names it
    │   └── UnknownOptionError                 an option (parameter) a factory does not take; names them
    ├── FileFormatError (ValueError)           a file that is not what it claims to be
    ├── RunFolderError                         a run folder that cannot be used: holds another run, ...
    │   └── FolderInUseError                   ... or is in use by another process (retryable)
    ├── BackendError                           a backend failed while working
    │   ├── BackendUnavailable                 cannot reach / start the substrate (retryable)
    │   ├── ExecutionTimeout                   no answer in time (retryable)
    │   ├── CalibrationError                   calibration failed or does not fit
    │   └── InvalidResultError                 the backend returned something malformed
    └── PluginError                            a plugin could not be loaded or used
        ├── PluginLoadError
        ├── DuplicateNameError
        └── UnknownNameError (LookupError, ValueError)
"""

from __future__ import annotations

import sys

__all__ = [
    "DelgradError",
    "InvalidValueError",
    "UnsupportedNetworkError",
    "UnknownOptionError",
    "FileFormatError",
    "RunFolderError",
    "FolderInUseError",
    "BackendError",
    "BackendUnavailable",
    "ExecutionTimeout",
    "CalibrationError",
    "InvalidResultError",
    "PluginError",
    "PluginLoadError",
    "DuplicateNameError",
    "UnknownNameError",
    "naming_the_plugins_seen",
    "described",
    "named_for",
]


class DelgradError(Exception):
    """Base of every error delgrad raises on purpose.

    `retryable` is True when repeating the same call later can succeed.
    """

    retryable: bool = False


class InvalidValueError(DelgradError, ValueError):
    """An argument, setting or array is invalid; the message names the field."""


class UnsupportedNetworkError(InvalidValueError):
    """The network needs a capability the backend does not have.

    `capability` names the missing capability (a field of `Capabilities`, or "resources").
    """

    def __init__(self, message: str, *, capability: str):
        super().__init__(message)
        self.capability = capability

    def __reduce__(self):  # (keyword arguments: pickling, e.g. to a sweep's worker processes)
        return _rebuild, (type(self), str(self), {"capability": self.capability})


class UnknownOptionError(InvalidValueError):
    """Options (or parameters) that a backend, dataset or other factory does not take.

    `names` holds the unknown names, as given.
    """

    def __init__(self, message: str, *, names):
        super().__init__(message)
        self.names = tuple(names)

    def __reduce__(self):
        return _rebuild, (type(self), str(self), {"names": self.names})


class FileFormatError(DelgradError, ValueError):
    """A file (network, checkpoint, request, result, dataset) is malformed or inconsistent."""


class RunFolderError(DelgradError):
    """A run folder cannot be used: it holds another run, is not a folder, or is in use."""


class FolderInUseError(RunFolderError):
    """A run (or sweep) folder is locked by another process, or by a Trainer of this one not
    closed yet; trying again once that has finished can help."""

    retryable = True


class BackendError(DelgradError):
    """A backend failed while calibrating or executing."""


class BackendUnavailable(BackendError):
    """The substrate cannot be reached or started (service down, device busy, token refused)."""

    retryable = True

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable

    def __reduce__(self):
        return _rebuild, (type(self), str(self), {"retryable": self.retryable})


class ExecutionTimeout(BackendError):
    """The substrate did not answer in time."""

    retryable = True


class CalibrationError(BackendError):
    """Calibration failed, or a calibration does not fit this backend."""


class InvalidResultError(BackendError):
    """A backend returned a result that breaks the contract (shapes, NaN, acausal times)."""


class PluginError(DelgradError):
    """A plugin could not be loaded or used."""


class PluginLoadError(PluginError):
    """A plugin failed to load (raised instead of warning in strict mode)."""


class DuplicateNameError(PluginError):
    """Two plugins register the same name in one registry."""


class UnknownNameError(PluginError, LookupError, ValueError):
    """Nothing is registered under the requested name (also a `ValueError`: an invalid name).

    The message names the Python whose plugins were seen, and the plugins that failed to load
    (`failures`: one line each), the likely cause (see `naming_the_plugins_seen`).
    """

    def __init__(self, message: str, *, failures=()):
        super().__init__(naming_the_plugins_seen(message, failures))


def naming_the_plugins_seen(message: str, failures=()) -> str:
    """`message` (a name nothing registers) with the Python whose plugins were seen and the
    `failures` (one line per plugin that failed to load) after it; unchanged if it names that
    Python already (so that it is said once)."""
    if sys.executable in message:
        return message
    text = f"{message}; the plugins seen are those installed for {sys.executable}"
    if not failures:
        return text
    count = f"{len(failures)} plugin{'s' if len(failures) > 1 else ''}"
    return f"{text}; {count} failed to load (the likely cause):" + "".join(f"\n- {line}" for line in failures)


def described(error: BaseException) -> str:
    """`error` in one line: delgrad's own message, which says what happened, or for any other
    exception its type and message (Python's "<exception str() failed>" where that fails)."""
    try:
        text = str(error)
    except Exception:  # (a plugin's exception whose __str__ raises)
        text = "<exception str() failed>"
    if isinstance(error, DelgradError):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__  # (not "MemoryError: ")


def named_for(error: InvalidValueError, owner: str, context: str) -> InvalidValueError:
    """The error to raise for `error`, raised by `owner`'s own code (e.g. "backend 'x'"): a plain
    `InvalidValueError` gets "<owner><context>: " in front (its cause kept) unless its message
    names the owner already (an `UnknownOptionError` keeps its class and names); other subclasses
    (e.g. `UnsupportedNetworkError`) stay as they are."""
    if type(error) not in (InvalidValueError, UnknownOptionError) or str(error).startswith(owner):
        return error
    named = type(error)(f"{owner}{context}: {error}", **({"names": error.names} if isinstance(error, UnknownOptionError)
                                                        else {}))
    named.__cause__ = error
    return named


def _rebuild(cls, message: str, keywords: dict):
    """An error of `cls` from its message and keyword arguments (what `__reduce__` gives)."""
    return cls(message, **keywords)
