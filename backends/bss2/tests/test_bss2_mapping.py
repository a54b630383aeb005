"""Mapping onto the chip: capabilities, refusals naming the resource, weight and delay
quantisation, shared delays of duplicated inputs, placement."""

import warnings

import numpy as np
import pytest
from _bss2_helpers import ALL_OFF, yin_yang_network

import delgrad_core as dg
from delgrad_bss2._mapping import place


def _network(sizes, kind="axonal", seed=0):
    return dg.Network.feedforward(list(sizes), delay_kind=kind, neuron=dg.NeuronParameters(2.6, 1.0, 1.0),
                                  delay_value=2.0, seed=seed)


def test_capabilities_state_the_chip():
    caps = dg.get_backend("bss2-emulator").capabilities
    assert caps.delay_kinds == {dg.DelayKind.NONE, dg.DelayKind.AXONAL}
    assert caps.tau_ratios == (1.0,) and caps.max_layers == 2 and caps.max_inputs == 128
    assert caps.weight_limit == pytest.approx(63 / 30) and caps.weight_resolution == pytest.approx(1 / 30)
    assert caps.delay_resolution == pytest.approx(0.125 / 6)
    assert caps.delay_range == pytest.approx(((50 / 8 + 2) / 6, (250 / 8 + 2) / 6))
    assert caps.deterministic and not caps.seed_independent and caps.needs_calibration and not caps.exact
    assert dg.backend_info("bss2-emulator").capabilities == caps
    other = dg.get_backend("bss2-emulator", synapse_rows=64, weight_max=31, weight_scale=15.0, tau_us=12.0).capabilities
    assert other.max_inputs == 32 and other.weight_limit == pytest.approx(31 / 15)
    assert other.delay_range == pytest.approx(((50 / 8 + 2) / 12, (250 / 8 + 2) / 12))


def test_a_network_needing_too_many_circuits_is_refused_naming_them(emulator):
    backend, calibration = emulator()
    duplicated = _network((100, 120, 3))  # 100 inputs = 20 groups of 5 copies: 2 x 140 delay lines
    assert backend.can_run(duplicated) is None
    single = dg.get_backend("bss2-emulator", input_duplication=1)
    with pytest.raises(dg.UnsupportedNetworkError) as info:
        single.execute(duplicated, np.zeros((1, 100)), calibration=calibration)
    assert info.value.capability == "resources"
    assert ("needs 563 neuron circuits (120 hidden + 3 output + 2 x 220 delay lines), the chip has 512: "
            "51 too many") in str(info.value)
    with pytest.raises(dg.UnsupportedNetworkError, match="needs 563 neuron circuits"):
        single.calibrate(duplicated)
    small_chip = dg.get_backend("bss2-emulator", neuron_circuits=400)
    assert "needs 403 neuron circuits (120 hidden + 3 output + 2 x 140 delay lines), the chip has 400: 3 too many" \
        in small_chip.can_run(duplicated)
    assert small_chip.can_run(_network((100, 120, 3), kind="none")) is None


@pytest.mark.parametrize(("network", "capability"), [
    (_network((129, 3), kind="none"), "max_inputs"),
    (_network((4, 5, 5, 3)), "max_layers"),
    (_network((4, 5, 3), kind="synaptic"), "delay_kinds"),
    (_network((4, 5, 3), kind="dendritic"), "delay_kinds"),
])
def test_networks_beyond_the_chip_are_refused(network, capability):
    with pytest.raises(dg.UnsupportedNetworkError) as info:
        dg.get_backend("bss2-emulator").check_supported(network)
    assert info.value.capability == capability


def test_tau_ratios_other_than_one_are_refused():
    network = dg.Network.feedforward([4, 3], neuron=dg.NeuronParameters(1.0, 2.0, 1.0))
    assert "tau_m/tau_s ratio 2" in dg.get_backend("bss2-emulator").can_run(network)


def test_weights_are_clipped_and_quantised_to_the_six_bit_grid():
    backend = dg.get_backend("bss2-emulator")
    network = _network((20, 30, 3), kind="none", seed=3)
    network.layers[0].projection.weights *= 2.0
    ran = backend.represent(network)
    for layer, original in zip(ran.layers, network.layers):
        expected = np.clip(np.round(original.projection.weights * 30), -63, 63) / 30  # independently
        np.testing.assert_allclose(layer.projection.weights, expected, rtol=0, atol=1e-12)
    assert np.abs(ran.layers[0].projection.weights).max() == pytest.approx(2.1)


def test_the_largest_weight_a_job_can_store_runs_as_the_reference_and_larger_is_refused():
    # a job keeps its weights in 8 bits: 255 is the largest weight_max (256 used to wrap to 0)
    backend = dg.get_backend("bss2-emulator", weight_max=255, **ALL_OFF)
    network = dg.Network.feedforward([2, 1], neuron=dg.NeuronParameters(2.6, 1.0, 1.0), weight_mean=255 / 30,
                                     weight_std=0.0)
    network.layers[0].projection.weights[1, 0] = -255 / 30
    inputs = np.array([[0.5, np.inf], [0.5, 0.6]])
    times = backend.execute(network, inputs, calibration=backend.calibrate()).layer_spike_times[0]
    expected = dg.forward(backend.represent(network), inputs)[0]
    assert np.all(np.isfinite(times[0])) and np.all(np.isfinite(expected[0]))
    np.testing.assert_allclose(times, expected, rtol=0, atol=1e-9)
    with pytest.raises(dg.InvalidValueError, match="weight_max: a job stores weights in 8 bits, expected at most 255"):
        dg.get_backend("bss2-emulator", weight_max=256)


@pytest.mark.parametrize(("options", "message"), [
    ({"weight_scale": 1e-300}, r"weight_scale: one weight step \(1/weight_scale = 1e\+300\) is larger than the "
                               r"threshold 2.6 \(option threshold\); expected at least 0.384615"),
    ({"weight_scale": 2.0, "threshold": 0.4}, r"one weight step \(1/weight_scale = 0.5\) is larger than the "
                                              r"threshold 0.4 \(option threshold\); expected at least 2.5"),
    ({"weight_scale": 1e300}, r"weight_scale: at 1e\+300 no neuron could fire \(all 128 inputs \(synapse_rows / 2\) at "
                              r"the largest weight 63 \(weight_max\) / weight_scale peak below the threshold 2.6 "
                              r"\(option threshold\)\); expected at most 1140.99"),
    ({"weight_scale": 200.0, "synapse_rows": 16}, r"all 8 inputs .* expected at most 71.312"),
])
def test_a_weight_scale_that_makes_every_weight_zero_or_powerless_is_refused(options, message):
    """(weight_scale=1e-300 rounded every weight to 0: a chip on which nothing could ever fire)"""
    with pytest.raises(dg.InvalidValueError, match=message):
        dg.get_backend("bss2-emulator", **options)
    dg.get_backend("bss2-emulator", weight_scale=1140.99)  # (within the bounds)
    dg.get_backend("bss2-emulator", weight_scale=1 / 2.6)


def test_delays_are_rounded_to_the_register_grid_and_bounded():
    backend = dg.get_backend("bss2-emulator", input_duplication=1)
    network = _network((6, 4, 3), seed=1)
    raw = np.array([0.1, 1.40, 2.013, 3.333, 5.5, 9.0])
    network.layers[0].projection.delays[...] = raw
    ran = backend.represent(network).layers[0].projection.delays
    register = np.clip(np.round((raw * 6 - 2) * 8), 50, 250)  # delay [us] = register / 8 + 2
    np.testing.assert_allclose(ran, (register / 8 + 2) / 6, rtol=0, atol=1e-12)
    assert ran[0] == pytest.approx((50 / 8 + 2) / 6) and ran[-1] == pytest.approx((250 / 8 + 2) / 6)


def test_copies_of_a_duplicated_input_share_the_mean_delay():
    backend = dg.get_backend("bss2-emulator")
    network = yin_yang_network()
    delays = np.random.default_rng(0).uniform(2.0, 3.5, 20)
    network.layers[0].projection.delays[...] = delays
    with pytest.warns(UserWarning, match="the 5 copies of an input have different delays"):
        ran = backend.represent(network).layers[0].projection.delays.reshape(4, 5)
    assert np.all(ran == ran[:, :1])
    expected = np.round((delays.reshape(4, 5).mean(axis=1) * 6 - 2) * 8) / 8 + 2  # mean first, then the grid
    np.testing.assert_allclose(ran[:, 0] * 6, expected, rtol=0, atol=1e-12)
    # not applied when the input count is not a multiple of the duplication, or without it
    odd = _network((6, 4, 3), seed=2)
    odd.layers[0].projection.delays[...] = np.linspace(2.0, 3.0, 6)
    assert len(set(backend.represent(odd).layers[0].projection.delays)) == 6
    single = dg.get_backend("bss2-emulator", input_duplication=1)
    separate = single.represent(network).layers[0].projection.delays.reshape(4, 5)
    assert not np.any(np.all(separate == separate[:, :1], axis=1))


def test_the_warning_of_differing_copy_delays_comes_once_per_backend():
    """(`represent`'s docstring: once per backend, as a training run represents every step)"""
    backend = dg.get_backend("bss2-emulator")
    network = yin_yang_network()
    network.layers[0].projection.delays[...] = np.linspace(2.0, 3.5, 20)
    with pytest.warns(UserWarning, match="the 5 copies of an input have different delays") as record:
        backend.represent(network)
    assert [w.filename for w in record] == [__file__]  # (it points at the caller's line)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.represent(network)


def test_copies_with_one_delay_each_are_represented_without_a_warning():
    """The warning is for copies whose delays differed (`represent`'s docstring); a network trained
    with shared_input_delays has equal delays there already, and keeps them (docs/bss2.md, Mapping)."""
    network = yin_yang_network()  # (each input's 5 copies share one delay)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ran = dg.get_backend("bss2-emulator").represent(network)
    np.testing.assert_allclose(ran.layers[0].projection.delays, network.layers[0].projection.delays, atol=1 / 96)


def test_represent_is_idempotent_and_keeps_a_representable_network():
    backend = dg.get_backend("bss2-emulator")
    ran = backend.represent(yin_yang_network())
    assert backend.represent(ran) is ran


def test_placement_skips_circuits_and_delay_elements_that_failed_calibration():
    network = yin_yang_network()
    circuits, elements = np.ones(512, bool), np.ones(256, bool)
    circuits[[0, 5]] = False
    elements[255] = False
    placement = place(network, 5, circuits, elements)
    hidden, output = placement.neuron_circuits
    assert hidden[0] == 1 and 5 not in hidden and output.tolist() == [32, 33, 34]
    assert placement.delay_elements[0].tolist() == [254, 253, 252, 251]
    assert placement.delay_elements[1][0] == 250 and placement.delay_elements[1].size == 30
    used = np.concatenate([hidden, output, 2 * np.concatenate(placement.delay_elements),
                           2 * np.concatenate(placement.delay_elements) + 1])
    assert np.unique(used).size == used.size  # no circuit used twice
    with pytest.raises(dg.UnsupportedNetworkError, match="3 circuits and 0 delay elements failed calibration"):
        place(_network((20, 200, 3), kind="none"), 5, np.r_[np.zeros(3, bool), np.ones(201, bool)], np.ones(102, bool))
    few_elements = np.zeros(256, bool)
    few_elements[:33] = True  # (34 needed: 4 of the input copies, 30 of the hidden layer; circuits to spare)
    with pytest.raises(dg.UnsupportedNetworkError, match="needs 33 neuron circuits and 34 delay elements; after "
                                                         "placing 33 delay elements"):
        place(network, 5, np.ones(512, bool), few_elements)


def test_chip_options_take_numpy_numbers():
    backend = dg.get_backend("bss2-emulator", weight_max=np.int64(40), threshold=np.float32(2.5), cache=False)
    assert backend.capabilities.weight_limit == pytest.approx(40 / 30)


def test_a_network_needing_exactly_every_circuit_fits_and_uses_each_once():
    """(a strict comparison refused a network that needs exactly the chip's 512 circuits; a delay
    element that reserved only the first circuit of its pair let a neuron sit on the second)"""
    backend = dg.get_backend("bss2-emulator")
    # 128 hidden + 120 output + 2 x (4 input elements of 5 copies + 128 hidden elements) = 512
    exact = _network((20, 128, 120))
    assert backend.can_run(exact) is None
    assert "needs 513 neuron circuits" in backend.can_run(_network((20, 128, 121)))
    placement = place(exact, 5, np.ones(512, bool), np.ones(256, bool))
    elements = np.concatenate(placement.delay_elements)
    used = np.concatenate([*placement.neuron_circuits, 2 * elements, 2 * elements + 1])
    assert np.array_equal(np.sort(used), np.arange(512))  # every circuit, each once
    with pytest.raises(dg.UnsupportedNetworkError, match="cannot place the network"):  # one circuit short
        place(_network((20, 128, 121)), 5, np.ones(512, bool), np.ones(256, bool))


def test_the_largest_weights_of_both_signs_are_the_six_bit_limit():
    """(a clip of the inhibitory side to -62 would lose the strongest inhibitory weight)"""
    from delgrad_bss2._config import ChipConfig
    from delgrad_bss2._units import weight_integers
    integers = weight_integers(np.array([-5.0, -63 / 30, -62 / 30, 0.0, 62 / 30, 63 / 30, 5.0]), ChipConfig())
    assert integers.tolist() == [-63, -63, -62, 0, 62, 63, 63]
