"""Plugin manager: discover backends, datasets, losses, encoders and command-line commands
registered by plugins.

Every entry point of the group ``delgrad.backends`` names a module or object implementing hooks
of `delgrad_core.hookspecs`.  Loading is isolated per entry point: a plugin that fails to import
(any exception, `SystemExit` included; only `KeyboardInterrupt` passes through), whose hook
fails, that implements a misspelt hook, that registers nothing, that prints to standard output
or that registers a name taken already gives a `PluginLoadWarning` naming it and the others
still load; a registration its checks refuse is left out alone.  In strict mode
(``DELGRAD_STRICT_PLUGINS=1``, or ``strict=True``) they are an error, raised after every entry
point was tried.  The problems are kept in `PluginRegistry.problems` for ``delgrad backends`` to
show, and the plugins that failed to load in `PluginRegistry.failures` for the error about a
name nothing registers.  The core's own losses,
encoders and datasets are registered first, then the project's own distributions, then the
others in name order; a taken name stays with the first registration.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata
import inspect
import io
import os
import re
import sys
import threading
import warnings
from dataclasses import dataclass, field

import pluggy

from delgrad_core._backend import Backend
from delgrad_core._capabilities import Capabilities
from delgrad_core._ir import DelayKind
from delgrad_core._options import close_name_hint, refuse_unknown_options
from delgrad_core._errors import (
    DelgradError,
    DuplicateNameError,
    InvalidValueError,
    PluginError,
    PluginLoadError,
    UnknownNameError,
    described,
    naming_the_plugins_seen,
)
from delgrad_core.hookspecs import PROJECT_NAME, DelgradHookspecs

__all__ = [
    "ENTRY_POINT_GROUP",
    "DEFAULT_BACKEND",
    "PluginLoadWarning",
    "Registration",
    "PluginRegistry",
    "registry",
    "refresh_plugins",
    "get_backend",
    "backend_info",
    "factory_defaults",
    "available_backends",
    "build_registered",
    "call_plugin",
    "installation_hint",
    "not_installed",
    "provider_hint",
    "own_kind_hint",
    "refused_default",
    "check_parameter_names",
    "capability_differences",
]

ENTRY_POINT_GROUP = "delgrad.backends"
DEFAULT_BACKEND = "reference"
KINDS = ("backend", "dataset", "loss", "encoder", "command")
_HOOKS = {"backend": "delgrad_register_backends", "dataset": "delgrad_register_datasets",
          "loss": "delgrad_register_losses", "encoder": "delgrad_register_encoders",
          "command": "delgrad_register_commands"}
# The project's own distributions load before any third-party one.
_OWN_DISTRIBUTIONS = ("delgrad", "delgrad-reference", "delgrad-bss2", "delgrad-hil")
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
# What the project's own distributions register, for a message about one that is not installed:
# (kind, name) -> distribution; distribution -> its folder in a source checkout.
OWN_REGISTRATIONS = {("backend", "reference"): "delgrad-reference", ("backend", "bss2-emulator"): "delgrad-bss2",
                     ("backend", "mock-hil"): "delgrad-hil", ("command", "hil"): "delgrad-hil"}
_SOURCE_FOLDERS = {"delgrad-reference": "./backends/reference", "delgrad-bss2": "./backends/bss2",
                   "delgrad-hil": "./backends/hil"}


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded or used as declared; the others are still available."""


@dataclass(frozen=True)
class Registration:
    """One registered thing: where it comes from and the object that builds or loads it.

    `details` holds kind-specific facts: for a backend its `capabilities` (or None), for a
    dataset its `splits`.
    """

    kind: str
    name: str
    obj: object
    distribution: str
    version: str = ""
    description: str = ""
    details: dict = field(default_factory=dict)

    @property
    def capabilities(self) -> Capabilities:
        """A backend's capabilities: as registered, else read from a default-built backend."""
        if self.details.get("capabilities") is not None:
            return self.details["capabilities"]
        with _built_backend(self, {}) as backend:
            return backend.capabilities

    def to_dict(self) -> dict:
        """JSON-able summary of a backend (without the factory)."""
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
    raise InvalidValueError(f"DELGRAD_STRICT_PLUGINS: expected one of 0, 1, true, false, yes, no; got {value!r}")


def _check_name(kind: str, name) -> str:
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise InvalidValueError(f"{kind} name: expected lower-case letters, digits, '.', '_' or '-', beginning "
                                f"with a letter or digit, got {name!r}")
    return name


# what each kind's register takes (docs/plugins.md)
_REGISTER_SIGNATURES = {
    "backend": "register(name, factory, description='', capabilities=None, training_defaults=None, "
               "result_neutral_options=None)",
    "dataset": "register(name, loader, splits, description='', plane=None, training_defaults=None)",
    "loss": "register(name, factory, description='')", "encoder": "register(name, factory, description='')",
    "command": "register(name, command, description='')"}


def _description(kind: str, name: str, description) -> str:
    """`description` if it is a string (another argument given in its place would be lost silently)."""
    if not isinstance(description, str):
        raise InvalidValueError(f"{kind} {name!r}: description: expected a string, got {type(description).__name__} "
                                f"(the arguments: {_REGISTER_SIGNATURES[kind]}; give the others by keyword)")
    return description


def _backend_details(name: str, factory, description: str = "", capabilities=None, training_defaults=None,
                     result_neutral_options=None) -> dict:
    if not callable(factory):
        raise InvalidValueError(f"backend {name!r}: factory must be callable, got {type(factory).__name__}")
    declared = getattr(factory, "name", None)
    if isinstance(factory, type) and isinstance(declared, str) and declared and declared != name:
        raise InvalidValueError(f"backend {name!r}: registered under another name than its Backend.name {declared!r}")
    if isinstance(capabilities, dict):  # (as Capabilities.to_dict gives it)
        try:
            capabilities = Capabilities.from_dict(capabilities)
        except InvalidValueError as exc:
            raise InvalidValueError(f"backend {name!r}: capabilities: {exc}") from None
    if capabilities is not None and not isinstance(capabilities, Capabilities):
        raise InvalidValueError(f"backend {name!r}: capabilities: expected a delgrad_core.Capabilities, a table "
                                f"Capabilities.from_dict takes, or None, got {type(capabilities).__name__}")
    if result_neutral_options is None and isinstance(factory, type):
        result_neutral_options = getattr(factory, "result_neutral_options", ())
    neutral = () if result_neutral_options is None or isinstance(result_neutral_options, str) else \
        tuple(result_neutral_options)  # (an iterator is read once)
    if isinstance(result_neutral_options, str) or not all(isinstance(option, str) for option in neutral):
        raise InvalidValueError(f"backend {name!r}: result_neutral_options must be a collection of option names, got "
                                f"{result_neutral_options!r}")
    check_parameter_names(f"backend {name!r}: result_neutral_options", factory, dict.fromkeys(neutral), "option")
    details = {"description": _description("backend", name, description), "capabilities": capabilities,
               "result_neutral_options": frozenset(neutral)}
    if callable(training_defaults):  # defaults that depend on the backend options: checked when used
        return {**details, "training_defaults": training_defaults}
    if training_defaults is not None:
        from delgrad_core.training._config import check_settings

        # each setting valid on its own; the registry is still being filled, so registered
        # names are checked when a config is built
        training_defaults = check_settings(training_defaults, f"backend {name!r}: training_defaults")
        refused = refused_default(capabilities, training_defaults)
        if refused:  # (a user who asked for none of it would be told the backend cannot run it)
            raise InvalidValueError(f"backend {name!r}: training_defaults.{refused}")
    return {**details, "training_defaults": dict(training_defaults or {})}


def refused_default(capabilities: Capabilities | None, defaults: dict) -> str | None:
    """The first of a backend's training defaults that its own declared `capabilities` refuse
    (a delay kind, a tau ratio), described, or None."""
    if capabilities is None:
        return None
    kinds = defaults.get("delays")
    for kind in [kinds] if isinstance(kinds, str) else kinds or []:
        if DelayKind.parse(kind, "delays") not in capabilities.delay_kinds:
            declared = ", ".join(sorted(k.value for k in capabilities.delay_kinds))
            return f"delays: {kind!r} is not among the delay kinds its capabilities declare ({declared})"
    ratio = defaults.get("tau_ratio")
    if ratio is not None and not capabilities.supports_ratio(ratio):
        return f"tau_ratio: {ratio:g} is not among the tau ratios its capabilities declare {capabilities.tau_ratios}"
    return None


def _dataset_details(name: str, loader, splits, description: str = "", plane=None, training_defaults=None) -> dict:
    if not callable(loader):
        raise InvalidValueError(f"dataset {name!r}: loader must be callable, got {type(loader).__name__}")
    given, splits = splits, tuple(splits) if not isinstance(splits, str) else ()
    if not splits or not all(isinstance(s, str) and s for s in splits):
        raise InvalidValueError(f"dataset {name!r}: splits must be a non-empty list of names, got {given!r}")
    if plane is not None and not callable(plane):
        raise InvalidValueError(f"dataset {name!r}: plane must be callable (x, y) -> features")
    if training_defaults is not None:
        from delgrad_core.training._config import check_settings

        training_defaults = check_settings(training_defaults, f"dataset {name!r}: training_defaults")
        chosen = sorted(set(training_defaults) & {"dataset", "backend", "backend_options"})
        if chosen:  # (the user's --dataset always wins; a backend so chosen ran without its own defaults)
            raise InvalidValueError(f"dataset {name!r}: training_defaults.{chosen[0]}: not a dataset's to choose (its "
                                    "defaults apply under the user's dataset and backend, and the backend's defaults)")
    return {"description": _description("dataset", name, description), "splits": splits, "plane": plane,
            "training_defaults": dict(training_defaults or {})}


# the parameters of a built loss's or encoder's own call (docs/plugins.md), which no factory requires
_CALL_PARAMETERS = {"loss": ("output_times", "labels"), "encoder": ("features",)}


def _factory_details(kind: str):
    def details(name: str, factory, description: str = "") -> dict:
        if not callable(factory):
            raise InvalidValueError(f"{kind} {name!r}: factory must be callable, got {type(factory).__name__}")
        built = _built_already(kind, factory)
        if built:
            raise InvalidValueError(f"{kind} {name!r}: expected a factory returning the {kind} (its class, or lambda: "
                                    f"the {kind}), which training calls with the {kind}'s parameters; got the {kind} "
                                    f"itself ({built})")
        return {"description": _description(kind, name, description)}

    return details


def _built_already(kind: str, factory) -> str:
    """Why `factory`, registered as a factory of `kind`, is a built loss or encoder instead (an
    object with the encoder's `n_inputs`, a callable requiring the loss's or encoder's own call
    parameters), or ""."""
    if inspect.isclass(factory):
        return ""
    shown = getattr(factory, "__name__", None) or f"an instance of {type(factory).__name__}"
    if kind == "encoder" and callable(getattr(factory, "n_inputs", None)):
        return f"{shown} has the method n_inputs"
    required = [p for p in _required_parameters(factory) or () if p in _CALL_PARAMETERS[kind]]
    return f"{shown} requires {', '.join(required)}" if required else ""


def _command_details(name: str, command, description: str = "") -> dict:
    import click

    from delgrad_core.cli import main

    if not isinstance(command, click.Command):
        raise InvalidValueError(f"command {name!r}: expected a click.Command, got {type(command).__name__}")
    if name in main.commands:
        raise InvalidValueError(f"command {name!r}: the name of a built-in delgrad command")
    return {"description": _description("command", name, description) or command.get_short_help_str()}


_DETAILS = {"backend": _backend_details, "dataset": _dataset_details, "loss": _factory_details("loss"),
            "encoder": _factory_details("encoder"), "command": _command_details}


def _unknown_hooks(manager: pluggy.PluginManager, plugin) -> list[str]:
    """The hooks `plugin` implements that no hook specification declares (optional ones aside)."""
    return sorted(caller.name for caller in manager.get_hookcallers(plugin) or () if not caller.has_spec() and
                  any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()))


def _distribution_name(entry_point) -> str:
    """The name of the distribution that declares `entry_point`."""
    return entry_point.dist.metadata["Name"] if entry_point.dist is not None else "<unknown distribution>"


def _why_nothing(ran: dict) -> str:
    """Why a plugin whose hooks `ran` (hook name -> what it returned) registered nothing."""
    returned = {hook: value for hook, value in ran.items() if value is not None}
    if returned:
        hook, value = next(iter(returned.items()))
        return (f"its hook {hook} returned {type(value).__name__} instead of calling register(name, ...), the "
                "argument it is given, for each thing it adds (docs/plugins.md)")
    if ran:
        return f"its hook{'s' if len(ran) > 1 else ''} {', '.join(ran)} ran without calling register"
    return "its entry point must name the module or object holding the hooks, each decorated with " \
           "@delgrad_core.hookimpl"


def _suggested_hook(name: str) -> str:
    """`name` with the hook it was probably meant to be, or the hooks there are."""
    close = difflib.get_close_matches(name, _HOOKS.values(), n=1)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else f"{name!r} (the hooks: {', '.join(_HOOKS.values())})"


class PluginRegistry:
    """Named backends, datasets, losses, encoders and commands collected from plugins.

    Parameters
    ----------
    group : str
        Entry-point group to discover (default "delgrad.backends").
    strict : bool, optional
        Raise `PluginError`s instead of warning (default: $DELGRAD_STRICT_PLUGINS).
    builtins : bool
        Register the core's own losses, encoders and datasets first (default True).
    """

    def __init__(self, *, group: str = ENTRY_POINT_GROUP, strict: bool | None = None, builtins: bool = True):
        self.group = group
        self.strict = _strict_from_env() if strict is None else bool(strict)
        self.problems: list[str] = []
        self._failures: dict[str, list[str]] = {}  # plugin -> why it failed to load, in whole or part
        self._strict_errors: list[PluginError] | None = None  # collected while `_collecting`
        self._tables: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        #: (kind, name) -> the registrations of that name that were ignored (another distribution has it)
        self.ignored: dict[tuple[str, str], list[Registration]] = {}
        #: (kind, name) -> why a plugin's registration of that name was refused (and who refused it)
        self.refused: dict[tuple[str, str], str] = {}
        self._manager = pluggy.PluginManager(PROJECT_NAME)
        self._manager.add_hookspecs(DelgradHookspecs)
        self._distribution_of: dict[str, str] = {}  # plugin name (an entry point's) -> its distribution
        if builtins:
            from delgrad_core import _builtin_plugin

            self.register_plugin(_builtin_plugin, distribution="delgrad", plugin_name="delgrad-core")

    @property
    def failures(self) -> list[str]:
        """One line per plugin that failed to load (in whole or part): the plugin and why."""
        return [" ".join(f"{where}: {'; '.join(reasons)}".split()) for where, reasons in self._failures.items()]

    # -- loading -------------------------------------------------------------------------------
    def _problem(self, error: PluginError) -> None:
        """Report `error`: collected in strict mode, else kept in `problems` and warned of."""
        if self._strict_errors is not None:
            self._strict_errors.append(error)
            return
        self.problems.append(str(error))
        warnings.warn(str(error), PluginLoadWarning, stacklevel=3)

    def _failed(self, where: str, reason: str) -> None:
        """Report that the plugin `where` failed to load (`reason`), in whole or part."""
        self._failures.setdefault(where, []).append(reason)
        self._problem(PluginLoadError(f"delgrad {where} {reason}"))

    @contextlib.contextmanager
    def _collecting(self):
        """Within, in strict mode, problems are collected; at the end they are raised: one as
        itself, several as one `PluginError` listing them all."""
        if not self.strict or self._strict_errors is not None:  # (lenient, or collecting already)
            yield
            return
        self._strict_errors = []
        try:
            yield
        finally:
            errors, self._strict_errors = self._strict_errors, None
        if len(errors) == 1:
            raise errors[0]
        if errors:
            kinds = {type(error) for error in errors}
            kind = kinds.pop() if len(kinds) == 1 else PluginError
            raise kind(f"{len(errors)} plugin problems:\n" + "\n".join(f"- {error}" for error in errors))

    @contextlib.contextmanager
    def _silenced(self, where: str):
        """Within, what plugin code prints to standard output is kept from it (it would corrupt
        e.g. ``delgrad backends --json``) and reported as a problem naming the plugin, also when
        the plugin code then raises (what it printed may say why)."""
        with _this_threads_stdout_captured() as printed:
            try:
                yield
            finally:
                text = " ".join(printed.getvalue().split())
                if text:
                    shown = text if len(text) <= 200 else text[:200] + "..."
                    self._problem(PluginError(f"delgrad {where} printed to standard output (a plugin must be "
                                              f"silent): {shown!r}"))

    def discover(self) -> "PluginRegistry":
        """Load every entry point of `group`, one at a time; returns self.  In strict mode every
        plugin is tried before the problems are raised: one as itself, several as one
        `PluginError` listing them all."""
        with self._collecting():
            self._load_entry_points()
        return self

    def _load_entry_points(self) -> None:
        def order(entry_point):
            dist = entry_point.dist.metadata["Name"] if entry_point.dist is not None else ""
            own = dist in _OWN_DISTRIBUTIONS
            return (not own, _OWN_DISTRIBUTIONS.index(dist) if own else 0, dist, entry_point.name)

        every = importlib.metadata.entry_points()  # (one scan of the installed distributions)
        for entry_point in sorted(every.select(group=self.group), key=order):
            dist = entry_point.dist
            dist_name = _distribution_name(entry_point)
            version = dist.version if dist is not None else ""
            where = f"plugin {entry_point.name!r} ({entry_point.value}) from distribution {dist_name!r} {version}"
            try:
                with self._silenced(where):
                    plugin = entry_point.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: a plugin must not end the host
                self._failed(where, f"failed to load: {described(exc)}")
                continue
            self.register_plugin(plugin, distribution=dist_name, version=version, plugin_name=entry_point.name,
                                 where=where)
        self._report_near_miss_groups(every)

    def _report_near_miss_groups(self, every) -> None:
        """Report the entry points (of `every` installed one) of groups whose names are all but
        `group`'s ("delgrad.backend", "delgrad_backends"): never loaded, their plugins were
        missing without a word."""
        near = [group for group in every.groups - {self.group}
                if difflib.SequenceMatcher(None, group.lower(), self.group.lower()).ratio() >= 0.9]
        for group in sorted(near):
            for entry_point in every.select(group=group):
                self._problem(PluginLoadError(
                    f"distribution {_distribution_name(entry_point)!r} declares the entry point "
                    f"{entry_point.name!r} ({entry_point.value}) in group {group!r}, which delgrad does not read: "
                    f"plugins are found in {self.group!r} (correct the group's name in its pyproject.toml and install "
                    "it again)"))

    def register_plugin(self, plugin, *, distribution: str, version: str = "", plugin_name: str | None = None,
                        where: str | None = None) -> None:
        """Register an object or module implementing delgrad hooks (also for in-process use).

        A registration its checks refuse is left out (a problem each), the plugin's others are
        added; none are if one of its hooks fails.  In strict mode the problems are raised at
        the end (when discovering: once every plugin was tried).
        """
        where = where or f"plugin {plugin_name or plugin!r} from distribution {distribution!r}"
        with self._collecting():
            if self._added_to_manager(plugin, plugin_name, distribution, where):
                self._add(self._registrations_of(plugin, distribution, version, where))

    def _added_to_manager(self, plugin, plugin_name: str | None, distribution: str, where: str) -> bool:
        """Whether `plugin` is now registered with pluggy; not if it cannot be, its name is
        another plugin's or it implements an unknown hook (a failure each), nor if it was already."""
        if plugin is None:  # (pluggy takes None without a word, registering nothing)
            self._failed(where, "registers nothing (its entry point names None, e.g. a placeholder `PLUGIN = None`; "
                                "name the module, class or object that implements delgrad's hooks)")
            return False
        if self._manager.is_registered(plugin):  # (pluggy's message dumps its whole registry)
            first = self._manager.get_name(plugin)
            self._failed(where, f"cannot be registered: it names the plugin object the entry point {first!r} of "
                                f"distribution {self._distribution_of.get(first, first)!r} registered already (one "
                                "entry point per plugin: remove the other)")
            return False
        other = self._manager.get_plugin(plugin_name) if plugin_name is not None else None
        if other is not None:  # (pluggy's own message dumps its whole registry)
            self._failed(where, f"cannot be registered: the plugin name {plugin_name!r} is taken by distribution "
                                f"{self._distribution_of[plugin_name]!r} (the names of the entry points in "
                                f"{self.group!r} must differ: rename one)")
            return False
        try:
            registered = self._manager.register(plugin, name=plugin_name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            hooks = ", ".join(f"{hook}(register)" for hook in _HOOKS.values())
            self._failed(where, f"cannot be registered: {' '.join(str(exc).split())} (delgrad's hooks each take one "
                                f"argument named register: {hooks})")
            return False
        unknown = _unknown_hooks(self._manager, plugin)
        if unknown:
            self._manager.unregister(plugin)
            self._failed(where, f"implements an unknown hook: {', '.join(map(_suggested_hook, unknown))}")
            return False
        if registered is not None:  # (None: pluggy had it already)
            self._distribution_of[registered] = distribution
        return registered is not None

    def _registrations_of(self, plugin, distribution: str, version: str, where: str) -> list[Registration]:
        """What `plugin`'s hooks register, but what they refuse (each a failure); nothing if a
        hook raises (a failure too: the plugin is unregistered)."""
        pending: list[Registration] = []
        refused: list[str] = []
        ran: dict[str, object] = {}  # hook name -> what it returned (a hook registers by calling register)
        registering: set[str] = set()  # the hooks that called register
        try:
            with self._silenced(where):
                for kind, hook_name in _HOOKS.items():
                    for impl in getattr(self._manager.hook, hook_name).get_hookimpls():
                        if impl.plugin is plugin:
                            before = len(pending) + len(refused)
                            ran[hook_name] = impl.function(
                                register=self._collector(kind, pending, refused, distribution, version))
                            if len(pending) + len(refused) > before:
                                registering.add(hook_name)
        except KeyboardInterrupt:
            self._manager.unregister(plugin)
            raise
        except BaseException as exc:
            self._manager.unregister(plugin)
            advice = (f" (its entry point names the class {plugin.__name__}, whose hooks need an instance: name an "
                      f"instance, e.g. plugin = {plugin.__name__}() in its module, or make the hooks module-level "
                      "functions)") if inspect.isclass(plugin) and isinstance(exc, TypeError) else ""
            pending, refused = [], refused + [f"failed while registering: {described(exc)}{advice}"]
        if pending or refused:  # (a hook that returned its things beside others that register: they are lost)
            refused += [_why_nothing({hook: value}) for hook, value in ran.items()
                        if value is not None and hook not in registering]
        for reason in refused:
            self._failed(where, reason)
        if not pending and not refused:
            self._failed(where, f"registers nothing ({_why_nothing(ran)})")
        return pending

    def _add(self, registrations: list[Registration]) -> None:
        """Add `registrations` to the tables; a name taken already stays with the first."""
        for registration in registrations:
            table = self._tables[registration.kind]
            previous = table.get(registration.name)
            if previous is not None:
                self._problem(DuplicateNameError(
                    f"{registration.kind} name {registration.name!r} is registered by two distributions: "
                    f"{previous.distribution!r} (kept) and {registration.distribution!r} (ignored)"
                ))
                self.ignored.setdefault((registration.kind, registration.name), []).append(registration)
                continue
            table[registration.name] = registration

    def _collector(self, kind: str, pending: list, refused: list, distribution: str, version: str):
        """The `register` a hook of `kind` receives: a registration its checks accept goes to
        `pending`, the reason why one is refused to `refused` (the hook goes on)."""
        details_of = _DETAILS[kind]

        def register(name, obj, *args, **kwargs):
            try:
                name = _check_name(kind, name)
                if any(r.name == name for r in pending if r.kind == kind):
                    raise DuplicateNameError(f"{kind} name {name!r} is registered twice by {distribution!r}")
                details = details_of(name, obj, *args, **kwargs)
                if kind in ("dataset", "backend") and isinstance(details["training_defaults"], dict):
                    self._check_component_defaults(kind, name, details["training_defaults"])
            except Exception as exc:  # (a bad argument: this registration only)
                refused.append(f"registration refused: {described(exc)}")
                if isinstance(name, str):
                    self.refused[(kind, name)] = f"distribution {distribution!r} {version}".rstrip() + \
                        f" registers it, but its registration was refused: {described(exc)}"
                return
            description = details.pop("description")
            pending.append(Registration(kind, name, obj, distribution, version, description, details))

        return register

    def _check_component_defaults(self, kind_registered: str, name: str, defaults: dict) -> None:
        """Refuse a dataset's or backend's (a table of) training defaults that give the loss or
        encoder they apply to (the one they name, else the config's default) options it does not
        take, if it is registered already (the core's always are): training would blame the
        user's ``encoder_options``."""
        from delgrad_core.training._config import TrainingConfig

        for kind in ("loss", "encoder"):
            chosen = defaults.get(kind, getattr(TrainingConfig, kind))
            options = defaults.get(f"{kind}_options") or {}
            if options and isinstance(chosen, str) and chosen in self._tables[kind]:
                where = f"{kind_registered} {name!r}: training_defaults.{kind}_options: {kind} {chosen!r}"
                check_parameter_names(where, self._tables[kind][chosen].obj, options, "parameter")

    # -- lookup --------------------------------------------------------------------------------
    def _table(self, kind: str) -> dict:
        """The registrations of `kind` by name, or `InvalidValueError` naming the kinds there are."""
        if not isinstance(kind, str) or kind not in self._tables:
            raise InvalidValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        return self._tables[kind]

    def names(self, kind: str = "backend") -> list[str]:
        return sorted(self._table(kind))

    def get(self, kind: str, name: str) -> Registration:
        """The registration of `name`, or `UnknownNameError` listing the choices (and where one
        of the project's own distributions has it)."""
        table = self._table(kind)
        if isinstance(name, str) and name in table:
            return table[name]
        if isinstance(name, str) and (kind, name) in self.refused:
            raise UnknownNameError(f"{kind} {name!r} cannot be used: {self.refused[(kind, name)]}")
        choices = ", ".join(sorted(table)) or f"(no {kind} installed)"
        hint = provider_hint(kind, name)  # (one of the project's own, not installed)
        close = close_name_hint(name, table) if isinstance(name, str) else ""
        raise UnknownNameError(f"unknown {kind} {name!r}{close}; choose one of {choices}"
                               + (f"; {hint}" if hint else ""),
                               failures=self.failures)

    def registrations(self, kind: str = "backend") -> list[Registration]:
        return [self._table(kind)[name] for name in self.names(kind)]

    def create_backend(self, name: str, **options) -> Backend:
        """Build backend `name` with `options` passed to its factory."""
        registration = self.get("backend", name)
        check_parameter_names(f"backend {name!r}", registration.obj, options, "option")
        return _built_backend(registration, options)


def _built_backend(registration: Registration, options: dict) -> Backend:
    """The backend `registration`'s factory builds with `options` (their names checked),
    checked: a `Backend` that calls itself by the registered name and declares `Capabilities`."""
    name, factory = registration.name, registration.obj
    source = f"backend {name!r} from {registration.distribution!r}"
    if inspect.isclass(factory) and inspect.isabstract(factory):
        raise PluginError(f"{source}: its class {factory.__name__} does not implement "
                          f"{', '.join(sorted(factory.__abstractmethods__))}")
    backend = _built_with(registration, options, "option", "invalid options")
    if not isinstance(backend, Backend):
        raise PluginError(f"{source}: factory returned {type(backend).__name__}, not a Backend")
    try:
        problem = _backend_problem(backend, name)
    except BaseException:
        backend.close()
        raise
    if problem is not None:
        backend.close()
        raise PluginError(f"{source}: {problem}")
    if not options:
        _warn_of_other_capabilities(registration, backend.capabilities)
    return backend


_WARNED_CAPABILITIES: set[tuple[str, str]] = set()  # (distribution, backend name) warned of in this process


def _warn_of_other_capabilities(registration: Registration, built: Capabilities) -> None:
    """Warn once per process (`PluginLoadWarning`) where the capabilities registered for a
    backend, which ``delgrad backends`` lists and training defaults are checked against, differ
    from those the backend declares when built without options."""
    registered = registration.details.get("capabilities")
    key = (registration.distribution, registration.name)
    if registered is None or registered == built or key in _WARNED_CAPABILITIES:
        return
    _WARNED_CAPABILITIES.add(key)
    warnings.warn(f"backend {registration.name!r} from {registration.distribution!r} registers other capabilities "
                  f"than its backend built without options declares ({capability_differences(registered, built)}); "
                  "`delgrad backends` lists the registered ones: register the backend's own", PluginLoadWarning,
                  stacklevel=4)


def capability_differences(registered: Capabilities, other: Capabilities, how: str = "built") -> str:
    """The fields where the `registered` capabilities differ from `other` (those a backend
    declares when `how`), as "max_layers: registered 3, built 2; ..."."""
    registered, other = registered.to_dict(), other.to_dict()
    return "; ".join(f"{key}: registered {registered.get(key)!r}, {how} {other.get(key)!r}"
                     for key in sorted(set(registered) | set(other)) if registered.get(key) != other.get(key))


def _backend_problem(backend: Backend, name: str) -> str | None:
    """What is wrong with a freshly built `backend` registered as `name` (None: nothing)."""
    if backend.name != name:
        return f"the backend calls itself {backend.name!r}; the registered name and Backend.name must agree"
    try:
        capabilities = backend.capabilities
    except (DelgradError, MemoryError):
        raise
    except Exception as exc:
        return f"reading its capabilities failed: {described(exc)}"
    if not isinstance(capabilities, Capabilities):
        return f"its capabilities are a {type(capabilities).__name__}, not a delgrad_core.Capabilities"
    return None


# how a required option or parameter of a component of each kind is given
_HOW_TO_GIVE = {"backend": "as --backend-option {first}=VALUE (in a config: backend_options; in the conformance "
                           "suite: --delgrad-backend-option)",
                "dataset": "as --dataset-option {first}=VALUE (in a config: dataset_options)"}


def _built_with(registration: Registration, arguments: dict, noun: str, refused: str):
    """What `registration`'s factory returns for the keyword `arguments` (their names checked by
    the caller): a required one missing is an `InvalidValueError` naming it (a `noun`); a
    `TypeError` the factory raises is the arguments' fault ("`refused` [names] (...)") only where
    its signature could not be read, else the plugin's (`call_plugin`)."""
    kind, name, factory = registration.kind, registration.name, registration.obj
    required = _required_parameters(factory)
    missing = sorted(set(required or ()) - set(arguments))
    if missing:
        how = _HOW_TO_GIVE.get(kind, "in a config's {kind}_options (--set '{kind}_options={{\"{first}\": VALUE}}')")
        raise InvalidValueError(f"{kind} {name!r}: {noun}(s) {', '.join(missing)} required; give "
                                f"{'it' if len(missing) == 1 else 'each'} {how.format(kind=kind, first=missing[0])}")
    try:
        return call_plugin(registration, kind, lambda: factory(**arguments), arguments_checked=required is not None)
    except TypeError as exc:
        raise InvalidValueError(f"{kind} {name!r}: {refused} {sorted(arguments)} ({exc})") from None


def _required_parameters(factory) -> list[str] | None:
    """The keyword parameters `factory` requires, or None if it takes any keyword (or its
    signature cannot be read)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.default is p.empty and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


class _ThreadStdout:
    """Standard output that keeps what one thread writes in `captured` and passes the other
    threads' writes on to `original`."""

    def __init__(self, original, captured: io.StringIO):
        self._original, self._captured, self._thread = original, captured, threading.get_ident()

    def write(self, text: str) -> int:
        target = self._captured if threading.get_ident() == self._thread else self._original
        return target.write(text)

    def __getattr__(self, name):
        return getattr(self._original, name)


@contextlib.contextmanager
def _this_threads_stdout_captured():
    """Within, what this thread prints goes to the StringIO given; other threads print as before
    (a process-wide redirection swallowed their output, and counted it as the plugin's)."""
    original, captured = sys.stdout, io.StringIO()
    sys.stdout = _ThreadStdout(original, captured)
    try:
        yield captured
    finally:
        _replaced_stdouts.append(sys.stdout)  # (kept: CPython's print holds sys.stdout unreferenced while
        sys.stdout = original                 # it writes, and another thread's print crashed when it was freed)


_replaced_stdouts: list[_ThreadStdout] = []


_default_registry: PluginRegistry | None = None
_registry_lock = threading.RLock()  # (threads using plugins first at once discovered them at once)


def registry() -> PluginRegistry:
    """The process-wide registry (discovered on first use, by one thread)."""
    global _default_registry
    with _registry_lock:
        if _default_registry is None:
            _default_registry = PluginRegistry().discover()
        return _default_registry


def refresh_plugins() -> None:
    """Forget discovered plugins; the next call discovers again (e.g. after installing one)."""
    global _default_registry
    with _registry_lock:
        _default_registry = None


def provider_hint(kind: str, name) -> str:
    """Where `name` of `kind` comes from if one of the project's own distributions registers it
    ("'reference' comes with the distribution delgrad-reference (pip install ...)"), else ""."""
    distribution = OWN_REGISTRATIONS.get((kind, name)) if isinstance(name, str) else None
    if distribution is None:
        return ""
    return (f"{name!r} comes with the distribution {distribution} (pip install {_SOURCE_FOLDERS[distribution]} from "
            "a source checkout)")


def own_kind_hint(kind: str) -> str:
    """Which of the project's own distributions bring a `kind` (e.g. "delgrad's own backends
    come with the distributions delgrad-reference (reference), ...: pip install ..."), or ""."""
    own = [(distribution, name) for (own_kind, name), distribution in OWN_REGISTRATIONS.items() if own_kind == kind]
    if not own:
        return ""
    listed = ", ".join(f"{distribution} ({name})" for distribution, name in own)
    folders = ", ".join(f"pip install {_SOURCE_FOLDERS[distribution]}" for distribution, _ in own)
    return f"delgrad's own {kind}s come with the distributions {listed}: from a source checkout, {folders}"


def installation_hint(kind: str, name, installed: list[str]) -> str:
    """Where `name` of `kind` comes from if one of the project's own distributions registers it,
    else, with nothing of `kind` `installed`, where the project's own come from; "" otherwise."""
    return provider_hint(kind, name) or ("" if installed else own_kind_hint(kind))


def not_installed(kind: str, name, installed: list[str] | None = None, *, field: str | None = None) -> str:
    """The message for `name` of `kind` that nothing registers (a plugin not installed, or not
    any more): "backend: 'bss2-emulator' is not installed; installed: reference", with where the
    project's own distributions have it, the Python whose plugins were seen and those that failed
    to load.  `installed`: the names registered (default: the process-wide registry's); `field`:
    the name of the setting (default: `kind`)."""
    installed = registry().names(kind) if installed is None else list(installed)
    field = field or kind
    refused = registry().refused.get((kind, name)) if isinstance(name, str) else None
    if refused is not None:  # (installed, but not usable: that is what to say)
        return f"{field}: {name!r} cannot be used: {refused}"
    if not isinstance(name, str):
        article = "an" if kind[0] in "aeiou" else "a"
        message = (f"{field}: expected {article} {kind} name, got {name!r}; installed: "
                   f"{', '.join(installed) or '(none)'}")
    elif installed:
        message = (f"{field}: {name!r} is not installed{close_name_hint(name, installed)}; installed: "
                   f"{', '.join(installed)}")
    else:
        message = f"{field}: {name!r} is not installed, nor any other {kind}"
    hint = installation_hint(kind, name, installed)
    message = f"{message}; {hint}" if hint else message
    if not isinstance(name, str):
        return message
    # (a third party's: installed into another Python, or failed to load, perhaps)
    return naming_the_plugins_seen(message, registry().failures)


def get_backend(name_or_backend: str | Backend = DEFAULT_BACKEND, **options) -> Backend:
    """Backend by registered name (built with `options`), or a `Backend` object passed through."""
    if isinstance(name_or_backend, Backend):
        if options:
            raise InvalidValueError(f"options {sorted(options)} cannot be applied to an existing backend object")
        name_or_backend._check_open()
        return name_or_backend
    if not isinstance(name_or_backend, str):
        raise InvalidValueError(
            f"backend: expected a backend name or a Backend object, got {type(name_or_backend).__name__}"
        )
    return registry().create_backend(name_or_backend, **options)


def backend_info(name: str) -> Registration:
    """Registration of backend `name` (distribution, version, description, capabilities)."""
    return registry().get("backend", name)


def factory_defaults(kind: str, name: str) -> dict:
    """{parameter: default} of the keyword parameters with a default of the factory registered as
    `name` of `kind`, not those `**options` takes ({} for a name not registered, or a factory whose
    signature Python cannot read; an unknown `kind` is refused naming the kinds)."""
    table = registry()._table(kind)
    if not isinstance(name, str) or name not in table:
        return {}
    try:
        signature = inspect.signature(table[name].obj)
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in signature.parameters.values()
            if p.default is not p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def available_backends() -> list[Registration]:
    """Installed backends, sorted by name."""
    return registry().registrations("backend")


def registered_neutral_options(backend: str) -> frozenset:
    """The options of backend `backend` registered as not changing results (given to `register`,
    as a factory function must, else its class's `result_neutral_options`)."""
    return registry().get("backend", backend).details.get("result_neutral_options", frozenset())


def built_neutral_options(backend: Backend, registered_as: str | None) -> frozenset:
    """The options of the built `backend` that never change its results: those its object
    declares, and, where it was built by its registered name `registered_as` (None: an object
    given from Python), those registered for that name (a factory function registers them)."""
    declared = frozenset(backend.result_neutral_options)
    return declared if registered_as is None else declared | registered_neutral_options(registered_as)


def build_registered(kind: str, name: str, parameters: dict):
    """Call the factory registered as `name` of `kind` with `parameters`, naming unknown and
    missing ones (a `TypeError` the factory raises itself once they fit is the plugin's)."""
    registration = registry().get(kind, name)
    check_parameter_names(f"{kind} {name!r}", registration.obj, parameters, "parameter")
    return _built_with(registration, parameters, "parameter", "cannot be built with")


def call_plugin(registration: Registration, kind: str, call, what: str = "its factory", *,
                arguments_checked: bool = False):
    """`call()`, plugin code of `registration`: delgrad's own errors, `MemoryError` and Ctrl-C
    pass (and a `TypeError` when `arguments_checked` is False: bad arguments, for the caller to
    name); anything else becomes a `PluginError` naming the plugin, which the command line shows
    as one line rather than a traceback."""
    passing = (DelgradError, MemoryError, KeyboardInterrupt, GeneratorExit,
               *(() if arguments_checked else (TypeError,)))
    try:
        return call()
    except passing:
        raise
    except BaseException as exc:  # (SystemExit too: a plugin must not end the host as if it had succeeded)
        raise PluginError(f"{kind} {registration.name!r} from {registration.distribution!r}: {what} failed: "
                          f"{described(exc)}") from exc


def check_parameter_names(what: str, factory, parameters: dict, noun: str, skip: tuple = ()) -> None:
    """Refuse names `factory` does not take (unless it takes any keyword), listing those it takes
    (but those in `skip`, which the caller passes itself)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    allowed = [p.name for p in signature.parameters.values()
               if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in skip]
    refuse_unknown_options(what, parameters, allowed, noun)
