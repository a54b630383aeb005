"""delgrad-hil: mock hardware-in-the-loop.  A device service process owns one device backend
and serves jobs over a signed, versioned ZeroMQ protocol; the `mock-hil` backend sends jobs to
it with timeouts, retries and idempotent job ids (docs/hil.md, docs/hil-protocol.md)."""

from delgrad_hil._auth import load_token, new_token
from delgrad_hil._backend import HilBackend
from delgrad_hil._device import DEFAULT_DEVICE
from delgrad_hil._faults import FaultPlan
from delgrad_hil._protocol import ProtocolError
from delgrad_hil._supervisor import LocalService

__all__ = ["HilBackend", "LocalService", "FaultPlan", "ProtocolError", "DEFAULT_DEVICE", "load_token", "new_token"]
