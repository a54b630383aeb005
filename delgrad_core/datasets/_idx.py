"""Reader for IDX files, the format of the original MNIST and Fashion-MNIST files.

An IDX file is, with every integer big-endian:

- 4 bytes of magic number: two zero bytes, a data type code (table `IDX_DATA_TYPES`) and the
  number of dimensions ``d`` (1 to 32 here: numpy 1 holds no more, and numpy 2's 64 are refused
  too, so that a file reads alike everywhere);
- ``d`` unsigned 32-bit sizes;
- the ``prod(sizes)`` items in row-major order, nothing after them.

A file that starts with the gzip magic bytes ``1f 8b`` is decompressed while it is read (whatever
its name). Everything the header declares is checked before the data array is allocated.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._numbers import checked_number, shown_number
from delgrad_core.datasets._errors import DatasetFileError

__all__ = ["IDX_DATA_TYPES", "IDX_MAX_DATA_BYTES", "IDX_MAX_DIMENSIONS", "read_idx"]

#: IDX data type code -> numpy dtype (big-endian, as stored).
IDX_DATA_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: Default bound on the size of the data a file may declare, in bytes (1 GiB; MNIST's largest
#: file holds 47 MB).
IDX_MAX_DATA_BYTES = 1 << 30

#: Most dimensions a file may declare (numpy 1 holds 32; an image file has 3).
IDX_MAX_DIMENSIONS = 32

_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot expand data by more than 1032:1, which bounds what a gzip file can hold.
_DEFLATE_MAX_EXPANSION = 1032
# Largest read asked of a stream at once: GzipFile.readinto decompresses into a temporary bytes
# object of the size asked for, so one whole-file read would hold the data twice.
_READ_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class _IdxHeader:
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read_up_to(stream: BinaryIO, buffer) -> int:
    """Fill `buffer` from `stream`, in chunks, until it is full or the stream ends; the bytes read."""
    view = memoryview(buffer).cast("B")
    filled = 0
    while filled < len(view):
        count = stream.readinto(view[filled:filled + _READ_CHUNK_BYTES])
        if not count:
            break
        filled += count
    return filled


def _read_header(stream: BinaryIO, path: Path) -> _IdxHeader:
    magic = bytearray(4)
    if _read_up_to(stream, magic) < 4:
        raise DatasetFileError(f"{path}: truncated IDX file: it ends inside the 4-byte magic number")
    if magic[:2] != b"\x00\x00":
        raise DatasetFileError(
            f"{path}: not an IDX file: magic number 0x{magic.hex()} does not start with two zero bytes"
        )
    code, n_dims = magic[2], magic[3]
    if code not in IDX_DATA_TYPES:
        known = ", ".join(f"0x{c:02x} ({t.name})" for c, t in IDX_DATA_TYPES.items())
        raise DatasetFileError(f"{path}: unsupported IDX data type code 0x{code:02x}; IDX defines {known}")
    if not 1 <= n_dims <= IDX_MAX_DIMENSIONS:
        raise DatasetFileError(f"{path}: IDX magic number declares {n_dims} dimensions; a file has 1 to "
                               f"{IDX_MAX_DIMENSIONS}")
    sizes = bytearray(4 * n_dims)
    if _read_up_to(stream, sizes) < len(sizes):
        raise DatasetFileError(
            f"{path}: truncated IDX file: it ends inside the sizes of its {n_dims} dimensions"
        )
    shape = struct.unpack(f">{n_dims}I", sizes)  # (unsigned: 0xFFFFFFFF is 4294967295 images, not -1)
    return _IdxHeader(IDX_DATA_TYPES[code], shape)


def _check_declared_size(header: _IdxHeader, path: Path, max_data_bytes: int,
                         file_bytes: int, compressed: bool) -> None:
    """Reject data sizes over the bound or impossible for a file of `file_bytes` bytes."""
    declared = f"shape {header.shape} of {header.dtype.name} ({shown_number(header.data_bytes)} bytes of data)"
    if header.data_bytes > max_data_bytes:
        raise DatasetFileError(
            f"{path}: IDX header declares {declared}, more than the limit of {max_data_bytes} bytes"
        )
    if compressed:
        most = file_bytes * _DEFLATE_MAX_EXPANSION
        if header.header_bytes + header.data_bytes > most:
            raise DatasetFileError(
                f"{path}: IDX header declares {declared}, but a gzip file of {file_bytes} bytes "
                f"decompresses to at most {most} bytes (truncated or corrupt file)"
            )
        return
    held = file_bytes - header.header_bytes
    if held < header.data_bytes:
        raise DatasetFileError(f"{path}: truncated IDX file: header declares {declared}, the file holds {held}")
    if held > header.data_bytes:
        raise DatasetFileError(
            f"{path}: {held - header.data_bytes} bytes of trailing data after the {declared} the header declares"
        )


def _read_data(stream: BinaryIO, header: _IdxHeader, path: Path) -> np.ndarray:
    buffer = np.empty(header.data_bytes, dtype=np.uint8)
    filled = _read_up_to(stream, buffer)
    if filled < header.data_bytes:
        raise DatasetFileError(
            f"{path}: truncated IDX file: header declares {header.data_bytes} bytes of data, "
            f"the file holds {filled}"
        )
    if stream.read(1):
        raise DatasetFileError(f"{path}: trailing data after the {header.data_bytes} bytes the IDX header declares")
    try:
        data = buffer.view(header.dtype).reshape(header.shape)
    except ValueError as error:  # (no data, but sizes beside a 0 that numpy cannot index)
        raise DatasetFileError(f"{path}: IDX header declares shape {header.shape}, which numpy cannot hold: "
                               f"{error}") from None
    if header.dtype.byteorder == ">":  # multi-byte items on a little-endian machine
        data = data.byteswap(inplace=True).view(header.dtype.newbyteorder("="))
    return data


def read_idx(path: str | os.PathLike, *, max_data_bytes: int = IDX_MAX_DATA_BYTES) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into a numpy array.

    Parameters
    ----------
    path : str or path-like
    max_data_bytes : int
        Largest data size, in bytes, a file may declare; larger ones are rejected unread.

    Returns
    -------
    ndarray
        Shape and type as the header declares, in native byte order (uint8 for MNIST files).

    Raises
    ------
    DatasetFileError
        Wrong magic number, unsupported data type code, more than 32 dimensions, a shape numpy
        cannot hold, declared size over `max_data_bytes`, truncated file, trailing data or corrupt
        gzip data; the message names the file.
    InvalidValueError
        `max_data_bytes` not an integer >= 1, or `path` not a regular file (a folder, a FIFO).
    FileNotFoundError
        If `path` does not exist.
    OSError
        If the file cannot be read; the message names the file.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidValueError(f"path: expected the path of an IDX file (a str or path-like), got "
                                f"{type(path).__name__}")
    max_data_bytes = checked_number(max_data_bytes, "max_data_bytes", 1, integer=True,
                                    what="an integer number of bytes")
    path = Path(path)
    if path.is_dir():
        raise InvalidValueError(f"path: {path} is a folder, not an IDX file")
    if path.exists() and not path.is_file():  # (opening a FIFO would wait for a writer)
        raise InvalidValueError(f"path: {path} is not a regular file (a FIFO, socket or device)")
    try:
        return _read_file(path, max_data_bytes)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from None


def _read_file(path: Path, max_data_bytes: int) -> np.ndarray:
    """`read_idx` of a path that is checked."""
    with open(path, "rb") as raw:
        file_bytes = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            header = _read_header(raw, path)
            _check_declared_size(header, path, max_data_bytes, file_bytes, compressed=False)
            return _read_data(raw, header, path)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                header = _read_header(stream, path)
                _check_declared_size(header, path, max_data_bytes, file_bytes, compressed=True)
                try:
                    return _read_data(stream, header, path)
                except DatasetFileError:  # (damaged data can decompress to more: the CRC at the end says so)
                    while stream.read(1 << 20):
                        pass
                    raise
        except (gzip.BadGzipFile, EOFError, zlib.error) as error:
            raise DatasetFileError(f"{path}: corrupt gzip data: {error}") from error
