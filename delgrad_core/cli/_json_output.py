"""Commands with --json: their standard output holds the JSON document alone, whatever the
plugin code they run prints (a backend's, a dataset loader's)."""

from __future__ import annotations

import contextlib
import functools
import json
import sys

import click

__all__ = ["json_output_kept_apart", "echo_json"]

_json_outputs: list = []  # the standard output of each --json command running (innermost last)


def json_output_kept_apart(command):
    """Decorate a command that takes `as_json`: given, what its work prints to standard output
    goes to standard error, and `echo_json` prints to standard output."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        if not kwargs.get("as_json"):
            return command(*args, **kwargs)
        _json_outputs.append(sys.stdout)
        try:
            with contextlib.redirect_stdout(sys.stderr):
                return command(*args, **kwargs)
        finally:
            _json_outputs.pop()

    return run


def echo_json(document) -> None:
    """Print `document` as indented JSON to the running --json command's standard output."""
    sys.stderr.flush()  # (what was said before it, first, where stderr is buffered)
    click.echo(json.dumps(document, indent=2), file=_json_outputs[-1] if _json_outputs else None)
