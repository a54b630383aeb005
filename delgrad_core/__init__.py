"""delgrad core: network IR, exact spike times and exact gradients for weights and delays."""

import os as _os

# The kernels run many short OpenMP regions; spinning idle threads (libgomp's default) stall
# them badly when the cores are shared.  Must be set before the kernels load libgomp; an
# explicit OMP_WAIT_POLICY in the environment wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from delgrad_core._ir import DelayKind, Layer, Network, NeuronParameters, Population, Projection
from delgrad_core._propagation import (
    LayerGradients,
    NetworkGradients,
    backward,
    default_num_threads,
    forward,
)
from delgrad_core._serialization import load_network, save_network
from delgrad_core._backend import (
    Backend,
    Calibration,
    Capabilities,
    ExecutionResult,
    UnsupportedNetworkError,
    calibration_key,
)
from delgrad_core._plugins import (
    BackendInfo,
    BackendRegistry,
    DuplicateBackendError,
    PluginLoadError,
    PluginLoadWarning,
    UnknownBackendError,
    available_backends,
    get_backend,
    hookimpl,
    refresh_backends,
)
from delgrad_core import datasets
from delgrad_core._encoding import LatencyEncoder
from delgrad_core._losses import (
    FirstSpikeLoss,
    LossResult,
    ShiftInvariantSquaredError,
    TTFSCrossEntropy,
    accuracy,
    available_losses,
    first_spike_prediction,
    make_loss,
)

__version__ = "0.1.0"

__all__ = [
    "DelayKind",
    "Layer",
    "Network",
    "NeuronParameters",
    "Population",
    "Projection",
    "LayerGradients",
    "NetworkGradients",
    "forward",
    "backward",
    "default_num_threads",
    "save_network",
    "load_network",
    "__version__",
    "Backend",
    "Calibration",
    "Capabilities",
    "ExecutionResult",
    "UnsupportedNetworkError",
    "calibration_key",
    "BackendInfo",
    "BackendRegistry",
    "DuplicateBackendError",
    "PluginLoadError",
    "PluginLoadWarning",
    "UnknownBackendError",
    "available_backends",
    "get_backend",
    "hookimpl",
    "refresh_backends",
    "datasets",
    "LatencyEncoder",
    "FirstSpikeLoss",
    "LossResult",
    "ShiftInvariantSquaredError",
    "TTFSCrossEntropy",
    "accuracy",
    "available_losses",
    "first_spike_prediction",
    "make_loss",
]
