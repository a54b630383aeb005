"""One training loop for every backend (ARCHITECTURE.md "Data flow of one training step").

encode -> ``backend.execute`` -> loss on the observed output times -> exact gradients at the
observed times (`delgrad_core.backward`) -> Adam on float shadow parameters -> write back.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from delgrad_core._atomic import atomic_write, atomic_write_text
from delgrad_core._encoding import LatencyEncoder
from delgrad_core._losses import accuracy, make_loss
from delgrad_core._plugins import get_backend
from delgrad_core._propagation import backward
from delgrad_core._serialization import save_network
from delgrad_core.datasets import load_dataset
from delgrad_core.training._config import TrainingConfig
from delgrad_core.training._guard import GrazingGuard
from delgrad_core.training._optim import Adam, step_decay_factor
from delgrad_core.training._parameters import TrainableNetwork, build_network

__all__ = ["Trainer", "EpochMetrics", "Evaluation"]

CHECKPOINT_NAME = "checkpoint.npz"
METRICS_NAME = "metrics.json"
NETWORK_NAME = "network.npz"
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
    dropped_gradients: int
    wall_seconds: float


@dataclass
class Evaluation:
    """Loss, accuracy and output spike times of a dataset split."""

    loss: float
    accuracy: float
    output_spike_times: np.ndarray
    labels: np.ndarray


def _loss_of(config: TrainingConfig):
    if config.loss == "squared":
        return make_loss("squared", delta=config.loss_delta)
    return make_loss("crossentropy", xi=config.loss_xi, alpha=config.loss_alpha, beta=config.loss_beta)


class Trainer:
    """Train a Yin-Yang-style classifier on a backend chosen by name or passed as an object.

    Parameters
    ----------
    config : TrainingConfig
    backend : str or Backend, optional
        Overrides ``config.backend``; an object is used as it is (injection).
    out_dir : path, optional
        Where checkpoints, ``metrics.json`` and the trained network are written.
    """

    def __init__(self, config: TrainingConfig, backend=None, out_dir=None):
        self.config = config.resolved()
        self.backend = get_backend(backend if backend is not None else self.config.backend,
                                   **self.config.backend_options)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.loss = _loss_of(self.config)
        self.guard = None if self.config.max_weight_term is None else GrazingGuard(self.config.max_weight_term)
        self.encoder = LatencyEncoder(self.config.t_early, self.config.t_late)
        self.train_set = load_dataset(self.config.dataset, "train")
        self.validation_set = load_dataset(self.config.dataset, "validation")
        self.test_set = load_dataset(self.config.dataset, "test")
        network = build_network(self.config, self.train_set.features.shape[1], len(self.train_set.class_names))
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

    @property
    def network(self):
        return self.model.network

    # -- one step ---------------------------------------------------------------------------
    def _execute(self, input_spike_times: np.ndarray):
        """Run the backend; noisy backends get a seed drawn from the run's generator."""
        seed = int(self.rng.integers(2**63 - 1))
        return self.backend.execute(self.network, input_spike_times, calibration=self.calibration, seed=seed)

    def _bump_silent(self, layer_times: list[np.ndarray]) -> bool:
        """If a layer is too often silent, raise the input weights of its silent neurons and
        report True (the step is skipped); the bump doubles while it repeats (MODEL.md §5)."""
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

    def _train_step(self, features, labels, lr_factor) -> tuple[float, float, bool, int]:
        inputs = self.encoder(features)
        times = self._execute(inputs).layer_spike_times
        loss = self.loss(times[-1], labels)
        batch_accuracy = accuracy(times[-1], labels)
        self._revive_silent_hidden(times)
        if self._bump_silent(times):
            self.model.apply()
            return float(loss.per_sample.mean()), batch_accuracy, True, 0
        # the grazing guard compares |dL/dt_j dt_j/dw_ij| of the batch-mean loss, as autograd's
        # incoming gradient in the DelGrad reference code does (MODEL.md §4)
        gradients = backward(self.network, inputs, times, loss.gradient, guard=self.guard)
        grads = self.model.parameter_gradients(gradients)
        self.optimiser.step(self.model.params, grads, lr_factor)
        self.model.constrain()
        self.model.apply()
        dropped = sum(layer.no_crossing + layer.guarded for layer in gradients.layers)
        return float(loss.per_sample.mean()), batch_accuracy, False, dropped

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, dataset) -> Evaluation:
        """Loss and first-spike accuracy of `dataset` on the backend."""
        output = self._execute(self.encoder(dataset.features)).output_spike_times
        loss = self.loss(output, dataset.labels)
        return Evaluation(float(loss.per_sample.mean()), accuracy(output, dataset.labels), output,
                          np.asarray(dataset.labels))

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, *, progress: bool = True) -> list[EpochMetrics]:
        """Train until `config.epochs`, checkpointing after every epoch if `out_dir` is set."""
        from tqdm.auto import tqdm

        bar = tqdm(total=self.config.epochs, initial=self.epoch, disable=not progress,
                   desc=f"{self.config.delays} h={self.config.hidden} seed={self.config.seed}", unit="epoch")
        try:
            while self.epoch < self.config.epochs:
                started = time.perf_counter()
                lr_factor = step_decay_factor(self.epoch, self.config.lr_decay, self.config.lr_decay_every)
                losses, accuracies, sizes = [], [], []
                skipped = dropped = 0
                for features, labels in self.train_set.batches(self.config.batch_size, self.rng):
                    loss, acc, was_skipped, n_dropped = self._train_step(features, labels, lr_factor)
                    losses.append(loss)
                    accuracies.append(acc)
                    sizes.append(len(labels))
                    skipped += was_skipped
                    dropped += n_dropped
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
                    dropped_gradients=dropped,
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
                if self.out_dir is not None:
                    self.save_checkpoint()
                    self.write_metrics()
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

    def write_metrics(self, test: Evaluation | None = None, final_test: Evaluation | None = None) -> Path:
        return atomic_write_text(self.out_dir / METRICS_NAME, json.dumps(self.summary(test, final_test), indent=2))

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
        if self.out_dir is not None:
            save_network(self.network, self.out_dir / NETWORK_NAME)
            self.write_metrics(test, final_test)
        return test, final_test

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
            "history": [asdict(m) for m in self.history],
        }
        arrays = {f"param.{k}": v for k, v in self.model.params.items()}
        arrays.update({f"best.{k}": v for k, v in self.best_params.items()})
        arrays.update({f"adam.{k}": v for k, v in self.optimiser.state_arrays().items()})
        arrays[_STATE_KEY] = np.array(json.dumps(state))
        return atomic_write(self.out_dir / CHECKPOINT_NAME, lambda handle: np.savez(handle, **arrays))

    def load_checkpoint(self, path=None) -> None:
        """Continue exactly where the checkpoint stopped (same config except `epochs`)."""
        path = Path(path) if path is not None else self.out_dir / CHECKPOINT_NAME
        with np.load(path, allow_pickle=False) as data:
            state = json.loads(str(data[_STATE_KEY]))
            saved = dict(state["config"], epochs=self.config.epochs)
            if saved != self.config.to_dict():
                differing = sorted(k for k in saved if saved[k] != self.config.to_dict().get(k))
                raise ValueError(f"resume: the checkpoint {path} was written with different settings: "
                                 f"{', '.join(differing)}")
            for name in self.model.params:
                self.model.params[name][...] = data[f"param.{name}"]
            self.optimiser.load_state_arrays({k[5:]: data[k] for k in data.files if k.startswith("adam.")})
            self.best_params = {k[5:]: data[k].copy() for k in data.files if k.startswith("best.")}
        self.epoch = state["epoch"]
        self.best_epoch = state["best_epoch"]
        self.best_validation_accuracy = state["best_validation_accuracy"]
        self.bump_level = state["bump_level"]
        self.elapsed_seconds = state["elapsed_seconds"]
        self.rng.bit_generator.state = state["rng"]
        self.history = [EpochMetrics(**m) for m in state["history"]]
        self.model.apply()
