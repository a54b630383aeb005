"""``KEY=VALUE`` options from the command line (backend options for `delgrad calibrate` and
the conformance suite's ``--delgrad-backend-option``).  Imports nothing heavy."""

from __future__ import annotations

import json

from delgrad_core._errors import InvalidValueError

__all__ = ["parse_options"]


def parse_options(items, what: str = "option") -> dict:
    """{'dt': 0.01} from ['dt=0.01']; VALUE is parsed as JSON when it can be, else kept as a
    string; a KEY that is not an identifier is an `InvalidValueError` naming `what`."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise InvalidValueError(f"{what}: expected KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options
