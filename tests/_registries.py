"""A process-wide plugin registry holding only the backends a test gives."""

from delgrad_core import PluginRegistry, hookimpl


def install_only_backends(monkeypatch, factories: dict, *, distribution: str = "delgrad-local",
                          version: str = "") -> PluginRegistry:
    """Install, as the process-wide registry for this test, one whose only plugin (from
    `distribution`) registers `factories` (backend name -> factory); the built-in datasets, losses
    and encoders stay.  Returns the registry."""
    class Plugin:
        @hookimpl
        def delgrad_register_backends(self, register):
            for name, factory in factories.items():
                register(name, factory)

    registry = PluginRegistry()
    registry.register_plugin(Plugin(), distribution=distribution, version=version)
    monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)
    return registry
