"""Endpoints of the service: ``tcp://HOST:PORT`` or ``ipc://PATH``, checked before ZeroMQ
sees them (it hangs or answers "No such device" for many malformed ones)."""

from __future__ import annotations

from delgrad_core import InvalidValueError

__all__ = ["check_address"]


def check_address(address: str, field_name: str = "address", *, serving: bool = False) -> str:
    """`address` if it is ``tcp://HOST:PORT`` (port 1-65535, or 0 = any free port when
    serving; an IPv6 host in brackets) or ``ipc://PATH``; else an `InvalidValueError` naming
    `field_name` and the accepted forms."""
    expected = "tcp://HOST:PORT" + (" (port 0: any free port)" if serving else "") + " or ipc://PATH"
    if address.startswith("ipc://") and len(address) > len("ipc://"):
        return address
    if address.startswith("tcp://"):
        host, colon, port = address[len("tcp://"):].rpartition(":")
        low = 0 if serving else 1
        if colon and host and port.isdigit() and low <= int(port) <= 65535 and _host_ok(host, serving):
            return address
        if colon and port.isdigit() and not low <= int(port) <= 65535:
            raise InvalidValueError(f"{field_name}: the port must lie in {low}..65535, got {port} in {address!r}")
    raise InvalidValueError(f"{field_name}: expected {expected}, got {address!r}")


def _host_ok(host: str, serving: bool) -> bool:
    """A name, an IPv4 address, an IPv6 address in brackets, or (to serve) * for every interface."""
    if host == "*":
        return serving
    if host.startswith("["):
        return host.endswith("]") and len(host) > 2
    return ":" not in host and "/" not in host and " " not in host
