"""Comparing the device identity a run recorded (`Backend.device_identity`) with the one a
backend has now, for resume (refused, or warned of a recalibration) and evaluate (warned)."""

from __future__ import annotations

from delgrad_core._backend import is_device_identity
from delgrad_core._errors import FileFormatError
from delgrad_core.training._config import shown_setting

__all__ = ["identity_changes", "key_changes", "recorded_identity"]


def recorded_identity(value, where) -> dict | None:
    """The device identity a run recorded in `where` (None: recorded before runs recorded
    one), checked: a table of backend, calibration_key, calibration_digest (strings) and
    options (a table); anything else is a damaged or edited file (`FileFormatError`)."""
    if value is None:
        return None
    if not is_device_identity(value):
        raise FileFormatError(f"{where}: device_identity is {shown_setting(value)}, not a table of backend, "
                              "calibration_key, calibration_digest (strings) and options (a table); a damaged or "
                              "edited file")
    return value


def key_changes(recorded_key: str, current_key: str) -> dict[str, str]:
    """{"calibration_key": in words} where the calibration keys differ, else {} (also what runs
    from before identities were recorded are compared by)."""
    if recorded_key == current_key:
        return {}
    return {"calibration_key": f"calibrated as {recorded_key!r}, now as {current_key!r} (another chip, device or "
                               "calibration setting)"}


def identity_changes(recorded: dict, current: dict) -> dict[str, str]:
    """What differs between the `recorded` identity and the `current` one, by field, in words:
    "calibration_key", "calibration_digest" (only where the key is the same) and "options".
    Empty where nothing differs or where they are not comparable (the device of another
    backend: a network trained on one backend and evaluated on another)."""
    if recorded["backend"] != current["backend"]:
        return {}
    changes = key_changes(recorded["calibration_key"], current["calibration_key"])
    if not changes and recorded["calibration_digest"] != current["calibration_digest"]:
        changes["calibration_digest"] = ("the same calibration key with other calibration contents (calibrated "
                                         "again, or a changed cache entry)")
    then, now = recorded.get("options") or {}, current.get("options") or {}
    differing = sorted(name for name in set(then) | set(now) if then.get(name) != now.get(name))
    if differing:
        changes["options"] = "device options " + ", ".join(
            f"{name} {shown_setting(then.get(name))} (now {shown_setting(now.get(name))})" for name in differing)
    return changes
