"""Plugin manager: discover backend factories registered through entry points (pluggy).

A distribution declares an entry point in the group "delgrad.backends" that names a module or
object implementing the hook `delgrad_register_backends(register)`; the hook calls
`register(name, factory, description=...)` once per backend, where `factory(**options)` returns a
`Backend`.  Loading is isolated per entry point: a broken plugin gives a `PluginLoadWarning`
naming it (an error when DELGRAD_STRICT_PLUGINS=1) and the others still load.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import warnings
from dataclasses import dataclass

import pluggy

from delgrad_core._backend import Backend, Capabilities

__all__ = [
    "ENTRY_POINT_GROUP",
    "DEFAULT_BACKEND",
    "hookimpl",
    "hookspec",
    "BackendInfo",
    "BackendRegistry",
    "PluginLoadError",
    "PluginLoadWarning",
    "DuplicateBackendError",
    "UnknownBackendError",
    "get_backend",
    "available_backends",
    "refresh_backends",
]

PROJECT_NAME = "delgrad"
ENTRY_POINT_GROUP = "delgrad.backends"
DEFAULT_BACKEND = "reference"
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class _BackendHookspecs:
    @hookspec
    def delgrad_register_backends(self, register):
        """Register backend factories: call `register(name, factory, description="")` per backend."""


class PluginLoadError(RuntimeError):
    """A plugin failed to load (raised instead of warning in strict mode)."""


class PluginLoadWarning(UserWarning):
    """A plugin failed to load; the other plugins are still available."""


class DuplicateBackendError(RuntimeError):
    """Two registrations use the same backend name."""


class UnknownBackendError(LookupError):
    """No backend is registered under the requested name."""


@dataclass(frozen=True)
class BackendInfo:
    """One registered backend: where it comes from and how to build it."""

    name: str
    distribution: str
    version: str
    description: str
    factory: object

    @property
    def capabilities(self) -> Capabilities:
        """Capabilities of the backend built with default options (constructors are cheap)."""
        return self.factory().capabilities

    def to_dict(self) -> dict:
        """JSON-able summary (without the factory)."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "description": self.description,
            "capabilities": self.capabilities.to_dict(),
        }


def _strict_from_env() -> bool:
    value = os.environ.get("DELGRAD_STRICT_PLUGINS", "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"DELGRAD_STRICT_PLUGINS: expected one of 0, 1, true, false, yes, no; got {value!r}")


class BackendRegistry:
    """Named backend factories collected from plugins.

    Parameters
    ----------
    group : str
        Entry-point group to discover (default "delgrad.backends").
    strict : bool, optional
        Raise `PluginLoadError` instead of warning about a broken plugin
        (default: environment variable DELGRAD_STRICT_PLUGINS).
    """

    def __init__(self, *, group: str = ENTRY_POINT_GROUP, strict: bool | None = None):
        self.group = group
        self.strict = strict
        self._manager = pluggy.PluginManager(PROJECT_NAME)
        self._manager.add_hookspecs(_BackendHookspecs)
        self._backends: dict[str, BackendInfo] = {}

    def discover(self) -> "BackendRegistry":
        """Load every entry point of `group`, one at a time; returns self."""
        strict = _strict_from_env() if self.strict is None else self.strict
        for entry_point in importlib.metadata.entry_points(group=self.group):
            dist = entry_point.dist
            dist_name = dist.metadata["Name"] if dist is not None else "<unknown distribution>"
            version = dist.version if dist is not None else ""
            try:
                plugin = entry_point.load()
                self.register_plugin(plugin, distribution=dist_name, version=version, plugin_name=entry_point.name)
            except DuplicateBackendError:
                raise
            except Exception as exc:
                message = (
                    f"delgrad backend plugin {entry_point.name!r} ({entry_point.value}) from distribution "
                    f"{dist_name!r} {version} failed to load: {type(exc).__name__}: {exc}"
                )
                if strict:
                    raise PluginLoadError(message) from exc
                warnings.warn(message, PluginLoadWarning, stacklevel=2)
        return self

    def register_plugin(self, plugin, *, distribution: str, version: str = "", plugin_name: str | None = None) -> None:
        """Register an object or module implementing `delgrad_register_backends` (also for in-process use).

        All of the plugin's backends are added, or none if its hook raises.
        """
        if self._manager.register(plugin, name=plugin_name) is None:  # pluggy: already registered
            return
        pending: dict[str, BackendInfo] = {}

        def register(name: str, factory, description: str = "") -> None:
            if not isinstance(name, str) or not _NAME_PATTERN.match(name):
                raise ValueError(f"backend name: expected lower-case letters, digits, '.', '_' or '-', got {name!r}")
            if not callable(factory):
                raise TypeError(f"backend {name!r}: factory must be callable, got {type(factory).__name__}")
            previous = self._backends.get(name) or pending.get(name)
            if previous is not None:
                raise DuplicateBackendError(
                    f"backend name {name!r} is registered by two distributions: "
                    f"{previous.distribution!r} and {distribution!r}"
                )
            pending[name] = BackendInfo(name, distribution, version, str(description), factory)

        try:
            for impl in self._manager.hook.delgrad_register_backends.get_hookimpls():
                if impl.plugin is plugin:
                    impl.function(register=register)
        except BaseException:
            self._manager.unregister(plugin)
            raise
        self._backends.update(pending)

    def names(self) -> list[str]:
        return sorted(self._backends)

    def info(self, name: str) -> BackendInfo:
        try:
            return self._backends[name]
        except KeyError:
            choices = ", ".join(self.names()) or "(no backends installed)"
            raise UnknownBackendError(f"unknown backend {name!r}; choose one of {choices}") from None

    def infos(self) -> list[BackendInfo]:
        return [self._backends[name] for name in self.names()]

    def create(self, name: str, **options) -> Backend:
        """Build backend `name` with `options` passed to its factory."""
        info = self.info(name)
        backend = info.factory(**options)
        if not isinstance(backend, Backend):
            raise TypeError(
                f"backend {name!r} from {info.distribution!r}: factory returned {type(backend).__name__}, not a Backend"
            )
        return backend


_default_registry: BackendRegistry | None = None


def _registry() -> BackendRegistry:
    global _default_registry
    if _default_registry is None:
        _default_registry = BackendRegistry().discover()
    return _default_registry


def refresh_backends() -> None:
    """Forget discovered plugins; the next call discovers again (e.g. after installing one)."""
    global _default_registry
    _default_registry = None


def get_backend(name_or_backend: str | Backend = DEFAULT_BACKEND, **options) -> Backend:
    """Backend by registered name (built with `options`), or a `Backend` object passed through."""
    if isinstance(name_or_backend, Backend):
        if options:
            raise TypeError(f"options {sorted(options)} cannot be applied to an existing backend object")
        return name_or_backend
    if not isinstance(name_or_backend, str):
        raise TypeError(
            f"backend: expected a backend name or a Backend object, got {type(name_or_backend).__name__}"
        )
    return _registry().create(name_or_backend, **options)


def available_backends() -> list[BackendInfo]:
    """Installed backends (name, distribution, version, description, capabilities), sorted by name."""
    return _registry().infos()
