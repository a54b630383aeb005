"""delgrad core: network IR, exact spike times and exact gradients for weights and delays."""

from delgrad_core._ir import DelayKind, Layer, Network, NeuronParameters, Population, Projection
from delgrad_core._propagation import (
    LayerGradients,
    NetworkGradients,
    backward,
    default_num_threads,
    forward,
)
from delgrad_core._serialization import load_network, save_network

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
]
