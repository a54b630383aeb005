"""Endpoints of the service: ``tcp://HOST:PORT`` or ``ipc://PATH``, checked before ZeroMQ
sees them (it hangs or answers "No such device" for many malformed ones), and, for a client of
a service at an address, whether the address can work at all (ZeroMQ waits without a word for
an ipc socket in a folder that does not exist and for a host name that does not resolve)."""

from __future__ import annotations

import os
import socket
import stat

from delgrad_core import BackendUnavailable, InvalidValueError

__all__ = ["check_address", "check_reachable", "refuse_relative_ipc"]


def check_address(address: str, field_name: str = "address", *, serving: bool = False) -> str:
    """`address` if it is ``tcp://HOST:PORT`` (port 1-65535, or 0 = any free port when
    serving; an IPv6 host in brackets) or ``ipc://PATH``; else an `InvalidValueError` naming
    `field_name` and the accepted forms."""
    expected = "tcp://HOST:PORT" + (" (port 0: any free port)" if serving else "") + " or ipc://PATH"
    if address.startswith("ipc://") and len(address) > len("ipc://"):
        return address
    if address.startswith("tcp://"):
        host, colon, port = address[len("tcp://"):].rpartition(":")
        low, number = (0 if serving else 1), _port_number(port)
        if colon and host and number is not None and low <= number <= 65535 and _host_ok(host, serving):
            return address
        if colon and number is not None and not low <= number <= 65535:
            raise InvalidValueError(f"{field_name}: the port must lie in {low}..65535, got {port} in {address!r}")
    raise InvalidValueError(f"{field_name}: expected {expected}, got {address!r}")


def _port_number(port: str) -> int | None:
    """The number `port` writes in ASCII digits (not '²', a digit to `str.isdigit`), at most
    65536 (a port of thousands of digits is not converted); None if it is not one."""
    if not (port.isascii() and port.isdigit()):
        return None
    digits = port.lstrip("0") or "0"
    return int(digits) if len(digits) <= 5 else 65536


def refuse_relative_ipc(address: str, field_name: str = "address") -> None:
    """Refuse an ``ipc://PATH`` whose PATH is relative, naming `field_name` and the absolute
    form: a run records its backend options as given, so evaluated or resumed from another
    folder it would reach another socket (Linux's abstract ``ipc://@NAME`` is no path)."""
    path = address[len("ipc://"):] if address.startswith("ipc://") else None
    if path is not None and not path.startswith(("/", "@")):
        raise InvalidValueError(f"{field_name}: {address} is relative to the current folder, and a run that records "
                                f"it would reach another socket from another folder; give the absolute path: "
                                f"ipc://{os.path.abspath(path)}")


def _host_ok(host: str, serving: bool) -> bool:
    """A name, an IPv4 address, an IPv6 address in brackets, or (to serve) * for every interface."""
    if host == "*":
        return serving
    if host.startswith("["):
        return host.endswith("]") and len(host) > 2
    return ":" not in host and "/" not in host and " " not in host


def check_reachable(address: str, field_name: str = "address") -> None:
    """Raise a `BackendUnavailable` (not retryable) naming `field_name` if no service can ever
    answer at `address` (well formed, see `check_address`) as a client connects to it: an
    ``ipc://PATH`` whose folder does not exist or is not a folder, or that is not a socket,
    or a ``tcp://HOST:PORT`` whose host name does not resolve (`socket.getaddrinfo` fails with
    `socket.gaierror`).

    Only definite answers count: a folder that cannot be looked at (permissions), a temporary
    failure of the name service (``EAI_AGAIN``) or any other error leaves the address to the
    client's waits and retries, which say at the end what they saw."""
    if address.startswith("ipc://"):
        path = address[len("ipc://"):]
        problem = None if path.startswith("@") else _ipc_problem(path, address)  # (@: Linux's abstract sockets)
        if problem is not None:
            raise BackendUnavailable(f"{field_name}: {problem[0]}, so no service can be listening there; check the "
                                     f"path (the service's --address){problem[1]}", retryable=False)
    if address.startswith("tcp://"):
        host = address[len("tcp://"):].rpartition(":")[0]
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host or host == "*":
            return
        try:
            socket.getaddrinfo(host, None)
        except socket.gaierror as exc:
            if exc.errno == socket.EAI_AGAIN:  # (the name service did not answer: it may next time)
                return
            why = f" ({exc.strerror})" if exc.strerror else ""
            raise BackendUnavailable(f"{field_name}: the host name {host!r} of {address} does not resolve{why}, so no "
                                     f"service can be reached there; check the name, or give the service's IP "
                                     f"address (e.g. tcp://127.0.0.1:PORT on this machine)", retryable=False) from None
        except (OSError, UnicodeError, ValueError):
            return


def _ipc_problem(path: str, address: str) -> tuple[str, str] | None:
    """(what is wrong, a further remedy) if no service can ever listen at ipc `path`: its folder
    is missing or not a folder, or the path is something else than a socket (a service refuses
    to serve there); None if one may (no socket yet: a service may come)."""
    folder = os.path.dirname(path) or "."
    try:
        folder_mode = os.stat(folder).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return f"the folder {folder} of {address} does not exist", ", or create the folder and start the service there"
    except (OSError, ValueError):
        return None
    if not stat.S_ISDIR(folder_mode):
        return f"{folder}, the folder of {address}, is not a folder", ""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if not stat.S_ISSOCK(mode):
        return f"{path} of {address} is not a socket (a file or folder, where no service serves)", ""
    return None
