"""Entry point of the "delgrad.backends" group (see pyproject.toml): register the backend."""

from delgrad_core import hookimpl

from delgrad_example_backend._backend import EXAMPLE_CAPABILITIES, TimeSteppedBackend

__all__ = ["delgrad_register_backends"]


@hookimpl
def delgrad_register_backends(register):
    # One call per backend; the factory is called as factory(**options), e.g. get_backend("example", dt=0.01).
    # `capabilities` lets `delgrad backends` list the backend without building it.
    register("example", TimeSteppedBackend, description="time-stepped simulator (template for plugins)",
             capabilities=EXAMPLE_CAPABILITIES)
