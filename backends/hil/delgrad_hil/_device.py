"""Which device a service owns (any registered backend chosen by name, `bss2-emulator` by
default when it is installed), and what `mock-hil` takes from the device's registration."""

from __future__ import annotations

import importlib.metadata
import json
import time
import warnings

from delgrad_core import BackendUnavailable, InvalidValueError, available_backends, backend_info

from delgrad_hil._calibration import BACKEND_NAME

__all__ = ["DEFAULT_DEVICE", "device_name", "default_device_capabilities", "device_training_defaults", "setting",
           "took_unasked_defaults", "unasked_settings_differ"]

DEFAULT_DEVICE = "bss2-emulator"


def device_name(name: str | None) -> str:
    """`name`, or the default device if none is given; a clear error naming the option when
    there is none to use or `name` is not an installed backend."""
    if name == BACKEND_NAME:
        raise InvalidValueError(f"device: {BACKEND_NAME!r} cannot be its own device")
    installed = [info.name for info in available_backends() if info.name != BACKEND_NAME]
    if name is not None:
        if name not in installed:
            raise InvalidValueError(f"device: no backend {name!r} is installed; choose one of "
                                    f"{', '.join(installed) or '(none installed)'}")
        return name
    if DEFAULT_DEVICE in installed:
        return DEFAULT_DEVICE
    raise BackendUnavailable(
        f"no device chosen, and the default device {DEFAULT_DEVICE!r} is not installed (pip install "
        f"./backends/bss2); choose one of {', '.join(installed) or '(none installed)'} with device=NAME "
        f"(delgrad hil serve --device NAME)", retryable=False)


def default_device_capabilities():
    """The capabilities the default device's plugin registers, or None if it is not installed
    or fails to load (the registry reports that).

    Read through the plugin's own registration hook, because `mock-hil` registers while the
    registry is still being filled.
    """
    for entry_point in importlib.metadata.entry_points(group="delgrad.backends"):
        if entry_point.name != DEFAULT_DEVICE:
            continue
        found = {}

        def register(name, factory, description="", capabilities=None, **details):  # (what the hook may pass)
            if name == DEFAULT_DEVICE:
                found["capabilities"] = capabilities

        try:
            entry_point.load().delgrad_register_backends(register)
        except Exception:
            return None
        return found.get("capabilities")
    return None


def device_training_defaults(options: dict) -> dict:
    """The training defaults registered by the device that `mock-hil` options name (the
    default device without a ``device`` option) with its options; with an ``address``, those of
    the device the service there owns, with its options (asked of the service: a client's
    ``device_options`` are always empty).  {} for a device that is not installed, and for options
    the backend refuses when it is built or a run refuses (``token``: no service is asked then).
    A service that cannot be asked from here (no answer at once, no token: e.g. a SLURM login
    node, which plans a sweep that compute nodes run) leaves the defaults of the device named,
    with its default options: the run itself greets the service, or fails to.  What a service
    said, or that it did not answer, holds for a minute (a sweep builds the config of every run)."""
    if not isinstance(options.get("device_options") or {}, dict):  # (refused, naming it, when the backend is built)
        return {}
    if options.get("address") is None:
        return _registered_defaults(options.get("device") or DEFAULT_DEVICE, options.get("device_options") or {})
    if "token" in options:  # (a run keeps its settings in plain text: its config refuses a token)
        return {}
    key = json.dumps(options, sort_keys=True, default=str)
    asked = _SERVICE_DEVICES.get(key)
    if asked is None or time.monotonic() - asked[0] > _ASKED_FOR_S:
        asked = _SERVICE_DEVICES[key] = (time.monotonic(), _service_device(options))
    device = asked[1]
    if device is None:  # (not answered: the run itself greets the service, or fails naming it)
        name = options.get("device") or DEFAULT_DEVICE
        _UNASKED.add((options["address"], name))
        return _registered_defaults(name, {})
    return {} if device == () else _registered_defaults(*device)


_SERVICE_DEVICES: dict[str, tuple] = {}  # options -> (when asked, what `_service_device` gave)
_ASKED_FOR_S = 60.0  # how long an answer, or none, holds (a sweep builds the config of every run)
_UNASKED: set[tuple[str, str]] = set()  # (address, device) whose defaults were taken with the default options


def took_unasked_defaults(address: str, name: str) -> bool:
    """Whether this process took the training defaults of device `name` at `address` with its
    default options, as the service did not answer."""
    return (address, name) in _UNASKED


def unasked_settings_differ(address: str, name: str, device_options: dict) -> dict:
    """Where this process took the training defaults of device `name` at `address` with its
    default options, as the service did not answer: {setting: (what the service's
    `device_options` give, what was taken)} where they differ, an option table's entries as
    "table.key" ({} if none).  Called once the service answers: later settings ask it again."""
    for key, (_, device) in list(_SERVICE_DEVICES.items()):
        if device is None and json.loads(key).get("address") == address:
            del _SERVICE_DEVICES[key]
    if (address, name) not in _UNASKED:
        return {}
    ran, taken = _flat(_registered_defaults(name, device_options)), _flat(_registered_defaults(name, {}))
    return {field: (ran.get(field), taken.get(field)) for field in sorted(set(ran) | set(taken))
            if ran.get(field) != taken.get(field)}


def setting(settings: dict, field: str, missing=None):
    """The value of `field` ("table.key" for an option table's entry) in `settings`."""
    table, _, key = field.partition(".")
    value = settings.get(table, missing)
    return (value.get(key, missing) if isinstance(value, dict) else missing) if key else value


def _flat(settings: dict) -> dict:
    """`settings` with an option table's entries as "table.key"."""
    return {f"{name}.{key}" if isinstance(value, dict) else name: entry for name, value in settings.items()
            for key, entry in (value.items() if isinstance(value, dict) else [(None, value)])}


def _service_device(options: dict) -> tuple | None:
    """(name, options) of the device of the service the mock-hil `options` address, asked once;
    () for options the backend refuses (it names them when the run builds it); None if the
    service does not say (no answer, no token, or it refuses the token).  A service that answers
    with a device this client cannot use is refused (`DeviceRefused`), as the run would be."""
    from delgrad_hil._backend import DeviceRefused, HilBackend  # (it imports this module)

    try:
        backend = HilBackend(**{**options, "attempts": 1})  # (asked once: not the run's patience)
    except (InvalidValueError, TypeError):
        return ()
    try:
        with backend:
            return backend.service_device()
    except DeviceRefused:  # (said before the settings' defaults were: a warning, then this error)
        raise
    except (BackendUnavailable, InvalidValueError) as exc:
        # (said: a refusal the settings then meet, e.g. copies the encoder does not make, would mislead)
        warnings.warn(f"backend {BACKEND_NAME!r}: the training settings are those of device "
                      f"{options.get('device') or DEFAULT_DEVICE!r} with its default options, as the service at "
                      f"{options['address']} did not say which options it runs ({exc}); if it runs others, "
                      "the settings they need must be given", UserWarning, stacklevel=2)
        return None


def _registered_defaults(name: str, device_options: dict) -> dict:
    """The training defaults the backend `name` registers, for its options `device_options`."""
    if name not in [info.name for info in available_backends()] or name == BACKEND_NAME:
        return {}
    defaults = backend_info(name).details.get("training_defaults") or {}
    return defaults(dict(device_options)) if callable(defaults) else dict(defaults)
