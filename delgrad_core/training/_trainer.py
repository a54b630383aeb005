"""One training loop for every backend (docs/training.md).

encode -> ``backend.represent`` -> ``backend.execute`` -> loss on the observed output times ->
exact gradients at the observed spike and arrival times on the network that ran
(`delgrad_core.backward`) -> Adam on float shadow parameters -> write back.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from delgrad_core._errors import FileFormatError, InvalidValueError
from delgrad_core._execution import ExecutionRequest
from delgrad_core._npz import json_array
from delgrad_core._losses import accuracy
from delgrad_core._plugins import get_backend
from delgrad_core._propagation import backward
from delgrad_core.datasets import load_dataset
from delgrad_core.training._components import component
from delgrad_core.training._config import TrainingConfig
from delgrad_core.training._evaluation import output_spike_times
from delgrad_core.training._guard import GrazingGuard
from delgrad_core.training._optim import Adam, step_decay_factor
from delgrad_core.training._parameters import TrainableNetwork, build_network
from delgrad_core.training._run_folder import RunFolder

__all__ = ["Trainer", "EpochMetrics", "Evaluation"]

_STATE_KEY = "trainer_state.json"


@dataclass
class EpochMetrics:
    """Per-epoch record; train metrics are averaged over the epoch's training batches."""

    epoch: int
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    learning_rate_factor: float
    skipped_steps: int
    no_crossing: int  # (sample, neuron) pairs spiking where the model has no upward crossing
    guarded: int  # (sample, neuron) pairs excluded by the grazing guard
    wall_seconds: float


@dataclass
class Evaluation:
    """Loss, accuracy and output spike times of a dataset split."""

    loss: float
    accuracy: float
    output_spike_times: np.ndarray
    labels: np.ndarray


class Trainer:
    """Train a classifier on a backend chosen by name or passed as an object.

    Parameters
    ----------
    config : TrainingConfig
    backend : str or Backend, optional
        Overrides ``config.backend``.  A backend built from a name is owned by the trainer and
        closed by `close()` (the trainer is a context manager); an object is used as it is and
        stays open (its owner closes it).
    out_dir : path or RunFolder, optional
        The run folder where checkpoints, the history, ``metrics.json`` and the trained network
        are written (see `RunFolder`; claiming it, i.e. locking, is the caller's business).
    """

    def __init__(self, config: TrainingConfig, backend=None, out_dir=None):
        self.config = config.resolved()
        self.folder = None if out_dir is None else out_dir if isinstance(out_dir, RunFolder) else RunFolder(out_dir)
        self.loss = component("loss", self.config.loss, self.config, self.config.loss_options)
        self.encoder = component("encoder", self.config.encoder, self.config, self.config.encoder_options)
        self.guard = None if self.config.max_weight_term is None else GrazingGuard(self.config.max_weight_term)
        self.train_set = load_dataset(self.config.dataset, "train")
        self.validation_set = load_dataset(self.config.dataset, "validation")
        self.test_set = load_dataset(self.config.dataset, "test")
        requested = backend if backend is not None else self.config.backend
        self.owns_backend = isinstance(requested, str)
        self.backend = get_backend(requested, **({} if not self.owns_backend else self.config.backend_options))
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        n_inputs = self.encoder.n_inputs(self.train_set.n_features)
        network = build_network(self.config, n_inputs, self.train_set.n_classes)
        self.backend.check_supported(network)
        self.model = TrainableNetwork(network, self.config)
        self.optimiser = Adam(
            {"weights": self.config.weight_lr, "delays": self.config.delay_lr},
            self.model.group_of,
            self.config.adam_beta1,
            self.config.adam_beta2,
            self.config.adam_eps,
        )
        self.rng = np.random.default_rng(self.config.seed)
        self.model.initialise(self.rng)
        self.calibration = self.backend.calibrate(network, seed=self.config.seed)
        self.epoch = 0
        self.bump_level = self.config.silent_bump
        self.history: list[EpochMetrics] = []
        self.elapsed_seconds = 0.0
        # model selection on the validation split (config.keep_best)
        self.best_epoch = 0
        self.best_validation_accuracy = -1.0
        self.best_params: dict[str, np.ndarray] = {}

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Close the backend if the trainer built it."""
        if self.owns_backend:
            self.backend.close()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def network(self):
        """The network of the float shadow parameters (before the backend's constraints)."""
        return self.model.network

    # -- one step ---------------------------------------------------------------------------
    def _execute(self, input_spike_times: np.ndarray):
        """Run the network as the backend represents it; returns (that network, result).
        Noisy backends get a seed drawn from the run's generator."""
        request = ExecutionRequest(self.backend.represent(self.network), input_spike_times, self.calibration,
                                   self._next_seed())
        return request.network, self.backend.execute(request)

    def _next_seed(self) -> int:
        return int(self.rng.integers(2**63 - 1))

    def _bump_silent(self, layer_times: list[np.ndarray]) -> bool:
        """If a layer is too often silent, raise the input weights of its silent neurons and
        report True (the step is skipped); the bump doubles while it repeats (docs/model.md §5)."""
        if self.config.silent_bump is None:
            return False
        limits = [self.config.silent_limit_hidden] * (len(layer_times) - 1) + [self.config.silent_limit_output]
        bumped = False
        for k, (times, limit) in enumerate(zip(layer_times, limits)):
            silent = ~np.isfinite(times)
            if silent.mean() > limit:
                self.model.params[f"layers.{k}.weights"][:, silent.any(axis=0)] += self.bump_level
                bumped = True
        if bumped:
            self.bump_level *= 2.0
        else:
            self.bump_level = self.config.silent_bump
        return bumped

    def _revive_silent_hidden(self, layer_times: list[np.ndarray]) -> None:
        """Raise the input weights of hidden neurons silent in more than `silent_neuron_limit`
        of the batch by `silent_bump`; unlike `_bump_silent` the step still happens.  Revives
        neurons the layer-wide rule misses (one dead neuron of five is below 0.3 of the layer)."""
        limit, bump = self.config.silent_neuron_limit, self.config.silent_bump
        if limit is None or bump is None:
            return
        for k, times in enumerate(layer_times[:-1]):
            silent_fraction = (~np.isfinite(times)).mean(axis=0)
            self.model.params[f"layers.{k}.weights"][:, silent_fraction > limit] += bump

    def _train_step(self, features, labels, lr_factor) -> tuple[float, float, bool, int, int]:
        """encode -> execute on the backend -> loss -> exact gradients at the observed spike and
        arrival times, on the network that ran -> Adam on the shadow parameters."""
        inputs = self.encoder(features)
        ran, result = self._execute(inputs)
        times = result.layer_spike_times
        loss = self.loss(times[-1], labels)
        batch_accuracy = accuracy(times[-1], labels)
        self._revive_silent_hidden(times)
        if self._bump_silent(times):
            self.model.apply()
            return float(loss.per_sample.mean()), batch_accuracy, True, 0, 0
        # the grazing guard compares |dL/dt_j dt_j/dw_ij| of the batch-mean loss, as autograd's
        # incoming gradient in the DelGrad reference code does (docs/model.md §4)
        gradients = backward(ran, inputs, times, loss.gradient, arrival_times=result.arrival_times, guard=self.guard)
        grads = self.model.parameter_gradients(gradients)
        self.optimiser.step(self.model.params, grads, lr_factor)
        self.model.constrain()
        self.model.apply()
        no_crossing = sum(layer.no_crossing for layer in gradients.layers)
        guarded = sum(layer.guarded for layer in gradients.layers)
        return float(loss.per_sample.mean()), batch_accuracy, False, no_crossing, guarded

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, dataset) -> Evaluation:
        """Loss and first-spike accuracy of `dataset` on the backend, in batches it accepts."""
        output = output_spike_times(self.backend, self.network, self.encoder(dataset.features), self.calibration,
                                    self._next_seed)
        loss = self.loss(output, dataset.labels)
        return Evaluation(float(loss.per_sample.mean()), accuracy(output, dataset.labels), output,
                          np.asarray(dataset.labels))

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, *, progress: bool = True, should_stop=None) -> list[EpochMetrics]:
        """Train until `config.epochs`, recording and checkpointing every epoch in the run folder
        (if any).  `should_stop()` is asked after each epoch; if it says yes, training stops there
        (the run can be resumed)."""
        from tqdm.auto import tqdm

        interactive = progress and sys.stderr.isatty()
        every = max(1, round(self.config.epochs / 30))  # progress lines when the output is a log file
        bar = tqdm(total=self.config.epochs, initial=self.epoch, disable=not interactive,
                   desc=f"{self.config.delays} h={self.config.hidden} seed={self.config.seed}", unit="epoch")
        try:
            while self.epoch < self.config.epochs:
                started = time.perf_counter()
                lr_factor = step_decay_factor(self.epoch, self.config.lr_decay, self.config.lr_decay_every)
                losses, accuracies, sizes = [], [], []
                skipped = no_crossing = guarded = 0
                for features, labels in self.train_set.batches(self.config.batch_size, self.rng):
                    loss, acc, was_skipped, n_no_crossing, n_guarded = self._train_step(features, labels, lr_factor)
                    losses.append(loss)
                    accuracies.append(acc)
                    sizes.append(len(labels))
                    skipped += was_skipped
                    no_crossing += n_no_crossing
                    guarded += n_guarded
                validation = self.evaluate(self.validation_set)
                elapsed = time.perf_counter() - started
                self.elapsed_seconds += elapsed
                metrics = EpochMetrics(
                    epoch=self.epoch + 1,
                    train_loss=float(np.average(losses, weights=sizes)),
                    train_accuracy=float(np.average(accuracies, weights=sizes)),
                    validation_loss=validation.loss,
                    validation_accuracy=validation.accuracy,
                    learning_rate_factor=lr_factor,
                    skipped_steps=skipped,
                    no_crossing=no_crossing,
                    guarded=guarded,
                    wall_seconds=elapsed,
                )
                self.history.append(metrics)
                self.epoch += 1
                if self.config.keep_best and validation.accuracy > self.best_validation_accuracy:
                    self.best_epoch, self.best_validation_accuracy = self.epoch, validation.accuracy
                    self.best_params = {k: v.copy() for k, v in self.model.params.items()}
                bar.set_postfix(loss=f"{metrics.train_loss:.4f}", train=f"{metrics.train_accuracy:.3f}",
                                val=f"{metrics.validation_accuracy:.3f}")
                bar.update(1)
                if progress and not interactive and (self.epoch % every == 0 or self.epoch == self.config.epochs):
                    print(f"epoch {self.epoch}/{self.config.epochs}: loss {metrics.train_loss:.4f}, train "
                          f"{100 * metrics.train_accuracy:.1f} %, validation {100 * metrics.validation_accuracy:.1f} %",
                          file=sys.stderr, flush=True)
                if self.folder is not None:
                    self.folder.append_history(asdict(metrics))  # before the checkpoint: see RunFolder
                    self.save_checkpoint()
                if should_stop is not None and self.epoch < self.config.epochs and should_stop():
                    break
        finally:
            bar.close()
        return self.history

    def summary(self, test: Evaluation | None = None, final_test: Evaluation | None = None) -> dict:
        """Everything `metrics.json` records.  `test` is the kept network's test result; with
        keep_best, `final_test` is that of the last epoch's network."""
        summary = {
            "backend": self.backend.name,
            "seed": self.config.seed,
            "config": self.config.to_dict(),
            "n_parameters": self.network.n_parameters,
            "epochs_completed": self.epoch,
            "wall_seconds": self.elapsed_seconds,
            "epochs": [asdict(m) for m in self.history],
        }
        if test is not None:
            summary["selected_epoch"] = self.best_epoch if self.config.keep_best else self.epoch
            summary["test_loss"] = test.loss
            summary["test_accuracy"] = test.accuracy
        if final_test is not None:
            summary["final_epoch_test_accuracy"] = final_test.accuracy
        return summary


    def finish(self) -> tuple[Evaluation, Evaluation | None]:
        """Evaluate the test split, keep the best-validation network (config.keep_best) and
        write it and the final metrics.  Returns (kept network's test result, last epoch's
        test result or None when the last epoch is the one kept)."""
        test = self.evaluate(self.test_set)
        final_test = None
        if self.config.keep_best and self.best_params and self.best_epoch != self.epoch:
            final_test = test
            for name, value in self.best_params.items():
                self.model.params[name][...] = value
            self.model.apply()
            test = self.evaluate(self.test_set)
        if self.folder is not None:
            self.folder.write_network(self.network)
            self.folder.write_metrics(self.summary(test, final_test))
        return test, final_test

    def decision_plane(self, resolution: int = 120):
        """(x grid, y grid, predicted class per point; -1 = no output spike) over the unit
        square, for datasets that register a `plane`; else None."""
        from delgrad_core._losses import first_spike_prediction
        from delgrad_core._plugins import registry

        plane = registry().get("dataset", self.config.dataset).details.get("plane")
        if plane is None:
            return None
        grid_x, grid_y = np.meshgrid(np.linspace(0.0, 1.0, resolution), np.linspace(0.0, 1.0, resolution))
        inputs = self.encoder(np.clip(plane(grid_x, grid_y), 0.0, 1.0))
        output = output_spike_times(self.backend, self.network, inputs, self.calibration, self._next_seed)
        return grid_x, grid_y, first_spike_prediction(output).reshape(grid_x.shape)

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Parameters, optimiser and loop state in one npz, written atomically."""
        state = {
            "epoch": self.epoch,
            "best_epoch": self.best_epoch,
            "best_validation_accuracy": self.best_validation_accuracy,
            "bump_level": self.bump_level,
            "elapsed_seconds": self.elapsed_seconds,
            "rng": self.rng.bit_generator.state,
            "config": self.config.to_dict(),
            "epochs_recorded": len(self.history),
        }
        arrays = {f"param.{k}": v for k, v in self.model.params.items()}
        arrays.update({f"best.{k}": v for k, v in self.best_params.items()})
        arrays.update({f"adam.{k}": v for k, v in self.optimiser.state_arrays().items()})
        arrays[_STATE_KEY] = json_array(state)
        return self.folder.write_checkpoint(arrays)

    def load_checkpoint(self) -> None:
        """Continue exactly where the run folder's checkpoint stopped (same config except `epochs`)."""
        path = self.folder.checkpoint
        with self.folder.open_checkpoint() as data:
            state = data.json(_STATE_KEY)
            saved = dict(state.get("config", {}), epochs=self.config.epochs)
            current = self.config.to_dict()
            if saved != current:
                differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
                raise InvalidValueError(f"resume: the checkpoint {path} was written with different settings: "
                                        f"{', '.join(differing)}")
            for name, param in self.model.params.items():
                param[...] = data.array(f"param.{name}", shape=param.shape, kind="f")
            adam = {}
            for name in data.names:
                if name.startswith("adam."):
                    adam[name[5:]] = data.array(name, kind="fi")
            self.optimiser.load_state_arrays(adam)
            self.best_params = {name[5:]: data.array(name, shape=self.model.params[name[5:]].shape, kind="f")
                                for name in data.names if name.startswith("best.") and name[5:] in self.model.params}
        try:
            self.epoch = int(state["epoch"])
            self.best_epoch = state["best_epoch"]
            self.best_validation_accuracy = state["best_validation_accuracy"]
            self.bump_level = state["bump_level"]
            self.elapsed_seconds = state["elapsed_seconds"]
            self.rng.bit_generator.state = state["rng"]
            self.history = [EpochMetrics(**m) for m in self.folder.read_history(state["epochs_recorded"])]
        except (TypeError, KeyError, ValueError) as exc:
            if isinstance(exc, FileFormatError):
                raise
            raise FileFormatError(f"{path}: inconsistent checkpoint or history ({type(exc).__name__}: {exc})") from None
        self.model.apply()
