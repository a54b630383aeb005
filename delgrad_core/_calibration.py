"""The result of `Backend.calibrate`: JSON values plus named arrays, cacheable, never pickled.

A calibration holds what a substrate needs to run networks as intended (e.g. per-neuron analog
settings found by measurement).  It round-trips through bytes and files in delgrad's npz + JSON
format, and has a content digest so that execution requests can refer to it cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from delgrad_core._atomic import atomic_write
from delgrad_core._errors import FileFormatError, InvalidValueError
from delgrad_core._ir import immutable_copy
from delgrad_core._npz import NpzArchive, archive_of_bytes, hash_arrays, json_array, npz_bytes, write_npz

__all__ = ["Calibration", "calibration_key"]

_FORMAT = "delgrad-calibration"
_VERSION = 1
_META_KEY = "calibration.json"
_DIGEST_KEY = "calibration.digest"  # (of the content as written: an entry changed since is refused)
_READ_ONLY = ("a Calibration is read-only (its digest names its content); make a changed one with "
              "dataclasses.replace(calibration, values=..., arrays=...)")


def _refuse(self, *args, **kwargs):
    raise InvalidValueError(f"Calibration.{getattr(self, '_field', 'values')}: {_READ_ONLY}")


def _filled_once(base):
    """`base.__init__` for a new, empty container only (as `dataclasses.asdict` makes copies);
    called again on a filled one, it would change it."""
    def init(self, *args, **kwargs):
        if self:
            _refuse(self)
        base.__init__(self, *args, **kwargs)
    return init


class _ReadOnlyDict(dict):
    """A dict that refuses changes (still a dict, so JSON and equality with dicts work)."""

    __slots__ = ("_field",)
    __init__ = _filled_once(dict)
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):  # (copy and pickle would fill the copy item by item)
        return _read_only, (dict(self), self._field)


class _ReadOnlyList(list):
    """A list that refuses changes."""

    __slots__ = ("_field",)
    __init__ = _filled_once(list)
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = extend = insert = pop = remove = clear = sort = \
        reverse = _refuse

    def __reduce__(self):
        return _read_only, (list(self), self._field)


def _read_only(value, field_name: str):
    """`value` (JSON types or arrays) with every dict and list in it made read-only."""
    if isinstance(value, dict):
        frozen = _ReadOnlyDict({key: _read_only(item, field_name) for key, item in value.items()})
    elif isinstance(value, list):
        frozen = _ReadOnlyList([_read_only(item, field_name) for item in value])
    else:
        return value
    frozen._field = field_name
    return frozen


def _frozen_array(name: str, value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise InvalidValueError(f"Calibration.arrays[{name!r}]: expected numbers or bools, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidValueError(f"Calibration.arrays[{name!r}]: contains NaN or inf")
    return immutable_copy(array)  # (so the calibration cannot change under its digest)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Calibration of one backend.

    A calibration cannot change (its digest names its content): its values and arrays refuse
    changes; `dataclasses.replace` makes a changed copy.

    Parameters
    ----------
    backend : str
        Name of the backend that made it (and the only one that accepts it).
    values : dict
        JSON values (numbers, strings, bools, None, lists, dicts); stored read-only.
    cache_key : str
        What the calibration depends on, hashed (equal keys: the same calibration applies).
    arrays : dict of str -> array
        Named numeric arrays (e.g. per-neuron settings); stored read-only.
    """

    backend: str
    values: dict = field(default_factory=dict)
    cache_key: str = ""
    arrays: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.backend, str) or not self.backend:
            raise InvalidValueError(f"Calibration.backend: expected a non-empty string, got {self.backend!r}")
        if not isinstance(self.values, dict):
            raise InvalidValueError(f"Calibration.values: expected a dict, got {type(self.values).__name__}")
        if not isinstance(self.cache_key, str):
            raise InvalidValueError(f"Calibration.cache_key: expected a string, got {self.cache_key!r}")
        if not isinstance(self.arrays, dict) or not all(isinstance(k, str) and k for k in self.arrays):
            raise InvalidValueError("Calibration.arrays: expected a dict of name -> array")
        try:
            # normalise (tuples -> lists) so that equality survives a round trip
            values = json.loads(json.dumps(self.values, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidValueError(f"Calibration.values: not JSON-serialisable ({exc})") from None
        object.__setattr__(self, "values", _read_only(values, "values"))
        object.__setattr__(self, "arrays", _read_only({k: _frozen_array(k, v) for k, v in sorted(self.arrays.items())},
                                                      "arrays"))

    def __reduce__(self):  # (pickle and deepcopy build it anew: read-only again, its digest computed again)
        return Calibration, (self.backend, dict(self.values), self.cache_key, dict(self.arrays))

    def _document(self) -> dict:
        return {"format": _FORMAT, "version": _VERSION, "backend": self.backend, "cache_key": self.cache_key,
                "values": self.values}

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the content; equal calibrations have equal digests on every machine."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            hasher = hashlib.sha256(json.dumps(self._document(), sort_keys=True).encode())
            hash_arrays(hasher, self.arrays)
            cached = hasher.hexdigest()
            object.__setattr__(self, "_digest", cached)
        return cached

    def __eq__(self, other) -> bool:
        return isinstance(other, Calibration) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def archive_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The arrays and the JSON document, keyed for an archive."""
        arrays = {f"{prefix}calibration.arrays.{name}": array for name, array in self.arrays.items()}
        arrays[prefix + _META_KEY] = json_array(self._document())
        arrays[prefix + _DIGEST_KEY] = json_array({"sha256": self.digest})
        return arrays

    @classmethod
    def from_archive(cls, archive: NpzArchive, prefix: str = "") -> "Calibration":
        """Read a calibration stored under `prefix` in `archive`."""
        document = archive.json(prefix + _META_KEY)
        if document.get("format") != _FORMAT or document.get("version") != _VERSION:
            raise FileFormatError(f"{archive.source}: not a delgrad calibration (format "
                                  f"{document.get('format')!r} version {document.get('version')!r})")
        array_prefix = f"{prefix}calibration.arrays."
        arrays = {name[len(array_prefix):]: archive.array(name)
                  for name in archive.names if name.startswith(array_prefix)}
        try:
            calibration = cls(document.get("backend"), document.get("values"), document.get("cache_key"), arrays)
        except InvalidValueError as exc:
            raise FileFormatError(f"{archive.source}: invalid calibration: {exc}") from None
        if prefix + _DIGEST_KEY in archive.names:  # (none in a file from before digests were kept)
            written = archive.json(prefix + _DIGEST_KEY).get("sha256")
            if written != calibration.digest:
                raise FileFormatError(f"{archive.source}: the calibration is not the one written there (its content "
                                      f"digest {str(written)[:12]}... was recorded, the content now has "
                                      f"{calibration.digest[:12]}...): changed since, e.g. edited by hand")
        return calibration

    def to_bytes(self) -> bytes:
        return npz_bytes(self.archive_arrays())

    @classmethod
    def from_bytes(cls, data) -> "Calibration":
        with archive_of_bytes(data, "delgrad calibration") as archive:
            return cls.from_archive(archive)

    def save(self, path: str | os.PathLike) -> Path:
        """Write to `path` atomically."""
        arrays = self.archive_arrays()
        return atomic_write(path, lambda handle: write_npz(handle, arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Calibration":
        with NpzArchive(path, what="delgrad calibration") as archive:
            return cls.from_archive(archive)


def _key_value(value):
    """A value JSON cannot write: a numpy number as the Python number it equals (an int, not the
    text "1"), a numpy array by its values (its printed text is abbreviated in the middle, so two
    arrays could share a key), anything else by its text."""
    if isinstance(value, np.generic) and isinstance(value.item(), (bool, int, float)):
        return value.item()
    return value.tolist() if isinstance(value, np.ndarray) else str(value)


def _typed_key(key) -> str:
    """A table's `key` as text: a string as it is (unless it begins with "<", the mark of the
    others), anything else with its type ({1: 2} as {"<int> 1": 2}: JSON writes 1 as "1", and
    {1: 2} shared a key with {"1": 2}), a numpy number as the Python number it equals."""
    if isinstance(key, str):
        return f"<str> {key}" if key.startswith("<") else key
    if isinstance(key, np.generic) and isinstance(key.item(), (bool, int, float)):
        key = key.item()
    return f"<{type(key).__name__}> {key}"


def _typed_keys(value):
    """`value` with the keys of its tables as `_typed_key` writes them; everything else as it is."""
    if isinstance(value, dict):
        return {_typed_key(key): _typed_keys(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_typed_keys(item) for item in value]
    return value


def calibration_key(backend_name: str, **depends_on) -> str:
    """``<backend>-<hash>``: a cache key from everything a calibration depends on (JSON values;
    numpy numbers as the numbers they equal, numpy arrays by their values, other objects by
    their text, which must identify them; table keys other than strings with their type)."""
    if not isinstance(backend_name, str):
        raise InvalidValueError(f"backend_name: expected the backend's name (a str), got {type(backend_name).__name__}")
    payload = json.dumps({"backend": backend_name, **_typed_keys(depends_on)}, sort_keys=True, default=_key_value)
    return f"{backend_name}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"
