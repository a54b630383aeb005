"""The core's own losses, encoders and datasets, registered through the same hooks as plugins."""

from __future__ import annotations

from delgrad_core._encoding import LatencyEncoder
from delgrad_core._losses import ShiftInvariantSquaredError, TTFSCrossEntropy
from delgrad_core.datasets._digits import DIGITS_SPLITS, digits
from delgrad_core.datasets._mnist import FASHION_MNIST_SPLITS, MNIST_SPLITS, fashion_mnist, mnist
from delgrad_core.datasets._yin_yang import YIN_YANG_SPLITS, yin_yang, yin_yang_plane
from delgrad_core.hookspecs import hookimpl

__all__ = ["delgrad_register_losses", "delgrad_register_encoders", "delgrad_register_datasets"]


@hookimpl
def delgrad_register_losses(register):
    register("squared", ShiftInvariantSquaredError, description="shift-invariant squared error (DelGrad)")
    register("crossentropy", TTFSCrossEntropy, description="time-to-first-spike cross-entropy (Fast & Deep)")


@hookimpl
def delgrad_register_encoders(register):
    register("latency", LatencyEncoder, description="feature v in [0, 1] spikes at t_early + v (t_late - t_early)")


@hookimpl
def delgrad_register_datasets(register):
    register("yin_yang", yin_yang, YIN_YANG_SPLITS, description="Yin-Yang (Kriener et al. 2022), published splits",
             plane=yin_yang_plane)
    register("digits", digits, DIGITS_SPLITS, description="scikit-learn's 8x8 digits (needs the sklearn extra)",
             training_defaults={"encoder_options": {"pairs": True}, "hidden": 100, "epochs": 100})
    register("fashion_mnist", fashion_mnist, FASHION_MNIST_SPLITS,
             description="Fashion-MNIST from the original IDX files (Debian: dataset-fashion-mnist)")
    register("mnist", mnist, MNIST_SPLITS, description="MNIST from the original IDX files ($DELGRAD_MNIST_DIR)")
