"""pytest plugin of the backend conformance suite (registered through the "pytest11" entry point).

Adds ``--delgrad-backend NAME`` (default: $DELGRAD_BACKEND, else "reference") and repeatable
``--delgrad-backend-option KEY=VALUE`` (VALUE parsed as JSON when possible), and the session
fixture ``delgrad_backend`` (built once per session, closed at its end).  Run the suite with::

    python -m pytest --pyargs delgrad_core.testing --delgrad-backend NAME

The cases are generated from the named backend's capabilities, so only registered backends
can be tested (a conftest overriding the fixture with another backend is refused).  This
module imports nothing of delgrad until the fixture is used, so installing delgrad costs
unrelated pytest runs nothing.
"""

from __future__ import annotations

import os
import weakref

import pytest

__all__ = ["pytest_addoption", "pytest_collection_modifyitems", "pytest_terminal_summary", "backend_under_test",
           "delgrad_backend", "parse_backend_options", "selected_backend"]

# The backend `backend_under_test` built, per pytest config (not pytest's stash, new in pytest 7:
# this module is loaded into every pytest run on a machine with delgrad, of any pytest version).
_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SUITE = "delgrad_core.testing.test_conformance"  # (the module of the suite's checks)


def pytest_addoption(parser):
    group = parser.getgroup("delgrad", "delgrad backend conformance suite")
    group.addoption(
        "--delgrad-backend",
        default=None,
        metavar="NAME",
        help="registered backend to test (default: $DELGRAD_BACKEND, else 'reference')",
    )
    group.addoption(
        "--delgrad-backend-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option passed to the backend factory; VALUE is parsed as JSON if it can be",
    )


def parse_backend_options(items) -> dict:
    """{'dt': 0.01} from ['dt=0.01']; values that are not JSON stay strings."""
    from delgrad_core._errors import InvalidValueError
    from delgrad_core._options import parse_key_values

    try:
        return parse_key_values(items, "--delgrad-backend-option")
    except InvalidValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def selected_backend(config) -> tuple[str, dict]:
    """(name, options) of the backend under test, from the command line or the environment.

    An empty name (``--delgrad-backend ""``, or ``DELGRAD_BACKEND`` set but empty, as a CI script
    with an unset variable gives) is refused: taking the default would test another backend."""
    name, given_as = config.getoption("delgrad_backend"), "--delgrad-backend"
    if name is None:
        name, given_as = os.environ.get("DELGRAD_BACKEND"), "$DELGRAD_BACKEND"
    if name is None:
        name = "reference"
    elif not name.strip():
        raise pytest.UsageError(f"{given_as} is empty: name the backend to test (e.g. reference), or leave "
                                f"{given_as} out to test the default 'reference'")
    return name, parse_backend_options(config.getoption("delgrad_backend_option"))


def _build_failure(exc: Exception) -> str:
    """delgrad's own errors name the backend and the cause; anything else plugin code raised gets its type."""
    from delgrad_core._errors import DelgradError

    return str(exc) if isinstance(exc, DelgradError) else f"building the backend failed: {type(exc).__name__}: {exc}"


def backend_under_test(config):
    """The selected backend, built once per session and closed at its end.  A factory that
    raises is one usage error naming the backend and the exception (the suite builds the backend
    while collecting, so that this is not one error per test)."""
    if config not in _BACKENDS:
        from delgrad_core import get_backend

        name, options = selected_backend(config)
        _refuse_a_name_clash(name)
        try:
            backend = get_backend(name, **options)
        except Exception as exc:  # plugin code may raise anything
            raise pytest.UsageError(f"--delgrad-backend {name}: {_build_failure(exc)}") from None
        _BACKENDS[config] = backend
        config.add_cleanup(backend.close)  # (if no test used the fixture, e.g. --collect-only)
    return _BACKENDS[config]


def _refuse_a_name_clash(name: str) -> None:
    """A usage error if two distributions register backend `name`: the suite would test the one
    kept (the first by distribution name), which may not be the one meant."""
    from delgrad_core._plugins import registry

    table = registry()
    ignored = table.ignored.get(("backend", name))
    if ignored:
        kept = table.get("backend", name)
        others = ", ".join(f"{r.distribution!r} {r.version}".rstrip() for r in ignored)
        raise pytest.UsageError(f"--delgrad-backend {name}: two distributions register backend {name!r}: "
                                f"{kept.distribution!r} {kept.version} (kept) and {others} (ignored); the suite "
                                "would test the kept one: uninstall the other, or rename one backend")


def _origin(name: str) -> str:
    """Where registered backend `name` comes from: " from distribution D V" ('' if unknown)."""
    from delgrad_core._plugins import registry

    try:
        registration = registry().get("backend", name)
    except LookupError:
        return ""
    return f" from distribution {registration.distribution!r} {registration.version}".rstrip()


def pytest_collection_modifyitems(session, config, items):
    """Refuse a `delgrad_backend` fixture defined for the suite's checks by a conftest or test
    module (of any scope): the suite's cases are made from the backend named on the command line,
    and a function-scoped override ended in pytest's ScopeMismatch errors, one per check."""
    for item in items:
        if getattr(getattr(item, "function", None), "__module__", None) != _SUITE:  # (others' tests are theirs)
            continue
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}).get("delgrad_backend")
        overriding = [definition for definition in definitions or ()
                      if getattr(getattr(definition, "func", None), "__module__", __name__) != __name__]
        if overriding:
            where = getattr(overriding[-1].func, "__module__", "a conftest")
            raise pytest.UsageError(f"the delgrad_backend fixture is defined again in {where}: the conformance suite "
                                    "tests registered backends only, built from --delgrad-backend NAME and "
                                    "--delgrad-backend-option (install yours as a plugin and name it there)")


def pytest_terminal_summary(terminalreporter, config):
    """Name the backend the suite tested (the test ids do not), where it comes from and how it
    asked to be judged."""
    if config in _BACKENDS:
        name, options = selected_backend(config)
        shown = f" with options {options}" if options else ""
        terminalreporter.write_line(f"delgrad conformance suite: tested backend {name!r}{_origin(name)}{shown}")
        for line in _judged_by(_BACKENDS[config]) + _skipped_for_resources(terminalreporter.stats):
            terminalreporter.write_line(f"  {line}")


def _skipped_for_resources(stats: dict) -> list[str]:
    """A line saying how many checks the backend's lack of resources skipped, if any (a run that
    passes with most of them skipped checked little), and whether no agreement check ran."""
    def ran(outcome):
        return [report.nodeid for report in stats.get(outcome, ()) if getattr(report, "when", "call") == "call"]

    skipped = [report for report in stats.get("skipped", ())
               if isinstance(report.longrepr, tuple) and "for lack of resources" in str(report.longrepr[-1])]
    if not skipped:
        return []
    total = len(ran("passed")) + len(ran("failed")) + len(stats.get("skipped", ()))
    compared = any("test_agreement_with_reference" in nodeid for nodeid in ran("passed") + ran("failed"))
    return [f"{len(skipped)} of {total} checks skipped: the backend refused their networks for lack of resources"
            + ("" if compared else " (no agreement check ran: it was not compared with the reference model; give "
                                   "it options with more resources)")]


def _judged_by(backend) -> list[str]:
    """The tolerances the backend's profile sets away from the defaults (those that judge it),
    and the checks it declares unsupported (a reviewer of a passing run should see them)."""
    from delgrad_core import ConformanceProfile

    try:
        profile, exact = backend.conformance_profile(), backend.capabilities.exact
    except Exception:  # (plugin code may raise anything: the tests report it)
        return []
    if not isinstance(profile, ConformanceProfile):
        return []
    default = ConformanceProfile()
    names = ("exact_tolerance", "max_median_error") if exact else \
        ("max_median_error", "min_silence_agreement", "causality_tolerance")  # (max_median_error: arrivals too)
    loosened = [f"{name} {getattr(profile, name):g} (default {getattr(default, name):g})" for name in names
                if getattr(profile, name) != getattr(default, name)]
    lines = ([f"judged {'exactly' if exact else 'statistically'}, with its own " + ", ".join(loosened)]
             if loosened else [])
    return lines + [f"declares {check!r} unsupported, skipped: {reason}"
                    for check, reason in profile.unsupported.items()]


@pytest.fixture(scope="session")
def delgrad_backend(request):
    """The backend under test, built by name through the plugin registry; closed at the end."""
    with backend_under_test(request.config) as backend:
        yield backend
