"""Save and load networks as ``.npz`` archives (see `delgrad_core._npz`) without pickle.

The archive holds a JSON description under ``network.json`` (format version, population names
and sizes, delay kinds) and one float64 array per parameter.  Loading checks the description
against the array headers (shapes are read before any data) and refuses anything inconsistent:
a missing or surplus array, a size that disagrees with an array, an absurd size.  Round trips
are bit for bit.  Networks go to and come from paths, bytes or binary file objects; the same
functions embed a network in execution requests under a key prefix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from delgrad_core._atomic import write_to
from delgrad_core._errors import FileFormatError, InvalidValueError
from delgrad_core._ir import (DelayKind, Layer, Network, NeuronParameters, Population, Projection, check_type,
                              immutable_copy)
from delgrad_core._npz import NpzArchive, json_array, write_npz

__all__ = ["save_network", "load_network", "network_arrays", "network_from_archive", "FORMAT_VERSION",
           "MAX_POPULATION_SIZE"]

FORMAT_VERSION = 1
META_KEY = "network.json"
# Largest population a file may declare (checked before anything is allocated).
MAX_POPULATION_SIZE = 2**22
_NEURON_FIELDS = ("threshold", "tau_m", "tau_s")


def network_arrays(network: Network, prefix: str = "") -> dict[str, np.ndarray]:
    """Every array of `network` plus its JSON description, keyed for an archive."""
    network.validate()
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for index, layer in enumerate(network.layers):
        key = f"{prefix}layers.{index}"
        neuron = layer.population.neuron
        for name in _NEURON_FIELDS:
            arrays[f"{key}.neuron.{name}"] = np.asarray(getattr(neuron, name), dtype=np.float64)
        arrays[f"{key}.weights"] = layer.projection.weights
        if layer.projection.delays is not None:
            arrays[f"{key}.delays"] = layer.projection.delays
        layers.append({
            "population": layer.population.name,
            "size": layer.population.size,
            "projection": layer.projection.name,
            "delay_kind": layer.projection.delay_kind.value,
        })
    arrays[prefix + META_KEY] = json_array({
        "format": "delgrad-network",
        "version": FORMAT_VERSION,
        "input": {"name": network.input.name, "size": network.input.size},
        "layers": layers,
    })
    return arrays


def save_network(network: Network, target) -> Path | None:
    """Write `network` to `target`: a path (written atomically, parents created; returns the
    path) or a writable binary file object (returns None)."""
    arrays = network_arrays(check_type(network, Network, "network"))
    return write_to(target, lambda handle: write_npz(handle, arrays), "network")


def load_network(source, *, stored_only: bool = False) -> Network:
    """Read a network from a path, bytes or a readable binary file object.  `stored_only`:
    refuse a file whose members are compressed (`save_network` never compresses), e.g. for bytes
    a peer sends: a small compressed member can expand a thousandfold."""
    with NpzArchive(source, what="delgrad network file", stored_only=stored_only) as archive:
        return network_from_archive(archive)


def _size(value, field: str, fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_POPULATION_SIZE:
        raise fail(f"{field}: expected an integer in [1, {MAX_POPULATION_SIZE}], got {value!r}")
    return value


def _text(value, field: str, fail) -> str:
    if not isinstance(value, str) or not value:
        raise fail(f"{field}: expected a non-empty string, got {value!r}")
    return value


def network_from_archive(archive: NpzArchive, prefix: str = "", *, read_only: bool = False) -> Network:
    """Rebuild the network stored under `prefix` in `archive`, checking before allocating.  With
    `read_only` its arrays cannot be changed in place (for a snapshot: each part is then
    validated once, not again by every enclosing part)."""

    def load(name: str) -> np.ndarray:
        array = archive.array(name, kind="fiu")
        return immutable_copy(array) if read_only else array

    def fail(message: str) -> FileFormatError:
        return FileFormatError(f"{archive.source}: {message}")

    if prefix + META_KEY not in archive:
        raise fail(f"not a delgrad network file (no {prefix + META_KEY!r} entry)")
    meta = archive.json(prefix + META_KEY)
    if meta.get("format") != "delgrad-network" or meta.get("version") != FORMAT_VERSION:
        raise fail(f"unsupported network format {meta.get('format')!r} version {meta.get('version')!r}"
                   f" (this delgrad reads version {FORMAT_VERSION})")
    entries, source = meta.get("layers"), meta.get("input")
    if not isinstance(source, dict) or not isinstance(entries, list) or not entries:
        raise fail("network.json: needs an 'input' object and a non-empty 'layers' list")
    input_size = _size(source.get("size"), "input.size", fail)
    expected_keys = {prefix + META_KEY}
    plan = []
    n_pre = input_size
    for index, entry in enumerate(entries):
        key = f"{prefix}layers.{index}"
        if not isinstance(entry, dict):
            raise fail(f"layers[{index}]: expected an object")
        size = _size(entry.get("size"), f"layers[{index}].size", fail)
        try:
            kind = DelayKind.parse(entry.get("delay_kind"), f"layers[{index}].delay_kind")
        except ValueError as exc:
            raise fail(str(exc)) from None
        shapes = {f"{key}.weights": (n_pre, size)}
        delay_shape = kind.delay_shape(n_pre, size)
        if delay_shape is not None:
            shapes[f"{key}.delays"] = delay_shape
        for name in _NEURON_FIELDS:
            neuron_key = f"{key}.neuron.{name}"
            if archive.shape(neuron_key) not in ((), (size,)):
                raise fail(f"{neuron_key}: shape {archive.shape(neuron_key)} does not fit population size {size}")
            expected_keys.add(neuron_key)
        for name, shape in shapes.items():
            if archive.shape(name) != shape:
                raise fail(f"{name}: shape {archive.shape(name)} does not match the description "
                           f"(expected {shape} for {n_pre} inputs, {size} neurons, delay kind {kind.value!r})")
        expected_keys.update(shapes)
        plan.append((key, entry, size, kind))
        n_pre = size
    surplus = sorted(name for name in archive.names if name.startswith(prefix) and name not in expected_keys)
    if surplus:
        raise fail(f"entries not described by network.json: {', '.join(surplus)}")

    layers = []
    try:
        for key, entry, size, kind in plan:
            neuron_values = []
            for name in _NEURON_FIELDS:
                value = load(f"{key}.neuron.{name}").astype(np.float64, copy=False)
                neuron_values.append(float(value) if value.ndim == 0 else value)
            delays_key = f"{key}.delays"
            projection = Projection(
                weights=load(f"{key}.weights"),
                delay_kind=kind,
                delays=load(delays_key) if delays_key in archive else None,
                name=_text(entry.get("projection"), f"{key}.projection", fail),
            )
            population = Population(_text(entry.get("population"), f"{key}.population", fail), size,
                                    NeuronParameters(*neuron_values))
            layers.append(Layer(population, projection))
        return Network(Population(_text(source.get("name"), "input.name", fail), input_size), layers)
    except (InvalidValueError, ValueError, TypeError) as exc:
        if isinstance(exc, FileFormatError):
            raise
        raise fail(f"invalid network: {exc}") from None

