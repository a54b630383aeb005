"""delgrad-example-backend: a time-stepped simulator registered as the delgrad backend "example"."""

from delgrad_example_backend._backend import TimeSteppedBackend

__all__ = ["TimeSteppedBackend"]
