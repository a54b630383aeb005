"""A click test runner that keeps stderr apart on every supported click version."""

import inspect

from click.testing import CliRunner


def cli_runner() -> CliRunner:
    """click < 8.2 mixes stderr into stdout unless told not to; 8.2 removed the switch."""
    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()
