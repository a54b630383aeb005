"""NIR import details: delays of synapses of weight 0, the delay kind of chains with Scale nodes,
errors of the NIR reader, a time scale other than the stored one."""

import os
import re
import warnings

import numpy as np
import pytest

nir = pytest.importorskip("nir")

import delgrad_core as dg  # noqa: E402

from delgrad_core.cli import main  # noqa: E402
from delgrad_core.nir import NIRConversionError, from_nir, load_nir, save_nir, to_nir  # noqa: E402
from delgrad_core.testing import cli_runner  # noqa: E402

TIME_SCALE_S = 6e-6


# ---------------------------------------------------------------- synapses of weight 0 keep their delays


def zero_weight_network(helpers):
    """A synaptic-delay network where some weights are exactly 0 (one synapse, and all synapses of
    one presynaptic neuron) and every delay differs."""
    network = helpers.build_network([4, 5, 3], "synaptic", 2.0, seed=31)
    for layer in network.layers:
        layer.projection.weights[0, 1] = 0.0
        layer.projection.weights[2, :] = 0.0
    network.validate()
    return network


def _edited(graph):
    graph.nodes["hidden.lif"].tau_mem = graph.nodes["hidden.lif"].tau_mem * 2  # (no longer what delgrad wrote)
    return graph


def _without_metadata(graph):
    for node in graph.nodes.values():
        node.metadata = {}
    return graph


@pytest.mark.parametrize("edit, time_scale", [
    (None, None), (None, 3 * TIME_SCALE_S), (_edited, None), (_without_metadata, TIME_SCALE_S),
], ids=["round-trip", "other-time-scale", "edited", "no-metadata"])
def test_synapses_of_weight_zero_keep_their_delays_on_every_import_path(helpers, edit, time_scale):
    network = zero_weight_network(helpers)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    if edit is not None:
        edit(graph)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="time scale")  # (tested below)
        warnings.filterwarnings("ignore", message="CubaLIF 'hidden.lif' and the nodes before it differ")  # (below)
        imported = from_nir(graph, time_scale=time_scale)
    factor = 1.0 if time_scale is None else time_scale / TIME_SCALE_S
    for new, old in zip(imported.layers, network.layers):
        assert np.array_equal(new.projection.weights == 0, old.projection.weights == 0)
        np.testing.assert_allclose(new.projection.delays * factor, old.projection.delays, rtol=1e-13)


def chain_graph(ops: dict, n_in: int, n_out: int):
    """Input (n_in) -> the nodes `ops`, in order -> CubaLIF (n_out) -> Output."""
    nodes = {"input": nir.Input(input_type=np.array([n_in])), **ops,
             "lif": nir.CubaLIF(tau_syn=np.full(n_out, 1e-3), tau_mem=np.full(n_out, 2e-3), r=np.full(n_out, 2.0),
                                v_leak=np.zeros(n_out), v_threshold=np.full(n_out, 0.5)),
             "output": nir.Output(output_type=np.array([n_out]))}
    keys = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])), type_check=False)


def axon_linear_dendrite_graph(weight, axonal_s, dendritic_s, *, scale=None):
    """Input -> Delay (axonal) -> Linear -> Delay (dendritic) [-> Scale] -> CubaLIF -> Output."""
    ops = {"axon": nir.Delay(delay=axonal_s), "w": nir.Linear(weight=weight), "dendrite": nir.Delay(delay=dendritic_s)}
    if scale is not None:
        ops["scale"] = nir.Scale(scale=scale)
    return chain_graph(ops, weight.shape[1], weight.shape[0])


@pytest.mark.parametrize("scale", [None, np.array([1.0, 2.0, 0.5])], ids=["plain", "then-a-scale"])
def test_a_synapse_of_weight_zero_between_two_delays_gets_their_sum(scale):
    rng = np.random.default_rng(32)
    weight = rng.uniform(0.5, 1.5, size=(3, 4)) * 1e-3
    weight[1, 0] = weight[2, 3] = 0.0
    axonal, dendritic = rng.uniform(1e-4, 5e-4, 4), rng.uniform(1e-4, 5e-4, 3)
    network = from_nir(axon_linear_dendrite_graph(weight, axonal, dendritic, scale=scale), time_scale=1e-3)
    projection = network.layers[0].projection
    assert projection.weights[0, 1] == projection.weights[3, 2] == 0.0
    np.testing.assert_allclose(projection.delays * 1e-3, axonal[:, None] + dendritic[None, :], rtol=1e-14)


def test_a_synapse_of_weight_zero_before_a_delay_and_a_scale_gets_the_delay():
    weight = np.ones((3, 4))
    weight[1, 0] = 0.0
    dendritic = np.array([1e-4, 2e-4, 3e-4])
    graph = axon_linear_dendrite_graph(weight, np.zeros(4), dendritic, scale=np.array([1.0, 2.0, 0.5]))
    del graph.nodes["axon"]
    graph.edges = [("input", "w")] + graph.edges[2:]  # Linear -> Delay -> Scale (it crashed: a Scale has no matrix)
    projection = from_nir(graph, time_scale=1e-3).layers[0].projection
    assert projection.delay_kind is dg.DelayKind.DENDRITIC and projection.weights[0, 1] == 0.0
    np.testing.assert_allclose(projection.delays * 1e-3, dendritic, rtol=1e-14)


# ---------------------------------------------------------------- the delay kind of chains with Scale nodes

W = np.arange(1.0, 13.0).reshape(4, 3) * 1e-3  # (n_post, n_pre)
S_PRE, S_POST = np.array([1.0, 0.0, 2.0]), np.array([0.5, 2.0, 0.0, 1.5])  # (a factor 0 cuts a line's weights)
D_PRE, D_POST = np.array([1e-4, 2e-4, 3e-4]), np.array([4e-4, 3e-4, 2e-4, 1e-4])
D_PRE2, D_POST2 = np.array([5e-4, 0.0, 1e-4]), np.array([1e-4, 5e-4, 0.0, 2e-4])


@pytest.mark.parametrize("ops, folded, kind", [
    ({"w": nir.Linear(weight=W), "d": nir.Delay(delay=D_POST), "s": nir.Scale(scale=S_POST)},
     {"w": nir.Linear(weight=S_POST[:, None] * W), "d": nir.Delay(delay=D_POST)}, "dendritic"),
    ({"w": nir.Linear(weight=W), "d": nir.Delay(delay=D_POST), "s": nir.Scale(scale=S_POST),
      "d2": nir.Delay(delay=D_POST2)},
     {"w": nir.Linear(weight=S_POST[:, None] * W), "d": nir.Delay(delay=D_POST + D_POST2)}, "dendritic"),
    ({"s": nir.Scale(scale=S_PRE), "d": nir.Delay(delay=D_PRE), "w": nir.Linear(weight=W)},
     {"d": nir.Delay(delay=D_PRE), "w": nir.Linear(weight=W * S_PRE[None, :])}, "axonal"),
    ({"d": nir.Delay(delay=D_PRE), "s": nir.Scale(scale=S_PRE), "d2": nir.Delay(delay=D_PRE2),
      "w": nir.Linear(weight=W)},
     {"d": nir.Delay(delay=D_PRE + D_PRE2), "w": nir.Linear(weight=W * S_PRE[None, :])}, "axonal"),
    ({"d": nir.Delay(delay=D_PRE), "w": nir.Linear(weight=W), "d2": nir.Delay(delay=D_POST),
      "s": nir.Scale(scale=S_POST)},
     {"d": nir.Delay(delay=D_PRE), "w": nir.Linear(weight=S_POST[:, None] * W), "d2": nir.Delay(delay=D_POST)},
     "synaptic"),
], ids=["linear-delay-scale", "linear-delay-scale-delay", "scale-delay-linear", "delay-scale-delay-linear",
        "delay-linear-delay-scale"])
def test_a_scale_changes_weights_but_not_the_delay_kind(ops, folded, kind):
    """A Scale multiplies each line and mixes none: the chain imports as the same chain with the
    Scale folded into its Linear (Linear -> Delay -> Scale imported as synaptic delays, n_pre
    copies of the n_post the graph has)."""
    expected = from_nir(chain_graph(folded, 3, 4), time_scale=1e-3).layers[0].projection
    projection = from_nir(chain_graph(ops, 3, 4), time_scale=1e-3).layers[0].projection
    assert projection.delay_kind.value == expected.delay_kind.value == kind
    np.testing.assert_allclose(projection.weights, expected.weights, rtol=1e-14)
    np.testing.assert_allclose(projection.delays, expected.delays, rtol=1e-14)


@pytest.mark.parametrize("ops, delays_s, kind", [
    ({"d": nir.Delay(delay=D_PRE), "s": nir.Scale(scale=S_PRE)}, D_PRE, "axonal"),
    ({"s": nir.Scale(scale=S_PRE), "d": nir.Delay(delay=D_PRE)}, D_PRE, "dendritic"),
    ({"d": nir.Delay(delay=D_PRE), "s": nir.Scale(scale=S_PRE), "d2": nir.Delay(delay=D_PRE2)}, D_PRE + D_PRE2,
     "axonal"),
    ({"s": nir.Scale(scale=S_PRE), "d": nir.Delay(delay=D_PRE), "s2": nir.Scale(scale=S_PRE)}, D_PRE, "axonal"),
], ids=["delay-scale", "scale-delay", "delay-scale-delay", "scale-delay-scale"])
def test_a_chain_without_a_linear_has_one_delay_per_neuron(ops, delays_s, kind):
    """Each line is then one neuron on both sides: delays after the Scales (the weights) are
    dendritic, others axonal (the last two raised TypeError)."""
    projection = from_nir(chain_graph(ops, 3, 3), time_scale=1e-3).layers[0].projection
    assert projection.delay_kind.value == kind
    np.testing.assert_allclose(projection.delays * 1e-3, delays_s, rtol=1e-14)
    scales = np.prod([node.scale for node in ops.values() if isinstance(node, nir.Scale)], axis=0)
    np.testing.assert_allclose(projection.weights, np.diag(scales) * 1e3, rtol=1e-14)  # (r w_in / (tau_m tau_syn))


@pytest.mark.parametrize("scale, reason", [
    (np.array([1.0, 2.0]), r"'Scale scale': expected 3 factors, got shape \(2,\)"),
    (np.array([1.0, np.nan, 2.0]), r"'Scale scale': factors contain NaN or inf"),
], ids=["wrong-length", "nan"])
def test_a_bad_scale_is_refused_naming_it(scale, reason):
    graph = axon_linear_dendrite_graph(np.ones((3, 4)), np.zeros(4), np.zeros(3), scale=scale)
    with pytest.raises(NIRConversionError, match=reason):
        from_nir(graph, time_scale=1e-3)


def test_synapses_of_weight_zero_whose_paths_disagree_get_delay_zero_with_a_warning(helpers):
    network = zero_weight_network(helpers)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    graph.nodes["hidden.fanout"].weight = graph.nodes["hidden.fanout"].weight * 2  # (not delgrad's layout any more)
    with pytest.warns(UserWarning, match="differ from what delgrad wrote"), \
            pytest.warns(UserWarning, match=r"CubaLIF 'hidden.lif': 6 synapses of weight 0 \(e.g. from presynaptic "
                                         r"neuron 2 to neuron 0\) reach it over paths of different delays; they are "
                                         r"imported with delay 0"):
        imported = from_nir(graph)
    new, old = imported.layers[0].projection, network.layers[0].projection
    zero = old.weights == 0
    assert np.all(new.delays[zero] == 0)
    np.testing.assert_allclose(new.delays[~zero], old.delays[~zero], rtol=1e-13)


# ---------------------------------------------------------------- errors of the NIR reader


def test_a_neuron_node_of_another_size_than_its_linear_names_both():
    """(a Linear of 3 rows before a CubaLIF of 2 neurons blamed only the CubaLIF's values)"""
    graph = chain_graph({"w": nir.Linear(weight=np.ones((3, 4)))}, 4, 2)
    with pytest.raises(NIRConversionError, match=re.escape(
            "CubaLIF 'lif'.tau_syn: expected shape (3,), got (2,): the nodes feeding it ('w') have 3 output lines, "
            "one per neuron it should have")):
        from_nir(graph, time_scale=1e-3)


def test_a_neuron_node_fed_by_no_weighting_node_or_a_linear_of_3_d_weights_is_refused_saying_so():
    """(an unweighted CubaLIF was said to lack a Linear or Affine node, where a Scale does; a 3-d
    weight was said to lack the columns it has)"""
    with pytest.raises(NIRConversionError, match=r"^CubaLIF 'lif': no Linear, Affine or Scale node feeds it"):
        from_nir(chain_graph({}, 2, 2), time_scale=1e-3)
    with pytest.raises(NIRConversionError, match=re.escape("'Linear w': expected a 2-d weight matrix with 4 columns, "
                                                           "got shape (2, 4, 1)")):
        from_nir(chain_graph({"w": nir.Linear(weight=np.ones((2, 4, 1)))}, 4, 2), time_scale=1e-3)


def test_export_of_a_nir_graph_says_that_import_converts_one(tmp_path, helpers):
    save_nir(helpers.build_network([3, 2], "none", 2.0, seed=3), tmp_path / "net.nir", time_scale=TIME_SCALE_S)
    result = cli_runner().invoke(main, ["export", str(tmp_path / "net.nir"), str(tmp_path / "again.nir"),
                                        "--time-scale", "1e-3"])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {tmp_path / 'net.nir'}: not a readable delgrad "
                                                              "network file (not an npz archive")
    assert result.output.endswith("; it is an HDF5 file, as NIR graphs are: `delgrad import` converts a NIR graph to "
                                  "a network file\n") and not (tmp_path / "again.nir").exists()


def _drop(group, name):
    del group[name]


def _replace(group, name, data):
    del group[name]
    group.create_dataset(name, data=data)


@pytest.mark.parametrize("edit, where, raised", [
    (lambda f: _drop(f["node/nodes/hidden.lif"], "tau_mem"), r"node 'hidden.lif' \(type 'CubaLIF'\) of a NIR graph "
     r"\(TypeError: CubaLIF.__init__\(\) missing .* 'tau_mem'\)", TypeError),
    (lambda f: _replace(f["node/nodes/hidden.lif"], "type", b"Bogus"),
     r"node 'hidden.lif' \(type 'Bogus'\) of a NIR graph \(AssertionError\)", AssertionError),
    (lambda f: _replace(f["node/nodes"], "hidden.linear", 1.0),  # (an IndexError escaped unwrapped)
     r"node 'hidden.linear' of a NIR graph \(IndexError: ", IndexError),
    (lambda f: _drop(f["node"], "edges"), r"a NIR graph \(AssertionError: .*'edges'", AssertionError),
], ids=["missing-field", "unknown-type", "node-not-a-group", "no-edges"])
def test_errors_of_the_nir_reader_name_the_file_and_the_node(tmp_path, helpers, edit, where, raised):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "bad.nir"
    save_nir(helpers.build_network([3, 4, 2], "axonal", 2.0, seed=34), path, time_scale=1e-3)
    with h5py.File(path, "a") as file:
        edit(file)
    with pytest.raises(NIRConversionError, match=rf"^{path}: cannot read {where}.*; is it a NIR file as nir.write "
                                                 r"writes them\?$") as info:
        load_nir(path)
    assert type(info.value.__cause__) is raised  # (nir's own error, chained)
    result = cli_runner().invoke(main, ["import", str(path), str(tmp_path / "bad.npz")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {path}: cannot read ")
    assert len(result.output.strip().splitlines()) == 1


def test_a_file_whose_nodes_were_edited_after_delgrad_wrote_them_imports_their_values_with_a_warning(
        tmp_path, helpers):
    """A CubaLIF whose w_in was deleted from the file: the nir package takes NIR's default 1 for
    it, so the weights read back are the node values' (here about W / tau_syn), not the network
    written: the import says so, naming the node.  A file as written, read in its own unit or
    another (a rescale, warned of as such), gives no such warning."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "net.nir"
    network = helpers.build_network([3, 4, 2], "none", 2.0, seed=35)
    save_nir(network, path, time_scale=TIME_SCALE_S)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_nir(path)
        warnings.filterwarnings("ignore", message="time scale")
        load_nir(path, time_scale=2 * TIME_SCALE_S)
    with h5py.File(path, "a") as file:
        _drop(file["node/nodes/hidden.lif"], "w_in")
    message = (r"^CubaLIF 'hidden.lif' and the nodes before it differ from what delgrad wrote with them \(their "
               r"metadata\): edited since\? The layer is imported from the nodes' values, where a field a node lacks "
               r"takes NIR's default \(e.g. w_in 1, v_reset 0\)$")
    with pytest.warns(UserWarning, match=message) as caught:
        imported = load_nir(path)
    assert len(caught) == 1  # (the output layer is as written)
    np.testing.assert_allclose(imported.layers[0].projection.weights,
                               network.layers[0].projection.weights / imported.layers[0].neuron_arrays()[2]
                               / TIME_SCALE_S, rtol=1e-12)
    result = cli_runner().invoke(main, ["import", str(path), str(tmp_path / "net.npz")])
    assert result.exit_code == 0 and result.stderr.startswith("Warning: CubaLIF 'hidden.lif' and the nodes before")


# ---------------------------------------------------------------- a time scale other than the stored one


def test_a_time_scale_other_than_the_stored_one_warns_naming_both_and_the_factor(helpers):
    graph = to_nir(helpers.build_network([3, 2], "axonal", 2.0, seed=33), time_scale=TIME_SCALE_S)
    with pytest.warns(UserWarning, match=r"time scale 1.8e-05 s per model unit \(CLI: --time-scale\) differs from "
                                         r"the graph's own 6e-06 s \(metadata delgrad.time_scale_s\): the import "
                                         r"rescales by 3, dividing time constants"):
        from_nir(graph, time_scale=3 * TIME_SCALE_S)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (the stored scale, given or not, and a graph without one: silent)
        from_nir(graph)
        from_nir(graph, time_scale=TIME_SCALE_S)
        from_nir(graph, time_scale=float(np.float32(TIME_SCALE_S)))  # (the same unit as float32 stores it)
        graph.metadata = {}
        from_nir(graph, time_scale=3 * TIME_SCALE_S)


def test_cli_import_with_another_time_scale_warns(tmp_path, helpers):
    save_nir(helpers.build_network([3, 2], "axonal", 2.0, seed=33), tmp_path / "net.nir", time_scale=TIME_SCALE_S)
    runner = cli_runner()
    args = ["import", str(tmp_path / "net.nir"), str(tmp_path / "net.npz")]
    result = runner.invoke(main, [*args, "--time-scale", "1.2e-5"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("Warning: time scale 1.2e-05 s per model unit (CLI: --time-scale) differs from "
                                    "the graph's own 6e-06 s") and "rescales by 2," in result.stderr
    result = runner.invoke(main, [*args, "--time-scale", "6e-6", "--force"])
    assert result.exit_code == 0 and result.stderr == "", result.output


def test_nodes_without_usable_metadata_are_read_from_their_values_without_the_edited_warning(helpers):
    """Only a layer the node metadata rebuilds, whose nodes then differ, is warned of as edited: CubaLIFs
    without delgrad's metadata, or with metadata lacking a value, are read from the node values silently."""
    network = helpers.build_network([3, 4, 2], "none", 2.0, seed=35)
    for strip in (dict.clear, lambda meta: meta.pop("threshold")):
        graph = to_nir(network, time_scale=TIME_SCALE_S)
        for key in ("hidden.lif", "output.lif"):
            strip(graph.nodes[key].metadata["delgrad"])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            imported = from_nir(graph)
        for new, old in zip(imported.layers, network.layers):
            np.testing.assert_allclose(new.projection.weights, old.projection.weights, rtol=1e-9)


def test_a_time_scale_off_the_stored_one_by_more_than_float32_rounding_warns(helpers):
    """(a unit stored as float32 is ~1e-8 off and the same unit; 1e-5 off is another)"""
    graph = to_nir(helpers.build_network([3, 2], "axonal", 2.0, seed=33), time_scale=TIME_SCALE_S)
    with pytest.warns(UserWarning, match=r"rescales by 1\.00001, dividing"):
        from_nir(graph, time_scale=TIME_SCALE_S * 1.00001)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_source_that_is_no_regular_file_is_refused_at_once(tmp_path):
    """(a named pipe without a writer: `delgrad import` waited for ever)"""
    fifo = tmp_path / "pipe.nir"
    os.mkfifo(fifo)
    with pytest.raises(NIRConversionError, match=rf"^{fifo}: not a regular file \(a NIR file is an HDF5 file on "
                                                 r"disk\)$"):
        load_nir(fifo)
    result = cli_runner().invoke(main, ["import", str(fifo), str(tmp_path / "out.npz")])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {fifo}: not a regular file"), result.output


# ---------------------------------------------------------------- node names other than strings


def _renamed(graph, name_of):
    return nir.NIRGraph(nodes={name_of[key]: node for key, node in graph.nodes.items()},
                        edges=[(name_of[src], name_of[dst]) for src, dst in graph.edges], metadata=graph.metadata)


def test_a_graph_whose_nodes_are_named_by_integers_imports_as_with_strings(helpers):
    """(`from_nir` of a graph built in memory with integer names said "edge '0' -> '1': no node
    named '0'"; `nir.read` always gives strings)"""
    network = helpers.build_network([3, 4, 2], "axonal", 2.0, seed=5)
    graph = to_nir(network, time_scale=TIME_SCALE_S)
    numbered = _renamed(graph, {key: index for index, key in enumerate(graph.nodes)})
    inputs = np.random.default_rng(0).uniform(0.1, 2.0, (16, 3))
    for got, expected in zip(dg.forward(from_nir(numbered), inputs), dg.forward(from_nir(graph), inputs)):
        np.testing.assert_array_equal(got, expected)
    assert list(numbered.nodes) == list(range(len(graph.nodes)))  # (the caller's graph is not changed)


def test_two_nodes_whose_names_read_the_same_are_refused(helpers):
    graph = to_nir(helpers.build_network([3, 4, 2], "none", 2.0, seed=5), time_scale=TIME_SCALE_S)
    name_of = {key: index for index, key in enumerate(graph.nodes)}
    name_of[list(graph.nodes)[1]] = "0"  # (the node named 0 and the one named "0")
    with pytest.raises(NIRConversionError, match="graph nodes: two nodes are named '0'"):
        from_nir(_renamed(graph, name_of))


# ---------------------------------------------------------------- values of odd types in a file, and odd sources


@pytest.mark.parametrize("dataset, value, message", [
    ("node/metadata/delgrad/version", np.array([1, 1]),
     r"the graph was written in delgrad's NIR format version array\(\[1, 1\]\); this delgrad reads version 1"),
    ("node/metadata/delgrad/time_scale_s", np.complex128(6e-6 + 1j),
     r"graph metadata delgrad.time_scale_s: expected a number of seconds from 1e-12 to 1e\+03, got \(6e-06\+1j\)"),
    ("node/nodes/input/shape", np.array([3 + 0j]),
     r"Input 'input': expected a 1-d shape \[n\] of a positive integer, got \[\(3\+0j\)\]"),
    ("node/nodes/input/shape", np.array([np.nan]), r"Input 'input': expected a 1-d shape \[n\] of a positive "
                                                   r"integer, got \[nan\]"),
], ids=["version-array", "complex-time-scale", "complex-input-size", "nan-input-size"])
def test_metadata_and_sizes_of_odd_types_are_refused_naming_the_field(tmp_path, helpers, dataset, value, message):
    """(an array version said "The truth value of an array ... is ambiguous"; a complex time scale
    or input size was read as its real part, and a NaN size refused, after a numpy warning)"""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "odd.nir"
    save_nir(helpers.build_network([3, 4, 2], "none", 2.0, seed=35), path, time_scale=TIME_SCALE_S)
    with h5py.File(path, "a") as file:
        _replace(file, dataset, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no numpy warning on the way)
        with pytest.raises(NIRConversionError, match=f"^{message}$"):
            load_nir(path)
    result = cli_runner().invoke(main, ["import", str(path), str(tmp_path / "odd.npz")])
    assert result.exit_code == 1 and re.fullmatch(f"Error: {message}\n", result.output), result.output


def test_complex_node_metadata_is_not_trusted_and_warns_nothing(tmp_path, helpers):
    """(a complex threshold in node metadata was cast to its real part with numpy's ComplexWarning)"""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "odd.nir"
    network = helpers.build_network([3, 4, 2], "none", 2.0, seed=35)
    save_nir(network, path, time_scale=TIME_SCALE_S)
    with h5py.File(path, "a") as file:
        _replace(file, "node/nodes/hidden.lif/metadata/delgrad/threshold", np.complex128(1 + 0j))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imported = load_nir(path)
    inputs = np.random.default_rng(1).uniform(0.1, 2.0, (16, 3))
    for got, expected in zip(dg.forward(imported, inputs), dg.forward(network, inputs)):
        np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_finite_node_values_whose_weights_overflow_are_refused_naming_the_factors(tmp_path):
    """(Linear weights 1e300 and r 1e10, all finite, printed "overflow encountered in multiply" and
    "lif.projection.weights: contains NaN or inf", a field the graph does not have)"""
    n = 2
    graph = nir.NIRGraph(nodes={
        "in": nir.Input(input_type=np.array([n])), "lin": nir.Linear(weight=np.full((n, n), 1e300)),
        "lif": nir.CubaLIF(tau_syn=np.full(n, 1e-3), tau_mem=np.full(n, 2e-3), r=np.full(n, 1e10), v_leak=np.zeros(n),
                           v_threshold=np.ones(n), w_in=np.full(n, 1e-3)),
        "out": nir.Output(output_type=np.array([n]))}, edges=[("in", "lin"), ("lin", "lif"), ("lif", "out")])
    message = (r"CubaLIF 'lif': the weight from presynaptic neuron 0 to neuron 0, the summed Linear weights 1e\+300 "
               r"times r \* w_in / \(tau_mem in model units \* tau_syn in s\) = 10000000000.0 \* 0.001 / \(2.0 \* "
               r"0.001\), is not a finite number; scale the weights, r or w_in down")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(NIRConversionError, match=f"^{message}$"):
            from_nir(graph, time_scale=1e-3)
    nir.write(tmp_path / "big.nir", graph)
    result = cli_runner().invoke(main, ["import", str(tmp_path / "big.nir"), str(tmp_path / "big.npz"),
                                        "--time-scale", "1e-3"])
    assert result.exit_code == 1 and re.fullmatch(f"Error: {message}\n", result.output), result.output


def test_a_missing_file_and_a_text_file_object_are_named_as_such(tmp_path, helpers):
    """(both said "cannot read a NIR graph (...); is it a NIR file as nir.write writes them?")"""
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: '.*nosuch.nir'"):
        load_nir(tmp_path / "nosuch.nir")
    save_nir(helpers.build_network([3, 2], "none", 2.0, seed=35), tmp_path / "net.nir", time_scale=TIME_SCALE_S)
    with open(tmp_path / "net.nir", encoding="latin-1") as text, \
            pytest.raises(dg.InvalidValueError, match=r"^path: expected a file path, bytes or a readable binary file "
                                                      r"of a NIR graph, got TextIOWrapper \(a text file: open it in "
                                                      r"binary mode\)$"):
        load_nir(text)
