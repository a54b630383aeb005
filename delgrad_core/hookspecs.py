"""The hooks a delgrad plugin can implement (pluggy hook specifications).

A plugin is a module (or object) named by an entry point of the group ``delgrad.backends`` in
its distribution's metadata.  It implements any of the hooks below, decorated with
`delgrad_core.hookimpl`; each hook receives a ``register`` callable and calls it once per thing
it adds.  A misspelt hook name is an error in strict mode (``DELGRAD_STRICT_PLUGINS=1``) and a
warning otherwise; so is a plugin that registers nothing.  See docs/plugins.md.
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT_NAME", "hookspec", "hookimpl", "DelgradHookspecs"]

PROJECT_NAME = "delgrad"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class DelgradHookspecs:
    """Registration hooks; every ``register`` refuses a registration with an invalid name or
    detail (a plugin problem naming it: the hook goes on, the plugin's other registrations stay)."""

    @hookspec
    def delgrad_register_backends(self, register):
        """Add backends: ``register(name, factory, description="", capabilities=None,
        training_defaults=None, result_neutral_options=None)``.

        ``factory(**options)`` returns a `delgrad_core.Backend` whose ``name`` is `name`.
        ``capabilities`` (a `Capabilities`) lets ``delgrad backends`` list the backend without
        building it; without it the factory is called with no options to read them.
        ``training_defaults`` (a dict of `TrainingConfig` settings, e.g. a chip's operating
        point) apply when training on this backend, under the user's own settings; a backend
        whose defaults depend on its options registers a function ``training_defaults(options)``
        returning that dict instead.  ``result_neutral_options`` names the options that never
        change a result (threads, a cache folder): a run may be resumed with them changed.
        """

    @hookspec
    def delgrad_register_datasets(self, register):
        """Add datasets: ``register(name, loader, splits, description="", plane=None,
        training_defaults=None)``.

        ``loader(split, **options)`` returns a `delgrad_core.datasets.Dataset` for each split
        name in ``splits`` (training needs train, validation and test); features are scaled to
        [0, 1], labels count from 0 and there are at least two class names.  A 2-d task may pass
        ``plane(x, y) -> features`` (points of the unit square to features): training then
        draws a decision map of the plane.  ``training_defaults`` (training settings that suit
        the dataset, e.g. its encoding) apply under the backend's defaults and the user's own;
        they cannot choose the dataset or backend, and their ``encoder_options`` and
        ``loss_options`` must be parameters of the encoder and loss they go to.
        """

    @hookspec
    def delgrad_register_losses(self, register):
        """Add losses: ``register(name, factory, description="")``.

        ``factory(**parameters)`` returns a callable ``loss(output_times, labels)`` giving a
        `delgrad_core.LossResult` (see `delgrad_core.FirstSpikeLoss`).  Register the factory (e.g.
        the loss's class), not the loss: one requiring ``output_times`` or ``labels`` is refused.
        """

    @hookspec
    def delgrad_register_encoders(self, register):
        """Add encoders: ``register(name, factory, description="")``.

        ``factory(**parameters)`` returns a callable turning features (n, n_features) in
        [0, 1] into input spike times (n, n_inputs); it has an ``n_inputs(n_features)`` method.
        Register the factory, not the encoder: one with ``n_inputs`` or requiring ``features`` is
        refused.
        """

    @hookspec
    def delgrad_register_commands(self, register):
        """Add commands to the ``delgrad`` command line: ``register(name, command, description="")``.

        ``command`` is a `click.Command` (often a `click.Group`) run as ``delgrad name ...``.
        The built-in commands keep their names: a plugin command with the name of one is never
        run (``delgrad backends`` lists it as a problem).
        """
