"""Output files of commands: an existing file is replaced only when the user says so, and never
when it is one of the command's own inputs."""

from __future__ import annotations

import os

import click

__all__ = ["check_output_file"]


def check_output_file(out, option: str, *, force: bool, inputs=()) -> None:
    """Refuse (as a usage error naming `option`) an `out` that exists, unless `force`; and one
    that is the same file as any of `inputs`, always."""
    if not os.path.exists(out):  # (a link to a file yet to be made is written through)
        return
    for source in inputs:
        if source is not None and os.path.exists(source) and os.path.samefile(out, source):
            raise click.UsageError(f"{option}: {out} is also the command's input {source}; choose another name")
    if not force:
        hint = "; --force replaces it" if option == "OUT" else ""
        raise click.UsageError(f"{option}: {out} exists and is not overwritten; remove it or choose another name{hint}")
