"""Validation of the network IR and of `forward`/`backward` inputs: errors name the field."""

import re

import numpy as np
import pytest

import delgrad_core as dg

NAME = "out.projection"


def projection(weights=None, **kwargs):
    return dg.Projection(np.ones((3, 2)) if weights is None else weights, name=NAME, **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_rejected(bad):
    weights = np.ones((3, 2))
    weights[1, 0] = bad
    with pytest.raises(ValueError, match=rf"{NAME}\.weights: contains NaN or inf"):
        projection(weights)


def test_weights_must_be_numbers_in_a_matrix():
    with pytest.raises(ValueError, match=rf"{NAME}\.weights: expected an array of real numbers, got strings"):
        projection([["a", "b"]])
    with pytest.raises(ValueError, match=rf"{NAME}\.weights: expected a non-empty 2-d array"):
        projection(np.ones(3))


def test_negative_delays_are_rejected():
    with pytest.raises(ValueError, match=rf"{NAME}\.delays: must be >= 0"):
        projection(delay_kind="axonal", delays=np.array([0.1, -0.2, 0.0]))


def test_non_finite_delays_are_rejected():
    with pytest.raises(ValueError, match=rf"{NAME}\.delays: contains NaN or inf"):
        projection(delay_kind="synaptic", delays=np.full((3, 2), np.nan))


@pytest.mark.parametrize("kind, good, bad",
                         [("axonal", (3,), (2,)), ("dendritic", (2,), (3,)), ("synaptic", (3, 2), (2, 3))])
def test_delay_shapes_by_kind(kind, good, bad):
    assert projection(delay_kind=kind, delays=np.zeros(good)).delays.shape == good
    assert projection(delay_kind=kind).delays.tolist() == np.zeros(good).tolist()  # default: zero delays
    with pytest.raises(ValueError, match=re.escape(f"{NAME}.delays: expected shape {good}, got {bad}")):
        projection(delay_kind=kind, delays=np.zeros(bad))


def test_delays_without_a_delay_kind_are_rejected():
    with pytest.raises(ValueError, match=rf"{NAME}\.delays: must be None for delay kind 'none'"):
        projection(delays=np.zeros(3))


def test_unknown_delay_kind_lists_the_allowed_values():
    with pytest.raises(ValueError, match=rf"{NAME}\.delay_kind: unknown delay kind 'somatic'; choose one of none, "
                                         r"axonal, dendritic, synaptic"):
        projection(delay_kind="somatic")
    with pytest.raises(ValueError, match="delay_kind: unknown delay kind"):
        dg.Network.feedforward([2, 2], delay_kind="bogus")


def test_delay_kind_parsing():
    assert dg.DelayKind.parse("AXONAL") is dg.DelayKind.AXONAL
    assert dg.DelayKind.parse(dg.DelayKind.SYNAPTIC) is dg.DelayKind.SYNAPTIC
    assert projection(delay_kind="Dendritic").delay_kind is dg.DelayKind.DENDRITIC


@pytest.mark.parametrize("field", ["threshold", "tau_m", "tau_s"])
@pytest.mark.parametrize("value", [0.0, -1.0, np.array([1.0, -0.5])])
def test_neuron_parameters_must_be_positive(field, value):
    with pytest.raises(ValueError, match=rf"hidden\.{field}: must be > 0"):
        dg.Population("hidden", 2, dg.NeuronParameters(**{field: value}))


@pytest.mark.parametrize("field", ["threshold", "tau_m", "tau_s"])
def test_neuron_parameters_must_be_finite_and_sized(field):
    with pytest.raises(ValueError, match=rf"hidden\.{field}: contains NaN or inf"):
        dg.Population("hidden", 2, dg.NeuronParameters(**{field: np.nan}))
    with pytest.raises(ValueError, match=rf"hidden\.{field}: expected a scalar or shape \(2,\)"):
        dg.Population("hidden", 2, dg.NeuronParameters(**{field: np.ones(3)}))


@pytest.mark.parametrize("size", [0, -1, 2.5, True, "3"])
def test_population_size_must_be_a_positive_integer(size):
    with pytest.raises(ValueError, match=r"pop\.size: expected an integer >= 1"):
        dg.Population("pop", size)


@pytest.mark.parametrize("size", [2**27 + 1, 3 * 10**9, 2**63])
def test_population_size_is_refused_above_what_a_network_file_holds(size):
    # (numpy's own error named nothing, or the neuron parameters tried to allocate gigabytes first)
    with pytest.raises(dg.InvalidValueError, match=rf"pop\.size: at most 134,217,728 neurons .*, got {size:,}"):
        dg.Population("pop", size, dg.NeuronParameters())


def test_population_name_must_be_a_non_empty_string_without_nul():
    with pytest.raises(ValueError, match="Population.name"):
        dg.Population("", 3)
    # (HDF5 ends names at a NUL: NIR export failed with "name already exists")
    with pytest.raises(ValueError, match=r"Population.name: expected a non-empty string without NUL characters, "
                                         r"got 'a\\x00b'"):
        dg.Population("a\0b", 3)
    # (a lone surrogate, as os.fsdecode makes of undecodable bytes: NIR export raised a bare UnicodeEncodeError)
    with pytest.raises(dg.InvalidValueError, match=r"^Population.name: expected text that UTF-8 can encode \(files "
                                                   r"store names in UTF-8\), got 'a\\udc80b', whose character 1 is a "
                                                   r"lone surrogate$"):
        dg.Population("a\udc80b", 3)
    network = dg.Network.feedforward([2, 3, 2])
    for population in (network.input, network.layers[0].population):
        name, population.name = population.name, "h\0"
        with pytest.raises(ValueError, match="without NUL characters"):
            network.validate()
        population.name = name
        network.validate()


@pytest.mark.parametrize("name", ["", None, 3, "a\0b"])
def test_projection_name_must_be_a_non_empty_string_without_nul(name):
    """(an empty or missing name was taken, as the population refuses it)"""
    with pytest.raises(dg.InvalidValueError, match=r"^Projection.name: expected a non-empty string without NUL "
                                                   r"characters, got "):
        dg.Projection(np.ones((2, 3)), name=name)
    projection = dg.Projection(np.ones((2, 3)), "axonal")
    assert projection.name == "projection"  # (the default)
    projection.name = name
    with pytest.raises(dg.InvalidValueError, match=r"^Projection.name: "):
        projection.validate()


def test_layer_and_network_shape_checks():
    neuron = dg.NeuronParameters()
    with pytest.raises(ValueError, match=rf"{NAME}\.weights: has 2 columns but population 'out' has size 4"):
        dg.Layer(dg.Population("out", 4, neuron), projection())
    with pytest.raises(ValueError, match=r"out\.neuron: a layer needs neuron parameters"):
        dg.Layer(dg.Population("out", 2), projection())
    layer = dg.Layer(dg.Population("out", 2, neuron), projection())
    with pytest.raises(ValueError, match=rf"{NAME}\.weights: has 3 rows but the previous population has size 5"):
        dg.Network(dg.Population("input", 5), [layer])
    with pytest.raises(ValueError, match=r"input\.neuron: the input population has no neuron parameters"):
        dg.Network(dg.Population("input", 3, neuron), [layer])
    with pytest.raises(ValueError, match=r"Network\.layers: needs at least one layer"):
        dg.Network(dg.Population("input", 3), [])
    with pytest.raises(ValueError, match=r"Network\.layers: duplicate population name 'input'"):
        dg.Network(dg.Population("input", 3), [dg.Layer(dg.Population("input", 2, neuron), projection())])
    with pytest.raises(ValueError, match=r"sizes: need at least input and output sizes"):
        dg.Network.feedforward([4])


def test_in_place_changes_are_caught_by_forward():
    network = dg.Network.feedforward([3, 4, 2], delay_kind="synaptic")
    x = np.zeros((1, 3))
    network.layers[1].projection.weights[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"output\.projection\.weights: contains NaN or inf"):
        dg.forward(network, x)
    network.layers[1].projection.weights[0, 0] = 1.0
    network.layers[0].projection.delays[2, 1] = -0.1
    with pytest.raises(ValueError, match=r"hidden\.projection\.delays: must be >= 0"):
        dg.forward(network, x)
    network.layers[0].projection.delays[2, 1] = 0.1
    network.layers[0].population.neuron.tau_m = -2.0
    with pytest.raises(ValueError, match=r"hidden\.tau_m: must be > 0"):
        dg.forward(network, x)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.array([[0.1, np.nan, 0.3]]), r"input_spike_times: contains NaN or -inf \(use \+inf for a silent neuron\)"),
        (np.array([[0.1, -np.inf, 0.3]]), r"input_spike_times: contains NaN or -inf"),
        (np.zeros((2, 4)), r"input_spike_times: expected shape \(batch, 3\), got \(2, 4\)"),
        (np.zeros((2, 3, 1)), r"input_spike_times: expected shape \(batch, 3\)"),
    ],
)
def test_forward_input_validation(x, message):
    network = dg.Network.feedforward([3, 2])
    with pytest.raises(ValueError, match=message):
        dg.forward(network, x)


def test_forward_accepts_a_single_sample_and_plus_inf():
    network = dg.Network.feedforward([3, 2])
    times = dg.forward(network, [0.1, np.inf, 0.5])
    assert times[0].shape == (1, 2)


def test_backward_input_validation():
    network = dg.Network.feedforward([3, 4, 2])
    x = np.zeros((2, 3))
    times = dg.forward(network, x)
    with pytest.raises(ValueError, match=r"layer_spike_times: expected a list of 2 arrays \(one per layer\)"):
        dg.backward(network, x, times[:1], np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"layer_spike_times\[1\]: expected shape \(2, 2\)"):
        dg.backward(network, x, [times[0], np.zeros((2, 5))], np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"layer_spike_times\[0\]: contains NaN"):
        dg.backward(network, x, [np.full((2, 4), np.nan), times[1]], np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"layer_spike_times\[0\]: expected shape \(2, 4\)"):
        dg.backward(network, x, [times[0][:1], times[1]], np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"output_gradient: expected shape \(2, 2\), got \(2, 3\)"):
        dg.backward(network, x, times, np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"output_gradient: expected shape \(2, 2\), got \(4,\)"):
        dg.backward(network, x, times, np.ones(4))  # never silently reshaped
    with pytest.raises(ValueError, match=r"output_gradient: contains NaN or inf"):
        dg.backward(network, x, times, np.full((2, 2), np.nan))
    with pytest.raises(dg.InvalidValueError, match=r"^gradient_slope: expected one of observed, nominal, got 'exact'$"):
        dg.backward(network, x, times, np.ones((2, 2)), gradient_slope="exact")


@pytest.mark.parametrize("value", ["0", "-2", "many", "257", "100000"])
def test_thread_count_validation(monkeypatch, value):
    monkeypatch.setenv("DELGRAD_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"DELGRAD_NUM_THREADS: expected an integer from 1 to 256, got '{value}'"):
        dg.default_num_threads()
    count = int(value) if value.lstrip("-").isdigit() else value
    with pytest.raises(ValueError, match="n_threads: expected an integer from 1 to 256"):
        dg.forward(dg.Network.feedforward([2, 2]), np.zeros((1, 2)), n_threads=count)


def test_the_default_thread_count_is_at_most_256_on_a_machine_with_more_cpus(monkeypatch):
    import delgrad_core._propagation as propagation

    monkeypatch.delenv("DELGRAD_NUM_THREADS", raising=False)
    monkeypatch.setattr(propagation, "available_cpus", lambda: 1000)
    assert dg.default_num_threads() == 256


@pytest.mark.parametrize("name", ["reference", "bss2-emulator"])
@pytest.mark.parametrize("count", [0, 257, 100_000, 2.0, "2"])
def test_backends_refuse_a_thread_count_when_built(name, count):
    # (a count in the tens of thousands used to crash the process inside OpenMP)
    with pytest.raises(ValueError, match="n_threads: expected an integer from 1 to 256"):
        dg.get_backend(name, n_threads=count)


def test_parameter_counts_match_model_md():
    """4-H-3 without bias: weights 7H; + axonal 8H+4; + dendritic 8H+3; + synaptic 14H (docs/model.md §3)."""
    for hidden in (5, 30):
        counts = {kind: dg.Network.feedforward([4, hidden, 3], delay_kind=kind).n_parameters for kind in
                  ("none", "axonal", "dendritic", "synaptic")}
        assert counts == {"none": 7 * hidden, "axonal": 8 * hidden + 4, "dendritic": 8 * hidden + 3,
                          "synaptic": 14 * hidden}


def test_delay_matrix_and_gradient_reduction():
    axonal = projection(delay_kind="axonal", delays=np.array([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(axonal.delay_matrix(), [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])
    dendritic = projection(delay_kind="dendritic", delays=np.array([0.5, 0.7]))
    np.testing.assert_array_equal(dendritic.delay_matrix(), [[0.5, 0.7]] * 3)
    per_synapse = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(axonal.reduce_synapse_gradient(per_synapse), [1.0, 5.0, 9.0])
    np.testing.assert_array_equal(dendritic.reduce_synapse_gradient(per_synapse), [6.0, 9.0])
    assert projection().reduce_synapse_gradient(per_synapse) is None


@pytest.mark.parametrize(("sizes", "options", "message"), [
    ([4, -1, 3], {}, r"sizes: expected positive integers, got \[4, -1, 3\]"),
    (np.array([4, 3]), {}, "sizes: expected a list or tuple of layer sizes, got ndarray"),  # (said it had too few)
    ([4, 100_000_000, 3], {}, "sizes: a 4 x 100000000 projection has 400,000,000 weights, more than the 134,217,728"),
    ([3, 44_739_243], {}, "sizes: a 3 x 44739243 projection has 134,217,729 weights, more than the 134,217,728"),
    ([2, True, 3], {}, r"sizes: expected positive integers, got \[2, True, 3\]"),  # (a bool is no size)
    ([4, 3, 2], {"delay_kind": ["axonal"]}, r"^delay_kind: expected one kind or 2 \(one per layer\), got 1$"),
    ([4, 3], {"weight_std": -1.0}, "weight_std: expected a finite number >= 0, got -1.0"),
    ([4, 3], {"weight_mean": float("nan")}, "weight_mean: expected a finite number, got nan"),
    ([4, 3], {"seed": -1}, "seed: expected None or an integer >= 0, got -1"),
])
def test_feedforward_names_the_argument_it_cannot_use(sizes, options, message):
    # (numpy's own errors named nothing, and a huge size tried to allocate gigabytes first)
    with pytest.raises(dg.InvalidValueError, match=message):
        dg.Network.feedforward(sizes, **options)


def _inputs():
    return np.random.default_rng(0).uniform(0.1, 2.0, (5, 4))


def test_a_read_only_view_of_a_writable_array_is_checked_again():
    """(a read-only array's check was remembered, but a view changes with the array it views:
    delays set to -100 through it gave spikes at -99, before any input)"""
    network = dg.Network.feedforward([4, 6, 3], delay_kind="synaptic", seed=0)
    memory = np.full((4, 6), 0.5)
    view = memory.view()
    view.flags.writeable = False
    weights = network.layers[0].projection.weights.copy()
    weights.flags.writeable = False
    network.layers[0].projection.weights, network.layers[0].projection.delays = weights, view
    dg.forward(network, _inputs())
    memory[:] = -100.0
    with pytest.raises(dg.InvalidValueError, match=r"hidden.projection.delays: must be >= 0, got min -100.0"):
        dg.forward(network, _inputs())
    immutable = np.frombuffer(np.full((4, 6), 0.5).tobytes()).reshape(4, 6)
    network.layers[0].projection.weights = np.frombuffer(weights.tobytes()).reshape(weights.shape)
    network.layers[0].projection.delays = immutable
    network.validate()
    assert network.layers[0].projection._checked[1] is immutable  # (arrays that cannot change: checked once)
    # (numpy lets an array owning its memory be made writeable, changed and made read-only again: -0.9 then
    # gave a spike before its input)
    owned = np.full((4, 6), 0.5)
    owned.flags.writeable = False
    network.layers[0].projection.delays = owned
    network.validate()
    owned.flags.writeable = True
    owned[0, 0] = -0.9
    owned.flags.writeable = False
    with pytest.raises(dg.InvalidValueError, match=r"hidden.projection.delays: must be >= 0, got min -0.9"):
        dg.forward(network, _inputs())


def test_the_arrays_of_a_snapshot_a_request_and_a_calibration_cannot_be_made_writeable():
    snapshot = dg.Network.feedforward([4, 6, 3], delay_kind="dendritic", seed=0).frozen_copy()
    layer = snapshot.layers[0]
    calibration = dg.Calibration("test", {}, arrays={"gain": np.ones(3), "ok": np.ones(3, dtype=bool)})
    request = dg.ExecutionRequest(snapshot, np.zeros((2, 4)), calibration, 0)
    for array in (layer.projection.weights, layer.projection.delays, *layer.neuron_arrays(),
                  request.input_spike_times, *request.calibration.arrays.values()):
        with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):
            array.flags.writeable = True


@pytest.mark.parametrize(("change", "message"), [
    (lambda n: setattr(n, "layers", []), "Network.layers: needs at least one layer"),
    (lambda n: n.layers.clear(), "Network.layers: needs at least one layer"),
    (lambda n: setattr(n, "layers", iter(list(n.layers))), "Network.layers: expected a list of Layer objects, got "
                                                          "list_iterator"),
    (lambda n: setattr(n, "layers", None), "Network.layers: expected a list of Layer objects, got NoneType"),
    (lambda n: setattr(n, "input", None), "Network.input: expected a delgrad_core.Population, got NoneType"),
    (lambda n: setattr(n.layers[0], "projection", None), "Layer.projection: expected a delgrad_core.Projection"),
    (lambda n: setattr(n.layers[0], "population", None), "Layer.population: expected a delgrad_core.Population"),
    (lambda n: setattr(n.layers[0].population, "neuron", "abc"),
     "hidden.neuron: expected a delgrad_core.NeuronParameters, got str"),
    (lambda n: setattr(n.layers[1].population, "size", 3.0), "output.size: expected an integer >= 1, got 3.0"),
])
def test_structure_changed_in_place_is_refused_by_name(change, message):
    """(an emptied layer list ran as a network of no layers, silently; the others were
    AttributeErrors and TypeErrors from deep inside)"""
    network = dg.Network.feedforward([4, 6, 3], seed=0)
    change(network)
    with pytest.raises(dg.InvalidValueError, match=re.escape(message)):
        dg.forward(network, _inputs())
    with pytest.raises(dg.InvalidValueError, match=re.escape(message)):
        dg.get_backend("reference").execute(network, _inputs())


def test_population_neuron_parameters_must_be_neuron_parameters():
    with pytest.raises(dg.InvalidValueError, match="p.neuron: expected a delgrad_core.NeuronParameters, got str"):
        dg.Population("p", 3, neuron="x")


def test_layers_own_their_neuron_parameters():
    """(feedforward gave every layer, and the caller, the same threshold array, and represent's
    network shared its neurons with the network it was given: an edit to one changed all)"""
    from delgrad_core._capabilities import apply_constraints

    threshold = np.array([1.0, 1.0, 1.0])
    network = dg.Network.feedforward([3, 3, 3], neuron=dg.NeuronParameters(threshold, 2.0, 1.0))
    network.layers[0].population.neuron.threshold[0] = 5.0
    assert network.layers[1].population.neuron.threshold.tolist() == [1.0, 1.0, 1.0]
    assert threshold.tolist() == [1.0, 1.0, 1.0]
    represented = apply_constraints(network, dg.Capabilities(weight_limit=0.1))
    assert represented is not network
    represented.layers[1].population.neuron.threshold[1] = 7.0
    assert network.layers[1].population.neuron.threshold.tolist() == [1.0, 1.0, 1.0]


def test_networks_compare_by_value(tmp_path):
    """(== raised "the truth value of an array ... is ambiguous", e.g. comparing a network read
    back from a file or a NIR graph with the original)"""
    network = dg.Network.feedforward([4, 5, 3], delay_kind="synaptic", seed=1)
    dg.save_network(network, tmp_path / "n.npz")
    again = dg.load_network(tmp_path / "n.npz")
    assert again == network and network == network.frozen_copy() and again in [network]
    assert network != dg.Network.feedforward([4, 5, 3], delay_kind="synaptic", seed=2)
    assert network != dg.Network.feedforward([4, 5, 3], delay_kind="dendritic", seed=1)
    assert network.layers[0] != network.layers[1] and network != "network"
    per_neuron = dg.Population("hidden", 5, dg.NeuronParameters(np.full(5, 1.0), 2.0, 1.0))
    changed = dg.Network(network.input, [dg.Layer(per_neuron, network.layers[0].projection), network.layers[1]])
    assert changed == network  # (a threshold given per neuron, all at the one value)
    changed.layers[0].population.neuron.threshold[2] = 1.5
    assert changed != network
    # (a list of per-neuron values compared unequal to the one value it repeats)
    given = [1.0, 1.0]  # (a list was shared by the caller and every layer: one change reached all)
    shared = dg.Network.feedforward([2, 2, 2], neuron=dg.NeuronParameters(threshold=given), seed=0)
    shared.layers[0].population.neuron.threshold[0] = 0.5
    assert list(shared.layers[1].population.neuron.threshold) == [1.0, 1.0] and given == [1.0, 1.0]
    with pytest.raises(dg.InvalidValueError, match=r"^hidden.threshold: expected an array of numbers"):
        dg.Network.feedforward([2, 2, 2], neuron=dg.NeuronParameters(threshold=[1.0, [2.0]]))  # (numpy's own)
    for per_neuron in ([1.0, 1.0, 1.0], (1.0, 1.0), np.ones(3)):
        assert dg.NeuronParameters(threshold=per_neuron) == dg.NeuronParameters(1.0)
    assert dg.NeuronParameters(threshold=[1.0, 1.0, 1.0]) == dg.NeuronParameters(threshold=np.ones(3))
    assert dg.NeuronParameters(threshold=(1.0, 1.0)) != dg.NeuronParameters(threshold=np.ones(3))
    assert dg.NeuronParameters(threshold=[1.0, 2.0]) != dg.NeuronParameters(1.0)
    assert dg.NeuronParameters(threshold=[1.0, [2.0]]) != dg.NeuronParameters(1.0)
    with pytest.raises(TypeError, match="unhashable"):
        hash(network)


@pytest.mark.parametrize("shape", [(2, 1), (1, 2)])
def test_a_per_neuron_value_of_the_right_size_but_another_shape_is_refused(shape):
    """A neuron parameter is a scalar or one value per neuron: shape (size,), not any array of size values."""
    message = f"hidden.tau_m: expected a scalar or shape (2,), got {shape}"
    with pytest.raises(dg.InvalidValueError, match=re.escape(message)):
        dg.Population("hidden", 2, dg.NeuronParameters(tau_m=np.full(shape, 2.0)))


def test_an_empty_per_neuron_array_is_not_equal_to_the_one_value():
    """No value at all is not the one value a scalar parameter gives every neuron."""
    assert dg.NeuronParameters(threshold=np.array([])) != dg.NeuronParameters(1.0)
    assert dg.NeuronParameters(threshold=[]) != dg.NeuronParameters(1.0)


def test_an_infinite_neuron_parameter_given_as_a_float_is_refused():
    """(the fast path for a plain float must not skip the finiteness check)"""
    for field in ("threshold", "tau_m", "tau_s"):
        with pytest.raises(dg.InvalidValueError, match=rf"^hidden\.{field}: contains NaN or inf"):
            dg.Population("hidden", 2, dg.NeuronParameters(**{field: float("inf")}))


def test_nan_parameters_compare_equal_where_they_are_nan_and_lists_of_other_lengths_do_not():
    """`==` compares by value: NaN where NaN is counts as the same value; a shorter list is another value."""
    assert dg.NeuronParameters(float("nan")) == dg.NeuronParameters(float("nan"))
    assert dg.NeuronParameters(np.array([np.nan, 1.0])) == dg.NeuronParameters(np.array([np.nan, 1.0]))
    assert dg.NeuronParameters(threshold=[1.0, 1.0]) != dg.NeuronParameters(threshold=[1.0])
    assert dg.NeuronParameters(threshold=[1.0]) != dg.NeuronParameters(threshold=[1.0, 1.0])


def test_tau_ratios_from_0_01_to_1e6_are_taken_and_the_message_names_the_ratio_outside():
    """docs/model.md §2.3: the solver is verified for tau_m / tau_s from 0.01 to 1e6 (both ends included)."""
    dg.Population("h", 2, dg.NeuronParameters(1.0, 0.01, 1.0))
    dg.Population("h", 2, dg.NeuronParameters(1.0, np.array([0.01, 1e6]), 1.0))
    ratio = r"^h\.tau_m / h\.tau_s: .* ratios from 0\.01 to 1e\+06, "
    with pytest.raises(dg.InvalidValueError, match=ratio + r"got 0\.005$"):
        dg.Population("h", 2, dg.NeuronParameters(1.0, np.array([0.005, 2.0]), 1.0))
    with pytest.raises(dg.InvalidValueError, match=ratio + r"got 2e\+06$"):
        dg.Population("h", 2, dg.NeuronParameters(1.0, np.array([2.0, 2e6]), 1.0))


@pytest.mark.parametrize("shape", [(0, 2), (3, 0)])
def test_weights_without_rows_or_columns_are_refused(shape):
    with pytest.raises(dg.InvalidValueError, match=re.escape(f"{NAME}.weights: expected a non-empty 2-d array "
                                                             f"(n_pre, n_post), got shape {shape}")):
        projection(np.ones(shape))


def test_the_smallest_negative_delay_is_refused():
    """Delays are >= 0 (docs/model.md §3): even -5e-324, the negative double nearest 0."""
    with pytest.raises(dg.InvalidValueError, match=rf"^{NAME}\.delays: must be >= 0, got min -5e-324$"):
        projection(delay_kind="axonal", delays=np.array([0.0, -5e-324, 0.0]))


def test_a_synaptic_delay_gradient_is_a_new_array_not_the_one_given():
    per_synapse = np.arange(6.0).reshape(3, 2)
    reduced = projection(delay_kind="synaptic").reduce_synapse_gradient(per_synapse)
    np.testing.assert_array_equal(reduced, per_synapse)
    assert not np.shares_memory(reduced, per_synapse)


def test_the_synaptic_scale_counts_time_constants_below_1_as_1():
    """The summed |weights| times max(tau_m, tau_s, 1) must stay <= 1e200: tau 0.5 does not halve it."""
    neuron = dg.NeuronParameters(1.0, 0.5, 0.5)
    at_the_limit = np.array([[0.5e200], [0.5e200], [0.0]])  # (1e200)
    dg.Layer(dg.Population("h", 1, neuron), projection(at_the_limit))
    with pytest.raises(dg.InvalidValueError, match=rf"^{NAME}\.weights: the summed \|weights\| onto neuron 0 of 'h', "
                                                   r".* is 1\.5e\+200, above 1e\+200"):
        dg.Layer(dg.Population("h", 1, neuron), projection(np.array([[0.5e200], [0.5e200], [0.5e200]])))


def test_a_tuple_of_layers_is_taken_as_a_list():
    layer = dg.Layer(dg.Population("out", 2, dg.NeuronParameters()), projection())
    network = dg.Network(dg.Population("input", 3), (layer,))
    assert isinstance(network.layers, list) and network.layers[0] is layer


def test_parameters_of_a_subclass_are_another_type_and_not_equal():
    """Instances compare equal when they are of one type."""
    class Tuned(dg.NeuronParameters):
        pass

    assert dg.NeuronParameters() != Tuned() and Tuned() != dg.NeuronParameters()
