"""NIR export and import: exact round trips, the CubaLIF mapping against the NIR equations, refusals, CLI."""

import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _network_checks import assert_bit_identical, assert_same_network
from delgrad_core.testing import cli_runner
from scipy.integrate import solve_ivp

nir = pytest.importorskip("nir")

import delgrad_core as dg  # noqa: E402
from delgrad_core.cli import main  # noqa: E402
from delgrad_core import InvalidValueError  # noqa: E402
from delgrad_core.nir import (  # noqa: E402
    NIRConversionError,
    NIRNotInstalledError,
    from_nir,
    load_nir,
    save_nir,
    to_nir,
)

KINDS = ["none", "axonal", "dendritic", "synaptic"]
TIME_SCALE_S = 6e-6  # not a power of two: seconds -> model units is not exact without metadata


# ---------------------------------------------------------------- helpers


def chain_keys(graph):
    """Node keys from the Input to the Output of a chain-shaped graph (test-side, independent walk)."""
    successor = dict(graph.edges)
    key = next(k for k, node in graph.nodes.items() if isinstance(node, nir.Input))
    keys = [key]
    while key in successor:
        key = successor[key]
        keys.append(key)
    return keys


def cuba_first_spike(lif, j, events, horizon_s):
    """First threshold crossing (s) of CubaLIF neuron j, integrating the NIR equations as documented:

        tau_syn dI/dt = -I + w_in S,   tau_mem dv/dt = (v_leak - v) + r I,   spike when v > v_threshold,

    with S a sum of unit-area Dirac pulses of amplitude `a` at the event times (so I jumps by
    w_in a / tau_syn).  `events` is a list of (time_s, amplitude).  Returns inf if silent.
    """
    p = {f: float(np.broadcast_to(np.asarray(getattr(lif, f), dtype=np.float64), np.shape(lif.v_threshold))[j])
         for f in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "w_in")}

    def rhs(t, y):
        return [(p["v_leak"] - y[0] + p["r"] * y[1]) / p["tau_mem"], -y[1] / p["tau_syn"]]

    def crossing(t, y):
        return y[0] - p["v_threshold"]

    crossing.terminal, crossing.direction = True, 1.0
    events = sorted(events)
    if not events:
        return np.inf
    state = np.array([p["v_leak"], 0.0])  # at rest until the first input
    max_step = min(p["tau_syn"], p["tau_mem"]) / 20
    ends = [when for when, _ in events[1:]] + [events[-1][0] + horizon_s]
    for (when, amplitude), end in zip(events, ends):
        state[1] += p["w_in"] * amplitude / p["tau_syn"]
        if end > when:
            result, reached = _integrate(rhs, crossing, state, when, end, max_step)
            if reached is None:
                return result
            state = result
    return np.inf


def _integrate(rhs, crossing, state, start, stop, max_step):
    """Integrate from start to stop; returns (state, stop), or (crossing time, None) on a crossing."""
    solution = solve_ivp(rhs, (start, stop), state, method="DOP853", rtol=1e-12, atol=1e-14,
                         events=crossing, max_step=max_step)
    if solution.t_events[0].size:
        return float(solution.t_events[0][0]), None
    return solution.y[:, -1].copy(), stop


def nir_spike_times(graph, input_times_s):
    """First spike time (s) of every CubaLIF neuron, evaluating the graph event by event.

    Spikes travel along the chain: a Delay shifts them, a Linear/Affine copies them to every line
    with a nonzero weight (amplitude times weight).  Only first spikes are passed on, as in a
    time-to-first-spike network.  Returns a list with one array per CubaLIF node.
    """
    keys = chain_keys(graph)
    events = [(float(t), line, 1.0) for line, t in enumerate(input_times_s) if np.isfinite(t)]
    outputs = []
    for key in keys[1:-1]:
        node = graph.nodes[key]
        if isinstance(node, nir.Delay):
            events = [(t + float(node.delay[line]), line, a) for t, line, a in events]
        elif isinstance(node, (nir.Linear, nir.Affine)):
            weight = np.asarray(node.weight, dtype=np.float64)
            events = [(t, row, a * weight[row, line]) for t, line, a in events
                      for row in np.flatnonzero(weight[:, line])]
        elif isinstance(node, nir.CubaLIF):
            n = np.size(node.v_threshold)
            horizon = 60 * float(max(np.max(node.tau_mem), np.max(node.tau_syn)))
            times = np.array([cuba_first_spike(node, j, [(t, a) for t, line, a in events if line == j], horizon)
                              for j in range(n)])
            outputs.append(times)
            events = [(float(t), j, 1.0) for j, t in enumerate(times) if np.isfinite(t)]
        else:
            raise AssertionError(f"unexpected node {type(node).__name__}")
    return outputs


def snntorch_style_graph(rng, sizes=(4, 5, 3), dt=1e-4, bias=False):
    """Input -> Affine -> CubaLIF -> Affine -> CubaLIF -> Output, as snnTorch's exporter writes it.

    snnTorch maps Synaptic(alpha, beta) to tau_syn = dt/(1-alpha), tau_mem = dt/(1-beta),
    r = tau_mem/dt, w_in = tau_syn/dt, v_leak = 0 (v_reset left at its default), float32 arrays,
    torch.nn.Linear weights (out, in) with a bias.
    """
    nodes, edges, previous = {"input": nir.Input(input_type=np.array([sizes[0]]))}, [], "input"
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        alpha, beta = np.float32(0.9), np.float32(0.8)
        tau_syn = np.full(n_out, dt / (1 - alpha), dtype=np.float32)
        tau_mem = np.full(n_out, dt / (1 - beta), dtype=np.float32)
        weight = rng.uniform(0.5, 1.5, size=(n_out, n_in)).astype(np.float32) * np.float32(dt * 4)
        b = rng.uniform(0.1, 0.2, n_out).astype(np.float32) if bias else np.zeros(n_out, np.float32)
        nodes[f"fc{index}"] = nir.Affine(weight=weight, bias=b)
        nodes[f"lif{index}"] = nir.CubaLIF(
            tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / np.float32(dt), v_leak=np.zeros(n_out, np.float32),
            v_threshold=np.ones(n_out, np.float32), w_in=tau_syn / np.float32(dt),
        )
        edges += [(previous, f"fc{index}"), (f"fc{index}", f"lif{index}")]
        previous = f"lif{index}"
    nodes["output"] = nir.Output(output_type=np.array([sizes[-1]]))
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def jaxsnn_style_graph(rng, n_in=3, n_out=2, tau_mem=4e-4, tau_syn=2e-4):
    """Input -> Linear -> CubaLIF -> Output as in jaxsnn's NIR example: r = 1, default w_in, v_reset = -1,
    homogeneous integer-valued parameter arrays."""
    weight = rng.uniform(0.5, 1.5, size=(n_out, n_in)) * tau_syn
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n_in])),
            "linear": nir.Linear(weight=weight),
            "cubalif": nir.CubaLIF(
                tau_mem=np.array([tau_mem] * n_out), tau_syn=np.array([tau_syn] * n_out),
                r=np.array([1] * n_out), v_leak=np.array([0] * n_out), v_reset=np.array([-1] * n_out),
                v_threshold=np.array([1] * n_out),
            ),
            "output": nir.Output(output_type=np.array([n_out])),
        },
        edges=[("input", "linear"), ("linear", "cubalif"), ("cubalif", "output")],
    )


def assert_times_close(delgrad_model_units, nir_seconds, time_scale_s, rtol=1e-6):
    expected = np.asarray(nir_seconds) / time_scale_s
    actual = np.asarray(delgrad_model_units)
    assert np.array_equal(np.isfinite(actual), np.isfinite(expected)), (actual, expected)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=rtol)


# ---------------------------------------------------------------- exact round trips


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sizes", [(4, 6, 3), (4, 5, 4, 3)], ids=["1hidden", "2hidden"])
@pytest.mark.parametrize("per_neuron", [True, False], ids=["per-neuron", "scalar"])
def test_round_trip_is_bit_identical(helpers, kind, sizes, per_neuron):
    ratio = np.array([2.0, 1.0, 1.7]) if per_neuron else 1.7
    network = helpers.build_network(list(sizes), kind, ratio, seed=3, per_neuron=per_neuron)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    assert_same_network(from_nir(graph), network)


@pytest.mark.parametrize("kind", KINDS)
def test_file_round_trip_with_nir_write_and_read(tmp_path, helpers, kind):
    network = helpers.build_network([4, 5, 4, 3], kind, 2.0, seed=4)
    network.layers[0].population.name = "hid/den"  # '/' must not create nested HDF5 groups
    network.validate()
    path = tmp_path / "net.nir"
    nir.write(path, to_nir(network, time_scale=TIME_SCALE_S))
    graph = nir.read(path)
    assert graph.metadata["delgrad"]["time_scale_s"] == TIME_SCALE_S
    assert_same_network(from_nir(graph), network)
    save_nir(network, tmp_path / "again.nir", time_scale=TIME_SCALE_S)
    assert_same_network(load_nir(tmp_path / "again.nir"), network)


def test_populations_whose_node_keys_would_clash_round_trip(helpers):
    """'h/1' and 'h_1' both give the key prefix 'h_1' ('/' would nest HDF5 groups): the nodes must not overwrite."""
    network = helpers.build_network([4, 5, 4, 3], "axonal", 2.0, seed=4)
    network.layers[0].population.name, network.layers[1].population.name = "h/1", "h_1"
    network.validate()
    assert_same_network(from_nir(to_nir(network, time_scale=TIME_SCALE_S)), network)


def test_the_input_population_name_is_kept_in_the_graph_metadata(helpers):
    network = helpers.build_network([4, 5, 3], "none", 2.0, seed=4)
    network.input.name = "pixels"
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    assert graph.metadata["delgrad"]["input_population"] == "pixels"
    assert from_nir(graph).input.name == "pixels"


def test_a_file_declaring_huge_datasets_is_refused_before_anything_is_loaded(tmp_path, helpers):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "huge.nir"
    save_nir(helpers.build_network([4, 5, 3], "axonal", 2.0, seed=4), path, time_scale=1e-3)
    with h5py.File(path, "a") as file:
        matrices = []
        file.visititems(lambda name, item: matrices.append(name) if getattr(item, "ndim", 0) == 2 else None)
        del file[matrices[0]]  # a 320 GB matrix of zeros in a small file
        file.create_dataset(matrices[0], shape=(200_000, 200_000), dtype="f8", chunks=(1000, 1000),
                            compression="gzip")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(NIRConversionError, match=rf"^{path}: the datasets declare 40000000\d+ 8-byte elements in all "
                                                 rf".*{matrices[0]}.* at most 134217728"):
        load_nir(path)
    with h5py.File(path, "a") as file:  # (16 strings of 100 MB: counted as 16 elements, 1.6 GB were read)
        del file[matrices[0]]
        file.create_dataset("node/nodes/junk", shape=(16,), dtype="S100000000", chunks=(1,), compression="gzip")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(NIRConversionError, match=r"the datasets declare 20000\d+ 8-byte elements in all \(the largest, "
                                                 r"'node/nodes/junk', 200000000\)"):
        load_nir(path)


def test_datasets_reached_through_several_links_are_counted_once_per_link(tmp_path, helpers):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "linked.nir"
    save_nir(helpers.build_network([4, 5, 3], "axonal", 2.0, seed=4), path, time_scale=1e-3)
    with h5py.File(path, "a") as file:
        group = next(item for item in file["node/nodes"].values() if isinstance(item, h5py.Group))
        junk = group.create_dataset("junk0", shape=(2**24,), dtype="f8", chunks=(2**20,), compression="gzip")
        for k in range(1, 12):  # (each link is read again by nir.read: 12 x 2**24 elements)
            group[f"junk{k}"] = junk
    assert path.stat().st_size < 1_000_000
    with pytest.raises(NIRConversionError, match=r"the datasets declare 20132\d+ 8-byte elements in all"):
        load_nir(path)
    with h5py.File(path, "a") as file:
        group = next(item for item in file["node/nodes"].values() if isinstance(item, h5py.Group))
        for k in range(12):
            del group[f"junk{k}"]
        group["loop"] = h5py.SoftLink("/node")
    with pytest.raises(NIRConversionError, match=r"'node/nodes/.*/loop' is a SoftLink"):
        load_nir(path)
    with h5py.File(path, "a") as file:
        group = next(item for item in file["node/nodes"].values() if isinstance(item, h5py.Group))
        del group["loop"]
        group["cycle"] = group  # (a hard link to itself: paths without end)
    with pytest.raises(NIRConversionError, match=r"groups nested deeper than 32"):
        load_nir(path)
    with h5py.File(path, "a") as file:
        group = next(item for item in file["node/nodes"].values() if isinstance(item, h5py.Group))
        del group["cycle"]
        levels = [group.create_group(f"level{k}") for k in range(20)]
        for upper, lower in zip(levels, levels[1:]):
            upper["a"], upper["b"] = lower, lower  # (2**19 paths to the deepest group)
    with pytest.raises(NIRConversionError, match=r"more than 100000 links"):
        load_nir(path)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sizes", [[7, 5, 3], [60, 2, 1]], ids=["7-5-3", "wide-to-narrow"])
def test_export_bounds_the_elements_a_file_declares(tmp_path, helpers, kind, sizes):
    h5py = pytest.importorskip("h5py")
    from delgrad_core._nir_export import _chain_elements

    network = helpers.build_network(sizes, kind, 2.0, seed=4, per_neuron=True)
    save_nir(network, tmp_path / "net.nir", time_scale=1e-3)
    sizes = []
    with h5py.File(tmp_path / "net.nir") as file:
        file.visititems(lambda name, item: sizes.append(item.size) if isinstance(item, h5py.Dataset) else None)
    assert sum(_chain_elements(layer) for layer in network.layers) >= sum(sizes)


def test_export_refuses_a_graph_that_import_would_refuse_before_building_it(tmp_path):
    # (a 1000-150 synaptic layer needs a 150,000 x 1,000 fan-out: 1.2 GB to build, and load_nir refuses the file)
    network = dg.Network.feedforward([1000, 150, 3], delay_kind="synaptic", seed=0)
    with pytest.raises(NIRConversionError, match=r"^network: as a NIR graph it would hold about 172,872,326 array "
                                                 r"elements, more than the 134,217,728 that load_nir reads "
                                                 r"\(population 'hidden', synaptic delays: 172,802,464"):
        save_nir(network, tmp_path / "big.nir", time_scale=1e-3)
    assert not (tmp_path / "big.nir").exists()


def test_chains_too_wide_to_fold_are_refused_before_allocating():
    from delgrad_core._nir_paths import Paths

    with pytest.raises(NIRConversionError, match=r"^the connections into 'h': 8000 lines carrying 8000 presynaptic "
                                                 r"neurons \(64000000 pairs\)"):
        Paths(8000, "the connections into 'h'")
    paths = Paths(100, "the connections into 'h'")
    with pytest.raises(NIRConversionError, match=r"'w': 200000 lines carrying 100 presynaptic neurons"):
        paths.apply_linear("w", np.zeros((200_000, 100)))
    # dense -> Delay -> dense: every line carries every neuron, and checking the delays takes
    # rows x lines x neurons steps (4096 inputs, a 765 KB file, ran for minutes)
    paths = Paths(1500, "the connections into 'h'")
    paths.apply_linear("dense", np.ones((1500, 1500)))
    paths.add_delay("delay", np.zeros(1500))
    with pytest.raises(NIRConversionError, match=r"^'again': 1500 rows over 1500 lines that carry several of 1500 "
                                                 r"presynaptic neurons each: .* 3,375,000,000 steps, at most "
                                                 r"2,147,483,648"):
        paths.apply_linear("again", np.ones((1500, 1500)))


def test_metadata_of_a_wide_synaptic_layer_is_not_expanded_before_the_size_check():
    """(a 48 KB file, Input(20000) -> Linear(1 x 20000) labelled synaptic, built a 20000 x 20000
    fan-out, 3.2 GB, before the size check refused it)"""
    import tracemalloc

    one = {name: np.array([value]) for name, value in (("tau_syn", 1e-3), ("tau_mem", 2e-3), ("r", 2.0),
                                                        ("v_leak", 0.0), ("v_threshold", 1.0), ("v_reset", 0.0),
                                                        ("w_in", 1e-3))}
    lif = nir.CubaLIF(**one, metadata={"delgrad": {"population": "p", "threshold": 1.0, "tau_m": 2.0, "tau_s": 1.0}})
    nodes = {"in": nir.Input(input_type={"input": np.array([5000])}),
             "lin": nir.Linear(weight=np.zeros((1, 5000)), metadata={"delgrad": {"delay_kind": "synaptic"}}),
             "lif": lif, "out": nir.Output(output_type={"output": np.array([1])})}
    graph = nir.NIRGraph(nodes=nodes, edges=[("in", "lin"), ("lin", "lif"), ("lif", "out")],
                         metadata={"delgrad": {"time_scale_s": 1e-3, "first_spike_only": True}}, type_check=False)
    tracemalloc.start()
    try:
        with pytest.raises(NIRConversionError, match=r"5000 lines carrying 5000 presynaptic neurons"):
            from_nir(graph)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, f"{peak / 1e6:.0f} MB"  # (the fan-out alone is 200 MB)


@pytest.mark.parametrize("kind", KINDS)
def test_spike_times_of_imported_graph_equal_the_original(tmp_path, helpers, kind):
    network = helpers.build_network([4, 6, 5, 3], kind, np.array([2.0, 1.0, 1.4]), seed=5)
    save_nir(network, tmp_path / "net.nir", time_scale=1e-3)
    imported = load_nir(tmp_path / "net.nir")
    inputs = np.random.default_rng(5).uniform(0.15, 2.0, size=(64, 4))
    for new, old in zip(dg.forward(imported, inputs), dg.forward(network, inputs)):
        assert np.isfinite(old).any()
        assert_bit_identical(new, old)


def test_exported_graph_states_units_and_single_spike_semantics(helpers):
    network = helpers.build_network([4, 5, 3], "axonal", 2.0, seed=6)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    meta = graph.metadata["delgrad"]
    assert meta["time_scale_s"] == TIME_SCALE_S and meta["first_spike_only"] is True
    assert "seconds" in meta["time_unit"] and "first threshold" in meta["spikes"]
    lif = graph.nodes["hidden.lif"]
    threshold, tau_m, tau_s = network.layers[0].neuron_arrays()
    np.testing.assert_array_equal(lif.tau_mem, tau_m * TIME_SCALE_S)
    np.testing.assert_array_equal(lif.tau_syn, tau_s * TIME_SCALE_S)
    np.testing.assert_array_equal(lif.r, tau_m)
    np.testing.assert_array_equal(lif.w_in, lif.tau_syn)
    np.testing.assert_array_equal(lif.v_threshold, threshold)
    np.testing.assert_array_equal(graph.nodes["hidden.linear"].weight, network.layers[0].projection.weights.T)
    np.testing.assert_array_equal(graph.nodes["hidden.delay"].delay, network.layers[0].projection.delays * TIME_SCALE_S)
    assert chain_keys(graph) == ["input", "hidden.delay", "hidden.linear", "hidden.lif",
                                 "output.delay", "output.linear", "output.lif", "output"]


def test_exported_cubalif_rests_and_resets_at_zero(helpers):
    """docs/nir.md: v_leak = 0 (delgrad's resting potential) and v_reset = 0 (never acts)."""
    graph = to_nir(helpers.build_network([4, 5, 3], "none", 2.0, seed=6), time_scale=TIME_SCALE_S)
    for key in ("hidden.lif", "output.lif"):
        np.testing.assert_array_equal(graph.nodes[key].v_leak, 0.0)
        np.testing.assert_array_equal(graph.nodes[key].v_reset, 0.0)


def test_metadata_is_used_only_when_it_reproduces_the_nodes(helpers):
    network = helpers.build_network([4, 5, 3], "synaptic", 2.0, seed=7)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    graph.nodes["hidden.lif"].tau_mem = graph.nodes["hidden.lif"].tau_mem * 2  # edited after export
    with pytest.warns(UserWarning, match="CubaLIF 'hidden.lif' and the nodes before it differ"):
        imported = from_nir(graph)
    np.testing.assert_allclose(imported.layers[0].neuron_arrays()[1], 2 * network.layers[0].neuron_arrays()[1],
                               rtol=1e-15)
    # the fold of the fan-out reproduces the synaptic delays and weights without metadata
    assert imported.layers[0].projection.delay_kind is dg.DelayKind.SYNAPTIC
    np.testing.assert_allclose(imported.layers[0].projection.delays, network.layers[0].projection.delays,
                               rtol=1e-12, atol=1e-15)


def test_metadata_is_not_used_when_a_node_value_differs_in_the_12th_digit(helpers):
    """docs/nir.md: metadata counts only when exporting it again reproduces the node values exactly."""
    network = helpers.build_network([4, 5, 3], "none", 2.0, seed=7)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    graph.nodes["hidden.lif"].r = graph.nodes["hidden.lif"].r * (1 + 1e-12)
    with pytest.warns(UserWarning, match="CubaLIF 'hidden.lif' and the nodes before it differ"):
        imported = from_nir(graph)
    # w = W r w_in / (tau_m tau_syn) with r = tau_m (1 + 1e-12) and w_in = tau_syn
    np.testing.assert_allclose(imported.layers[0].projection.weights,
                               network.layers[0].projection.weights * (1 + 1e-12), rtol=1e-14)


def test_an_edited_graph_keeps_the_population_names_of_its_metadata(helpers):
    """Names are no node values: an edited graph, read from its node values, keeps them."""
    network = helpers.build_network([4, 5, 3], "none", 2.0, seed=7)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    graph.nodes["hidden.lif"].tau_mem = graph.nodes["hidden.lif"].tau_mem * 2
    with pytest.warns(UserWarning, match="CubaLIF 'hidden.lif' and the nodes before it differ"):
        imported = from_nir(graph)
    assert [layer.population.name for layer in imported.layers] == ["hidden", "output"]


def test_metadata_is_not_used_when_a_node_is_replaced_by_another_type(helpers):
    """An axonal Delay replaced by a Scale of ones: read from the node values, no delays, the same weights."""
    network = helpers.build_network([4, 5, 3], "axonal", 2.0, seed=7)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    graph.nodes["hidden.delay"] = nir.Scale(scale=np.ones(4), metadata=graph.nodes["hidden.delay"].metadata)
    with pytest.warns(UserWarning, match="CubaLIF 'hidden.lif' and the nodes before it differ"):
        projection = from_nir(graph).layers[0].projection
    assert projection.delay_kind is dg.DelayKind.NONE
    np.testing.assert_allclose(projection.weights, network.layers[0].projection.weights, rtol=1e-12)


def test_a_stated_first_spike_only_false_outweighs_the_node_metadata(helpers):
    network = helpers.build_network([4, 5, 3], "axonal", 2.0, seed=1)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    graph.metadata["delgrad"]["first_spike_only"] = False
    with pytest.raises(NIRConversionError, match=r"'hidden.lif'.*reset.*first_spike_only"):
        from_nir(graph)  # (the node metadata read the layers back exactly)
    assert_same_network(from_nir(graph, first_spike_only=True), network)


@pytest.mark.parametrize("kind", KINDS)
def test_import_without_metadata_reads_the_node_values(helpers, kind):
    network = helpers.build_network([4, 6, 3], kind, np.array([2.0, 1.3]), seed=8)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    for node in graph.nodes.values():
        node.metadata = {}
    imported = from_nir(graph, time_scale=TIME_SCALE_S)
    assert [layer.projection.delay_kind.value for layer in imported.layers] == [kind, kind]
    for new, old in zip(imported.layers, network.layers):
        np.testing.assert_allclose(new.projection.weights, old.projection.weights, rtol=1e-14)
        for a, b in zip(new.neuron_arrays(), old.neuron_arrays()):
            np.testing.assert_allclose(a, b, rtol=1e-14)
    inputs = np.random.default_rng(8).uniform(0.15, 2.0, size=(32, 4))
    for new, old in zip(dg.forward(imported, inputs), dg.forward(network, inputs)):
        np.testing.assert_allclose(new, old, rtol=1e-9)


def test_another_time_scale_describes_the_same_dynamics_in_seconds(helpers):
    network = helpers.build_network([4, 6, 3], "axonal", 2.0, seed=9)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    with pytest.warns(UserWarning, match="rescales by 3"):
        rescaled = from_nir(graph, time_scale=3 * TIME_SCALE_S)  # overrides the stored time unit
    np.testing.assert_allclose(rescaled.layers[0].neuron_arrays()[1], network.layers[0].neuron_arrays()[1] / 3,
                               rtol=1e-14)
    inputs = np.random.default_rng(9).uniform(0.15, 2.0, size=(32, 4))
    for new, old in zip(dg.forward(rescaled, inputs / 3), dg.forward(network, inputs)):
        assert np.isfinite(old).any()
        np.testing.assert_allclose(new * 3 * TIME_SCALE_S, old * TIME_SCALE_S, rtol=1e-9)


# ---------------------------------------------------------------- the CubaLIF mapping, independently


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ratio", [2.0, 1.0, 1.6])
def test_exported_graph_integrated_as_nir_documents_spikes_when_delgrad_does(helpers, kind, ratio):
    network = helpers.build_network([5, 4, 3], kind, ratio, seed=11)
    time_scale = 2e-4
    graph = to_nir(network, time_scale=time_scale)
    rng = np.random.default_rng(11)
    for _ in range(3):
        inputs = rng.uniform(0.15, 2.0, size=5)
        delgrad_times = dg.forward(network, inputs[None, :])
        nir_times = nir_spike_times(graph, inputs * time_scale)
        assert any(np.isfinite(t).any() for t in nir_times)
        for model, seconds in zip(delgrad_times, nir_times):
            assert_times_close(model[0], seconds, time_scale)


def test_delays_before_and_after_a_linear_import_as_synaptic_sums():
    rng = np.random.default_rng(12)
    n_in, n_out, time_scale = 3, 4, 1e-3
    axonal, dendritic = rng.uniform(0, 5e-4, n_in), rng.uniform(0, 5e-4, n_out)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n_in])),
            "axon": nir.Delay(delay=axonal),
            "w": nir.Linear(weight=rng.uniform(0.5, 1.5, size=(n_out, n_in)) * 1e-3),
            "dendrite": nir.Delay(delay=dendritic),
            "lif": nir.CubaLIF(tau_syn=np.full(n_out, 1e-3), tau_mem=np.full(n_out, 2e-3), r=np.full(n_out, 2.0),
                               v_leak=np.zeros(n_out), v_threshold=np.full(n_out, 0.5)),
            "output": nir.Output(output_type=np.array([n_out])),
        },
        edges=[("input", "axon"), ("axon", "w"), ("w", "dendrite"), ("dendrite", "lif"), ("lif", "output")],
    )
    network = from_nir(graph, time_scale=time_scale)
    projection = network.layers[0].projection
    assert projection.delay_kind is dg.DelayKind.SYNAPTIC
    np.testing.assert_allclose(projection.delays * time_scale, axonal[:, None] + dendritic[None, :], rtol=1e-14)
    inputs = rng.uniform(0.1, 1.0, size=n_in)
    assert_times_close(dg.forward(network, inputs[None])[0][0], nir_spike_times(graph, inputs * time_scale)[0],
                       time_scale)


# ---------------------------------------------------------------- graphs written by other tools


def test_jaxsnn_style_single_layer_graph_imports_by_the_documented_equations():
    rng = np.random.default_rng(13)
    graph = jaxsnn_style_graph(rng)
    time_scale = 2e-4  # tau_syn = 1 model unit
    network = from_nir(graph, time_scale=time_scale)  # one layer: its reset cannot change a first spike
    (layer,) = network.layers
    neuron = layer.population.neuron
    assert (neuron.threshold, neuron.tau_m, neuron.tau_s) == (1.0, 2.0, 1.0)
    # w = W r w_in / (tau_m tau_syn): r = w_in = 1, tau_m = 2, tau_syn = 2e-4 s
    np.testing.assert_allclose(layer.projection.weights, graph.nodes["linear"].weight.T / (2.0 * 2e-4), rtol=1e-15)
    for _ in range(3):
        inputs = rng.uniform(0.1, 1.5, size=3)
        assert_times_close(dg.forward(network, inputs[None])[0][0],
                           nir_spike_times(graph, inputs * time_scale)[0], time_scale)


def test_cubalif_parameters_of_one_value_apply_to_every_neuron():
    """Shape () or (1,) broadcasts over the layer as NIR arrays do: the same import as a full array."""
    full, short = (jaxsnn_style_graph(np.random.default_rng(13)) for _ in range(2))
    lif = short.nodes["cubalif"]
    lif.tau_mem, lif.tau_syn, lif.r, lif.v_threshold = np.array([4e-4]), np.array([2e-4]), np.array([1]), np.float64(1)
    assert_same_network(from_nir(short, time_scale=2e-4), from_nir(full, time_scale=2e-4))


def test_snntorch_style_two_layer_graph_needs_first_spike_only():
    rng = np.random.default_rng(14)
    graph = snntorch_style_graph(rng)
    with pytest.raises(NIRConversionError, match=r"'lif1'.*reset.*first_spike_only"):
        from_nir(graph, time_scale=1e-4)
    dt = 1e-4
    network = from_nir(graph, time_scale=dt, first_spike_only=True)
    assert [layer.population.name for layer in network.layers] == ["lif1", "lif2"]
    for layer, linear in zip(network.layers, ("fc1", "fc2")):
        # r = tau_mem/dt and w_in = tau_syn/dt give w = W / dt (unit-area spikes, time in units of dt)
        np.testing.assert_allclose(layer.projection.weights, graph.nodes[linear].weight.T.astype(np.float64) / dt,
                                   rtol=1e-6)
        assert layer.projection.delay_kind is dg.DelayKind.NONE
    hits = 0
    for _ in range(4):
        inputs = rng.uniform(0.0, 2.0, size=4)
        delgrad_times = dg.forward(network, inputs[None])
        for model, seconds in zip(delgrad_times, nir_spike_times(graph, inputs * dt)):
            assert_times_close(model[0], seconds, dt)
            hits += np.isfinite(seconds).sum()
    assert hits > 0


def test_affine_with_bias_is_refused():
    graph = snntorch_style_graph(np.random.default_rng(15), bias=True)
    with pytest.raises(NIRConversionError, match="'fc1'.*bias.*constant input current"):
        from_nir(graph, time_scale=1e-4, first_spike_only=True)
    graph.nodes["fc1"].bias[:] = 0.0
    graph.nodes["fc1"].bias[2] = -0.1  # (negative: a nonzero bias too)
    with pytest.raises(NIRConversionError, match="'fc1'.*bias.*constant input current"):
        from_nir(graph, time_scale=1e-4, first_spike_only=True)
    graph.nodes["fc1"].bias[2] = 0.0
    graph.nodes["fc1"].bias[1] = np.nan  # (it was called "a nonzero bias")
    with pytest.raises(NIRConversionError, match=r"Affine 'fc1'.bias: expected finite numbers \(zeros\), got nan"):
        from_nir(graph, time_scale=1e-4, first_spike_only=True)


def test_complex_weights_and_a_text_first_spike_flag_are_refused():
    graph = snntorch_style_graph(np.random.default_rng(16))
    graph.nodes["fc1"].weight = graph.nodes["fc1"].weight.astype(np.complex128) * (1 + 1j)
    with pytest.raises(NIRConversionError, match="'fc1'.weight: expected real numbers, got dtype complex128"):
        from_nir(graph, time_scale=1e-4, first_spike_only=True)  # (numpy dropped the imaginary part)
    graph = snntorch_style_graph(np.random.default_rng(16))
    graph.metadata = {"delgrad": {"first_spike_only": "false"}}
    with pytest.raises(NIRConversionError, match="first_spike_only: expected true or false, got 'false'"):
        from_nir(graph, time_scale=1e-4)  # ("false" counted as true)
    with pytest.raises(InvalidValueError, match="first_spike_only: expected True or False, got 'false'"):
        from_nir(graph, time_scale=1e-4, first_spike_only="false")  # (the argument, too)


@pytest.mark.parametrize("shape", [[4.7], [2**70], ["4"], [3, 2], [0]])
def test_an_input_shape_that_is_not_one_positive_integer_is_refused(shape):
    graph = snntorch_style_graph(np.random.default_rng(16))
    graph.nodes["input"].input_type = {"input": np.array(shape)}
    with pytest.raises(NIRConversionError, match=r"Input 'input': expected a 1-d shape \[n\] of a positive integer"):
        from_nir(graph, time_scale=1e-4, first_spike_only=True)  # ([4.7] was read as 4)


def test_an_input_of_two_ports_is_refused():
    graph = snntorch_style_graph(np.random.default_rng(16))
    n_inputs = graph.nodes["input"].input_type["input"]
    graph.nodes["input"].input_type = {"input": n_inputs, "extra": n_inputs}
    with pytest.raises(NIRConversionError, match=r"Input 'input': expected one port, got 2 \(input, extra\)"):
        from_nir(graph, time_scale=1e-4, first_spike_only=True)  # (the first was taken, the other ignored)


def test_nir_files_are_written_to_and_read_from_paths_bytes_and_file_objects(tmp_path, helpers):
    network = helpers.build_network([4, 5, 3], "axonal", 2.0, seed=4)
    buffer = io.BytesIO()
    assert save_nir(network, buffer, time_scale=1e-3) is None
    assert save_nir(network, tmp_path / "net.nir", time_scale=1e-3) == tmp_path / "net.nir"
    assert (tmp_path / "net.nir").read_bytes() == buffer.getvalue()
    for source in (buffer.getvalue(), io.BytesIO(buffer.getvalue()), str(tmp_path / "net.nir")):
        assert_same_network(load_nir(source), network)
    with pytest.raises(InvalidValueError, match="path: expected a file path or a writable binary file object for "
                                                "the NIR graph, got int"):
        save_nir(network, 3, time_scale=1e-3)
    with pytest.raises(InvalidValueError, match="path: expected a file path, bytes or a readable binary file of a "
                                                "NIR graph, got int"):
        load_nir(3)
    with pytest.raises(NIRConversionError, match=r"^<2 bytes>: cannot read a NIR graph"):
        load_nir(b"xx")


# ---------------------------------------------------------------- ranges of time scales and times

TIME_SCALE_RANGE = r"expected a number of seconds from 1e-12 to 1e\+03, got "


@pytest.mark.parametrize("bad", [1e-300, 9e-13, 1.1e3, 1.7e308, np.inf, -np.inf, np.nan, 0.0, -1e-3])
def test_a_time_scale_outside_its_range_is_refused_naming_the_range(helpers, bad):
    """(an import took 1e-300 s, making time constants near 1e297 model units; an export refused
    1.7e308 only as an overflow in seconds, and took 1.1e3)"""
    network = helpers.build_network([3, 4, 2], "axonal", 2.0, seed=2)
    message = rf"^time_scale \(CLI: --time-scale\): {TIME_SCALE_RANGE}{re.escape(repr(bad))}$"
    graph = to_nir(network, time_scale=1e-3)
    with pytest.raises(NIRConversionError, match=message):
        from_nir(graph, time_scale=bad)
    with pytest.raises(NIRConversionError, match=message):
        to_nir(network, time_scale=bad)
    graph.metadata["delgrad"]["time_scale_s"] = bad
    with pytest.raises(NIRConversionError, match=rf"^graph metadata delgrad.time_scale_s: {TIME_SCALE_RANGE}"):
        from_nir(graph)


@pytest.mark.parametrize("time_scale", [1e-12, 1e3])
def test_time_scales_at_the_ends_of_the_range_round_trip(helpers, time_scale):
    network = helpers.build_network([3, 4, 2], "synaptic", 2.0, seed=2)
    graph = to_nir(network, time_scale=time_scale)
    assert_same_network(from_nir(graph), network)
    for node in graph.nodes.values():
        node.metadata = {}
    imported = from_nir(graph, time_scale=time_scale)
    for new, old in zip(imported.layers, network.layers):
        np.testing.assert_allclose(new.projection.delays, old.projection.delays, rtol=1e-14)
        for a, b in zip(new.neuron_arrays(), old.neuron_arrays()):
            np.testing.assert_allclose(a, b, rtol=1e-14)


def delay_linear_graph(tau_syn, tau_mem, delay):
    """Input (2) -> Delay -> Linear -> CubaLIF (2) -> Output, times in seconds."""
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "d": nir.Delay(delay=np.array([0.0, delay])),
               "fc": nir.Linear(weight=np.ones((2, 2))),
               "lif": nir.CubaLIF(tau_syn=np.full(2, tau_syn), tau_mem=np.full(2, tau_mem), r=np.full(2, 2.0),
                                  v_leak=np.zeros(2), v_threshold=np.ones(2)),
               "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "d"), ("d", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)


@pytest.mark.parametrize("times, time_scale, reason", [
    ((1e-3, 2e-3, 0.0), 1e-12, r"CubaLIF 'lif'.tau_mem: 0.002 s is 2000000000.\d* model units of 1e-12 s, outside the "
                               r"allowed 1e-09 to 1e\+09 model units"),
    ((1e-13, 2e-3, 0.0), 1e-3, r"CubaLIF 'lif'.tau_syn: 1e-13 s is 1e-10 model units of 0.001 s, outside the "
                               r"allowed 1e-09 to 1e\+09 model units"),
    ((1e-3, 1e300, 0.0), 1e-12, r"CubaLIF 'lif'.tau_mem: 1e\+300 s is inf model units of 1e-12 s"),
    ((1e-3, 2e-3, 2e3), 1e-6, r"the delays into CubaLIF 'lif': 2000.0 s is 2000000000.\d* model units of 1e-06 s, "
                              r"outside the allowed 0 to 1e\+09 model units"),
], ids=["tau_mem-large", "tau_syn-small", "tau_mem-overflow", "delay-large"])
def test_imported_times_outside_their_range_are_refused_naming_the_field(times, time_scale, reason):
    with pytest.raises(NIRConversionError, match=rf"^{reason}.*choose a time scale \(CLI: --time-scale\)"):
        from_nir(delay_linear_graph(*times), time_scale=time_scale)  # (they were imported)
    from_nir(delay_linear_graph(1e-3, 2e-3, 2e-3), time_scale=1e-3)  # (sensible times and time scale)


def test_times_at_the_ends_of_their_ranges_are_imported():
    """tau 1e-9 and 1e9 model units and a delay of 1e9 lie inside the documented ranges (exact: T a power of 2)."""
    time_scale = 2.0 ** -20
    top = from_nir(delay_linear_graph(1e3 * time_scale, 1e9 * time_scale, 1e9 * time_scale), time_scale=time_scale)
    assert top.layers[0].neuron_arrays()[1].tolist() == [1e9, 1e9]
    assert top.layers[0].projection.delays.tolist() == [0.0, 1e9]
    bottom = from_nir(delay_linear_graph(1e-9 * time_scale, 1e-9 * time_scale, 0.0), time_scale=time_scale)
    assert bottom.layers[0].neuron_arrays()[2].tolist() == [1e-9, 1e-9]


def test_export_of_an_invalid_network_is_refused_with_the_reason():
    network = dg.Network.feedforward([4, 5, 3], delay_kind="axonal", seed=0)
    network.layers[0].projection.weights = np.ones((4, 6))  # (population 'hidden' has 5 neurons)
    with pytest.raises(NIRConversionError, match=r"^invalid network: hidden.projection.weights: has 6 columns"):
        to_nir(network, time_scale=1e-3)


@pytest.mark.parametrize("edit, reason", [
    (lambda layer: setattr(layer.population, "neuron", dg.NeuronParameters(1.0, tau_m=2e9, tau_s=1e4)),
     r"hidden.tau_m: 2000000000.0 is outside the 1e-09 to 1e\+09 model units"),
    (lambda layer: setattr(layer.population, "neuron", dg.NeuronParameters(1.0, tau_m=2e-9, tau_s=1e-10)),
     r"hidden.tau_s: 1e-10 is outside the 1e-09 to 1e\+09 model units"),
    (lambda layer: layer.projection.delays.__setitem__(1, 2e9),
     r"hidden.projection.delays: 2000000000.0 is outside the 0 to 1e\+09 model units"),
], ids=["tau_m", "tau_s", "delay"])
def test_export_refuses_times_that_an_import_would_refuse(helpers, edit, reason):
    network = helpers.build_network([3, 4, 2], "axonal", 2.0, seed=2)
    edit(network.layers[0])
    network.validate()
    with pytest.raises(NIRConversionError, match=rf"^{reason} that a NIR import accepts$"):
        to_nir(network, time_scale=1e-3)  # (it was written, in seconds that import read back out of range)


def test_cli_refuses_a_time_scale_outside_its_range_naming_the_option(tmp_path, helpers):
    network = helpers.build_network([3, 2], "axonal", 2.0, seed=2)
    dg.save_network(network, tmp_path / "net.npz")
    save_nir(network, tmp_path / "net.nir", time_scale=1e-3)
    runner = cli_runner()
    for args in (["export", str(tmp_path / "net.npz"), str(tmp_path / "out.nir")],
                 ["import", str(tmp_path / "net.nir"), str(tmp_path / "out.npz")]):
        for value in ("1e-300", "0", "-1e-3", "inf", "2e3", "nan"):
            result = runner.invoke(main, [*args, "--time-scale", value])
            assert result.exit_code == 2, result.output
            assert f"Invalid value for '--time-scale': {float(value)} is not in the range 1e-12<=x<=1000.0" \
                   in result.output
    assert not (tmp_path / "out.nir").exists() and not (tmp_path / "out.npz").exists()


def test_export_and_import_keep_a_file_another_process_wrote_meanwhile(tmp_path, helpers, monkeypatch):
    """(two exports, or imports, to one name both said "wrote", and one of the files was lost)"""
    from delgrad_core._atomic import checked_before_commit

    network = helpers.build_network([3, 2], "axonal", 2.0, seed=2)
    dg.save_network(network, tmp_path / "net.npz")
    save_nir(network, tmp_path / "net.nir", time_scale=1e-3)
    for args, out in ((["export", str(tmp_path / "net.npz")], tmp_path / "out.nir"),
                      (["import", str(tmp_path / "net.nir")], tmp_path / "out.npz")):
        def other_process():  # (writes the name just before this command moves its file there)
            if not out.exists():
                out.write_bytes(b"the other process's")

        with checked_before_commit(other_process):
            result = cli_runner().invoke(main, [*args, str(out), "--time-scale", "1e-3"])
        assert result.exit_code == 1 and f"OUT: {out} was written by another process meanwhile and is not " \
                                          "overwritten" in result.output, result.output
        assert out.read_bytes() == b"the other process's" and [p.name for p in tmp_path.glob(".*")] == []
        with checked_before_commit(other_process):
            result = cli_runner().invoke(main, [*args, str(out), "--time-scale", "1e-3", "--force"])
        assert result.exit_code == 0 and out.read_bytes() != b"the other process's", result.output
        out.unlink()
        with monkeypatch.context() as patched:  # (written while the command loads its input)
            for module, name in ((dg, "load_network"), (dg.nir, "load_nir")):
                patched.setattr(module, name, lambda *a, load=getattr(module, name), **k: (other_process(),
                                                                                           load(*a, **k))[1])
            result = cli_runner().invoke(main, [*args, str(out), "--time-scale", "1e-3"])
        assert result.exit_code == 1 and "was written by another process meanwhile" in result.output, result.output
        assert out.read_bytes() == b"the other process's"


def test_a_bad_delay_is_named_with_its_value_and_line():
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([3])), "d": nir.Delay(delay=np.array([1e-3, np.inf, 2e-3])),
               "fc": nir.Linear(weight=np.ones((2, 3))),
               "lif": nir.CubaLIF(tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 2e-3), r=np.full(2, 2.0),
                                  v_leak=np.zeros(2), v_threshold=np.ones(2)),
               "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "d"), ("d", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(NIRConversionError, match=r"Delay 'd': delays must be finite and >= 0 s, got inf on line 1"):
        from_nir(graph, time_scale=1e-3)  # (it showed the finite minimum)
    graph.nodes["d"].delay = np.array([1e-3, 0.0, -2e-3])
    with pytest.raises(NIRConversionError, match=r"Delay 'd': delays must be finite and >= 0 s, got -0.002 on line 2"):
        from_nir(graph, time_scale=1e-3)


def test_export_names_the_delay_kind_of_every_layer_when_they_differ(tmp_path, helpers):
    dg.save_network(dg.Network.feedforward([2, 3, 2], delay_kind=["axonal", "synaptic"]), tmp_path / "n.npz")
    result = cli_runner().invoke(main, ["export", str(tmp_path / "n.npz"), str(tmp_path / "n.nir"),
                                        "--time-scale", "1e-3"])
    assert result.exit_code == 0 and "2-3-2, axonal,synaptic delays" in result.output, result.output


def recurrent_graph(rng, n=3):
    """Input -> Linear -> CubaLIF <-> Linear (recurrent weights), as snnTorch writes RSynaptic."""
    lif = nir.CubaLIF(tau_syn=np.full(n, 1e-3), tau_mem=np.full(n, 2e-3), r=np.full(n, 2.0),
                      v_leak=np.zeros(n), v_threshold=np.ones(n))
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "fc": nir.Linear(weight=rng.normal(size=(n, 2))),
               "lif": lif, "w_rec": nir.Linear(weight=rng.normal(size=(n, n))),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False,
    )


def test_recurrent_graph_is_refused_naming_the_edge():
    graph = recurrent_graph(np.random.default_rng(16))
    with pytest.raises(NIRConversionError, match=r"recurrent edge .*'w_rec' -> 'lif'|recurrent edge 'lif' -> 'w_rec'"):
        from_nir(graph, time_scale=1e-3)


def test_a_recurrent_graph_is_refused_naming_the_cycle_alone():
    """The cycle is lif -> w_rec -> lif, not the path from the input that led to it."""
    graph = recurrent_graph(np.random.default_rng(16))
    with pytest.raises(NIRConversionError, match=r"\(cycle lif -> w_rec -> lif\)"):
        from_nir(graph, time_scale=1e-3)


def test_recurrent_subgraph_is_refused():
    inner = recurrent_graph(np.random.default_rng(17))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "rnn": inner,
               "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "rnn"), ("rnn", "output")], type_check=False,
    )
    with pytest.raises(NIRConversionError, match="'rnn' is a recurrent subgraph"):
        from_nir(graph, time_scale=1e-3)


class _Oscillator(nir.NIRNode):
    """A node type NIR does not define."""

    def __init__(self):
        self.metadata = {}
        self.input_type = {"input": np.array([2])}
        self.output_type = {"output": np.array([2])}


@pytest.mark.parametrize(
    "node, reason",
    [
        (nir.LIF(tau=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
         "'odd' is a LIF.*no synaptic current"),
        (nir.CubaLI(tau_syn=np.full(2, 1e-3), tau_mem=np.full(2, 2e-3), r=np.ones(2), v_leak=np.zeros(2)),
         "'odd' is a CubaLI.*does not spike"),
        (_Oscillator(), "'odd' has the unknown type _Oscillator"),
    ],
    ids=["LIF", "CubaLI", "unknown"],
)
def test_unsupported_nodes_are_refused_with_the_reason(node, reason):
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([2])), "w": nir.Linear(weight=np.eye(2)), "odd": node,
               "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "w"), ("w", "odd"), ("odd", "output")], type_check=False,
    )
    with pytest.raises(NIRConversionError, match=reason):
        from_nir(graph, time_scale=1e-3)


def test_branching_graph_is_refused():
    graph = jaxsnn_style_graph(np.random.default_rng(18))
    graph.nodes["other"] = nir.Linear(weight=np.ones((2, 3)))
    graph.edges.append(("input", "other"))
    with pytest.raises(NIRConversionError, match="'input' has 2 outgoing edges"):
        from_nir(graph, time_scale=1e-3)


def test_a_node_off_the_input_to_output_path_is_refused():
    graph = jaxsnn_style_graph(np.random.default_rng(18))
    graph.nodes["stray"] = nir.Linear(weight=np.ones((2, 3)))  # (no edges)
    with pytest.raises(NIRConversionError, match=r"^nodes \['stray'\] are not on the path from 'input' to 'output'"):
        from_nir(graph, time_scale=1e-3)


def test_a_path_that_does_not_reach_the_output_is_refused():
    graph = jaxsnn_style_graph(np.random.default_rng(18))
    graph.edges.remove(("cubalif", "output"))
    with pytest.raises(NIRConversionError, match="^the path from input 'input' ends at 'cubalif', not at output"):
        from_nir(graph, time_scale=1e-3)


def test_a_graph_without_a_cubalif_is_refused():
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2])), "fc": nir.Linear(weight=np.eye(2)),
                                "output": nir.Output(output_type=np.array([2]))},
                         edges=[("input", "fc"), ("fc", "output")], type_check=False)
    with pytest.raises(NIRConversionError, match="^the graph has no CubaLIF node"):
        from_nir(graph, time_scale=1e-3)


def test_nodes_after_the_last_cubalif_are_refused():
    """(a readout Linear after the last spiking layer would be dropped silently)"""
    graph = jaxsnn_style_graph(np.random.default_rng(18))
    graph.nodes["readout"] = nir.Linear(weight=2 * np.eye(2))
    graph.edges = [edge for edge in graph.edges if edge != ("cubalif", "output")]
    graph.edges += [("cubalif", "readout"), ("readout", "output")]
    with pytest.raises(NIRConversionError, match=r"^nodes \['readout'\] follow the last CubaLIF 'cubalif'"):
        from_nir(graph, time_scale=1e-3)


def test_a_graph_without_an_input_node_is_refused():
    graph = jaxsnn_style_graph(np.random.default_rng(18))
    del graph.nodes["input"]
    graph.edges.remove(("input", "linear"))
    with pytest.raises(NIRConversionError, match=r"^expected exactly one Input node, found 0 \(none\)"):
        from_nir(graph, time_scale=1e-3)


def test_an_output_whose_size_differs_from_the_last_cubalif_is_refused():
    graph = jaxsnn_style_graph(np.random.default_rng(18))  # (a CubaLIF of 2 neurons)
    graph.nodes["output"].output_type = {"output": np.array([3])}
    with pytest.raises(NIRConversionError, match="^Output 'output' has size 3, but the last CubaLIF has 2 neurons$"):
        from_nir(graph, time_scale=1e-3)


def test_missing_time_unit_is_refused():
    with pytest.raises(NIRConversionError, match="does not state its time unit.*time_scale"):
        from_nir(jaxsnn_style_graph(np.random.default_rng(19)))


def test_nonzero_v_leak_is_refused():
    graph = jaxsnn_style_graph(np.random.default_rng(20))
    graph.nodes["cubalif"].v_leak = np.array([-0.5, -0.5])
    with pytest.raises(NIRConversionError, match="v_leak"):
        from_nir(graph, time_scale=1e-3)


@pytest.mark.parametrize("field, value, reason", [
    ("tau_syn", 0.0, "tau_syn and tau_mem must be > 0"), ("tau_mem", -4e-4, "tau_syn and tau_mem must be > 0"),
    ("v_threshold", 0.0, "v_threshold must be above the resting potential 0"),
    ("v_threshold", -1.0, "v_threshold must be above the resting potential 0"),
], ids=["tau_syn-zero", "tau_mem-negative", "threshold-at-rest", "threshold-below-rest"])
def test_non_positive_time_constants_and_a_threshold_at_or_below_rest_are_refused(field, value, reason):
    graph = jaxsnn_style_graph(np.random.default_rng(20))
    getattr(graph.nodes["cubalif"], field)[1] = value
    with pytest.raises(NIRConversionError, match=f"^CubaLIF 'cubalif': {reason}$"):
        from_nir(graph, time_scale=2e-4)


def test_a_line_cut_by_a_scale_of_zero_does_not_count_as_a_second_delay():
    """Input 0 reaches the neuron over two lines, delayed 1 ms and 2 ms; a Scale 0 cuts the second (weight 0)."""
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1])), "fan": nir.Linear(weight=np.ones((2, 1))),
               "delay": nir.Delay(delay=np.array([1e-3, 2e-3])), "cut": nir.Scale(scale=np.array([1.0, 0.0])),
               "w": nir.Linear(weight=np.ones((1, 2))),
               "lif": nir.CubaLIF(tau_syn=np.ones(1), tau_mem=np.ones(1), r=np.ones(1), v_leak=np.zeros(1),
                                  v_threshold=np.ones(1)),
               "output": nir.Output(output_type=np.array([1]))},
        edges=[("input", "fan"), ("fan", "delay"), ("delay", "cut"), ("cut", "w"), ("w", "lif"), ("lif", "output")],
    )
    projection = from_nir(graph, time_scale=1e-3).layers[0].projection
    np.testing.assert_allclose(projection.delays, [[1.0]], rtol=1e-12)  # (1 ms in units of 1 ms)


def test_one_synapse_with_two_delays_is_refused():
    # line 0 and line 1 both carry input 0, with different delays, into the same neuron
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([1])), "fan": nir.Linear(weight=np.ones((2, 1))),
               "delay": nir.Delay(delay=np.array([1e-3, 2e-3])), "w": nir.Linear(weight=np.ones((1, 2))),
               "lif": nir.CubaLIF(tau_syn=np.ones(1), tau_mem=np.ones(1), r=np.ones(1), v_leak=np.zeros(1),
                                  v_threshold=np.ones(1)),
               "output": nir.Output(output_type=np.array([1]))},
        edges=[("input", "fan"), ("fan", "delay"), ("delay", "w"), ("w", "lif"), ("lif", "output")],
    )
    with pytest.raises(NIRConversionError, match="different delays.*one delay per synapse"):
        from_nir(graph, time_scale=1e-3)


@pytest.mark.parametrize("version", [2, np.int64(2)])  # (as a file read back holds it: shown as 2, not np.int64(2))
def test_unknown_format_version_is_refused(helpers, version):
    graph = to_nir(helpers.build_network([2, 2], "none", 2.0, seed=0), time_scale=1e-3)
    graph.metadata["delgrad"]["version"] = version
    with pytest.raises(NIRConversionError, match="format version 2; this delgrad reads version 1"):
        from_nir(graph)


def test_a_format_version_of_true_is_refused_and_a_missing_one_reads_as_version_1(helpers):
    network = helpers.build_network([2, 2], "none", 2.0, seed=0)
    graph = to_nir(network, time_scale=1e-3)
    graph.metadata["delgrad"]["version"] = True  # (True == 1 in Python)
    with pytest.raises(NIRConversionError, match="format version True; this delgrad reads version 1"):
        from_nir(graph)
    del graph.metadata["delgrad"]["version"]
    assert_same_network(from_nir(graph), network)


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan"), float("inf"), "fast", "6e-6", True, 1e-320])
def test_invalid_time_scale_is_refused(helpers, bad):
    """(True was read as 1 s, the text "6e-6" as a number, and a subnormal 1e-320 overflowed the
    times divided by it into NaN, blamed on the delays)"""
    network = helpers.build_network([2, 2], "none", 2.0, seed=0)
    with pytest.raises(NIRConversionError, match="time_scale"):
        to_nir(network, time_scale=bad)
    graph = to_nir(network, time_scale=1e-3)
    with pytest.raises(NIRConversionError, match="time_scale"):
        from_nir(graph, time_scale=bad)
    assert issubclass(NIRConversionError, ValueError)


# ---------------------------------------------------------------- packaging


def test_core_and_cli_do_not_import_nir(tmp_path):
    code = ("import sys, delgrad_core, delgrad_core.cli, delgrad_core.nir; "
            "assert 'nir' not in sys.modules, sorted(m for m in sys.modules if m.startswith('nir'))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_missing_nir_package_says_how_to_install(monkeypatch, helpers):
    monkeypatch.setitem(sys.modules, "nir", None)  # makes `import nir` fail
    with pytest.raises(NIRNotInstalledError, match=r"pip install 'delgrad\[nir\]'") as info:
        to_nir(helpers.build_network([2, 2], "none", 2.0, seed=0), time_scale=1e-3)
    assert isinstance(info.value, ImportError)


# ---------------------------------------------------------------- command line


def test_cli_export_then_import_round_trips(tmp_path, helpers):
    network = helpers.build_network([4, 5, 3], "synaptic", 2.0, seed=21)
    dg.save_network(network, tmp_path / "net.npz")
    runner = cli_runner()
    result = runner.invoke(main, ["export", "--format", "nir", str(tmp_path / "net.npz"), str(tmp_path / "net.nir"),
                                  "--time-scale", "6e-6"])
    assert result.exit_code == 0, result.output
    assert nir.read(tmp_path / "net.nir").metadata["delgrad"]["time_scale_s"] == 6e-6
    result = runner.invoke(main, ["import", str(tmp_path / "net.nir"), str(tmp_path / "back.npz")])
    assert result.exit_code == 0, result.output
    assert_same_network(dg.load_network(tmp_path / "back.npz"), network)


def test_cli_import_names_the_delay_kinds_layer_by_layer(tmp_path):
    """(import listed the kinds sorted and once each: 'axonal,dendritic,none' for axonal,none,dendritic)"""
    dg.save_network(dg.Network.feedforward([4, 5, 6, 3], delay_kind=["axonal", "none", "dendritic"], seed=1),
                    tmp_path / "net.npz")
    runner = cli_runner()
    result = runner.invoke(main, ["export", "--format", "nir", str(tmp_path / "net.npz"), str(tmp_path / "net.nir"),
                                  "--time-scale", "6e-6"])
    assert result.exit_code == 0 and "4-5-6-3, axonal,none,dendritic delays" in result.output, result.output
    result = runner.invoke(main, ["import", str(tmp_path / "net.nir"), str(tmp_path / "back.npz")])
    assert result.exit_code == 0 and "(4-5-6-3, axonal,none,dendritic delays)" in result.output, result.output
    dg.save_network(dg.Network.feedforward([4, 5, 3], delay_kind="none", seed=1), tmp_path / "plain.npz")
    result = runner.invoke(main, ["export", str(tmp_path / "plain.npz"), str(tmp_path / "plain.nir"),
                                  "--time-scale", "1e-6"])
    # (not "none delays")
    assert result.exit_code == 0 and "(nir; 4-5-3, no delays, 1 model" in result.output, result.output


def test_cli_names_a_delay_kind_shared_by_every_layer_once(tmp_path):
    dg.save_network(dg.Network.feedforward([4, 5, 3], delay_kind="axonal", seed=1), tmp_path / "net.npz")
    runner = cli_runner()
    result = runner.invoke(main, ["export", str(tmp_path / "net.npz"), str(tmp_path / "net.nir"),
                                  "--time-scale", "1e-6"])
    assert result.exit_code == 0 and "(nir; 4-5-3, axonal delays, 1 model" in result.output, result.output
    result = runner.invoke(main, ["import", str(tmp_path / "net.nir"), str(tmp_path / "back.npz")])
    assert result.exit_code == 0 and "(4-5-3, axonal delays)" in result.output, result.output


def test_cli_export_of_a_chip_trained_run_says_so_and_exports_what_the_chip_runs_when_asked(tmp_path):
    """(a bss2-emulator run's network.npz holds the trained float weights, off the chip's grid
    and up to 2.6 against its limit of 2.1: the export gave them without a word)"""
    runner, run = cli_runner(), tmp_path / "run"
    result = runner.invoke(main, ["train", "--backend", "bss2-emulator", "--hidden", "4", "--epochs", "1",
                                  "--batch-size", "500", "--no-progress", "--out", str(run)])
    assert result.exit_code == 0, result.output + result.stderr
    trained = dg.load_network(run / "network.npz")
    as_stored = runner.invoke(main, ["export", str(run), str(tmp_path / "a.nir"), "--time-scale", "6e-6"])
    assert as_stored.exit_code == 0 and "was trained on backend 'bss2-emulator', which declares limits, grids or " \
        "input copies" in as_stored.stderr and "--represented exports what the backend runs" in as_stored.stderr
    assert_same_network(load_nir(tmp_path / "a.nir"), trained)
    represented = runner.invoke(main, ["export", str(run / "network.npz"), str(tmp_path / "b.nir"), "--time-scale",
                                       "6e-6", "--represented"])
    assert represented.exit_code == 0, represented.output
    assert "as backend 'bss2-emulator' runs it" in represented.output and "note:" not in represented.stderr
    on_reference = runner.invoke(main, ["evaluate", str(run), "--backend", "reference"])
    assert on_reference.exit_code == 0 and "'reference' ran the trained parameters as stored" in on_reference.stderr
    assert "note:" not in runner.invoke(main, ["evaluate", str(run)]).stderr
    through_the_service = runner.invoke(main, ["evaluate", str(run), "--backend", "mock-hil"])  # (the same chip)
    assert through_the_service.exit_code == 0 and "note:" not in through_the_service.stderr, through_the_service.stderr
    with dg.get_backend("bss2-emulator") as chip:
        assert_same_network(load_nir(tmp_path / "b.nir"), chip.represent(trained))
    dg.save_network(trained, tmp_path / "alone.npz")
    alone = runner.invoke(main, ["export", str(tmp_path / "alone.npz"), str(tmp_path / "c.nir"), "--time-scale", "6e-6",
                                 "--represented"])
    assert alone.exit_code == 2 and "is not in a finished run folder, so no backend is named" in alone.output
    assert not (tmp_path / "c.nir").exists()
    damaged = tmp_path / "damaged"  # (the export needs only the network: an unreadable metrics.json gives no note)
    damaged.mkdir()
    dg.save_network(trained, damaged / "network.npz")
    (damaged / "metrics.json").write_text("{broken")
    result = runner.invoke(main, ["export", str(damaged / "network.npz"), str(tmp_path / "d.nir"), "--time-scale",
                                  "6e-6"])
    assert result.exit_code == 0 and "note:" not in result.stderr, result.output + result.stderr


def test_cli_export_of_a_run_trained_on_a_backend_without_limits_gives_no_note(finished_run, tmp_path):
    """The reference backend declares no limits, grids or input copies: the trained parameters are
    the ones it ran, and the graph holds them."""
    result = cli_runner().invoke(main, ["export", str(finished_run), str(tmp_path / "a.nir"), "--time-scale", "6e-6"])
    assert result.exit_code == 0 and "note" not in result.stderr, result.output + result.stderr


def _run_copy(finished_run, tmp_path, edit=None):
    """A copy of `finished_run` whose metrics.json `edit(metrics)` changed."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if edit is not None:
        metrics = json.loads((run / "metrics.json").read_text())
        edit(metrics)
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_cli_export_note_names_the_run_folder_as_given(finished_run, tmp_path):
    """(the note names what the user gave: the run folder, not its network.npz; README: "a note says so
    when the run's backend may change them")"""
    run = _run_copy(finished_run, tmp_path, lambda metrics: metrics["config"].update(backend="bss2-emulator"))
    result = cli_runner().invoke(main, ["export", str(run), str(tmp_path / "a.nir"), "--time-scale", "6e-6"])
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stderr.startswith(f"note: {run} was trained on backend 'bss2-emulator', "), result.stderr


def test_cli_export_beside_a_metrics_json_that_is_a_folder_exports_without_a_note(tmp_path, helpers):
    """The note is left out beside an unreadable metrics.json: the export needs only the network
    (`_note_if_trained_on_a_representing_backend`; a folder there is a RunFolderError, no ValueError)."""
    dg.save_network(helpers.build_network([3, 2], "axonal", 2.0, seed=5), tmp_path / "network.npz")
    (tmp_path / "metrics.json").mkdir()
    result = cli_runner().invoke(main, ["export", str(tmp_path / "network.npz"), str(tmp_path / "a.nir"),
                                        "--time-scale", "6e-6"])
    assert result.exit_code == 0 and "note" not in result.stderr, result.output + result.stderr
    assert (tmp_path / "a.nir").is_file()


def test_cli_export_represented_of_an_unfinished_run_folder_is_a_usage_error(finished_run, tmp_path):
    """--represented: "NETWORK must be a finished run folder or its network.npz" (--help); a folder
    with a network.npz but no metrics.json names no backend, as its network.npz does not."""
    run = _run_copy(finished_run, tmp_path)
    (run / "metrics.json").unlink()
    for network in (run, run / "network.npz"):
        result = cli_runner().invoke(main, ["export", str(network), str(tmp_path / "a.nir"), "--time-scale", "6e-6",
                                            "--represented"])
        assert result.exit_code == 2, result.output
        assert f"--represented: {network} is not in a finished run folder, so no backend is named to represent it: " \
               "give the run folder" in result.output
    assert not (tmp_path / "a.nir").exists()


def test_cli_export_represented_of_a_run_whose_settings_name_no_backend_names_metrics_json(finished_run, tmp_path):
    """--represented exports what the run's own backend runs: a metrics.json naming no backend is
    refused in one line naming the file and the setting (it was "Error: 'backend'", a KeyError's
    text; found by helper Z's mutation pass)."""
    run = _run_copy(finished_run, tmp_path, lambda metrics: metrics["config"].pop("backend"))
    result = cli_runner().invoke(main, ["export", str(run), str(tmp_path / "a.nir"), "--time-scale", "6e-6",
                                        "--represented"])
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.output == f"Error: {run}/metrics.json: config.backend: expected the name of the backend the run " \
        "was trained on, got None (a damaged or edited run folder); without --represented the graph holds the " \
        "trained parameters\n"
    assert not (tmp_path / "a.nir").exists()


def test_cli_export_refuses_a_run_folder_whose_network_npz_is_a_folder(tmp_path):
    """`export` takes a run folder's network.npz (README); a folder of that name is no network file:
    a usage error (status 2) naming the folder, not an unreadable file."""
    run = tmp_path / "run"
    (run / "network.npz").mkdir(parents=True)
    result = cli_runner().invoke(main, ["export", str(run), str(tmp_path / "a.nir"), "--time-scale", "6e-6"])
    assert result.exit_code == 2 and f"{run} is a folder without network.npz: give a network file (.npz) or the " \
        "folder of a finished run" in result.output, result.output


def test_cli_export_says_the_time_scale_in_its_shortest_form(tmp_path, helpers):
    """The summary line gives the time unit as written ("1 model time unit = 1 s", not 1.0 s)."""
    dg.save_network(helpers.build_network([3, 2], "none", 2.0, seed=5), tmp_path / "net.npz")
    for given, shown in (("1", "1"), ("6e-6", "6e-06"), ("0.25", "0.25")):
        result = cli_runner().invoke(main, ["export", str(tmp_path / "net.npz"), str(tmp_path / "a.nir"),
                                            "--time-scale", given, "--force"])
        assert result.exit_code == 0, result.output
        assert result.output.endswith(f"(nir; 3-2, no delays, 1 model time unit = {shown} s)\n"), result.output


def test_cli_import_refuses_a_folder_as_source_as_a_usage_error(tmp_path):
    """SOURCE is a NIR file: a folder is refused by the command line (status 2), not read."""
    (tmp_path / "graph.nir").mkdir()
    result = cli_runner().invoke(main, ["import", str(tmp_path / "graph.nir"), str(tmp_path / "net.npz")])
    assert result.exit_code == 2 and "is a directory" in result.output, result.output
    assert not (tmp_path / "net.npz").exists()


def test_cli_export_and_import_replace_an_existing_file_only_when_told(tmp_path, helpers):
    dg.save_network(helpers.build_network([4, 5, 3], "axonal", 2.0, seed=3), tmp_path / "net.npz")
    original = (tmp_path / "net.npz").read_bytes()
    (tmp_path / "metrics.json").write_text("{}")
    runner = cli_runner()
    result = runner.invoke(main, ["export", str(tmp_path / "net.npz"), str(tmp_path / "metrics.json"),
                                  "--time-scale", "1e-3"])  # (an export over a run's files destroyed them)
    assert result.exit_code == 2 and f"OUT: {tmp_path / 'metrics.json'} exists and is not overwritten" in result.output
    for force in ([], ["--force"]):
        result = runner.invoke(main, ["export", str(tmp_path / "net.npz"), str(tmp_path / "net.npz"), "--time-scale",
                                      "1e-3", *force])
        assert result.exit_code == 2 and "is also the command's input" in result.output
    assert (tmp_path / "net.npz").read_bytes() == original and (tmp_path / "metrics.json").read_text() == "{}"
    assert runner.invoke(main, ["export", str(tmp_path / "net.npz"), str(tmp_path / "net.nir"), "--time-scale",
                                "1e-3"]).exit_code == 0
    result = runner.invoke(main, ["import", str(tmp_path / "net.nir"), str(tmp_path / "net.npz")])
    assert result.exit_code == 2 and "exists and is not overwritten; remove it or choose another name; --force" \
        in result.output
    result = runner.invoke(main, ["import", str(tmp_path / "net.nir"), str(tmp_path / "net.nir"), "--force"])
    assert result.exit_code == 2 and "is also the command's input" in result.output
    assert runner.invoke(main, ["import", str(tmp_path / "net.nir"), str(tmp_path / "net.npz"),
                                "--force"]).exit_code == 0
    assert_same_network(dg.load_network(tmp_path / "net.npz"), helpers.build_network([4, 5, 3], "axonal", 2.0, seed=3))


def test_cli_export_writes_through_a_link_to_a_file_yet_to_be_made(tmp_path, helpers):
    dg.save_network(helpers.build_network([2, 3], "none", 2.0, seed=1), tmp_path / "net.npz")
    (tmp_path / "link.nir").symlink_to("made.nir")
    result = cli_runner().invoke(main, ["export", str(tmp_path / "net.npz"), str(tmp_path / "link.nir"),
                                        "--time-scale", "1e-3"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "link.nir").is_symlink() and (tmp_path / "made.nir").is_file()


def test_cli_import_of_foreign_graph_uses_time_scale_and_flag(tmp_path):
    nir.write(tmp_path / "snn.nir", snntorch_style_graph(np.random.default_rng(22)))
    runner = cli_runner()
    args = ["import", str(tmp_path / "snn.nir"), str(tmp_path / "snn.npz")]
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and "time unit" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, args + ["--time-scale", "1e-4"])
    assert result.exit_code == 1 and "--first-spike-only" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(main, args + ["--time-scale", "1e-4", "--first-spike-only"])
    assert result.exit_code == 0, result.output
    assert dg.load_network(tmp_path / "snn.npz").sizes == [4, 5, 3]


def test_cli_errors_are_one_line(tmp_path):
    nir.write(tmp_path / "rnn.nir", recurrent_graph(np.random.default_rng(23)))
    result = cli_runner().invoke(main, ["import", str(tmp_path / "rnn.nir"), str(tmp_path / "x.npz"),
                                       "--time-scale", "1e-3"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "recurrent edge" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.npz").exists()
    result = cli_runner().invoke(main, ["export", str(tmp_path / "rnn.nir"), str(tmp_path / "x.nir")])
    assert result.exit_code == 2 and "--time-scale" in result.output


def test_cli_without_nir_says_how_to_install(tmp_path, monkeypatch, helpers):
    dg.save_network(helpers.build_network([2, 2], "none", 2.0, seed=0), tmp_path / "net.npz")
    monkeypatch.setitem(sys.modules, "nir", None)
    result = cli_runner().invoke(main, ["export", str(tmp_path / "net.npz"), str(tmp_path / "net.nir"),
                                       "--time-scale", "1e-3"])
    assert result.exit_code == 1 and "pip install 'delgrad[nir]'" in result.output
    assert len(result.output.strip().splitlines()) == 1
