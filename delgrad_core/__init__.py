"""delgrad core: network IR, exact spike times and exact gradients for weights and delays,
the backend interface, plugins, losses, datasets and training.

Names are imported on first use, so ``import delgrad_core`` (and the pytest plugin of the
conformance suite) costs almost nothing and changes nothing in the host process.
"""

from __future__ import annotations

from delgrad_core._lazy import lazy_exports

_EXPORTS = {
    "delgrad_core._version": ["__version__"],
    "delgrad_core._errors": [
        "DelgradError", "InvalidValueError", "UnsupportedNetworkError", "UnknownOptionError", "FileFormatError",
        "RunFolderError", "FolderInUseError", "BackendError", "BackendUnavailable", "ExecutionTimeout",
        "CalibrationError", "InvalidResultError",
        "PluginError", "PluginLoadError", "DuplicateNameError", "UnknownNameError",
    ],
    "delgrad_core._ir": ["DelayKind", "Layer", "Network", "NeuronParameters", "Population", "Projection"],
    "delgrad_core._propagation": [
        "forward", "backward", "layer_forward", "layer_backward", "LayerBackward", "LayerGradients",
        "NetworkGradients", "default_num_threads", "check_num_threads", "MAX_NUM_THREADS",
    ],
    "delgrad_core._serialization": ["save_network", "load_network"],
    "delgrad_core._capabilities": ["Capabilities"],
    "delgrad_core._calibration": ["Calibration", "calibration_key"],
    "delgrad_core._execution": ["ExecutionRequest", "ExecutionResult", "MAX_SEED"],
    "delgrad_core._backend": ["Backend", "ConformanceProfile"],
    "delgrad_core.hookspecs": ["hookimpl"],
    "delgrad_core._plugins": [
        "PluginLoadWarning", "PluginRegistry", "Registration", "available_backends", "backend_info", "get_backend",
        "refresh_plugins",
    ],
    "delgrad_core._encoding": ["LatencyEncoder"],
    "delgrad_core._losses": [
        "FirstSpikeLoss", "LossResult", "ShiftInvariantSquaredError", "TTFSCrossEntropy", "accuracy",
        "available_losses", "first_spike_prediction", "make_loss",
    ],
}
__getattr__, __dir__, __all__ = lazy_exports(
    __name__, _EXPORTS, submodules=("datasets", "training", "testing", "hookspecs", "nir", "plugin_tools")
)
