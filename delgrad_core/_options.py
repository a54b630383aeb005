"""`KEY=VALUE` option lists, as given on command lines, parsed into a dict."""

from __future__ import annotations

import json

from delgrad_core._errors import InvalidValueError

__all__ = ["parse_key_values"]


def parse_key_values(items, what: str = "--backend-option") -> dict:
    """{'dt': 0.01, 'host': 'x'} from ['dt=0.01', 'host=x']: VALUE is parsed as JSON when it can
    be, else kept as a string; KEY must be an identifier."""
    options = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.isidentifier():
            raise InvalidValueError(f"{what}: expected KEY=VALUE with KEY an identifier, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options
