"""``delgrad hil``: serve a device, ask a service for its status or health, make a token."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys

import click

from delgrad_hil._limits import (MAX_LATENCY_S, MAX_REPLAY_WINDOW_S, MAX_SHUTDOWN_GRACE_S, MAX_TIMEOUT_S,
                                 MIN_REPLAY_WINDOW_S)

__all__ = ["hil"]


class _FiniteRange(click.FloatRange):
    """A float range that also refuses nan and inf (which `click.FloatRange` lets through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a finite number", param, ctx)
        return number


_FRACTION = _FiniteRange(min=0.0, max=1.0)


def _device_options(ctx, param, values) -> dict:
    from delgrad_core import InvalidValueError
    from delgrad_core.plugin_tools import parse_key_values

    try:
        return parse_key_values(values, "--device-option")
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _device_process(device: str | None, device_options: dict, log_level: int):
    """The device process of `serve`; a device or options it refuses are usage errors naming
    --device or --device-option."""
    from delgrad_core import InvalidValueError

    from delgrad_hil._device import device_name
    from delgrad_hil._device_process import DeviceProcess

    try:
        name = device_name(device)
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("device: "), param_hint="--device") from None
    try:
        return DeviceProcess(name, device_options, log_level=log_level)
    except InvalidValueError as exc:
        message, prefix = str(exc), f"backend {name!r}: "
        raise click.BadParameter(message if message.startswith(prefix) else prefix + message,
                                 param_hint="--device-option") from None


@click.group("hil")
def hil():
    """Mock hardware-in-the-loop: a device service and its clients (docs/hil.md)."""


@hil.command()
@click.option("--device", help="Registered backend the service owns.  [default: bss2-emulator if installed]")
@click.option("--device-option", "device_options", multiple=True, metavar="KEY=VALUE", callback=_device_options,
              help="Option of the device (repeatable); VALUE is read as JSON when it can be, e.g. chip=3.")
@click.option("--address", default="tcp://127.0.0.1:5555", show_default=True,
              help="ZeroMQ endpoint to serve on (port 0: any free port, printed at start).")
@click.option("--token-file", type=click.Path(dir_okay=False),
              help="File holding the shared token.  [default: $DELGRAD_HIL_TOKEN]")
@click.option("--max-message-mb", type=_FiniteRange(min=0.01, max=1e6), default=128.0, show_default=True,
              help="Larger requests are answered 'too_large' (0.01 to 1e6).")
@click.option("--max-queue", type=click.IntRange(min=1), default=16, show_default=True,
              help="Jobs queued per client (more are answered 'busy').")
@click.option("--cache-entries", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Finished jobs whose results are kept for retries.")
@click.option("--cache-mb", type=_FiniteRange(min=0.0, max=1e9), default=256.0, show_default=True,
              help="Bound of the result cache.")
@click.option("--replay-window-s", type=_FiniteRange(min=MIN_REPLAY_WINDOW_S, max=MAX_REPLAY_WINDOW_S), default=60.0,
              show_default=True,
              help="Messages sent further from the service's clock are refused (from 1 s: messages take time to "
                   "arrive; at most one hour: the nonces of the window are remembered).")
@click.option("--shutdown-grace-s", type=_FiniteRange(min=0.0, max=MAX_SHUTDOWN_GRACE_S), default=30.0,
              show_default=True,
              help="On SIGTERM/SIGHUP/SIGINT, how long the jobs at the device may take to finish (at most one week).")
@click.option("--latency-s", type=_FiniteRange(min=0.0, max=MAX_LATENCY_S), default=0.0,
              help="Fault: delay every reply (at most one hour).")
@click.option("--drop-fraction", type=_FRACTION, default=0.0, help="Fault: drop this fraction of job replies.")
@click.option("--corrupt-fraction", type=_FRACTION, default=0.0,
              help="Fault: flip a byte in this fraction of job replies, after signing.")
@click.option("--busy-fraction", type=_FRACTION, default=0.0,
              help="Fault: answer this fraction of job requests 'busy'.")
@click.option("--exit-after-jobs", type=click.IntRange(min=1), help="Fault: exit after running this many jobs.")
@click.option("--fault-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the fault decisions.")
@click.option("--parent-pid", type=int, hidden=True, help="Exit when this process is gone (local services).")
@click.option("--log-file", type=click.Path(dir_okay=False), hidden=True,
              help="The log file the parent made for this service: removed when the parent is gone.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def serve(device, device_options, address, token_file, max_message_mb, max_queue, cache_entries, cache_mb,
          replay_window_s, shutdown_grace_s, latency_s, drop_fraction, corrupt_fraction, busy_fraction,
          exit_after_jobs, fault_seed, parent_pid, log_file, log_level):
    """Serve a device to mock-hil clients until SIGTERM, SIGHUP or Ctrl-C.

    Every message must be signed with the shared token ($DELGRAD_HIL_TOKEN or --token-file).
    """
    from delgrad_core import BackendUnavailable

    from delgrad_hil._device_process import LOG_FORMAT
    from delgrad_hil._faults import FaultPlan
    from delgrad_hil._service import DeviceService, raise_open_file_limit
    from delgrad_hil._supervisor import READY_PREFIX, watch_parent

    address = _checked_address(address, serving=True)
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format=LOG_FORMAT)
    log = logging.getLogger("delgrad_hil.service")
    open_files = raise_open_file_limit()
    log.debug("up to %d open files (each connection takes one)", open_files)
    if parent_pid is not None:
        watch_parent(parent_pid, leftovers=[log_file] if log_file else [])
    signer = _signer(token_file)
    faults = FaultPlan(latency_s, drop_fraction, corrupt_fraction, busy_fraction, exit_after_jobs, fault_seed)
    target = _device_process(device, device_options, getattr(logging, log_level.upper()))
    try:  # (the device process ends with this command, however it ends)
        service = DeviceService(target, signer, address, faults=faults,
                                max_message_bytes=int(max_message_mb * 2**20), replay_window_s=replay_window_s,
                                shutdown_grace_s=shutdown_grace_s, max_queued_per_client=max_queue,
                                cache_entries=cache_entries, cache_bytes=int(cache_mb * 2**20))

        def on_signal(signum, frame):
            if service.stop_requested:  # at once: what a graceful stop would clean up goes now
                service.remove_socket_file()
                target.kill()
                os._exit(128 + signum)
            log.info("signal %d: stopping gracefully (send it again to stop at once)", signum)
            service.request_stop()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # (SIGHUP: its terminal or session ended)
            if signum != signal.SIGHUP or signal.getsignal(signum) is not signal.SIG_IGN:  # (nohup: keep serving)
                signal.signal(signum, on_signal)
        if not service.address.startswith(("tcp://127.", "tcp://[::1]", "ipc://")):
            log.warning("serving beyond this machine on %s: messages are signed, not encrypted", service.address)
        if faults.injecting:
            log.warning("injecting faults: %s", faults.to_dict())
        elif faults.active:
            log.warning("--fault-seed %d has no effect: no fault is injected", faults.seed)
        if sys.stdout is not None:  # (None: started with its standard output closed, as by some launchers)
            click.echo(READY_PREFIX + service.address)
            sys.stdout.flush()
            if sys.stderr is not None:
                os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # (a supervisor reads the ready line only)
        service.serve()
    finally:
        target.close()  # (closed already after a graceful stop)
    if service.device_lost:
        raise BackendUnavailable(f"{service.device_lost}: the service stopped")


def _checked_address(address: str, *, serving: bool = False) -> str:
    from delgrad_core import InvalidValueError

    from delgrad_hil._address import check_address

    try:
        return check_address(address, "--address", serving=serving)
    except InvalidValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--address: "), param_hint="--address") from None


def _signer(token_file):
    """The signer of the token in `token_file`, else in $DELGRAD_HIL_TOKEN; a file that gives
    none is a usage error naming --token-file."""
    from delgrad_core import InvalidValueError

    from delgrad_hil._auth import Signer, load_token

    try:
        return Signer(load_token(token_file=token_file))
    except InvalidValueError as exc:
        if token_file is None:
            raise
        raise click.BadParameter(str(exc).removeprefix("token_file").removeprefix(":").strip(),
                                 param_hint="--token-file") from None


def _client(address: str, token_file, timeout_s: float):
    from delgrad_hil._client import ServiceClient, new_client_id

    return ServiceClient(_checked_address(address), _signer(token_file), new_client_id(),
                         timeout_s=timeout_s, attempts=1, field_name="--address")


_ADDRESS = click.option("--address", default="tcp://127.0.0.1:5555", show_default=True, help="The service.")
_TOKEN_FILE = click.option("--token-file", type=click.Path(dir_okay=False),
                           help="File holding the shared token.  [default: $DELGRAD_HIL_TOKEN]")
_TIMEOUT = click.option("--timeout-s", type=_FiniteRange(min=0.0, min_open=True, max=MAX_TIMEOUT_S), default=5.0,
                        show_default=True, help="How long to wait for the answer (at most one day).")


@hil.command()
@_ADDRESS
@_TOKEN_FILE
@_TIMEOUT
@click.option("--executions", is_flag=True, help="Include how often each job id ran on the device.")
def status(address, token_file, timeout_s, executions):
    """Print a service's status as JSON (queues, jobs run, cache, faults, uptime, device)."""
    client = _client(address, token_file, timeout_s)
    try:
        info = client.request("status", {"executions": executions}, expect="status").header["info"]
    finally:
        client.close()
    click.echo(json.dumps(info, indent=2, sort_keys=True))


@hil.command()
@_ADDRESS
@_TOKEN_FILE
@_TIMEOUT
def health(address, token_file, timeout_s):
    """Exit 0 if the service answers (printing its device and uptime), else 1."""
    client = _client(address, token_file, timeout_s)
    try:
        info = client.request("health", expect="health").header["info"]
    finally:
        client.close()
    state = "stopping" if info.get("stopping") else "ok"
    click.echo(f"{state}: device {info.get('device')!r} at {address}, up {info.get('uptime_s', 0.0):.1f} s")


@hil.command("new-token")
@click.argument("path", type=click.Path(dir_okay=False))
def new_token(path):
    """Write a fresh random token to PATH (a new file readable by its owner only)."""
    from delgrad_core import InvalidValueError
    from delgrad_hil._auth import write_token_file

    if not path.strip():
        raise click.BadParameter("expected a file name, got an empty one", param_hint="'PATH'")
    try:
        written = write_token_file(path)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; the token in it is kept (remove it to make a new one)") from None
    except InvalidValueError as exc:  # (a usage error, as click's own refusal of a folder)
        raise click.BadParameter(str(exc), param_hint="'PATH'") from None
    click.echo(f"wrote a new token to {written}; start the service with --token-file {written} and give clients "
               f"token_file={written}")
