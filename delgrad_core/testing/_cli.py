"""A click test runner that behaves like click >= 8.2 on every supported click version:
`result.stderr` is separate and `result.output` holds everything the command printed."""

import inspect

from click.testing import CliRunner, Result

__all__ = ["cli_runner"]


class _Result(Result):
    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class _Runner(CliRunner):
    def __init__(self):
        super().__init__(mix_stderr=False)

    def invoke(self, *args, **kwargs):
        result = super().invoke(*args, **kwargs)
        result.__class__ = _Result
        return result


def cli_runner() -> CliRunner:
    """click < 8.2 mixes stderr into stdout unless told not to; 8.2 removed the switch."""
    if "mix_stderr" in inspect.signature(CliRunner).parameters:
        return _Runner()
    return CliRunner()
