"""The Trainer used from Python as a notebook would: looking at a run does not change it, a name
given for the backend is what the run records, and a closed trainer writes nothing."""

import json
import warnings

import numpy as np
import pytest

import delgrad_core as dg
from delgrad_core.datasets import Dataset
from delgrad_core.training import Trainer, TrainingConfig, config_with_defaults

SHORT = dict(epochs=3, hidden=5, batch_size=250, seed=4)


def _noisy_config(**settings):
    """A training on the noisy, seeded bss2 emulator, where job seeds change results."""
    pytest.importorskip("delgrad_bss2")
    return config_with_defaults({"backend": "bss2-emulator", "hidden": 5, "epochs": 2, **settings})


@pytest.mark.parametrize("noisy", [False, True], ids=["reference", "bss2-emulator"])
def test_evaluating_and_plotting_between_epochs_does_not_change_the_training(noisy):
    config = _noisy_config() if noisy else TrainingConfig(**SHORT)
    straight = Trainer(config)
    straight.fit(progress=False)
    looked_at = Trainer(config)
    looked_at.fit(progress=False, should_stop=lambda: looked_at.epoch == 1)
    looked_at.evaluate(looked_at.validation_set)
    looked_at.decision_plane(resolution=4)
    looked_at.fit(progress=False)
    for name in straight.model.params:
        np.testing.assert_array_equal(straight.model.params[name], looked_at.model.params[name], err_msg=name)
    assert [m.validation_accuracy for m in straight.history] == [m.validation_accuracy for m in looked_at.history]


def test_evaluating_before_finish_does_not_change_the_runs_test_seed():
    """(docs/training.md: evaluate draws its jobs' seeds from a generator of its own, not the run's; the
    test_seed finish records, which `delgrad evaluate` repeats the test with, is the run's)"""
    seeds = []
    for look in (False, True):
        trainer = Trainer(TrainingConfig(**{**SHORT, "epochs": 1}))
        trainer.fit(progress=False)
        if look:
            trainer.evaluate(trainer.validation_set)
        trainer.finish()
        seeds.append(trainer.test_seed)
    assert seeds[0] == seeds[1]


def test_evaluate_without_a_seed_draws_new_noise_each_call_and_with_one_repeats():
    trainer = Trainer(_noisy_config(epochs=1))
    trainer.fit(progress=False)
    subset = trainer.validation_set
    first, second = (trainer.evaluate(subset).output_spike_times for _ in range(2))
    assert np.isfinite(first).mean() > 0.9 and not np.array_equal(first, second)
    seeded = [trainer.evaluate(subset, seed=9).output_spike_times for _ in range(2)]
    np.testing.assert_array_equal(*seeded)


def test_a_backend_named_for_the_trainer_is_the_one_its_run_records(tmp_path):
    config = TrainingConfig(**{**SHORT, "epochs": 1}, backend="example")
    with Trainer(config, backend="reference", out_dir=tmp_path) as trainer:
        assert trainer.config.backend == "reference" and trainer.backend.name == "reference"
        trainer.fit(progress=False)
        trainer.finish()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["backend"] == metrics["config"]["backend"] == "reference"
    reference = dg.backend_info("reference")
    assert metrics["versions"] == {"delgrad": dg.__version__, reference.distribution: reference.version}
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path, resume=True) as resumed:
        assert resumed.fit(progress=False)[-1].epoch == 2


def test_a_closed_trainer_does_not_write_a_checkpoint_over_the_run(tmp_path):
    first = Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), out_dir=tmp_path)
    first.fit(progress=False)
    first.close()
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path, resume=True) as second:
        second.fit(progress=False)
    with pytest.raises(dg.DelgradError, match=r"Trainer.save_checkpoint: the trainer is closed"):
        first.save_checkpoint()
    assert Trainer(TrainingConfig(**{**SHORT, "epochs": 3}), out_dir=tmp_path, resume=True).epoch == 2


@pytest.mark.parametrize("resolution", [-1, 0, 1, 1.5, "3", True, 10**5])
def test_a_decision_plane_resolution_out_of_range_is_refused_naming_it(resolution):
    trainer = Trainer(TrainingConfig(**SHORT))
    with pytest.raises(dg.InvalidValueError, match=r"decision_plane: resolution: expected an integer from 2 to 1000"):
        trainer.decision_plane(resolution)


@pytest.mark.parametrize("arguments, message", [
    (dict(should_stop=True), r"fit: should_stop: expected None or a function"),
    (dict(progress="no"), r"fit: progress: expected true or false, got 'no'"),
    # (a bare TypeError from inside fit; "no" stopped the training)
    (dict(should_stop=lambda a, b: False), r"fit: should_stop: expected None or a function of no arguments"),
    (dict(should_stop=lambda: "no"), r"fit: should_stop\(\) returned 'no'; expected True \(stop\) or False"),
])
def test_fit_refuses_arguments_of_the_wrong_kind(arguments, message):
    trainer = Trainer(TrainingConfig(**SHORT))
    with pytest.raises(dg.InvalidValueError, match=message):
        trainer.fit(**arguments)
    assert trainer.epoch == 0


@pytest.mark.parametrize("arguments", [dict(test=0.9), dict(final_test={"accuracy": 0.9})])
def test_summary_refuses_results_that_are_no_evaluation(arguments):
    """(an AttributeError: 'float' object has no attribute 'loss')"""
    (name, given), = arguments.items()
    with pytest.raises(dg.InvalidValueError, match=rf"^summary: {name}: expected None or an Evaluation \(as "
                                                   rf"evaluate\(\) returns\), got {type(given).__name__}$"):
        Trainer(TrainingConfig(**SHORT)).summary(**arguments)


def test_a_long_epoch_reports_its_batches_in_a_log_at_most_every_half_minute(capsys):
    from delgrad_core.training._progress import EpochProgress

    now = [0.0]
    report = EpochProgress(total=2, initial=0, description="run", enabled=True, clock=lambda: now[0])
    for seconds, done in [(10, 1), (31, 2), (40, 3), (62, 4), (70, 5)]:
        now[0] = seconds
        report.batch_done(1, done, 5)  # the last batch's report is the epoch's own line
    report.close()
    assert capsys.readouterr().err.splitlines() == ["epoch 1/2: 2 of 5 batches done, 31 s into the epoch",
                                                    "epoch 1/2: 4 of 5 batches done, 62 s into the epoch"]


def test_fit_reports_the_batches_of_each_epoch_as_they_finish(capsys, monkeypatch):
    from delgrad_core.training import _progress

    monkeypatch.setattr(_progress, "_BATCH_LINE_SECONDS", 0.0)
    trainer = Trainer(TrainingConfig(epochs=2, hidden=5, batch_size=1600, seed=4))
    trainer.fit(progress=True)
    lines = capsys.readouterr().err.splitlines()
    batches = -(-len(trainer.train_set) // 1600)
    assert [line.split(",")[0].split(" 0.")[0] for line in lines] == [
        *(f"epoch 1/2: {done} of {batches} batches done" for done in range(1, batches)), "epoch 1/2: loss",
        *(f"epoch 2/2: {done} of {batches} batches done" for done in range(1, batches)), "epoch 2/2: loss"]


def test_a_batch_larger_than_the_training_split_is_said():
    with pytest.warns(UserWarning, match=r"batch_size 6000 is larger than the training split \(5000 samples\): "
                                         "every step takes the whole split"):
        Trainer(TrainingConfig(epochs=1, hidden=5, batch_size=6000, seed=4))


def test_a_batch_as_large_as_the_training_split_is_not_said_to_be_larger():
    """(5000 samples in batches of 5000: one step takes the whole split, as it should, and no larger batch)"""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(TrainingConfig(epochs=1, hidden=5, batch_size=5000, seed=4))


def test_an_epoch_with_some_steps_skipped_is_not_said_to_have_skipped_every_one():
    from dataclasses import replace

    trainer = Trainer(TrainingConfig(**{**SHORT, "epochs": 1}))
    step, calls = trainer.step, []

    def first_skipped(features, labels, lr_factor):
        calls.append(len(labels))
        return replace(step(features, labels, lr_factor), skipped=len(calls) == 1)

    trainer.step = first_skipped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(progress=False)
    assert len(calls) == 20 and trainer.history[0].skipped_steps == 1


def test_resume_is_true_or_false(tmp_path):
    """(resume="no" resumed)"""
    with pytest.raises(dg.InvalidValueError, match="resume: expected True or False, got 'no'"):
        Trainer(TrainingConfig(**SHORT), out_dir=tmp_path / "run", resume="no")


def test_settings_changed_after_finish_are_refused_as_before_it():
    """(a second finish() returned the first's result, and evaluate used the settings the trainer
    was built with, though the config said otherwise)"""
    trainer = Trainer(TrainingConfig(**{**SHORT, "epochs": 1}))
    trainer.fit(progress=False)
    trainer.finish()
    trainer.config.loss_delta = 0.5
    for call in (trainer.finish, lambda: trainer.evaluate(trainer.validation_set)):
        with pytest.raises(dg.InvalidValueError, match="loss_delta"):
            call()
    trainer.config.loss_delta = 0.2
    assert trainer.finish() is trainer.finish()


def test_fit_on_a_finished_run_with_nothing_left_to_train_changes_nothing_and_more_epochs_are_refused():
    """(fit trains until config.epochs: a finished run has none left; raised epochs are refused, as finish()
    has put the kept network into the parameters)"""
    trainer = Trainer(TrainingConfig(**{**SHORT, "epochs": 1}))
    trainer.fit(progress=False)
    trainer.finish()
    params = {name: value.copy() for name, value in trainer.model.params.items()}
    assert trainer.fit(progress=False) == trainer.history and len(trainer.history) == 1
    for name, value in params.items():
        np.testing.assert_array_equal(trainer.model.params[name], value)
    trainer.config.epochs = 2
    with pytest.raises(dg.DelgradError, match=r"^Trainer.fit: the run is finished"):
        trainer.fit(progress=False)


def test_evaluating_a_split_without_samples_is_refused_naming_it():
    """(numpy's "Mean of empty slice" warnings, then an error naming output_times)"""
    trainer = Trainer(TrainingConfig(**{**SHORT, "epochs": 1}))
    data = trainer.validation_set
    empty = Dataset(data.name, data.split, data.features[:0], data.labels[:0], data.class_names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(dg.InvalidValueError, match="evaluate: dataset: split 'validation' of 'yin_yang' holds no "
                                                       "samples"):
            trainer.evaluate(empty)


def test_a_log_gets_a_line_every_few_epochs_and_always_one_for_the_last(capsys):
    """A log gets about 30 lines per run (_progress._LINES_PER_RUN): for 45 epochs one every
    second epoch (every epoch would be 45), and the 45th, the run's end, is not left out."""
    from types import SimpleNamespace

    from delgrad_core.training._progress import EpochProgress

    report = EpochProgress(total=45, initial=0, description="run", enabled=True, clock=lambda: 0.0)
    for epoch in range(1, 46):
        report.update(SimpleNamespace(epoch=epoch, train_loss=0.5, train_accuracy=0.5, validation_accuracy=0.5))
    report.close()
    epochs = [line.split(":")[0] for line in capsys.readouterr().err.splitlines()]
    assert epochs == [f"epoch {n}/45" for n in (*range(2, 45, 2), 45)]


def test_a_backend_failing_to_close_still_lets_the_run_folder_go(tmp_path):
    """Trainer.close: it closes the backend it built and releases the folder it claimed, the latter
    whatever the former does (the claim held on by the failure's traceback kept the folder locked
    against the Trainer resuming it)."""
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), out_dir=tmp_path) as trainer:
        trainer.fit(progress=False)

    def failing():
        raise RuntimeError("the device is gone")

    trainer = Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path, resume=True)
    trainer.backend.close = failing
    with pytest.raises(RuntimeError, match="the device is gone") as failure:
        trainer.close()
    assert failure.traceback  # (kept until the end of the test, as a notebook keeps the last error)
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path, resume=True) as resumed:
        assert resumed.epoch == 1


def test_the_loss_of_an_evaluation_is_the_mean_over_its_samples():
    """docs/training.md: losses are those of the run's loss, the mean over a split's samples as the training
    batches' are (a split evaluated twice over has the loss of the split, not twice it)."""
    trainer = Trainer(TrainingConfig(**{**SHORT, "epochs": 1}))
    data = trainer.validation_set
    once = trainer.evaluate(data, seed=1)
    twice = trainer.evaluate(Dataset(data.name, data.split, np.concatenate([data.features, data.features]),
                                     np.concatenate([data.labels, data.labels]), data.class_names), seed=1)
    per_sample = trainer.loss(once.output_spike_times, once.labels).per_sample
    assert len(per_sample) == len(data) > 1
    assert once.loss == pytest.approx(sum(per_sample) / len(data), rel=1e-12)
    assert twice.loss == pytest.approx(once.loss, rel=1e-12) and twice.accuracy == once.accuracy


def _subset(data: Dataset, n: int) -> Dataset:
    return Dataset(data.name, data.split, data.features[:n], data.labels[:n], data.class_names)


def test_a_split_replaced_before_the_first_epoch_is_what_the_run_records(tmp_path):
    """(the run recorded the digests of the data it was built with, and evaluate blamed the
    backend for a test accuracy measured on 7 other samples)"""
    with Trainer(TrainingConfig(**dict(SHORT, epochs=1)), out_dir=tmp_path / "run") as trainer:
        trainer.train_set = _subset(trainer.train_set, 500)
        trainer.test_set = _subset(trainer.test_set, 7)
        trainer.fit(progress=False)
        with pytest.raises(dg.InvalidValueError, match=r"^Trainer.train_set: a split may be replaced only before the "
                                                       r"first epoch, and the trainer has trained 1$"):
            trainer.train_set = _subset(trainer.train_set, 100)
        trainer.finish()
        digests = {split: getattr(trainer, f"{split}_set").digest() for split in ("train", "validation", "test")}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["dataset_digests"] == digests
    with pytest.raises(dg.InvalidValueError, match="resume: the train, test split"):  # (the data it was trained on)
        Trainer(TrainingConfig(**dict(SHORT, epochs=2)), out_dir=tmp_path / "run", resume=True)


def test_a_split_of_other_classes_or_anything_but_a_dataset_is_refused():
    with Trainer(TrainingConfig(**dict(SHORT, epochs=1))) as trainer:
        data = trainer.validation_set
        with pytest.raises(dg.InvalidValueError, match=r"split 'validation': class names \['a', 'b'\], the train split "
                                                       r"has \['yin', 'yang', 'dot'\]"):
            trainer.validation_set = Dataset("yin_yang", "validation", data.features, data.labels % 2, ("a", "b"))
        with pytest.raises(dg.InvalidValueError, match="Trainer.test_set: expected a delgrad_core.datasets.Dataset, "
                                                       "got ndarray"):
            trainer.test_set = data.features
        assert trainer.validation_set is data


@pytest.mark.parametrize("name", ["loss", "encoder"])
def test_the_loss_and_encoder_are_set_by_the_config_not_replaced(name):
    """(a replaced loss served validation and test, the training step kept the first, and the run
    recorded the config's)"""
    with Trainer(TrainingConfig(**dict(SHORT, epochs=1))) as trainer:
        kept = getattr(trainer, name)
        with pytest.raises(dg.InvalidValueError, match=rf"^Trainer.{name}: built from config.{name} and "
                                                       rf"config.{name}_options"):
            setattr(trainer, name, None)
        assert getattr(trainer, name) is kept


@pytest.mark.parametrize("call", ["fit", "close", "finish", "save_checkpoint"])
def test_should_stop_cannot_fit_or_close_its_own_trainer(tmp_path, call):
    """(a fit inside should_stop trained an epoch beyond `epochs` and broke the trainer; a close
    released the run folder to another trainer while the epoch went on writing into it)"""
    with Trainer(TrainingConfig(**dict(SHORT, epochs=2)), out_dir=tmp_path / "run") as trainer:
        def should_stop():
            getattr(trainer, call)()
            return False

        with pytest.raises(dg.DelgradError, match=rf"^Trainer.{call}: called from the should_stop of this trainer's "
                                                  r"fit, which only says whether to stop"):
            trainer.fit(progress=False, should_stop=should_stop)
        assert trainer.fit(progress=False)[-1].epoch == 2  # (nothing was done: the run goes on)
    assert [json.loads(line)["epoch"] for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()] == \
        [1, 2]


def test_another_thread_calling_fit_while_should_stop_runs_is_told_a_thread_is_training():
    """(the refusal for should_stop's own thread is not given to another thread)"""
    import threading

    with Trainer(TrainingConfig(**dict(SHORT, epochs=1))) as trainer:
        said = []

        def other_thread():
            try:
                trainer.fit(progress=False)
            except dg.DelgradError as exc:
                said.append(str(exc))

        def should_stop():
            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
            return False

        trainer.fit(progress=False, should_stop=should_stop)
    assert said and said[0].startswith("Trainer.fit: another thread is training"), said


def test_the_history_fit_returns_is_the_callers_to_change():
    """(accuracies turned into percent for a plot were written into metrics.json)"""
    with Trainer(TrainingConfig(**dict(SHORT, epochs=1))) as trainer:
        history = trainer.fit(progress=False)
        history[0].validation_accuracy *= 100
        del history[:]
        assert len(trainer.history) == 1 and trainer.history[0].validation_accuracy <= 1


@pytest.mark.parametrize("how", ["copy", "deepcopy", "pickle"])
def test_a_trainer_is_not_copied(tmp_path, how):
    """(a copy, closed, released the original's run folder and closed its backend)"""
    import copy
    import pickle

    duplicate = {"copy": copy.copy, "deepcopy": copy.deepcopy, "pickle": pickle.dumps}[how]
    with Trainer(TrainingConfig(**dict(SHORT, epochs=1)), out_dir=tmp_path / "run") as trainer:
        with pytest.raises(dg.InvalidValueError, match="^Trainer: a trainer cannot be pickled or copied"):
            duplicate(trainer)
        copy.deepcopy(trainer.network)  # (its network can be)
        trainer.fit(progress=False)
