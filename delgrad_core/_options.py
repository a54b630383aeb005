"""Settings given as dicts: `KEY=VALUE` option lists (as on command lines) parsed into a dict,
and the check of a dict's names against the fields it may set."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable

from delgrad_core._errors import InvalidValueError, UnknownOptionError

__all__ = ["parse_key_values", "check_known_names", "close_name_hint", "closest_name", "first_few",
           "refuse_unknown_options", "shown_names"]


def _table_of(what: str, key: str):
    """A JSON object hook that refuses a name given twice in one table (JSON keeps the last)."""
    def table(pairs):
        names = [name for name, _ in pairs]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise InvalidValueError(f"{what}: {key}: {twice[0]!r} given twice in one table; give it once")
        return dict(pairs)
    return table


def parse_key_values(items, what: str = "--backend-option") -> dict:
    """{'dt': 0.01, 'host': 'x'} from ['dt=0.01', 'host=x']: VALUE is parsed as JSON when it can
    be, else kept as a string; KEY must be an identifier."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):  # ("dt=0.01" was read letter by letter)
        raise InvalidValueError(f"{what}: expected a list of KEY=VALUE strings, got {items!r}")
    options = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.isidentifier():
            raise InvalidValueError(f"{what}: expected KEY=VALUE with KEY an identifier, got {item!r}")
        try:
            parsed = json.loads(value, object_pairs_hook=_table_of(what, key))
        except InvalidValueError:
            raise
        except ValueError:  # (not JSON, or an integer of more digits than Python converts)
            parsed = value
        except RecursionError:  # (thousands of nested brackets: a traceback)
            raise InvalidValueError(f"{what}: {key}: JSON nested too deeply to read") from None
        if key in options and options[key] != parsed:
            raise InvalidValueError(f"{what}: {key} given twice ({options[key]!r} and {parsed!r}); give it once")
        options[key] = parsed
    return options


def check_known_names(values, known, what: str) -> dict:
    """`values` itself if it is a dict whose names are all in `known`; otherwise
    `InvalidValueError` naming `what`, the unknown names and the known ones."""
    if not isinstance(values, dict):
        raise InvalidValueError(f"{what}: expected a table of settings, got {type(values).__name__}")
    unknown = sorted(set(values) - set(known), key=str)  # (names of two types do not sort: {1: 2, 'hidden': 3})
    if unknown:
        raise InvalidValueError(f"{what}: unknown setting(s) {first_few(list(map(str, unknown)))}"
                                f"{close_name_hint(str(unknown[0]), known)}; known: {', '.join(sorted(known))}")
    return values


def refuse_unknown_options(what: str, names, allowed, noun: str = "option") -> None:
    """Nothing if every one of `names` is in `allowed`; otherwise `UnknownOptionError` naming
    `what`, the unknown names, the allowed name closest to the first and all allowed ones."""
    allowed = [str(each) for each in allowed]
    unknown = sorted(set(names) - set(allowed), key=str)
    if unknown:
        raise UnknownOptionError(f"{what}: unknown {noun}(s) {shown_names(unknown)}"
                                 f"{close_name_hint(str(unknown[0]), allowed)}; "
                                 f"allowed: {', '.join(allowed) or '(none)'}", names=unknown)


def shown_names(names) -> str:
    """`names` for a message: the first three (a name that is no identifier quoted) and how many
    more (`first_few`)."""
    return first_few([str(name) if str(name).isidentifier() else repr(name) for name in names])


def first_few(names: list[str], separator: str = ", ") -> str:
    """The first three of `names` and how many more: 'a, b, c and 2 more' ('a; b; c and 2 more'
    with `separator` '; ', for items that hold commas themselves)."""
    return separator.join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def closest_name(name: str, known) -> str | None:
    """The known name closest to a misspelt `name`; None if none is close."""
    close = difflib.get_close_matches(name, [str(each) for each in known], n=1)
    return close[0] if close else None


def close_name_hint(name: str, known) -> str:
    """' (did you mean X?)' for the known name closest to a misspelt `name`; '' if none is close."""
    close = closest_name(name, known)
    return f" (did you mean {close}?)" if close else ""
