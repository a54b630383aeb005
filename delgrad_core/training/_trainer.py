"""The training loop: epochs of `TrainingStep`s, validation, model selection, checkpoints
(docs/training.md).  The step, the heuristics, the run folder, the progress report, the history,
the checks of a checkpoint to resume from and the decision plane are parts of their own
(`_step`, `_heuristics`, `_run_folder`, `_progress`, `_history`, `_resume`, `_plane`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import shlex
import threading
import time
import warnings
from dataclasses import asdict, dataclass, replace

import numpy as np

from delgrad_core._backend import check_training_settings_of, exit_closing
from delgrad_core._errors import (
    DelgradError,
    FileFormatError,
    InvalidValueError,
    RunFolderError,
    UnknownOptionError,
)
from delgrad_core._losses import accuracy
from delgrad_core._npz import json_array
from delgrad_core._plugins import built_neutral_options, get_backend, registry
from delgrad_core._execution import check_seed
from delgrad_core._ir import check_type, equal_values
from delgrad_core._numbers import checked_number
from delgrad_core.datasets import Dataset, load_dataset
from delgrad_core.datasets._registry import TRAINING_SPLITS
from delgrad_core.training._components import component
from delgrad_core.training._config import (
    TrainingConfig,
    check_settings,
    setting_differences,
    shown_setting,
)
from delgrad_core.training._evaluation import check_fits_dataset, draw_seed, output_spike_times
from delgrad_core.training._guard import GrazingGuard
from delgrad_core.training._history import EpochMetrics, history_digest
from delgrad_core.training._identity import identity_changes, key_changes, recorded_identity
from delgrad_core.training._heuristics import BestValidation, ParameterAverage, SilentNeuronBump, SilentNeuronRevival
from delgrad_core.training._optim import Adam, step_decay_factor
from delgrad_core.training._parameters import TrainableNetwork, build_network, check_input_copies, check_supported
from delgrad_core.training._plane import MAX_PLANE_RESOLUTION, plane_inputs
from delgrad_core.training._progress import EpochProgress
from delgrad_core.training._resume import check_same_data, check_same_settings, checkpoint_history, parameter_arrays
from delgrad_core.training._run_folder import STATE_KEY, RunFolder, checked_state
from delgrad_core.training._step import TrainingStep

__all__ = ["Trainer", "Evaluation", "BackendOptionsError", "built_backend"]


@dataclass(eq=False)
class Evaluation:
    """Loss, accuracy and output spike times of a dataset split (equal by value: == of the
    generated kind raised numpy's "truth value of an array is ambiguous")."""

    loss: float
    accuracy: float
    output_spike_times: np.ndarray
    labels: np.ndarray

    __hash__ = None
    __eq__ = equal_values


def _check_splits_agree(train: Dataset, *others: Dataset) -> None:
    """Every split holds samples, with the training split's number of features and class names
    (in the same order: a label means the same class everywhere)."""
    for data in (train, *others):
        where = f"dataset {data.name!r}, split {data.split!r}"
        if len(data) == 0:
            raise InvalidValueError(f"{where}: holds no samples")
        if data.n_features != train.n_features:
            raise InvalidValueError(f"{where}: {data.n_features} features per sample, the train split has "
                                    f"{train.n_features}")
        if data.class_names != train.class_names:
            raise InvalidValueError(f"{where}: class names {list(data.class_names)}, the train split has "
                                    f"{list(train.class_names)} (the same names in the same order: a label means "
                                    "one class in every split)")


def _warn_of_equal_splits(dataset: str, digests: dict) -> None:
    """Warn where two splits hold the same data (e.g. a loader that ignores its split): the
    validation or test accuracy would be measured on training samples."""
    splits = list(digests)
    equal = [(a, b) for i, a in enumerate(splits) for b in splits[i + 1:] if digests[a] == digests[b]]
    if equal:
        shown = "; ".join(f"{a} and {b}" for a, b in equal)
        warnings.warn(f"dataset {dataset!r}: the splits {shown} hold the same samples (a loader that ignores its "
                      "split?): accuracies measured on one are those of the other", UserWarning, stacklevel=3)


_INSPECTION_STREAM = 0x1E5  # (the job seeds of evaluate and decision_plane called from outside the loop)
# DelGrad's largest learning rate and its silent-neuron bump (docs/model.md §5.4, §5.5)
_DELGRAD_STEP_SIZES = {"weight_lr": 0.02, "delay_lr": 0.01, "silent_bump": 0.0005}


class BackendOptionsError(InvalidValueError):
    """A backend refused the options it was to be built with (a usage error on the command line);
    `unknown_options`: the names it does not take, if that was why."""

    def __init__(self, message: str, *, unknown_options=()):
        super().__init__(message)
        self.unknown_options = tuple(unknown_options)

    def __reduce__(self):
        return type(self), (str(self),), {"unknown_options": self.unknown_options}


def built_backend(requested, options: dict):
    """The backend named `requested` built with `options` (an option value it refuses is a
    `BackendOptionsError` naming it as one of the backend options), or `requested` itself if it
    is a backend object."""
    if not isinstance(requested, str):
        return get_backend(requested)
    try:
        return get_backend(requested, **options)
    except InvalidValueError as exc:
        message = str(exc) if str(exc).startswith("backend ") else f"backend {requested!r}: {exc}"
        raise BackendOptionsError(f"backend_options: {message}",
                                  unknown_options=exc.names if isinstance(exc, UnknownOptionError) else ()) from None


def _one_thread_at_a_time(method):
    """Refuse `method` while another thread is in fit, finish, save_checkpoint or close of the
    same trainer: they change or record one run's parameters, optimiser and random state (two threads
    in fit trained a mixed run recorded as a good one; a checkpoint saved mid-epoch resumed into
    another run)."""
    @functools.wraps(method)
    def alone(self, *args, **kwargs):
        if self._asking_should_stop == threading.get_ident():  # (fit's callback: the lock lets its thread in)
            raise DelgradError(f"Trainer.{method.__name__}: called from the should_stop of this trainer's fit, which "
                               "only says whether to stop: return True from it to stop, then call "
                               f"{method.__name__}() after fit returns")
        if not self._working.acquire(blocking=False):
            raise DelgradError(f"Trainer.{method.__name__}: another thread is training, finishing, checkpointing or "
                               "closing this trainer; a trainer works in one thread at a time (wait for it, or give "
                               "each thread a Trainer of its own)")
        try:
            return method(self, *args, **kwargs)
        finally:
            self._working.release()
    return alone


class _Split:
    """A data split of the trainer (`train_set`, `validation_set`, `test_set`).  It may be
    replaced before the first epoch, by a Dataset with the features and class names of the
    others; the run then records the digest of the data it trained and was tested on."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, trainer, owner=None):
        return self if trainer is None else trainer._splits[self.name]

    def __set__(self, trainer, dataset) -> None:
        trainer._replace_split(self.name, dataset)


class _SetByConfig:
    """A component of the trainer built from its config (`loss`, `encoder`): what metrics.json
    records is the config, so the component is not replaced."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, trainer, owner=None):
        return self if trainer is None else trainer.__dict__[f"_{self.name}"]

    def __set__(self, trainer, value) -> None:
        raise InvalidValueError(f"Trainer.{self.name}: built from config.{self.name} and config.{self.name}_options, "
                                f"which the run records; make a Trainer with the {self.name} you want (a registered "
                                f"one, by name) instead of replacing it")


class Trainer:
    """Train a classifier on a backend chosen by name or passed as an object.

    Parameters
    ----------
    config : TrainingConfig
    backend : str or Backend, optional
        Overrides ``config.backend``: a name replaces it in the trainer's config (and so in what
        the run records).  A backend built from a name is owned by the trainer and closed by
        `close()` (the trainer is a context manager); an object is used as it is and stays open
        (its owner closes it).
    out_dir : path or RunFolder, optional
        The run folder where checkpoints, the history, ``metrics.json`` and the trained network
        are written.  A path is claimed (`RunFolder.claim`) until `close()`: locked against
        other processes, refused if it holds a run (unless `resume`) or other files; a
        `RunFolder` object is used as it is (its caller has claimed it).
    resume : bool
        Continue the run in `out_dir` from its checkpoint (same config except `epochs`).
    """

    def __init__(self, config: TrainingConfig, backend=None, out_dir=None, *, resume: bool = False):
        if not isinstance(config, TrainingConfig):
            raise InvalidValueError(f"config: expected a TrainingConfig (TrainingConfig.from_dict builds one from "
                                    f"a dict), got {type(config).__name__}")
        if not isinstance(resume, (bool, np.bool_)):  # ("no" would count as yes)
            raise InvalidValueError(f"resume: expected True or False, got {resume!r}")
        if resume and out_dir is None:
            raise InvalidValueError("resume: needs out_dir, the folder of the run to continue")
        if isinstance(backend, str):
            config = replace(config, backend=backend)
        self.config = replace(config).resolved()  # (checked again: fields may have been set since)
        self.owns_backend, self._claim = False, None
        self._asking_should_stop = None  # (the thread of fit while it calls should_stop: no fit, ... from it)
        self._working = threading.RLock()  # (held by the thread in fit, finish, save_checkpoint or close)
        if out_dir is None or isinstance(out_dir, RunFolder):
            self.folder = out_dir
        else:
            self.folder = RunFolder(out_dir)
            self._claim = self.folder.claim(resume=resume)
            self._claim.__enter__()
        try:
            self._loss = component("loss", self.config.loss, self.config, self.config.loss_options)
            self._encoder = component("encoder", self.config.encoder, self.config, self.config.encoder_options)
            self._splits = {f"{split}_set": load_dataset(self.config.dataset, split, **self.config.dataset_options)
                            for split in TRAINING_SPLITS}
            _check_splits_agree(self.train_set, self.validation_set, self.test_set)
            self.dataset_digests = self._split_digests()
            _warn_of_equal_splits(self.config.dataset, self.dataset_digests)
            # (a broken plane is refused now, on a small grid, not after the training)
            plane_inputs(self.config.dataset, self.encoder, self.train_set.n_features, 3)
            requested = self.config.backend if backend is None or isinstance(backend, str) else backend
            self.backend = built_backend(requested, self.config.backend_options)
            self.owns_backend = isinstance(requested, str)
            resumable = self._resumable_state() if resume else None  # (checked before the backend calibrates)
            check_training_settings_of(self.backend, self.config.to_dict())
            self._setup()
            self._built_settings = self.config.to_dict()  # (what the trainer uses; only epochs may change)
            if resume:
                self._load(*resumable)
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        config = self.config
        network = build_network(config, self.encoder.n_inputs(self.train_set.n_features), self.train_set.n_classes)
        check_supported(self.backend, network, self.train_set.n_features)
        check_input_copies(self.backend, network, self.encoder.copies)
        if config.batch_size > len(self.train_set):
            warnings.warn(f"batch_size {config.batch_size} is larger than the training split "
                          f"({len(self.train_set)} samples): every step takes the whole split", UserWarning,
                          stacklevel=3)
        self.model = TrainableNetwork(network, config, input_copies=self.encoder.copies)
        self.optimiser = Adam({"weights": config.weight_lr, "delays": config.delay_lr}, self.model.group_of,
                              config.adam_beta1, config.adam_beta2, config.adam_eps)
        self.rng = np.random.default_rng(config.seed)
        self._inspection_rng = np.random.default_rng([config.seed, _INSPECTION_STREAM])
        self.model.initialise(self.rng)
        self.calibration = self.backend.calibrate(network, seed=config.seed)
        self.device_identity = self.backend.device_identity(self.calibration)
        n_layers = len(network.layers)
        limits = [limit for limit in (config.weight_limit, self.backend.capabilities.weight_limit) if limit is not None]
        weight_limit = min(limits, default=None)  # (where the weights the network runs are clipped)
        self.bump = SilentNeuronBump([config.silent_limit_hidden] * (n_layers - 1) + [config.silent_limit_output],
                                     config.silent_bump, weight_limit=weight_limit,
                                     max_input_sums=[layer.max_input_weight_sums() for layer in network.layers])
        self.selection = BestValidation(config.keep_best)
        self.average = ParameterAverage(config.parameter_average)
        self.step = TrainingStep(
            model=self.model, backend=self.backend, calibration=self.calibration, encoder=self.encoder,
            loss=self.loss, optimiser=self.optimiser,
            guard=None if config.max_weight_term is None else GrazingGuard(config.max_weight_term),
            bump=self.bump, revival=SilentNeuronRevival(config.silent_neuron_limit, config.silent_bump, weight_limit),
            next_seed=self._next_seed, gradient_slope=config.gradient_slope,
        )
        self.epoch = 0
        self.test_seed: int | None = None  # drawn by `finish`
        self.network_digest: str | None = None  # of the network file `finish` writes into a run folder
        self.history: list[EpochMetrics] = []
        self.elapsed_seconds = 0.0
        self._finished: tuple | None = None  # what `finish` returned
        self._broken: str | None = None  # what an exception interrupted part-way (fit's epoch, finish)
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------
    @_one_thread_at_a_time
    def close(self) -> None:
        """Close the backend if the trainer built it; release a folder it claimed.  A closed
        trainer neither trains nor finishes (another process may own its folder by then)."""
        self._closed = True
        try:
            if self.owns_backend:
                self.backend.close()
        finally:
            claim, self._claim = self._claim, None
            if claim is not None:
                claim.__exit__(None, None, None)

    train_set = _Split()
    validation_set = _Split()
    test_set = _Split()
    loss = _SetByConfig()
    encoder = _SetByConfig()

    def _split_digests(self) -> dict:
        """{split: digest} of the data in the trainer's splits."""
        return {split: self._splits[f"{split}_set"].digest() for split in TRAINING_SPLITS}

    def _replace_split(self, name: str, dataset) -> None:
        """Replace split `name` (before the first epoch) by `dataset`, which must agree with the
        others; the digests the run records follow."""
        check_type(dataset, Dataset, f"Trainer.{name}")
        self._check_open(name)
        if self.epoch:
            raise InvalidValueError(f"Trainer.{name}: a split may be replaced only before the first epoch, and the "
                                    f"trainer has trained {self.epoch}")
        splits = {**self._splits, name: dataset}
        _check_splits_agree(*splits.values())
        self._splits = splits
        self.dataset_digests = self._split_digests()

    def __enter__(self) -> "Trainer":
        return self

    def __reduce_ex__(self, protocol):
        """A trainer holds its run folder's lock, its backend and the run's state: a copy closed
        released the original's folder and closed its backend."""
        raise InvalidValueError("Trainer: a trainer cannot be pickled or copied; its run is in its folder "
                                "(Trainer(config, out_dir=..., resume=True) continues it), its network is "
                                "trainer.network (a Network, which can be)")

    def __exit__(self, exc_type, exc, traceback) -> None:
        exit_closing(self, exc_type is not None)

    @property
    def network(self):
        """The network of the float shadow parameters (before the backend's constraints)."""
        return self.model.network

    def _next_seed(self) -> int:
        """Seeds for noisy backends, drawn from the run's generator."""
        return draw_seed(self.rng)

    def _inspection_seed(self) -> int:
        """Seeds for `evaluate` and `decision_plane` called from outside the loop: from a generator
        of their own, so that looking at a run does not change how it trains."""
        return draw_seed(self._inspection_rng)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, dataset, *, seed: int | None = None) -> Evaluation:
        """Loss and first-spike accuracy of `dataset` on the backend, in batches it accepts.  The
        jobs' seeds (for noisy backends) come from `seed` as in ``delgrad evaluate --seed`` (which
        then gives the same result), else from a generator of their own: evaluating a run does not
        change how it goes on training."""
        check_type(dataset, Dataset, "dataset")
        seed = check_seed(seed)
        self._check_settings("evaluate")
        if not len(dataset):
            raise InvalidValueError(f"evaluate: dataset: split {dataset.split!r} of {dataset.name!r} holds no samples")
        check_fits_dataset(self.network, self.encoder.n_inputs(dataset.n_features), dataset.n_classes,
                           what=f"evaluate: the trainer's network (for dataset {dataset.name!r}, "
                                f"split {dataset.split!r})")
        if seed is None:
            return self._evaluation(dataset, self._inspection_seed)
        jobs = np.random.default_rng(seed)
        return self._evaluation(dataset, lambda: draw_seed(jobs))

    def _evaluation(self, dataset, next_seed) -> Evaluation:
        """`evaluate` with the jobs' seeds from `next_seed()`."""
        output = output_spike_times(self.backend, self.network, self.encoder(dataset.features), self.calibration,
                                    next_seed, self.config.evaluation_batch_size)
        loss = self.loss(output, dataset.labels)
        return Evaluation(float(loss.per_sample.mean()), accuracy(output, dataset.labels), output,
                          np.asarray(dataset.labels))

    # -- the loop -----------------------------------------------------------------------------
    def _epoch(self, report: EpochProgress) -> EpochMetrics:
        started = time.perf_counter()
        lr_factor = step_decay_factor(self.epoch, self.config.lr_decay, self.config.lr_decay_every)
        results, sizes = [], []
        batches = -(-len(self.train_set) // self.config.batch_size)
        try:
            for features, labels in self.train_set.batches(self.config.batch_size, self.rng):
                results.append(self.step(features, labels, lr_factor))
                self.average.update(self.model.params)
                sizes.append(len(labels))
                report.batch_done(self.epoch + 1, len(results), batches)
            if all(r.skipped for r in results):
                warnings.warn(f"epoch {self.epoch + 1}: every step was skipped, as every batch had more silent "
                              f"neurons than silent_limit_hidden ({self.config.silent_limit_hidden}) or "
                              f"silent_limit_output ({self.config.silent_limit_output}) allow; the weights only grew "
                              f"by the silent-neuron bump (smaller batches or larger initial weights help, unless the "
                              f"inputs come too late for the neurons, or the weights are held at a weight limit)",
                              UserWarning, stacklevel=2)
            with self.average.swapped_in(self.model):
                validation = self._evaluation(self.validation_set, self._next_seed)
        except InvalidValueError as exc:
            large = self._large_step_sizes()
            if type(exc) is not InvalidValueError or not (self.epoch or results) or not large:
                raise  # (another kind of fault; the initial network, which no step has moved; DelGrad's steps)
            raise InvalidValueError(f"epoch {self.epoch + 1}: {exc}; training moved the parameters there, likely in "
                                    f"too large steps: {large}") from exc
        elapsed = time.perf_counter() - started
        self.elapsed_seconds += elapsed
        return EpochMetrics(
            epoch=self.epoch + 1,
            train_loss=float(np.average([r.loss for r in results], weights=sizes)),
            train_accuracy=float(np.average([r.accuracy for r in results], weights=sizes)),
            validation_loss=validation.loss,
            validation_accuracy=validation.accuracy,
            learning_rate_factor=lr_factor,
            skipped_steps=sum(r.skipped for r in results),
            no_crossing=sum(r.no_crossing for r in results),
            guarded=sum(r.guarded for r in results),
            wall_seconds=elapsed,
        )

    def _large_step_sizes(self) -> str:
        """The step sizes more than ten times DelGrad's, with their values ('' if none): the likely
        culprits of a network or loss refused once training has moved the parameters."""
        config, moving_delays = self.config, "delays" in self.model.group_of.values()
        sizes = {"weight_lr": config.weight_lr, "delay_lr": config.delay_lr if moving_delays else None,
                 "silent_bump": config.silent_bump}
        large = {name: value for name, value in sizes.items() if value and value > 10 * _DELGRAD_STEP_SIZES[name]}
        named = ", ".join(f"{name} = {value:g} (DelGrad's: up to {_DELGRAD_STEP_SIZES[name]:g})"
                          for name, value in large.items())
        if "delay_lr" in large and config.delay_parametrisation == "clip" and config.delay_max is None:
            named += "; delay_max bounds the clipped delays"
        return named

    @_one_thread_at_a_time
    def fit(self, *, progress: bool = True, should_stop=None) -> list[EpochMetrics]:
        """Train until `config.epochs`, recording and checkpointing every epoch in the run folder
        (if any).  `should_stop()` is asked before each epoch; if it says yes, training stops there
        (the run can be resumed)."""
        self._check_open("fit")
        if not isinstance(progress, (bool, np.bool_)):
            raise InvalidValueError(f"fit: progress: expected true or false, got {progress!r}")
        if should_stop is not None and not _takes_no_arguments(should_stop):
            raise InvalidValueError(f"fit: should_stop: expected None or a function of no arguments that says whether "
                                    f"to stop, got {should_stop!r}")
        self._check_whole("fit")
        self._check_settings("fit")
        if self._finished is not None and self.epoch < self.config.epochs:
            raise DelgradError("Trainer.fit: the run is finished (finish() kept its network and wrote its metrics); "
                               "to train on, make a Trainer that resumes its folder with more epochs")
        report = EpochProgress(self.config.epochs, self.epoch,
                               f"{self.config.delays} h={self.config.hidden} seed={self.config.seed}", progress)
        try:
            while self.epoch < self.config.epochs:
                if should_stop is not None and self._stop_asked(should_stop):
                    break
                with self._whole_or_broken(f"epoch {self.epoch + 1}"):
                    metrics = self._epoch(report)
                    self.history.append(metrics)
                    self.epoch += 1
                    self.selection.after_epoch(self.epoch, metrics.validation_accuracy,
                                               self.average.current(self.model.params))
                    report.update(metrics)
                    if self.folder is not None:
                        self.folder.append_history(asdict(metrics))  # before the checkpoint: see RunFolder
                        self.save_checkpoint()
        finally:
            report.close()
        return [replace(metrics) for metrics in self.history]  # (copies: the caller's edits stay out of the run)

    def _stop_asked(self, should_stop) -> bool:
        """`should_stop()`, which must say True or False ("no" would count as yes)."""
        self._asking_should_stop = threading.get_ident()
        try:
            answer = should_stop()
        finally:
            self._asking_should_stop = None
        if not isinstance(answer, (bool, np.bool_)):
            raise InvalidValueError(f"fit: should_stop() returned {answer!r}; expected True (stop) or False")
        return bool(answer)

    def _recorded_config(self) -> dict:
        """The settings as metrics.json records them: with a backend object given, its name (and
        no options: the object's own are not known here) instead of the config's backend."""
        config = self.config.to_dict()
        if not self.owns_backend:
            config.update(backend=self.backend.name, backend_options={})
        return config

    def summary(self, test: Evaluation | None = None, final_test: Evaluation | None = None) -> dict:
        """Everything `metrics.json` records.  `test` is the kept network's test result; with
        keep_best, `final_test` is that of the last epoch's network (None: the kept one is it)."""
        for name, given in (("test", test), ("final_test", final_test)):
            if given is not None and not isinstance(given, Evaluation):
                raise InvalidValueError(f"summary: {name}: expected None or an Evaluation (as evaluate() returns), "
                                        f"got {type(given).__name__}")
        summary = {
            "backend": self.backend.name,
            "versions": self._versions(),
            "seed": self.config.seed,
            "config": self._recorded_config(),
            "calibration_key": self.calibration.cache_key,
            "device_identity": self.device_identity,
            "dataset_digests": self.dataset_digests,
            "n_parameters": self.model.n_parameters,  # (trained: a delay shared by input copies counts once)
            "epochs_completed": self.epoch,
            "wall_seconds": self.elapsed_seconds,
            "epochs": [asdict(m) for m in self.history],
        }
        if test is not None:
            summary["selected_epoch"] = self.selection.selected_epoch(self.epoch)
            summary["test_loss"] = test.loss
            summary["test_accuracy"] = test.accuracy
            summary["test_seed"] = self.test_seed
            summary["final_epoch_test_accuracy"] = (final_test or test).accuracy  # (always: parsers may rely on it)
        if self.network_digest is not None:
            summary["network_digest"] = self.network_digest
        return summary

    def _versions(self) -> dict:
        """{distribution: version} of delgrad and of the distributions that register the backend
        and its device (mock-hil's service's device)."""
        from delgrad_core import __version__

        versions = {"delgrad": __version__}
        for name in (self.backend.name, self.device_identity["backend"]):
            if name in registry().names("backend"):
                registration = registry().get("backend", name)
                versions[registration.distribution] = registration.version
        return versions

    @_one_thread_at_a_time
    def finish(self) -> tuple[Evaluation, Evaluation | None]:
        """Evaluate the test split, keep the best-validation network (config.keep_best) and
        write it and the final metrics.  Returns (kept network's test result, last epoch's
        test result or None when the last epoch is the one kept).  With `parameter_average` the
        network is the average (the last epoch's, or the kept epoch's).  Called again, it returns
        the same."""
        self._check_open("finish")
        self._check_settings("finish")
        if self._finished is not None:
            return self._finished
        self._check_whole("finish")
        if self.epoch == 0:
            raise InvalidValueError("finish: no epoch has been trained (call fit() first)")
        if self.epoch < self.config.epochs:
            raise InvalidValueError(self._unfinished())
        with self._whole_or_broken("finish()"):
            # recorded: `delgrad evaluate` repeats the test exactly; below 2**53, which JSON readers that
            # take numbers as doubles (JavaScript, jq) read exactly too
            self.test_seed = draw_seed(self.rng) % 2**53
            self.average.write_into(self.model)
            test = self.evaluate(self.test_set, seed=self.test_seed)
            final_test = None
            if self.selection.restore(self.epoch, self.model.params):
                final_test = test
                self.model.apply()
                test = self.evaluate(self.test_set, seed=self.test_seed)
            if self.folder is not None:
                self.network_digest = self.folder.write_network(self.network)
                self.folder.write_metrics(self.summary(test, final_test))
        self._finished = (test, final_test)
        return self._finished

    def _unfinished(self) -> str:
        """Why `finish` refuses a run stopped before `config.epochs` (e.g. by should_stop), and what to do."""
        end = (f", or, to end the run at epoch {self.epoch}, close this trainer and finish one that resumes its "
               f"folder with epochs = {self.epoch} (delgrad train --out {shlex.quote(str(self.folder.path))} --resume "
               f"--epochs {self.epoch})") if self.folder is not None else ""
        return (f"Trainer.finish: trained {self.epoch} of config.epochs = {self.config.epochs} epochs; call fit() to "
                f"train the rest{end}")

    def _check_settings(self, what: str) -> None:
        """Refuse settings changed in `config` since the trainer was built (but `epochs`, which
        may be raised to train on): it uses those it was built with and would record the new."""
        # (epochs by its rule first: an np.int64 failed in the checkpoint's JSON after the epoch, "2" in a comparison)
        self.config.epochs = check_settings({"epochs": self.config.epochs}, f"Trainer.{what}: config")["epochs"]
        least = max(self._built_settings["epochs"], self.epoch)
        if self.config.epochs < least:
            why = f"trained {self.epoch}" if self.epoch == least else f"was built for {least}"
            raise InvalidValueError(f"Trainer.{what}: config.epochs was lowered to {self.config.epochs}, but the "
                                    f"trainer {why} epochs; epochs may only be raised (to train on): set it to at "
                                    f"least {least}")
        changed = setting_differences(self._built_settings, self.config.to_dict(), ignore=("epochs",))
        if changed:
            shown = "; ".join(f"{name}: {shown_setting(built)} -> {shown_setting(now)}"
                              for name, (built, now) in changed.items())
            raise InvalidValueError(f"Trainer.{what}: config changed after the trainer was built ({shown}); it trains "
                                    "with the settings it was built with and would record the new ones: build a new "
                                    "Trainer with them (resume=True continues a run from its folder); only epochs "
                                    "may be raised to train on")

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise DelgradError(f"Trainer.{what}: the trainer is closed; make a new one (resume=True continues its "
                               "run from its folder)")

    @contextlib.contextmanager
    def _whole_or_broken(self, part: str):
        """Run `part` of the work (an epoch, finish()); an exception that leaves it half done
        (Ctrl-C between two steps, a failing backend) breaks the trainer: its parameters,
        optimiser and random state are then of no epoch, and `_check_whole` refuses to go on."""
        try:
            yield
        except BaseException as exc:
            self._broken = f"{part} was interrupted part-way ({type(exc).__name__})"
            raise

    def _check_whole(self, what: str) -> None:
        if self._broken is None:
            return
        if self.folder is None:
            where = "train again with a new Trainer"
        elif self.folder.checkpoint.exists():
            where = ("close it and make a Trainer that resumes its folder (resume=True) to go on from its last "
                     "checkpoint")
        else:  # (interrupted in epoch 1: there is nothing to resume)
            where = "nothing was checkpointed yet: close it and start anew with a new Trainer"
        raise DelgradError(f"Trainer.{what}: {self._broken}, leaving the parameters, optimiser and random state of no "
                           f"epoch; {where}")

    def decision_plane(self, resolution: int = 120):
        """(x grid, y grid, predicted class per point; -1 = no output spike) over the unit
        square (`resolution` points a side, 2 to 1000), for datasets that register a `plane`; else None."""
        from delgrad_core._losses import first_spike_prediction

        checked_number(resolution, "decision_plane: resolution", 2, MAX_PLANE_RESOLUTION, integer=True)  # (a side)
        plane = plane_inputs(self.config.dataset, self.encoder, self.train_set.n_features, resolution)
        if plane is None:
            return None
        grid_x, grid_y, inputs = plane
        output = output_spike_times(self.backend, self.network, inputs, self.calibration, self._inspection_seed,
                                    self.config.evaluation_batch_size)
        return grid_x, grid_y, first_spike_prediction(output).reshape(grid_x.shape)

    # -- checkpoints ----------------------------------------------------------------------------
    def _run_folder(self, action: str) -> RunFolder:
        if self.folder is None:
            raise InvalidValueError(f"{action}: this trainer has no run folder (Trainer(..., out_dir=FOLDER))")
        return self.folder

    @_one_thread_at_a_time
    def save_checkpoint(self):
        """Parameters, optimiser, heuristics and loop state in one npz, written atomically."""
        self._check_open("save_checkpoint")
        if self._finished is not None:  # (its parameters are the kept epoch's, or the average, now)
            raise DelgradError(f"Trainer.save_checkpoint: the run is finished: its checkpoint was written after epoch "
                               f"{self.epoch}, and finish() put the network it kept into the parameters")
        self._check_whole("save_checkpoint")
        self._check_settings("save_checkpoint")
        state = {
            "epoch": self.epoch,
            "elapsed_seconds": self.elapsed_seconds,
            "rng": self.rng.bit_generator.state,
            "config": self.config.to_dict(),
            "backend_object": None if self.owns_backend else self.backend.name,  # (its options are not known)
            "calibration_key": self.calibration.cache_key,
            "device_identity": self.device_identity,
            "dataset_digests": self.dataset_digests,
            "epochs_recorded": len(self.history),
            "history_digest": history_digest(self.history),  # (of the history's lines: they go together)
            **self.selection.state(),
            **self.bump.state(),
        }
        arrays = {f"param.{k}": v for k, v in self.model.params.items()}
        arrays.update(self.selection.arrays())
        arrays.update(self.average.arrays())
        arrays.update({f"adam.{k}": v for k, v in self.optimiser.state_arrays().items()})
        arrays[STATE_KEY] = json_array(state)
        return self._run_folder("save_checkpoint").write_checkpoint(arrays)

    def _resumable_state(self) -> tuple[dict, list[EpochMetrics]]:
        """The checkpoint's state and history, once its settings, epochs and history are checked
        against this trainer's and the folder's (before the backend is calibrated: a wrong resume
        fails at once)."""
        path = self._run_folder("resume").checkpoint
        if not path.exists():
            raise RunFolderError(f"{self.folder.path}: no {path.name} to resume from")
        with self.folder.open_checkpoint() as data:
            state = checked_state(data.json(STATE_KEY), path)
        trained_on_object = state.get("backend_object")
        if trained_on_object is not None and self.owns_backend:
            raise InvalidValueError(f"resume: the run in {self.folder.path} was trained on a backend object given "
                                    f"from Python ({shown_setting(trained_on_object)}, whose options the run does not "
                                    "record); resume it from Python with that object: Trainer(config, "
                                    "backend=<the object>, out_dir=..., resume=True)")
        neutral = built_neutral_options(self.backend, self.config.backend if self.owns_backend else None)
        check_same_settings(state, self.config, neutral, path)
        check_same_data(state, self.config.dataset, self.dataset_digests)
        if state["epoch"] > self.config.epochs:
            raise InvalidValueError(f"epochs: the run in {self.folder.path} has trained {state['epoch']} epochs "
                                    f"already; resume it to at least that many, not {self.config.epochs}")
        return state, checkpoint_history(self.folder, state)

    def _check_same_device(self, state: dict) -> None:
        """Refuse to resume on another device identity than the checkpoint's (another chip,
        calibration setting or device option, e.g. a shared service restarted with others); warn
        if only the calibration's contents differ (calibrated again).  Checkpoints from before
        identities were recorded are checked by their calibration key."""
        recorded = recorded_identity(state.get("device_identity"), self.folder.checkpoint)
        device = self.device_identity["backend"]
        if recorded is not None and recorded["backend"] != device:
            changes = {"backend": f"trained on device {recorded['backend']!r}"}
        elif recorded is not None:
            changes = identity_changes(recorded, self.device_identity)
        else:  # (a checkpoint from before identities were recorded: its backend's calibration key)
            changes = key_changes(state.get("calibration_key", self.calibration.cache_key), self.calibration.cache_key)
        refused = [text for field, text in changes.items() if field != "calibration_digest"]
        if refused:
            raise InvalidValueError(f"resume: device {device!r} is not the one the run was trained on: "
                                    f"{'; '.join(refused)}; resume where the run was trained")
        if changes:
            warnings.warn(f"resume: device {device!r} has "
                          f"{changes['calibration_digest']}: training continues on this calibration", UserWarning,
                          stacklevel=3)

    def _load(self, state: dict, history: list[EpochMetrics]) -> None:
        """Parameters, optimiser and loop state from the checkpoint whose checked `state` and
        `history` these are; the history is cut back to its epochs."""
        path = self.folder.checkpoint
        with self.folder.open_checkpoint() as data:
            self._check_same_device(state)
            params = self.model.params
            for name, value in parameter_arrays(data, params, "param.", path, required=True).items():
                params[name[len("param."):]][...] = value
            steps = data.array("adam.steps", shape=(), kind="i") if "adam.steps" in data.names else None
            most = int(state["epoch"]) * -(-len(self.train_set) // self.config.batch_size)  # (a step per batch)
            if steps is None or not 0 <= steps <= most:
                raise FileFormatError(f"{path}: adam.steps is {'missing' if steps is None else int(steps)}, expected "
                                      f"0..{most} (at most a step per batch of each epoch trained; a damaged or "
                                      "edited checkpoint)")
            moments = {prefix: parameter_arrays(data, params, prefix, path, required=steps > 0)
                       for prefix in ("adam.m.", "adam.v.")}
            if any((value < 0).any() for value in moments["adam.v."].values()):
                raise FileFormatError(f"{path}: adam.v holds negative values (a damaged or edited checkpoint)")
            self.optimiser.load_state_arrays({"steps": steps, **{name[len("adam."):]: value for arrays in
                                                                  moments.values() for name, value in arrays.items()}})
            kept = self.selection.enabled and isinstance(state.get("best_epoch"), int) and state["best_epoch"] >= 1
            best = parameter_arrays(data, params, "best.", path, required=kept)
            average = parameter_arrays(data, params, "average.", path,
                                        required=self.average.decay is not None and steps > 0)
        try:
            self.epoch = int(state["epoch"])
            self.elapsed_seconds = state["elapsed_seconds"]
            self.rng.bit_generator.state = state["rng"]
            if self.rng.bit_generator.state != state["rng"]:  # (numpy 1 takes a negative state, reduced modulo 2**128)
                raise ValueError("the random generator's state is out of its range")
            self.selection.load(state, best)
            self.average.load(average)
            self.bump.load(state)
        except (TypeError, KeyError, ValueError, OverflowError) as exc:  # (OverflowError: e.g. a negative RNG state)
            if isinstance(exc, FileFormatError):
                raise
            raise FileFormatError(f"{path}: inconsistent checkpoint ({type(exc).__name__}: {exc})") from None
        self.history = history
        self.folder.cut_history(len(history))
        self.model.apply()
        if self.epoch < self.config.epochs:  # (a finished run that trains on is no longer finished at its old end)
            self.folder.reopen()


def _takes_no_arguments(function) -> bool:
    """Whether `function` can be called without arguments (True where Python cannot tell)."""
    if not callable(function):
        return False
    try:
        inspect.signature(function).bind()
    except TypeError:
        return False
    except ValueError:  # (no signature to read: some built-in functions)
        pass
    return True
