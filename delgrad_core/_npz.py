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
import re
import struct
import zipfile
from collections.abc import Mapping

import numpy as np

from delgrad_core._errors import FileFormatError

__all__ = ["MAX_ARRAY_ELEMENTS", "write_npz", "npz_bytes", "json_array", "NpzArchive"]

# Largest array a file may declare (1 GiB of float64); larger ones are refused unread.
MAX_ARRAY_ELEMENTS = 2**27
_ALLOWED_KINDS = "fiubU"  # float, int, uint, bool, unicode (the JSON document); never objects
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
# .npy header: (struct format of its length, text encoding) per format version; numpy's bound on
# its length; the exact text numpy writes, read without evaluating it (other headers go through
# numpy's own reader).
_HEADER_LENGTH = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
_MAX_HEADER_CHARS = 10_000
_WRITTEN_HEADER = re.compile(
    r"\{'descr': '([<>|=]?[a-zA-Z][0-9]*)', 'fortran_order': (True|False), 'shape': \(((?:[0-9]+, )*[0-9]+,?)?\), \} *\n")


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


def _read_exactly(member, n: int) -> bytes:
    data = member.read(n)
    if len(data) != n:
        raise EOFError(f"{n} bytes expected, {len(data)} found")
    return data


def _read_header(member) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) from the start of an .npy member."""
    version = np.lib.format.read_magic(member)
    if version not in _HEADER_LENGTH:
        raise ValueError(f"unsupported .npy format version {version}")
    length_format, encoding = _HEADER_LENGTH[version]
    length_bytes = _read_exactly(member, struct.calcsize(length_format))
    length = struct.unpack(length_format, length_bytes)[0]
    if length > _MAX_HEADER_CHARS:
        raise ValueError(f"header of {length} bytes (at most {_MAX_HEADER_CHARS} are read)")
    text = _read_exactly(member, length)
    offset = np.lib.format.MAGIC_LEN + len(length_bytes) + length
    written = _WRITTEN_HEADER.fullmatch(text.decode(encoding))
    if written is None:
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(io.BytesIO(length_bytes + text))
        return shape, fortran, dtype, offset
    descr, fortran, shape = written.groups()
    try:
        dtype = np.dtype(descr)
    except TypeError as exc:
        raise ValueError(f"unknown dtype {descr!r}") from exc
    return tuple(int(n) for n in (shape or "").replace(",", " ").split()), fortran == "True", dtype, offset


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
                    shape, fortran, dtype, header_length = _read_header(member)
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
            self._headers[name] = (tuple(shape), dtype, fortran, header_length)
        shape, dtype, _, _ = self._headers[name]
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
        _, _, fortran, header_length = self._headers[name]
        data = bytearray(math.prod(declared) * dtype.itemsize)  # the size was checked against the entry
        try:
            with self._zip.open(self._members[name]) as member:
                _read_exactly(member, header_length)
                if member.readinto(data) != len(data) or member.read(1):
                    raise EOFError("the entry's length changed while reading")
            return np.frombuffer(data, dtype=dtype).reshape(declared, order="F" if fortran else "C")
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise self._fail(f"entry {name!r} cannot be read ({exc})") from None

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
