"""The ``delgrad`` command line: one click group, one module per command family."""

import click

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="delgrad")
def main():
    """Train spiking networks with exact gradients for weights and delays (DelGrad)."""


def _register_commands():
    """Import the command modules; each adds its commands to `main`."""
    from delgrad_core.cli import _backends_cmd, _nir_cmd, _train_cmd  # noqa: F401


_register_commands()
