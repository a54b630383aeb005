"""Training: configuration, optimiser, trainable parameters, the training loop, plots and sweeps."""

from delgrad_core.training._config import TrainingConfig, config_with_defaults, load_config
from delgrad_core.training._guard import GrazingGuard
from delgrad_core.training._history import EpochMetrics
from delgrad_core.training._optim import Adam, step_decay_factor
from delgrad_core.training._parameters import TrainableNetwork, build_network
from delgrad_core.training._trainer import Evaluation, Trainer

__all__ = [
    "TrainingConfig",
    "load_config",
    "config_with_defaults",
    "GrazingGuard",
    "Adam",
    "step_decay_factor",
    "TrainableNetwork",
    "build_network",
    "Trainer",
    "EpochMetrics",
    "Evaluation",
]
