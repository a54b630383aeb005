r"""Export delgrad networks to NIR and import NIR graphs (optional extra: ``pip install 'delgrad[nir]'``).

NIR, the Neuromorphic Intermediate Representation (Pedersen et al., Nature Communications 15,
2024; documentation at nnir.readthedocs.io), describes spiking networks as graphs of
continuous-time primitives with times in seconds.  Importing this module does not import
``nir``; the conversions do.

Neuron mapping
--------------
delgrad's neuron (DelGrad: Göltz, Weber, Kriener et al., Nature Communications 16, 2025), with
C_m = 1, E_l = 0 and model time t' (one unit = ``time_scale`` seconds, t = time_scale * t')::

    du/dt' = -u/tau_m + I        dI/dt' = -I/tau_s        I += w_ij when input i arrives

The NIR CubaLIF node (NIR docs, ``nir.CubaLIF``), time t in seconds::

    tau_syn dI/dt = -I + w_in S(t)        tau_mem dv/dt = (v_leak - v) + r I
    spike when v > v_threshold, then v = v_reset

delgrad reads S as a spike train of unit-area Dirac pulses (1/s) weighted by the Linear
weights, S_j(t) = sum_i W_ji sum_k delta(t - t_ik): each input spike makes I jump by
w_in W_ji / tau_syn.  This is the reading that depends on no simulation step.  Export writes::

    tau_mem = tau_m * time_scale      tau_syn = tau_s * time_scale      W = w^T (weights verbatim)
    r = tau_m                         w_in = tau_syn (its value in s)   v_leak = 0
    v_threshold = theta               v_reset = 0 (never used: one spike per neuron)

Check, with t = time_scale * t': a spike makes I jump by w_in W / tau_syn = W = w;
dI/dt' = -time_scale I / tau_syn = -I/tau_s; dv/dt' = time_scale (-v + r I) / tau_mem
= -v/tau_m + I.  So the NIR state (v, I) is exactly delgrad's (u, I).

Import inverts the same equations for any CubaLIF with v_leak = 0: tau_m = tau_mem / time_scale,
tau_s = tau_syn / time_scale, theta = v_threshold and, since I_delgrad = r I_nir / tau_m,
w_ij = W_ji * r_j * w_in_j / (tau_m,j * tau_syn,j)  (tau_m in model units, tau_syn in s).

Other readings in use: NIR's forward-Euler reference code and snnTorch feed a spike as the
value 1 during one step dt, i.e. a current jump of w_in W dt / tau_syn (snnTorch exports
w_in = tau_syn / dt); jaxsnn takes the Linear weight itself as the jump and requires r = 1.  To
import such a graph with its author's meaning, first multiply w_in by dt (in s), or set
w_in = tau_syn for jaxsnn.

Delays (NIR ``Delay``: y(t) = x(t - tau))
----------------------------------------
- axonal d_i: Delay (n_pre values d_i * time_scale) before the Linear;
- dendritic d_j: Delay (n_post values) after the Linear, before the CubaLIF;
- synaptic d_ij (NIR has no per-synapse delay): a 0/1 fan-out Linear to n_pre * n_post lines
  (line k = i * n_post + j carries neuron i), a Delay with one value per synapse, then a Linear
  (n_post, n_pre * n_post) holding w_ij on line k.  Exact, at O(n_pre^2 n_post) stored numbers.

Import folds any chain of Delay and Linear/Affine(zero bias)/Scale nodes between two CubaLIF
populations into weights and delays (``_nir_paths``); it is refused when a synapse would need two
different delays.  Only a Linear/Affine mixes lines (a Scale keeps them), so delays before every
Linear are axonal, after every Linear dendritic (Linear -> Delay -> Scale too), others synaptic.
A synapse of weight 0 keeps its delay (its line in delgrad's synaptic layout, else the delay all
paths through zero entries share; if they disagree, 0 with a warning).

Conventions NIR lacks, kept in metadata
---------------------------------------
Graph metadata ``delgrad`` holds ``time_scale_s`` (seconds per model unit), ``first_spike_only``
(time-to-first-spike: each neuron emits at most one spike per sample, so v_reset never acts) and
the spike reading above.  Node metadata holds the model-unit values (time constants, delays),
which seconds cannot give back bit for bit; import uses them only when exporting them again
reproduces the node exactly, so the graph itself stays the authority.

Time scales must lie from 1e-12 to 1e3 s per model unit, time constants from 1e-9 to 1e9 model
units and delays from 0 to 1e9 (export and import alike: every graph written reads back).

Refused on import, with the reason: recurrent edges or subgraphs, branches, node types without a
delgrad counterpart, Affine biases, nonzero v_leak, a missing time unit (no metadata and no
``time_scale``), times outside the ranges above, and a hidden CubaLIF layer of a graph that does
not declare first-spike-only semantics (its reset and further spikes would matter;
``first_spike_only=True`` accepts it).
"""

from __future__ import annotations

import errno
import io
import math
import os
from pathlib import Path

from delgrad_core._atomic import write_to
from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import Network, check_type
from delgrad_core._npz import MAX_ARRAY_ELEMENTS, describe_source
from delgrad_core._nir_common import NIRConversionError, NIRNotInstalledError, require_nir
from delgrad_core._nir_export import check_readable_size, to_nir
from delgrad_core._nir_import import from_nir

__all__ = ["to_nir", "from_nir", "save_nir", "load_nir", "NIRConversionError", "NIRNotInstalledError"]

_MAX_GROUP_DEPTH = 32  # (a graph's groups nest node/nodes/<name>/..., deeper only for subgraphs)
_MAX_LINKS = 100_000  # (hard links between groups can make the paths of a small file countless)
# what ``nir.read`` raises for a file that is not a NIR graph (h5py's errors are OSError, KeyError, ...)
_READ_ERRORS = (OSError, LookupError, ValueError, TypeError, AssertionError, AttributeError, RecursionError)


def save_nir(network: Network, path, *, time_scale: float) -> Path | None:
    """Write `network` as a NIR file (HDF5, via ``nir.write``) to `path`: a file path (written
    atomically; returns it) or a writable binary file object (returns None)."""
    nir = require_nir()
    check_type(network, Network, "network")
    check_readable_size(network)
    graph = to_nir(network, time_scale=time_scale)
    buffer = io.BytesIO()  # HDF5 reads back while writing, which a write-only file cannot do
    nir.write(buffer, graph)
    return write_to(path, lambda handle: handle.write(buffer.getvalue()), "NIR graph", "path")


def load_nir(path, *, time_scale: float | None = None, first_spike_only: bool = False) -> Network:
    """Read a NIR file (``nir.read``) from `path`: a file path, the file's bytes or a readable
    binary file object, and convert it with `from_nir`."""
    nir = require_nir()
    name = describe_source(path)
    if isinstance(path, (bytes, bytearray, memoryview)):
        path = io.BytesIO(path)
    else:
        _check_source(path, name)
    try:
        _check_declared_sizes(path, name)
        graph = nir.read(path, type_check=False)  # from_nir checks shapes and gives the reasons
    except NIRConversionError:
        raise
    except _READ_ERRORS as exc:
        node = _unreadable_node(nir, path)
        what = "a NIR graph" if node is None else f"{node} of a NIR graph"
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise NIRConversionError(f"{name}: cannot read {what} ({reason}); is it a NIR file as nir.write "
                                 "writes them?") from exc
    return from_nir(graph, time_scale=time_scale, first_spike_only=first_spike_only)


def _check_source(path, name: str) -> None:
    """Refuse, before HDF5 tries it, a `path` that is neither a file path nor a readable binary
    file object, a text file object, a missing file (as `load_network`: FileNotFoundError, not
    "cannot read a NIR graph ...; is it a NIR file?") and a path that is no regular file."""
    if not isinstance(path, (str, os.PathLike)):
        text = isinstance(path, io.TextIOBase)
        if text or not callable(getattr(path, "read", None)):
            raise InvalidValueError(f"path: expected a file path, bytes or a readable binary file of a NIR graph, got "
                                    f"{type(path).__name__}{' (a text file: open it in binary mode)' if text else ''}")
    elif not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    elif not os.path.isfile(path):
        # (HDF5 reads a file by seeking in it; opening a FIFO without a writer waited for ever)
        raise NIRConversionError(f"{name}: not a regular file (a NIR file is an HDF5 file on disk)")


def _unreadable_node(nir, path) -> str | None:
    """The first node of the file's graph that ``nir`` cannot build on its own (as ``nir.read``
    builds it) as "node KEY (type T)", or None if none is found or the file cannot be opened."""
    import h5py
    from nir.serialization import hdf2dict

    try:
        with h5py.File(path, "r") as file:
            for key, group in file["node/nodes"].items():
                try:
                    nir.dict2NIRNode(hdf2dict(group))
                except _READ_ERRORS:
                    return f"node {key!r}{_declared_type(group)}"
    except _READ_ERRORS:
        pass
    return None


def _declared_type(group) -> str:
    """The node type a node group declares, as " (type T)", or "" if it declares none as text."""
    try:
        return f" (type {group['type'][()].decode()!r})"
    except _READ_ERRORS:
        return ""


def _check_declared_sizes(path, described: str) -> None:
    """Refuse a file whose datasets declare more than `MAX_ARRAY_ELEMENTS` 8-byte elements in all
    (``nir.read`` loads every dataset whole: a small compressed file can declare gigabytes),
    counted once per path that reaches them (``nir.read`` reads a dataset again through each
    hard link to it), and a file with soft or external links, groups nested deeper than a graph
    needs or more links than a graph has."""
    import h5py

    declared: dict[str, int] = {}
    links = 0  # followed so far

    def count(group, prefix: str, depth: int) -> None:
        nonlocal links
        if depth > _MAX_GROUP_DEPTH:
            raise NIRConversionError(f"{described}: groups nested deeper than {_MAX_GROUP_DEPTH} at {prefix!r}")
        for name in group:
            where = f"{prefix}{name}"
            links += 1
            if links > _MAX_LINKS:
                raise NIRConversionError(f"{described}: more than {_MAX_LINKS} links (at {where!r})")
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise NIRConversionError(f"{described}: {where!r} is a {type(link).__name__}; a NIR file holds none")
            item = group[name]
            if isinstance(item, h5py.Dataset):  # (in 8-byte elements: a wide string or subarray dtype counts as many)
                declared[where] = 0 if item.shape is None else -(-math.prod(item.shape) * item.dtype.itemsize // 8)
            elif isinstance(item, h5py.Group):
                count(item, f"{where}/", depth + 1)

    with h5py.File(path, "r") as file:
        count(file, "", 0)
    if sum(declared.values()) > MAX_ARRAY_ELEMENTS:
        name = max(declared, key=declared.get)
        raise NIRConversionError(f"{described}: the datasets declare {sum(declared.values())} 8-byte elements in all "
                                 f"(the largest, {name!r}, {declared[name]}); at most {MAX_ARRAY_ELEMENTS} are read")
