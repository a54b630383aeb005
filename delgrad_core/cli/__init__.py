"""The ``delgrad`` command line: one click group, one module per command family, plus the
commands plugins register (`delgrad_core.hookspecs`, ``delgrad_register_commands``).

Every `DelgradError` (and every operating-system error such as a full disk, and running out of
memory) ends as a one-line message (one line per item of a list) and exit status 1, never a
traceback.  Ctrl-C, SIGTERM and SIGHUP end a command as Ctrl-C does (its resources released, its
hint printed), with status 128 + the signal's number (130 for Ctrl-C).
Warnings are printed as one "Warning: ..." line each (without Python's file and line), under a
progress bar, and left out where stderr cannot be written; a closed stdout or stderr (`2>&-`) is
taken as os.devnull.
With DELGRAD_DEBUG=1 errors are raised with their traceback instead (for developers).
"""

import contextlib
import copy
import io
import os
import re
import signal
import sys
import threading
import warnings

import click

__all__ = ["main", "interrupted_status", "stop_if_interrupted", "no_writes_once_stopped", "show_line", "show_warning"]


def _compact(exc: BaseException) -> str:
    """The message on one line; a message that lists items ("\n- ..." or indented "\n  - ...")
    keeps one line per item."""
    items = re.split(r"\n(?=[ \t]*- )", str(exc))
    return "\n".join(" ".join(item.split()) for item in items).strip() or type(exc).__name__


# handled like Ctrl-C, where the platform has them: signal -> the handler ours replaces
_STOP_SIGNALS = {"SIGINT": signal.default_int_handler, "SIGTERM": signal.SIG_DFL, "SIGHUP": signal.SIG_DFL}
_received: list[int] = []  # the signals that interrupted the command


def interrupted_status() -> int:
    """The exit status of a command ended by a signal: 128 + its number (130 for Ctrl-C)."""
    return 128 + int(_received[-1] if _received else signal.SIGINT)


def stop_if_interrupted() -> bool:
    """Raise `KeyboardInterrupt` if a stop signal came during this command (also one whose
    `KeyboardInterrupt` some code swallowed: CPython loses one raised inside certain C calls,
    e.g. while numpy.random is imported); else False.  A `should_stop` for long work."""
    if _received:
        raise KeyboardInterrupt
    return False


def no_writes_once_stopped():
    """A context in which no atomic write moves its file into place once a stop signal came
    (also one whose `KeyboardInterrupt` some code swallowed: `stop_if_interrupted` raises it
    there), for a command whose output is complete or not at all."""
    from delgrad_core._atomic import checked_before_commit

    return checked_before_commit(stop_if_interrupted)


def _interrupt(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def _quiet_lost_interrupts(previous):
    """A `sys.unraisablehook` that leaves out the `KeyboardInterrupt` of a stop signal lost in a
    callback (e.g. a weakref's: CPython prints it as "Exception ignored" with a traceback, and
    goes on; `stop_if_interrupted` acts on it) and passes anything else to `previous`."""
    def hook(unraisable):
        if not (issubclass(unraisable.exc_type, KeyboardInterrupt) and _received):
            previous(unraisable)
    return hook


@contextlib.contextmanager
def _stopping_like_ctrl_c():
    """While a command runs, Ctrl-C, SIGTERM and SIGHUP raise `KeyboardInterrupt` and are
    remembered (`stop_if_interrupted`); SIGTERM and SIGHUP so unwind a command like Ctrl-C
    (closing backends and local services, printing how to resume); a `KeyboardInterrupt` lost
    in a callback is not printed.  A handler set by others is kept; afterwards the process's
    handlers and state are as before (the command line also runs inside programs)."""
    _received.clear()
    _shown_warnings.clear()
    replaced, unraisable_hook = {}, sys.unraisablehook
    if threading.current_thread() is threading.main_thread():
        for name, default in _STOP_SIGNALS.items():
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) is default:
                replaced[number] = signal.signal(number, _interrupt)
    sys.unraisablehook = _quiet_lost_interrupts(unraisable_hook)
    try:
        yield
    finally:
        sys.unraisablehook = unraisable_hook
        for number, handler in replaced.items():
            signal.signal(number, handler)


_shown_warnings: set[str] = set()  # (texts shown by this command: `delgrad backends` does not repeat them)


def show_warning(text: str) -> None:
    """One "Warning: ..." line on stderr, once per text and command."""
    if text not in _shown_warnings:
        _shown_warnings.add(text)
        show_line(f"Warning: {text}")


def show_line(text: str) -> None:
    """`text` as a line on stderr, under a progress bar shown there (it went onto the bar's line);
    one that cannot be written (e.g. into a closed pipe: `2>&1 | head`) is left out, and the
    command goes on (a sweep ended, its runs lost)."""
    tqdm = sys.modules.get("tqdm")  # (its bars: only if it was imported)
    with contextlib.suppress(OSError, ValueError):  # (ValueError: a closed file)
        if tqdm is None:
            click.echo(text, err=True)
        else:
            tqdm.tqdm.write(text, file=sys.stderr)
            sys.stderr.flush()  # (tqdm does not: a buffered stderr, e.g. click < 8.2's test runner's, kept the line)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    show_warning(_compact(message))


@contextlib.contextmanager
def _compact_warnings():
    """Within: warnings are shown as "Warning: ..." lines (unless DELGRAD_DEBUG is set)."""
    with warnings.catch_warnings():
        if not os.environ.get("DELGRAD_DEBUG"):
            warnings.showwarning = _show_warning
        yield


def _stdout_closed() -> bool:
    """Whether standard output is a pipe or socket whose reader has gone (`delgrad ... | head`);
    False where that cannot be told."""
    import select

    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):  # (no poll, no descriptor)
        return False


def _stdout_to_devnull() -> None:
    """Standard output's file descriptor, from now on, writes to os.devnull (what is still
    buffered, and Python's flush at exit, go nowhere)."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _end_quietly_on_closed_stdout():
    """End the command as a closed pipe ends other tools (status 141, 128 + SIGPIPE), with no
    message."""
    _stdout_to_devnull()
    sys.exit(128 + getattr(signal, "SIGPIPE", 13))


def _flush_output(*, failed: bool) -> None:
    """Flush standard output as the command ends.  Where it cannot take what is buffered (a full
    disk), the rest goes to os.devnull, so that Python's own flush at exit does not fail again
    (status 120 and "Exception ignored"), and a command that had not `failed` fails with the
    error (status 1); a closed pipe ends it quietly (status 141)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_closed():
            _end_quietly_on_closed_stdout()
        _stdout_to_devnull()
        if not failed:
            show_line(f"Error: {_compact(exc)}")
            sys.exit(1)


class _Group(click.Group):
    """Turns delgrad's and the operating system's errors into one-line messages; finds the
    commands of plugins (looked up only for names that are not built in)."""

    def list_commands(self, ctx):
        from delgrad_core._errors import DelgradError
        from delgrad_core._plugins import registry

        try:  # (for --help, outside `invoke`: its warnings shown as there)
            with _compact_warnings():
                plugin_commands = registry().names("command")
        except DelgradError as exc:
            raise click.ClickException(_compact(exc)) from None
        return sorted(set(super().list_commands(ctx)) | set(plugin_commands))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None:
            from delgrad_core._plugins import registry

            with _compact_warnings():
                plugins = registry()
            if name in plugins.names("command"):
                registration = plugins.get("command", name)
                command = registration.obj
                if registration.description and not (command.short_help or command.help):  # (the one registered)
                    command = copy.copy(command)
                    command.short_help = registration.description
        return command

    def resolve_command(self, ctx, args):
        """As click's; a command of one of the project's own distributions that is not
        installed is named as such (not "No such command")."""
        from delgrad_core._plugins import provider_hint

        name = click.utils.make_str(args[0]) if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            hint = provider_hint("command", name)
            if hint and not ctx.resilient_parsing:
                ctx.fail(f"No such command {name!r}: it is not installed; {hint}")
        return super().resolve_command(ctx, args)

    def main(self, *args, **kwargs):
        """As click's, with a closed standard output or error (`2>&-`) taken as os.devnull, and
        standard output flushed before the command ends (`_flush_output`)."""
        _received.clear()  # (those of an earlier command in this process)
        with _closed_streams_to_devnull():
            try:
                result = super().main(*args, **kwargs)
            except SystemExit as exc:
                _flush_output(failed=exc.code not in (None, 0))
                raise
            _flush_output(failed=False)
            return result

    def make_context(self, info_name, args, parent=None, **extra):
        """As click's; writing --help or --version, and Ctrl-C, end as in a command."""
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx):
        with _one_line_errors(), _stopping_like_ctrl_c(), _compact_warnings(), _plugin_failures_named(ctx):
            return super().invoke(ctx)


@contextlib.contextmanager
def _plugin_failures_named(ctx):
    """Within: an exception of a plugin's command other than delgrad's, click's, the operating
    system's, `sys.exit` and Ctrl-C becomes a `PluginError` naming the plugin, shown as one line
    (a bug of the plugin's, not of delgrad's; a built-in command's keeps its traceback)."""
    from delgrad_core._errors import DelgradError, PluginError, described

    try:
        yield
    except (DelgradError, OSError, click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort,
            SystemExit, KeyboardInterrupt, MemoryError, GeneratorExit):
        raise
    except BaseException as exc:
        from delgrad_core._plugins import registry

        name = ctx.invoked_subcommand
        if name is None or name in ctx.command.commands or name not in registry().names("command"):
            raise
        registration = registry().get("command", name)
        raise PluginError(f"command {name!r} from {registration.distribution!r} failed: {described(exc)}") from exc


@contextlib.contextmanager
def _one_line_errors():
    """Within: delgrad's and the operating system's errors end as a one-line message (status 1),
    output into a closed pipe quietly (status 141), Ctrl-C as "interrupted" (status 130); an error
    while a command stops for a signal (e.g. writing its report to a terminal that hung up: SIGHUP)
    with the signal's status."""
    from delgrad_core._errors import DelgradError

    try:
        yield
    except (DelgradError, OSError) as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_closed():  # (`delgrad ... | head`)
            _end_quietly_on_closed_stdout()
        if os.environ.get("DELGRAD_DEBUG"):
            raise
        if _received and isinstance(exc.__context__, KeyboardInterrupt):  # (failed while it stopped)
            show_line(f"Error: {_compact(exc)}")  # (if it can be written)
            raise click.exceptions.Exit(interrupted_status()) from None
        raise click.ClickException(_compact(exc)) from None
    except MemoryError as exc:
        if os.environ.get("DELGRAD_DEBUG"):
            raise
        raise click.ClickException(f"out of memory ({_compact(exc)}); use smaller sizes or batches") from None
    except KeyboardInterrupt:
        show_line("\ninterrupted")
        raise click.exceptions.Exit(interrupted_status()) from None


@contextlib.contextmanager
def _closed_streams_to_devnull():
    """Within: sys.stdout and sys.stderr, where Python found them closed (None: `2>&-`), write to
    os.devnull (click wrote its errors to stdout then, and training failed); the closed file
    descriptors so stay taken, and no file the command opens gets one."""
    opened = {name: open(os.devnull, "w") for name in ("stdout", "stderr") if getattr(sys, name) is None}
    for name, stream in opened.items():
        setattr(sys, name, stream)
    try:
        yield
    finally:
        for name, stream in opened.items():
            if getattr(sys, name) is stream:
                setattr(sys, name, None)
            stream.close()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="delgrad")
def main():
    """Train spiking networks with exact gradients for weights and delays (DelGrad)."""


def _register_commands():
    """Import the command modules; each adds its commands to `main`."""
    from delgrad_core.cli import (  # noqa: F401
        _backends_cmd, _calibrate_cmd, _evaluate_cmd, _nir_cmd, _sweep_cmd, _train_cmd)


_register_commands()
