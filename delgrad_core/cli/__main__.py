"""``python -m delgrad_core.cli``: the same as the ``delgrad`` command."""

from delgrad_core.cli import main

main(prog_name="delgrad")
