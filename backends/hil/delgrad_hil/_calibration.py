"""The calibration a `mock-hil` client holds: the device's calibration, wrapped.

Calibration runs on the service's device.  The client returns it as a `Calibration` of its own
backend name (requests to `mock-hil` must carry a `mock-hil` calibration) that contains the
device's calibration unchanged: its backend name, cache key and values in ``values["device"]``
and its arrays as they are.  The service unwraps it before running a request, so the device
sees exactly the calibration it made (the same digest).
"""

from __future__ import annotations

from delgrad_core import Calibration, InvalidValueError

__all__ = ["BACKEND_NAME", "wrap", "unwrap"]

BACKEND_NAME = "mock-hil"


def wrap(device_calibration: Calibration) -> Calibration:
    """The `mock-hil` calibration holding `device_calibration`."""
    inner = {"backend": device_calibration.backend, "cache_key": device_calibration.cache_key,
             "values": device_calibration.values}
    return Calibration(BACKEND_NAME, {"device": inner}, f"{BACKEND_NAME}/{device_calibration.cache_key}",
                       dict(device_calibration.arrays))


def unwrap(calibration: Calibration | None) -> Calibration | None:
    """The device's calibration inside a `mock-hil` one (anything else is returned as it is,
    for the device to accept or refuse); `InvalidValueError` if the wrapping is malformed."""
    if calibration is None or calibration.backend != BACKEND_NAME:
        return calibration
    inner = calibration.values.get("device")
    if not isinstance(inner, dict) or set(inner) != {"backend", "cache_key", "values"}:
        raise InvalidValueError("calibration: a mock-hil calibration must hold the device's in values['device'] "
                                "(backend, cache_key, values)")
    return Calibration(inner["backend"], inner["values"], inner["cache_key"], dict(calibration.arrays))
