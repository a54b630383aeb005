"""Which device a service owns: any registered backend chosen by name, `bss2-emulator` by
default when it is installed."""

from __future__ import annotations

import importlib.metadata

from delgrad_core import BackendUnavailable, InvalidValueError, available_backends

from delgrad_hil._calibration import BACKEND_NAME

__all__ = ["DEFAULT_DEVICE", "device_name", "default_device_registration"]

DEFAULT_DEVICE = "bss2-emulator"


def device_name(name: str | None) -> str:
    """`name`, or the default device if none is given; a clear error when there is none to use
    (an unknown name is refused later, by the registry, with the installed choices)."""
    if name == BACKEND_NAME:
        raise InvalidValueError(f"device: {BACKEND_NAME!r} cannot be its own device")
    if name is not None:
        return name
    installed = [info.name for info in available_backends() if info.name != BACKEND_NAME]
    if DEFAULT_DEVICE in installed:
        return DEFAULT_DEVICE
    raise BackendUnavailable(
        f"no device chosen, and the default device {DEFAULT_DEVICE!r} is not installed (pip install "
        f"./backends/bss2); choose one of {', '.join(installed) or '(none installed)'} with device=NAME "
        f"(delgrad hil serve --device NAME)", retryable=False)


def default_device_registration() -> dict:
    """The ``capabilities`` and ``training_defaults`` the default device's plugin registers, or
    {} if it is not installed or fails to load (the registry reports that).

    Read through the plugin's own registration hook, because `mock-hil` registers while the
    registry is still being filled.
    """
    for entry_point in importlib.metadata.entry_points(group="delgrad.backends"):
        if entry_point.name != DEFAULT_DEVICE:
            continue
        found = {}

        def register(name, factory, description="", capabilities=None, training_defaults=None):
            if name == DEFAULT_DEVICE:
                found.update(capabilities=capabilities, training_defaults=training_defaults)

        try:
            entry_point.load().delgrad_register_backends(register)
        except Exception:
            return {}
        return found
    return {}
