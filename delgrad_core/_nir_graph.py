"""Structure of an imported NIR graph: one chain Input -> ... -> Output, split into layers.

delgrad networks are feed-forward chains of all-to-all layers, so the graph must be a simple
path; recurrent edges, branches and node types delgrad has no counterpart for are refused with
the reason.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from delgrad_core._nir_common import NIRConversionError

__all__ = ["Segment", "graph_segments", "string_keyed", "population_size"]

# NIR node types delgrad has no counterpart for, with the reason.
_UNSUPPORTED = {
    "LIF": "its input spikes jump the membrane directly (no synaptic current); delgrad's neuron is a CubaLIF",
    "IF": "its input spikes jump the membrane directly and it has no leak; delgrad's neuron is a CubaLIF",
    "LI": "it does not spike (a leaky integrator readout); delgrad layers are spiking CubaLIF neurons",
    "CubaLI": "it does not spike (a leaky integrator readout); delgrad layers are spiking CubaLIF neurons",
    "I": "it does not spike (an integrator); delgrad layers are spiking CubaLIF neurons",
    "Threshold": "a bare threshold has no membrane dynamics; delgrad layers are CubaLIF neurons",
    "Conv1d": "delgrad layers are all-to-all projections between 1-d populations",
    "Conv2d": "delgrad layers are all-to-all projections between 1-d populations",
    "SumPool2d": "delgrad layers are all-to-all projections between 1-d populations",
    "AvgPool2d": "delgrad layers are all-to-all projections between 1-d populations",
    "Flatten": "delgrad populations are 1-d; give the Input a 1-d shape instead",
}
_SUPPORTED = "Input, Output, Linear, Affine (zero bias), Scale, Delay and CubaLIF"


@dataclass
class Segment:
    """The nodes between two populations: `ops` (keys of Linear/Affine/Scale/Delay, in order), then `lif`."""

    ops: list[str]
    lif: str


def _edges(graph) -> list[tuple[str, str]]:
    try:
        edges = [(str(src), str(dst)) for src, dst in graph.edges]
    except (TypeError, ValueError):
        raise NIRConversionError(f"graph edges: expected (source, target) pairs, got {graph.edges!r}") from None
    for src, dst in edges:
        for end in (src, dst):
            if end not in graph.nodes:
                raise NIRConversionError(f"edge {src!r} -> {dst!r}: no node named {end!r}")
    return edges


def _find_cycle(nodes, edges) -> list[str] | None:
    """Keys along one directed cycle (first key repeated at the end), or None."""
    successors = {key: [] for key in nodes}
    for src, dst in edges:
        successors[src].append(dst)
    state = dict.fromkeys(nodes, 0)  # 0 unvisited, 1 on the current path, 2 done
    for root in nodes:
        if state[root]:
            continue
        path, stack = [root], [iter(successors[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(successors[nxt]))
    return None


def _check_node_types(nir, graph) -> None:
    for key, node in graph.nodes.items():
        name = type(node).__name__
        if isinstance(node, nir.NIRGraph):
            cycle = _find_cycle(node.nodes, _edges(node))
            if cycle:
                raise NIRConversionError(
                    f"node {key!r} is a recurrent subgraph (cycle {' -> '.join(cycle)}); "
                    "delgrad networks are feed-forward"
                )
            raise NIRConversionError(f"node {key!r} is a nested NIRGraph; delgrad imports one flat graph")
        if name in _UNSUPPORTED:
            raise NIRConversionError(f"node {key!r} is a {name}, which delgrad cannot import: {_UNSUPPORTED[name]}")
        if not isinstance(node, (nir.Input, nir.Output, nir.Linear, nir.Affine, nir.Scale, nir.Delay, nir.CubaLIF)):
            raise NIRConversionError(
                f"node {key!r} has the unknown type {name}; delgrad imports only {_SUPPORTED}"
            )


def _single(graph, node_type) -> str:
    keys = [key for key, node in graph.nodes.items() if isinstance(node, node_type)]
    if len(keys) != 1:
        raise NIRConversionError(
            f"expected exactly one {node_type.__name__} node, found {len(keys)} "
            f"({', '.join(map(repr, keys)) or 'none'})"
        )
    return keys[0]


def _chain(nir, graph) -> list[str]:
    """Keys from the Input to the Output, checking that the graph is one simple path."""
    edges = _edges(graph)
    cycle = _find_cycle(graph.nodes, edges)
    if cycle:
        raise NIRConversionError(
            f"recurrent edge {cycle[-2]!r} -> {cycle[-1]!r} (cycle {' -> '.join(cycle)}); "
            "delgrad networks are feed-forward"
        )
    _check_node_types(nir, graph)
    start, end = _single(graph, nir.Input), _single(graph, nir.Output)
    outgoing = {key: [] for key in graph.nodes}
    incoming = {key: [] for key in graph.nodes}
    for src, dst in edges:
        outgoing[src].append(dst)
        incoming[dst].append(src)
    for key in graph.nodes:
        for direction, ends in (("outgoing", outgoing[key]), ("incoming", incoming[key])):
            if len(ends) > 1:
                raise NIRConversionError(
                    f"node {key!r} has {len(ends)} {direction} edges ({', '.join(map(repr, ends))}); "
                    "delgrad networks are one feed-forward chain of layers"
                )
    chain = [start]
    while outgoing[chain[-1]]:
        chain.append(outgoing[chain[-1]][0])
    if chain[-1] != end:
        raise NIRConversionError(f"the path from input {start!r} ends at {chain[-1]!r}, not at output {end!r}")
    stray = sorted(set(graph.nodes) - set(chain))
    if stray:
        raise NIRConversionError(f"nodes {stray} are not on the path from {start!r} to {end!r}")
    return chain


def string_keyed(nir, graph):
    """`graph` with its node names and edge ends as strings, as `nir.read` gives them (a graph
    built in memory may name its nodes by integers); names that read the same are refused."""
    if not isinstance(graph, nir.NIRGraph):
        raise NIRConversionError(f"expected a nir.NIRGraph, got {type(graph).__name__}")
    if not isinstance(graph.nodes, dict):
        raise NIRConversionError(f"graph nodes: expected a dict of name -> node, got {type(graph.nodes).__name__}")
    if all(isinstance(key, str) for key in graph.nodes):
        return graph
    nodes = {str(key): node for key, node in graph.nodes.items()}
    if len(nodes) < len(graph.nodes):
        twins = sorted(name for name in nodes if sum(str(key) == name for key in graph.nodes) > 1)
        raise NIRConversionError(f"graph nodes: two nodes are named {twins[0]!r} (one by a string, one otherwise)")
    named = copy.copy(graph)
    named.nodes = nodes
    named.edges = _edges(named)
    return named


def graph_segments(nir, graph) -> tuple[str, list[Segment], str]:
    """(input key, one Segment per layer, output key) of a chain-shaped graph with string names
    (`string_keyed`)."""
    chain = _chain(nir, graph)
    segments, ops = [], []
    for key in chain[1:-1]:
        if isinstance(graph.nodes[key], nir.CubaLIF):
            segments.append(Segment(ops, key))
            ops = []
        else:
            ops.append(key)
    if not segments:
        raise NIRConversionError("the graph has no CubaLIF node; delgrad needs at least one spiking layer")
    if ops:
        raise NIRConversionError(
            f"nodes {ops} follow the last CubaLIF {segments[-1].lif!r}; delgrad's output is the last spiking layer"
        )
    return chain[0], segments, chain[-1]


def population_size(nir, node, key: str) -> int:
    """Size of a 1-d Input or Output node."""
    types = node.input_type if isinstance(node, nir.Input) else node.output_type
    if types is not None and len(types) > 1:  # (the first was taken, the others ignored)
        raise NIRConversionError(f"{type(node).__name__} {key!r}: expected one port, got {len(types)} "
                                 f"({', '.join(map(str, types))}); delgrad layers have one input and one output")
    declared = np.asarray(list(types.values())[0] if types else [])
    # (only integers and floats that int64 holds: a complex [4+0j] was read as 4, and NaN or 1e30
    # cast, each with a numpy warning)
    castable = declared.dtype.kind in "iu" or (declared.dtype.kind == "f" and np.all(np.abs(declared) < 2.0**62))
    shape = declared.astype(np.int64).reshape(-1) if castable else np.array([-1])
    if shape.size != 1 or shape[0] < 1 or shape[0] != declared.reshape(-1)[0]:  # ([4.7] read as 4)
        raise NIRConversionError(f"{type(node).__name__} {key!r}: expected a 1-d shape [n] of a positive integer, got "
                                 f"{declared.tolist()}")
    return int(shape[0])
