"""The one container format of delgrad: an ``.npz`` archive of ``.npy`` arrays plus JSON.

Writing is deterministic (sorted members, fixed timestamps, no compression), so equal content
gives equal bytes on every machine: request and result bytes can be compared and hashed.
Reading never unpickles and never trusts a declared size: every member's ``.npy`` header
(dtype, shape) is read and checked against the member's stored length and against
`MAX_ARRAY_ELEMENTS` before any array is allocated.  A JSON document travels as a 0-d unicode
array under a key chosen by the caller.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np

from delgrad_core._errors import FileFormatError, InvalidValueError

__all__ = ["MAX_ARRAY_ELEMENTS", "write_npz", "npz_bytes", "json_array", "NpzArchive", "archive_of_bytes",
           "describe_source", "hash_arrays"]

try:
    from lzma import LZMAError as _LZMAError
except ImportError:  # a Python without lzma: zipfile cannot decompress such members either
    _LZMAError = zlib.error

# What zipfile and its decompressors raise for corrupt or unsupported members: encrypted entries
# (RuntimeError), unsupported compression or flags (NotImplementedError), corrupt deflate or lzma
# streams (zlib.error, lzma.LZMAError; bz2 raises OSError), bad records (BadZipFile, struct.error).
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError, RuntimeError,
               zlib.error, _LZMAError)

# Largest array a file may declare (1 GiB of float64); larger ones are refused unread.
MAX_ARRAY_ELEMENTS = 2**27
_ALLOWED_KINDS = "fiubU"  # float, int, uint, bool, unicode (the JSON document); never objects
# Zip records (PKWARE APPNOTE 4.3.7, 4.3.12, 4.3.16) of uncompressed members; times fixed to
# 1980-01-01 00:00 (DOS date 33, time 0) so that equal content gives equal bytes.
_LOCAL_HEADER, _LOCAL_SIGNATURE = "<IHHHHHIIIHH", 0x04034B50
_CENTRAL_HEADER, _CENTRAL_SIGNATURE = "<IHHHHHHIIIHHHHHII", 0x02014B50
_END_OF_DIRECTORY, _END_SIGNATURE = "<IHHHHIIH", 0x06054B50
_ZIP_VERSION, _MADE_ON_UNIX, _DOS_DATE = 20, 3 << 8, 33
_FILE_ATTRIBUTES = 0o100644 << 16
# .npy header: (struct format of its length, text encoding) per format version; numpy's bound on
# its length; the exact text numpy writes, read without evaluating it (other headers go through
# numpy's own reader).
_HEADER_LENGTH = {(1, 0): ("<H", "latin1"), (2, 0): ("<I", "latin1"), (3, 0): ("<I", "utf8")}
_MAX_HEADER_CHARS = 10_000
_MAGIC_PREFIX, _MAGIC_LENGTH = b"\x93NUMPY", 8  # then the format version's two bytes
_MAX_HEADER_BYTES = _MAGIC_LENGTH + 4 + _MAX_HEADER_CHARS
_WRITTEN_HEADER = re.compile(
    r"\{'descr': '([<>|=]?[a-zA-Z][0-9]*)', 'fortran_order': (True|False), "
    r"'shape': \(((?:[0-9]+, )*[0-9]+,?)?\), \} *\n")


def _npy(array: np.ndarray) -> bytes:
    """`array` (C-contiguous) in the .npy format (version 1.0 header, C order)."""
    return _npy_header(np.lib.format.dtype_to_descr(array.dtype), array.shape) + array.tobytes()


@functools.lru_cache(maxsize=256)
def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """numpy's version 1.0 header of a C-ordered array (made once per dtype and shape)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return header.getvalue()


def write_npz(handle, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` (name -> array) to the binary file object `handle`, deterministically: an
    uncompressed zip archive (sorted members, fixed timestamps, no extra fields) that numpy's
    and Python's readers read."""
    offset, central = 0, []
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        if not array.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
            array = np.ascontiguousarray(array)
        if array.dtype.kind not in _ALLOWED_KINDS or array.dtype.hasobject:
            raise TypeError(f"{name}: arrays of dtype {array.dtype} are not written (no pickle)")
        data, filename = _npy(array), f"{name}.npy".encode()
        fields = (_ZIP_VERSION, 0, 0, 0, _DOS_DATE, zlib.crc32(data), len(data), len(data), len(filename))
        handle.write(struct.pack(_LOCAL_HEADER, _LOCAL_SIGNATURE, *fields, 0) + filename)
        handle.write(data)
        central.append(struct.pack(_CENTRAL_HEADER, _CENTRAL_SIGNATURE, _ZIP_VERSION | _MADE_ON_UNIX, *fields,
                                   0, 0, 0, 0, _FILE_ATTRIBUTES, offset) + filename)
        offset += struct.calcsize(_LOCAL_HEADER) + len(filename) + len(data)
    directory = b"".join(central)
    handle.write(directory)
    handle.write(struct.pack(_END_OF_DIRECTORY, _END_SIGNATURE, 0, 0, len(central), len(central), len(directory),
                             offset, 0))


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """`write_npz` into memory."""
    buffer = io.BytesIO()
    write_npz(buffer, arrays)
    return buffer.getvalue()


def json_array(document) -> np.ndarray:
    """A JSON document as the 0-d unicode array stored in an archive (sorted keys, no NaN)."""
    return np.array(json.dumps(document, sort_keys=True, allow_nan=False))


def describe_source(source) -> str:
    """How messages name a path, bytes or a file object."""
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
    magic = _read_exactly(member, _MAGIC_LENGTH)
    if magic[:-2] != _MAGIC_PREFIX:
        raise ValueError(f"not an .npy entry (it starts with {magic[:-2]!r})")
    version = (magic[-2], magic[-1])
    if version not in _HEADER_LENGTH:
        raise ValueError(f"unsupported .npy format version {version}")
    length_format, encoding = _HEADER_LENGTH[version]
    length_bytes = _read_exactly(member, struct.calcsize(length_format))
    length = struct.unpack(length_format, length_bytes)[0]
    if length > _MAX_HEADER_CHARS:
        raise ValueError(f"header of {length} bytes (at most {_MAX_HEADER_CHARS} are read)")
    text = _read_exactly(member, length)
    parsed = _written_header(text, encoding)
    if parsed is None:  # (another layout, e.g. another writer's or a Fortran-ordered array's)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        try:
            parsed = reader(io.BytesIO(length_bytes + text))
        except ValueError:  # (numpy's text may show its parser's objects: "<ast.Call object at 0x7f...>")
            shown = text[:80].decode(encoding, errors="replace")
            raise ValueError(f"not a .npy header numpy reads: {shown!r}{' ...' if len(text) > 80 else ''}") from None
    shape, fortran, dtype = parsed
    return shape, fortran, dtype, _MAGIC_LENGTH + len(length_bytes) + length


@functools.lru_cache(maxsize=256)
def _written_header(text: bytes, encoding: str) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """(shape, fortran_order, dtype) of a header in the exact layout numpy writes, or None for
    another layout (parsed once per header met: the headers of a stream of jobs repeat)."""
    written = _WRITTEN_HEADER.fullmatch(text.decode(encoding))
    if written is None:
        return None
    descr, fortran, shape = written.groups()
    try:
        dtype = np.dtype(descr)
    except TypeError as exc:
        raise ValueError(f"unknown dtype {descr!r}") from exc
    return tuple(int(n) for n in (shape or "").replace(",", " ").split()), fortran == "True", dtype


def _stored_members(buffer: memoryview) -> dict[str, memoryview] | None:
    """Name -> data of the members of an uncompressed zip archive in memory, CRC-checked, or
    None if the archive uses anything else (compression, zip64, encryption, several disks): then
    Python's zipfile reads it."""
    size = len(buffer)
    tail_start = max(0, size - 65_557)  # end record (22 bytes) + the longest comment
    end = bytes(buffer[tail_start:]).rfind(struct.pack("<I", _END_SIGNATURE))
    if end < 0 or tail_start + end + 22 > size:
        return None
    _, disk, directory_disk, on_disk, entries, directory_size, directory_offset, _ = struct.unpack_from(
        _END_OF_DIRECTORY, buffer, tail_start + end)
    if disk or directory_disk or on_disk != entries or directory_offset + directory_size > size:
        return None
    members, position = {}, directory_offset
    central_size, local_size = struct.calcsize(_CENTRAL_HEADER), struct.calcsize(_LOCAL_HEADER)
    for _ in range(entries):
        if position + central_size > size:
            return None
        (signature, _, _, flags, method, _, _, crc, packed, unpacked, name_length, extra_length, comment_length,
         _, _, _, local) = struct.unpack_from(_CENTRAL_HEADER, buffer, position)
        if signature != _CENTRAL_SIGNATURE or method != 0 or flags & 1 or packed != unpacked \
                or 0xFFFFFFFF in (packed, local) or local + local_size > size:
            return None
        name = bytes(buffer[position + central_size:position + central_size + name_length]).decode("utf-8", "replace")
        position += central_size + name_length + extra_length + comment_length
        local_fields = struct.unpack_from(_LOCAL_HEADER, buffer, local)
        start = local + local_size + local_fields[-2] + local_fields[-1]
        if local_fields[0] != _LOCAL_SIGNATURE or start + unpacked > size:
            return None
        data = buffer[start:start + unpacked]
        if zlib.crc32(data) != crc:
            raise zipfile.BadZipFile(f"bad CRC-32 for entry {name!r}")
        members[name] = data
    return members


class NpzArchive:
    """Read access to an archive from a path, bytes or a binary file object.

    Members are checked lazily but always before allocation: `shape(name)` reads only the
    header; `array(name)` checks dtype, size and stored length, then loads.  Every problem is a
    `FileFormatError` naming the source and the member.  Use as a context manager.  Uncompressed
    archives (what delgrad writes) are read straight from memory; others through zipfile.
    """

    def __init__(self, source, *, what: str = "file", stored_only: bool = False):
        """`stored_only`: refuse anything but an uncompressed archive (what delgrad writes), e.g.
        for what a peer sends: a compressed member can expand a small message a thousandfold."""
        self.what = what
        self.source = describe_source(source)
        if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)) \
                and not callable(getattr(source, "read", None)):
            raise InvalidValueError(f"source: expected a path, bytes or a readable binary file of a {what}, got "
                                    f"{type(source).__name__}")
        try:
            if isinstance(source, (str, os.PathLike)):
                # (opened without blocking: opening a named pipe for reading waits for a writer)
                with open(os.open(source, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
                    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # (a device or a pipe never ends)
                        raise ValueError("not a regular file")
                    if not zipfile.is_zipfile(handle):  # (from its end: junk of gigabytes is not read, twice, first)
                        raise zipfile.BadZipFile("File is not a zip file")
                    handle.seek(0)
                    buffer = memoryview(handle.read())
            elif isinstance(source, (bytes, bytearray, memoryview)):
                buffer = memoryview(source).cast("B")
            else:
                data = source.read()
                if not isinstance(data, (bytes, bytearray)):
                    raise InvalidValueError(f"source: expected a binary file of a {what} (opened with 'rb'), got one "
                                            f"whose read() gives {type(data).__name__}")
                buffer = memoryview(data)
            self._stored = _stored_members(buffer)
            self._zip = zipfile.ZipFile(io.BytesIO(buffer)) if self._stored is None else None
            if stored_only and self._zip is not None:
                self._zip.close()
                raise FileFormatError(f"{self.source}: not a {what} as delgrad writes it (an uncompressed zip "
                                      "archive): its members are compressed (or it uses zip64 or encryption)")
        except (FileNotFoundError, InvalidValueError, FileFormatError):
            raise
        except IsADirectoryError:
            raise FileFormatError(f"{self.source}: a folder, not a {what}") from None
        except _ZIP_ERRORS as exc:
            # (an OSError's text may end in the number of the file descriptor it was raised for)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise FileFormatError(f"{self.source}: not a readable {what} (not an npz archive: {reason})") from None
        if self._stored is not None:
            self._members = {name[:-4]: len(data) for name, data in self._stored.items() if name.endswith(".npy")}
        else:
            self._members = {info.filename[:-4]: info.file_size for info in self._zip.infolist()
                             if info.filename.endswith(".npy")}
        self._headers: dict[str, tuple] = {}

    def _open(self, name: str, *, header_only: bool = False):
        """A binary file object over member `name` (or only over the part a header can fill)."""
        if self._stored is not None:
            data = self._stored[f"{name}.npy"]
            return io.BytesIO(data[:_MAX_HEADER_BYTES] if header_only else data)
        return self._zip.open(f"{name}.npy")

    def __enter__(self) -> "NpzArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
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
            stored_size = self._members[name]
            try:
                with self._open(name, header_only=True) as member:
                    shape, fortran, dtype, header_length = _read_header(member)
            except _ZIP_ERRORS as exc:
                raise self._fail(f"entry {name!r} has a corrupt header ({exc})") from None
            if dtype.kind not in _ALLOWED_KINDS or dtype.hasobject:
                raise self._fail(f"entry {name!r} has dtype {dtype}, which delgrad never reads")
            if any(n < 0 for n in shape):
                raise self._fail(f"entry {name!r} declares shape {shape}, with a negative length")
            n_elements = math.prod(shape)
            if n_elements > MAX_ARRAY_ELEMENTS:
                raise self._fail(
                    f"entry {name!r} declares shape {shape} ({n_elements} elements; at most "
                    f"{MAX_ARRAY_ELEMENTS} are read)"
                )
            if stored_size != header_length + n_elements * dtype.itemsize:
                raise self._fail(
                    f"entry {name!r} is truncated or padded: shape {shape} of {dtype} needs "
                    f"{n_elements * dtype.itemsize} data bytes, the entry holds {stored_size - header_length}"
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
        order = "F" if fortran else "C"
        if self._stored is not None:  # a copy, so the caller owns a writable array
            data = self._stored[f"{name}.npy"][header_length:]
            return np.frombuffer(data, dtype=dtype).reshape(declared, order=order).copy(order="K")
        data = bytearray(math.prod(declared) * dtype.itemsize)  # the size was checked against the entry
        try:
            with self._open(name) as member:
                _read_exactly(member, header_length)
                if member.readinto(data) != len(data) or member.read(1):
                    raise EOFError("the entry's length changed while reading")
            return np.frombuffer(data, dtype=dtype).reshape(declared, order=order)
        except _ZIP_ERRORS as exc:
            raise self._fail(f"entry {name!r} cannot be read ({exc})") from None

    def digest(self, prefix: str) -> str:
        """SHA-256 (hex) of the names and stored bytes of the members under `prefix`: equal for
        equal content, as delgrad writes archives deterministically."""
        hasher = hashlib.sha256()
        for name in self.names:
            if name.startswith(prefix):
                hasher.update(f"\n{name}\n".encode())
                if self._stored is not None:
                    hasher.update(self._stored[f"{name}.npy"])
                else:
                    try:
                        with self._open(name) as member:
                            while chunk := member.read(1 << 20):  # (a compressed member may be huge)
                                hasher.update(chunk)
                    except _ZIP_ERRORS as exc:
                        raise self._fail(f"entry {name!r} cannot be read ({exc})") from None
        return hasher.hexdigest()

    def json(self, name: str) -> dict:
        """The JSON document stored under `name` (a 0-d unicode array)."""
        text = self.array(name, shape=(), kind="U")
        try:
            document = json.loads(str(text), parse_constant=_refuse_constant)
        except ValueError as exc:  # (malformed, NaN or infinity, or an integer of more digits than Python converts)
            raise self._fail(f"entry {name!r} is not valid JSON ({exc})") from None
        except RecursionError:
            raise self._fail(f"entry {name!r} is JSON nested too deeply to read") from None
        if not isinstance(document, dict):
            raise self._fail(f"entry {name!r} is not a JSON object")
        return document


def _refuse_constant(constant: str):
    """`json.loads`' hook for NaN and Infinity, which Python reads but JSON has not (and
    `json_array` never writes)."""
    raise ValueError(f"{constant} is not a JSON number")


def archive_of_bytes(data, what: str, *, stored_only: bool = False) -> NpzArchive:
    """The archive in `data` (bytes or a readable binary file) for a `from_bytes`; a str or path
    is refused (`NpzArchive` would read it as a file name)."""
    if isinstance(data, (str, os.PathLike)):
        raise InvalidValueError(f"data: expected the bytes of a {what} (or a readable binary file), got "
                                f"{type(data).__name__}; from_bytes reads no files: pass open(path, 'rb').read()")
    return NpzArchive(data, what=what, stored_only=stored_only)


def hash_arrays(hasher, arrays: dict) -> None:
    """Feed `arrays` to `hasher` (a hashlib object) in name order, little-endian and C-ordered,
    with dtype and shape, so that equal content hashes alike on every machine; -0.0 is fed as
    0.0 (equal values, so equal digests)."""
    for name in sorted(arrays):
        array = np.asarray(arrays[name])
        if array.dtype.kind == "f":
            array = array + 0.0  # -0.0 + 0.0 == +0.0; every other value is unchanged
        canonical = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        hasher.update(f"\n{name}|{canonical.dtype.str}|{canonical.shape}\n".encode())
        hasher.update(canonical.tobytes())
