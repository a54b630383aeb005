"""Hardware-aware training on the emulator with the settings the backend registers."""

import numpy as np
import pytest

import delgrad_core as dg
from delgrad_core.datasets import Dataset
from delgrad_core.training import Trainer, config_with_defaults


def test_the_backend_supplies_the_chips_training_settings_under_the_users():
    config = config_with_defaults({"backend": "bss2-emulator", "delays": "axonal", "batch_size": 20}).resolved()
    assert (config.tau_ratio, config.threshold, config.hidden, config.encoder_options) == (1.0, 2.6, 30, {"repeat": 5})
    assert (config.weight_lr, config.delay_lr, config.loss_delta) == (0.002, 0.002, 0.3)
    assert (config.weight_init_mean, config.weight_init_std) == ([1.0, 0.075], [0.12, 0.15])
    assert (config.delay_shift, config.delay_scale, config.delay_init_std) == (2.0, 1.5, 0.5)
    assert (config.silent_limit_hidden, config.silent_limit_output) == (0.05, 0.05)
    assert config.evaluation_batch_size == 40  # one noise draw per 40 samples, as in training
    assert config.batch_size == 20  # the user's setting wins


def test_the_inputs_are_repeated_as_often_as_the_chip_duplicates_them():
    """(with input_duplication=2 the inputs were still repeated 5x: copies of two inputs shared a
    delay element, with a warning on every run and, at times, arrivals before their spikes)"""
    def defaults(**options):
        config = config_with_defaults({"backend": "bss2-emulator", "backend_options": options}).resolved()
        return config.encoder_options, config.shared_input_delays

    assert defaults() == ({"repeat": 5}, 5) and defaults(input_duplication=2) == ({"repeat": 2}, 2)
    assert defaults(input_duplication=0) == ({"repeat": 5}, 5)  # (refused when the backend is built)
    hil = config_with_defaults({"backend": "mock-hil", "backend_options": {"device_options": {"input_duplication": 3}}})
    assert (hil.encoder_options, hil.shared_input_delays) == ({"repeat": 3}, 3)


def test_the_network_trains_at_the_threshold_the_chip_is_set_to():
    """(with threshold=3.0 the network still trained at 2.6, without a note, while the device
    identity recorded 3.0)"""
    def threshold(**options):
        return config_with_defaults({"backend": "bss2-emulator", "backend_options": options}).resolved().threshold

    assert threshold() == 2.6 and threshold(threshold=3.0) == threshold(threshold=3) == 3.0
    assert threshold(threshold=-1.0) == 2.6  # (refused when the backend is built)
    assert config_with_defaults({"backend": "bss2-emulator", "backend_options": {"threshold": 3.0},
                                 "threshold": 1.0}).resolved().threshold == 1.0  # (the user's setting wins)


def test_inputs_the_chip_would_take_as_copies_that_are_not_are_refused_before_training(tmp_path):
    """(digits' 128 inputs, not repeated, on a chip duplicating inputs 2x with axonal delays:
    neighbouring features shared a delay element, with one warning)"""
    def trainer(**settings):
        config = config_with_defaults({"backend": "bss2-emulator", "backend_options": {"input_duplication": 2},
                                       "dataset": "digits", "hidden": 5, "epochs": 1, **settings})
        return Trainer(config)

    with pytest.raises(dg.InvalidValueError, match=r"encoder_options: backend 'bss2-emulator' takes every 2 "
                                                   r"consecutive input lines as copies of one input .* the encoder "
                                                   r"makes 1 of each input \(its repeat\)"):
        trainer(encoder_options={"repeat": 1}, shared_input_delays=1)
    with trainer(encoder_options={"repeat": 1}, shared_input_delays=1, delays="none") as fine:  # (no delay to share)
        assert fine.model.network.input.size == 128
    with trainer(encoder_options={"repeat": 2, "pairs": False}) as fine:  # (each feature twice)
        assert fine.model.network.input.size == 128 and fine.config.shared_input_delays == 2


def test_an_epoch_on_the_emulator_lowers_the_loss_with_gradients_at_the_measured_arrivals():
    config = config_with_defaults({"backend": "bss2-emulator", "delays": "axonal", "epochs": 1, "seed": 1,
                                 "keep_best": False, "weight_lr": 0.01, "delay_lr": 0.01})
    with Trainer(config) as trainer:
        full = trainer.train_set
        trainer.train_set = Dataset("yin_yang", "train", full.features[:800], full.labels[:800], full.class_names)
        ran, result = trainer.step.run(trainer.encoder(full.features[:40]))
        assert ran.input.size == 20 and [a.shape for a in result.arrival_times] == [(40, 20), (40, 30)]
        delays = ran.layers[0].projection.delays.reshape(4, 5)
        assert np.all(delays == delays[:, :1])  # copies share their delay element
        before = trainer.evaluate(trainer.train_set).loss
        delays_before = trainer.model.params["layers.0.delays"].copy()
        trainer.fit(progress=False)
        after = trainer.evaluate(trainer.train_set).loss
        assert not np.array_equal(trainer.model.params["layers.0.delays"], delays_before)
    assert after < before


def test_a_run_resumed_on_the_noisy_emulator_equals_the_uninterrupted_run(tmp_path):
    """Every job draws its own noise: a resumed run must draw, job for job, what the run would
    have drawn had it not stopped (the job seeds come from the checkpointed generator)."""
    settings = {"backend": "bss2-emulator", "delays": "axonal", "hidden": 10, "seed": 4}
    config = config_with_defaults({**settings, "epochs": 3})
    with Trainer(config, out_dir=tmp_path / "straight") as straight:
        straight.fit(progress=False)
        noisy = [straight.evaluate(straight.validation_set, seed=seed).loss for seed in (1, 2)]
        assert noisy[0] != noisy[1]  # (the noise is on: an equal resume is not an empty claim)
    with Trainer(config_with_defaults({**settings, "epochs": 1}), out_dir=tmp_path / "resumed") as first:
        first.fit(progress=False)
    with Trainer(config, out_dir=tmp_path / "resumed", resume=True) as resumed:
        resumed.fit(progress=False)
    for name in straight.model.params:
        assert np.array_equal(straight.model.params[name], resumed.model.params[name]), name
    assert [m.validation_loss for m in straight.history] == [m.validation_loss for m in resumed.history]


@pytest.mark.filterwarnings("ignore:epoch [0-9]+")
def test_neurons_the_chip_holds_silent_end_the_run_naming_the_chips_weight_limit(tmp_path):
    """Inputs so late that their spikes fall after the sample slot keep the outputs silent: the
    silent-neuron bump raises the shadow weights no further than the chip's clip (2.1) and ends
    the run naming it (the weights grew without bound, to 1e11, and the run ended with the
    network's "summed |weights| ... above 1e+200")."""
    config = config_with_defaults({"backend": "bss2-emulator", "delays": "none", "hidden": 5, "epochs": 6,
                                   "batch_size": 2, "t_early": 29.8, "t_late": 29.9})  # (1,200 steps)
    with Trainer(config) as trainer:
        full = trainer.train_set
        trainer.train_set = Dataset("yin_yang", "train", full.features[:400], full.labels[:400], full.class_names)
        with pytest.raises(dg.InvalidValueError, match=r"the next one overflows it: the silent neurons of neuron layer "
                                                     r"\d stay silent however far the bump raises their input weights "
                                                     r"\(up to the weight limit 2.1, where"):
            trainer.fit()
        assert all(np.abs(weights).max() <= 2.1 for weights in trainer.model.params.values())
