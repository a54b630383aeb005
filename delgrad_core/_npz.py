"""The one container format of delgrad: an ``.npz`` archive of ``.npy`` arrays plus JSON.

Writing is deterministic (sorted members, fixed timestamps, no compression), so equal content
gives equal bytes on every machine: request and result bytes can be compared and hashed.
Reading never unpickles and never trusts a declared size: every member's ``.npy`` header
(dtype, shape) is read and checked against the member's stored length and against
`MAX_ARRAY_ELEMENTS` before any array is allocated.  A JSON document travels as a 0-d unicode
array under a key chosen by the caller.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Mapping

import numpy as np

from delgrad_core._errors import FileFormatError

__all__ = ["MAX_ARRAY_ELEMENTS", "write_npz", "npz_bytes", "json_array", "NpzArchive"]

# Largest array a file may declare (1 GiB of float64); larger ones are refused unread.
MAX_ARRAY_ELEMENTS = 2**27
_ALLOWED_KINDS = "fiubU"  # float, int, uint, bool, unicode (the JSON document); never objects
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def write_npz(handle, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` (name -> array) to the binary file object `handle`, deterministically."""
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            array = np.asarray(arrays[name])
            if not array.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
                array = np.ascontiguousarray(array)
            if array.dtype.kind not in _ALLOWED_KINDS:
                raise TypeError(f"{name}: arrays of dtype {array.dtype} are not written (no pickle)")
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE)
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """`write_npz` into memory."""
    buffer = io.BytesIO()
    write_npz(buffer, arrays)
    return buffer.getvalue()


def json_array(document) -> np.ndarray:
    """A JSON document as the 0-d unicode array stored in an archive (sorted keys, no NaN)."""
    return np.array(json.dumps(document, sort_keys=True, allow_nan=False))


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return getattr(source, "name", None) or f"<{type(source).__name__}>"


def _read_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return reader(member)


class NpzArchive:
    """Read access to an archive from a path, bytes or a binary file object.

    Members are checked lazily but always before allocation: `shape(name)` reads only the
    header; `array(name)` checks dtype, size and stored length, then loads.  Every problem is a
    `FileFormatError` naming the source and the member.  Use as a context manager.
    """

    def __init__(self, source, *, what: str = "file"):
        self.what = what
        self.source = _describe(source)
        if isinstance(source, (bytes, bytearray, memoryview)):
            source = io.BytesIO(bytes(source))
        try:
            self._zip = zipfile.ZipFile(source)
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise FileFormatError(f"{self.source}: not a readable {what} (not an npz archive: {exc})") from None
        self._members = {}
        for info in self._zip.infolist():
            if info.filename.endswith(".npy"):
                self._members[info.filename[:-4]] = info
        self._headers: dict[str, tuple] = {}

    def __enter__(self) -> "NpzArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    @property
    def names(self) -> list[str]:
        return sorted(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self._members

    def _fail(self, message: str) -> FileFormatError:
        return FileFormatError(f"{self.source}: {message}")

    def header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        """(shape, dtype) of member `name`, read from its header only."""
        if name not in self._members:
            raise self._fail(f"not a valid {self.what}: the entry {name!r} is missing")
        if name not in self._headers:
            info = self._members[name]
            try:
                with self._zip.open(info) as member:
                    shape, fortran, dtype = _read_header(member)
                    header_length = member.tell()
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                raise self._fail(f"entry {name!r} has a corrupt header ({exc})") from None
            if dtype.kind not in _ALLOWED_KINDS or dtype.hasobject:
                raise self._fail(f"entry {name!r} has dtype {dtype}, which delgrad never reads")
            n_elements = math.prod(shape)
            if n_elements > MAX_ARRAY_ELEMENTS:
                raise self._fail(
                    f"entry {name!r} declares shape {shape} ({n_elements} elements; at most "
                    f"{MAX_ARRAY_ELEMENTS} are read)"
                )
            if info.file_size != header_length + n_elements * dtype.itemsize:
                raise self._fail(
                    f"entry {name!r} is truncated or padded: shape {shape} of {dtype} needs "
                    f"{n_elements * dtype.itemsize} data bytes, the entry holds {info.file_size - header_length}"
                )
            self._headers[name] = (tuple(shape), dtype, fortran)
        shape, dtype, _ = self._headers[name]
        return shape, dtype

    def shape(self, name: str) -> tuple[int, ...]:
        return self.header(name)[0]

    def array(self, name: str, *, shape: tuple[int, ...] | None = None, kind: str | None = None) -> np.ndarray:
        """Load member `name` after checking its header (and `shape` / dtype `kind` if given)."""
        declared, dtype = self.header(name)
        if shape is not None and declared != tuple(shape):
            raise self._fail(f"entry {name!r} has shape {declared}, expected {tuple(shape)}")
        if kind is not None and dtype.kind not in kind:
            raise self._fail(f"entry {name!r} has dtype {dtype}, expected kind {kind!r}")
        try:
            with self._zip.open(self._members[name]) as member:
                array = np.lib.format.read_array(member, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise self._fail(f"entry {name!r} cannot be read ({exc})") from None
        return array

    def json(self, name: str) -> dict:
        """The JSON document stored under `name` (a 0-d unicode array)."""
        text = self.array(name, shape=(), kind="U")
        try:
            document = json.loads(str(text))
        except json.JSONDecodeError as exc:
            raise self._fail(f"entry {name!r} is not valid JSON ({exc})") from None
        if not isinstance(document, dict):
            raise self._fail(f"entry {name!r} is not a JSON object")
        return document
