"""Entry point of the "delgrad.backends" group: registers the `mock-hil` backend (with the
capabilities of the default device, when it is installed, and the training defaults of the
device its options name) and the ``delgrad hil`` commands."""

from delgrad_core import hookimpl

from delgrad_hil._backend import HilBackend
from delgrad_hil._calibration import BACKEND_NAME
from delgrad_hil._device import DEFAULT_DEVICE, default_device_capabilities, device_training_defaults

__all__ = ["delgrad_register_backends", "delgrad_register_commands"]


@hookimpl
def delgrad_register_backends(register):
    register(BACKEND_NAME, HilBackend,
             description=f"a device behind a local or shared service process (default device: {DEFAULT_DEVICE})",
             capabilities=default_device_capabilities(), training_defaults=device_training_defaults)


@hookimpl
def delgrad_register_commands(register):
    from delgrad_hil._cli import hil

    register("hil", hil)
