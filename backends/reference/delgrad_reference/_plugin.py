"""Entry point of the "delgrad.backends" group: registers the reference backend."""

from delgrad_core import hookimpl

from delgrad_reference._backend import REFERENCE_CAPABILITIES, ReferenceBackend

__all__ = ["delgrad_register_backends"]


@hookimpl
def delgrad_register_backends(register):
    register("reference", ReferenceBackend, description="exact ideal model (delgrad_core.forward); the default",
             capabilities=REFERENCE_CAPABILITIES)
