"""Helpers for plugin authors (the built-in plugins use them too; docs/plugins.md, "Helpers"):
`KEY=VALUE` option lists, the check of a settings table's names and of one number, with the
messages the `delgrad` command gives for its own options; files written atomically, and the
temporary files a process killed while writing one left behind; whether a network's inputs are
taken as copies, and their shared delay, as the default `Backend.represent` gives it; the
defaults of a registered factory's keyword parameters."""

from __future__ import annotations

from delgrad_core._atomic import atomic_write, atomic_write_text, temporaries
from delgrad_core._capabilities import inputs_in_copies, share_copied_delays
from delgrad_core._numbers import checked_number, shown_number
from delgrad_core._options import check_known_names, parse_key_values, refuse_unknown_options
from delgrad_core._plugins import factory_defaults

__all__ = [
    "atomic_write", "atomic_write_text", "check_known_names", "checked_number", "factory_defaults",
    "inputs_in_copies", "parse_key_values", "refuse_unknown_options", "share_copied_delays", "shown_number",
    "temporaries",
]
