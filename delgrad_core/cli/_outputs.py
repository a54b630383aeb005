"""Output files of commands: an existing file is replaced only when the user says so, and never
when it is one of the command's own inputs; a missing folder is made (as for `train --out`), but
never through a link (one pointing into a missing folder is refused); names and paths must fit
the file system."""

from __future__ import annotations

import contextlib
import os

import click

__all__ = ["check_output_file", "kept_if_made_meanwhile"]


def check_output_file(out, option: str, *, force: bool, inputs=()) -> bool:
    """Refuse (as a usage error naming `option`) an `out` that exists, unless `force`; one that
    is the same file as any of `inputs`, always; a link into a missing folder; and a name too
    long.  (A link to a file yet to be made is written through, into a folder that exists.)
    Returns whether no file or link is at `out` (for `kept_if_made_meanwhile`)."""
    if not str(out).strip():  # (Path("") is ".", the working folder)
        raise click.UsageError(f"{option}: expected a file path, got {str(out)!r}")
    free = not os.path.lexists(out)
    if os.path.exists(out):
        _check_existing(out, option, force=force, inputs=inputs)
    _check_link_and_name(out, option)
    return free


@contextlib.contextmanager
def kept_if_made_meanwhile(out, option: str, *, free: bool, force: bool):
    """Within: a write that would replace an `out` made since it was found `free` (by
    `check_output_file`, at the command's start; by another process writing the same name) is
    refused, unless `force`: both said "wrote", one file was lost."""
    from delgrad_core._atomic import checked_before_commit

    def check() -> None:
        if free and not force and os.path.lexists(out):
            raise click.ClickException(f"{option}: {out} was written by another process meanwhile and is not "
                                       "overwritten; remove it or choose another name")

    with checked_before_commit(check):
        yield


def _check_existing(out, option: str, *, force: bool, inputs) -> None:
    """Refuse an existing `out` that is also an input (always), or unless `force`."""
    for source in inputs:
        if source is not None and os.path.exists(source) and os.path.samefile(out, source):
            raise click.UsageError(f"{option}: {out} is also the command's input {source}; choose another name")
    if not force:
        hint = "; --force replaces it" if option == "OUT" else ""
        raise click.UsageError(f"{option}: {out} exists and is not overwritten; remove it or choose another name{hint}")


def _check_link_and_name(out, option: str) -> None:
    """Refuse what `atomic_write` would: a link into a missing folder or a loop of links (no
    folders are made elsewhere), a name or a whole path (for a link: also that of the file it
    points to) longer than the file system allows."""
    from pathlib import Path

    from delgrad_core._atomic import followed_path
    from delgrad_core._errors import InvalidValueError

    _check_path_size(out, option)  # (before the link is looked at: the system refuses to)
    try:
        target = followed_path(Path(out))
    except InvalidValueError as exc:
        raise click.UsageError(f"{option}: {exc}") from None
    _check_path_size(target, option)


def _check_path_size(path, option: str) -> None:
    """Refuse a `path` whose absolute form (with the temporary file written first beside it) is
    longer than the file system allows, as a usage error (the system's message repeated it whole)."""
    from delgrad_core._atomic import PATH_MAX, TEMPORARY_EXTRA
    from delgrad_core.cli._settings import shortened

    absolute = os.path.abspath(path)
    size, limit = len(os.fsencode(absolute)), PATH_MAX - 1 - TEMPORARY_EXTRA
    if size > limit:
        raise click.UsageError(f"{option}: the path {shortened(absolute)!r} is {size} bytes long, more than the "
                               f"{limit} the file system allows; choose a shorter one")
