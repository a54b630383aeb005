"""Save and load networks as a single ``.npz`` file without pickle.

The file holds a JSON description under the key ``network.json`` (format version, population
names, sizes, delay kinds) and one float64 array per parameter; loading restores every array
bit for bit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from delgrad_core._atomic import atomic_write
from delgrad_core._ir import Layer, Network, NeuronParameters, Population, Projection

__all__ = ["save_network", "load_network", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_META_KEY = "network.json"


def _network_arrays(network: Network) -> tuple[dict, dict[str, np.ndarray]]:
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for index, layer in enumerate(network.layers):
        prefix = f"layers.{index}"
        neuron = layer.population.neuron
        for name in ("threshold", "tau_m", "tau_s"):
            arrays[f"{prefix}.neuron.{name}"] = np.asarray(getattr(neuron, name), dtype=np.float64)
        arrays[f"{prefix}.weights"] = layer.projection.weights
        if layer.projection.delays is not None:
            arrays[f"{prefix}.delays"] = layer.projection.delays
        layers.append(
            {
                "population": layer.population.name,
                "size": layer.population.size,
                "projection": layer.projection.name,
                "delay_kind": layer.projection.delay_kind.value,
            }
        )
    meta = {
        "format": "delgrad-network",
        "version": FORMAT_VERSION,
        "input": {"name": network.input.name, "size": network.input.size},
        "layers": layers,
    }
    return meta, arrays


def save_network(network: Network, path: str | os.PathLike) -> Path:
    """Write `network` to `path` (``.npz``) atomically: a failed write leaves any old file intact."""
    network.validate()
    meta, arrays = _network_arrays(network)
    arrays[_META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    return atomic_write(path, lambda handle: np.savez(handle, **arrays))


def load_network(path: str | os.PathLike) -> Network:
    """Read a network written by `save_network`."""
    with np.load(path, allow_pickle=False) as data:
        if _META_KEY not in data.files:
            raise ValueError(f"{path}: not a delgrad network file (no {_META_KEY!r} entry)")
        meta = json.loads(str(data[_META_KEY]))
        if meta.get("format") != "delgrad-network" or meta.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: unsupported network format {meta.get('format')!r} version {meta.get('version')!r}"
                f" (this delgrad reads version {FORMAT_VERSION})"
            )
        layers = []
        for index, entry in enumerate(meta["layers"]):
            prefix = f"layers.{index}"

            def scalar_or_array(name):
                value = data[f"{prefix}.neuron.{name}"]
                return float(value) if value.ndim == 0 else value.copy()

            neuron = NeuronParameters(*(scalar_or_array(n) for n in ("threshold", "tau_m", "tau_s")))
            delays_key = f"{prefix}.delays"
            projection = Projection(
                weights=data[f"{prefix}.weights"].copy(),
                delay_kind=entry["delay_kind"],
                delays=data[delays_key].copy() if delays_key in data.files else None,
                name=entry["projection"],
            )
            layers.append(Layer(Population(entry["population"], entry["size"], neuron), projection))
        return Network(Population(meta["input"]["name"], meta["input"]["size"]), layers)
