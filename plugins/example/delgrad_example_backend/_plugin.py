"""Entry point of the "delgrad.backends" group (see pyproject.toml): register the backend."""

from delgrad_core import hookimpl

from delgrad_example_backend._backend import TimeSteppedBackend

__all__ = ["delgrad_register_backends"]


@hookimpl
def delgrad_register_backends(register):
    # One call per backend; the factory is called as factory(**options), e.g. get_backend("example", dt=0.01).
    register("example", TimeSteppedBackend, description="time-stepped simulator (template for plugins)")
