"""Requests to a service, made reliable on the client side ("Lazy Pirate", ZeroMQ guide ch. 4).

Each attempt sends the request as a new signed message (fresh nonce) and waits up to a
timeout for its reply.  No reply, a reply that fails its signature check (corrupted) or a
"try again" answer (busy, shutting down) ends the attempt: the socket is closed and reopened
(a socket never holds a stale reply), the client waits with exponential backoff and jitter,
restarts a local service that has ended, and sends the same job again; the service's job ids
and result cache make that safe (a job runs once).  When the attempts are used up the error
says what happened: `ExecutionTimeout` if the service still answers (the job is too slow),
`BackendUnavailable` if nothing answers.  A refused token is never retried.
"""

from __future__ import annotations

import os
import random
import threading
import time

import zmq

import delgrad_core
from delgrad_core import BackendError, BackendUnavailable, ExecutionTimeout

from delgrad_hil._protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Message,
    ProtocolError,
    decode,
    encode,
    new_header,
    read_unverified_error,
)
from delgrad_hil._service import BACKSTOP_BYTES

__all__ = ["ServiceClient", "new_client_id"]

# device errors the client raises as themselves (the service names the class); others: BackendError
_DEVICE_ERRORS = ("BackendError", "BackendUnavailable", "ExecutionTimeout", "CalibrationError", "InvalidResultError",
                  "InvalidValueError", "UnsupportedNetworkError", "FileFormatError")
_POLL_SLICE_S = 0.05  # how often a wait checks that a local service is still alive
_REPLY_SIZE_FACTOR = 4  # replies (results with arrival times) may be larger than the largest request


def new_client_id() -> str:
    """A client identity unique to this process and object: host-pid-random."""
    return f"{os.uname().nodename[:40]}-{os.getpid()}-{os.urandom(4).hex()}".replace("_", "-")


def _device_error(header: dict, where: str) -> BackendError:
    name, message = header.get("error_class"), f"{where}: {header['message']}"
    if name == "UnsupportedNetworkError":
        return delgrad_core.UnsupportedNetworkError(message, capability=header.get("capability") or "resources")
    error = getattr(delgrad_core, name)(message) if name in _DEVICE_ERRORS else BackendError(message)
    error.retryable = bool(header["retryable"])
    return error


class ServiceClient:
    """Signed requests to one service with timeouts and retries.

    Parameters
    ----------
    address : str
        The service's endpoint (taken from `service` instead, if given).
    signer : Signer
    client_id : str
        This client's identity: the service keeps one queue and one result cache per identity.
    timeout_s : float
        How long one attempt waits for its reply.
    attempts : int
        Attempts per request (1 = no retries).
    backoff_s, max_backoff_s : float
        Wait before the second attempt, doubled each time up to the maximum; each wait is drawn
        uniformly from [w/2, w] (jitter, so clients that failed together do not retry together).
    service : LocalService, optional
        A service this client owns: a wait stops as soon as its process has ended, and it is
        restarted before the next attempt.
    """

    def __init__(self, address: str | None, signer, client_id: str, *, timeout_s: float = 10.0, attempts: int = 5,
                 backoff_s: float = 0.05, max_backoff_s: float = 2.0, service=None):
        self._address = address
        self.signer = signer
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.service = service
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES  # until the service says otherwise
        self.retries = 0  # attempts beyond the first, over the client's lifetime
        self._context = zmq.Context()
        self._socket = None
        self._lock = threading.Lock()
        self._jitter = random.Random()

    @property
    def address(self) -> str:
        return self.service.address if self.service is not None else self._address

    def close(self) -> None:
        self._close_socket()
        self._context.term()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _open_socket(self):
        if self._socket is None:
            socket = self._context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.MAXMSGSIZE, _REPLY_SIZE_FACTOR * self.max_message_bytes + BACKSTOP_BYTES)
            socket.connect(self.address)
            self._socket = socket
        return self._socket

    def request(self, message_type: str, fields: dict | None = None, payload: bytes | None = None, *,
                expect: str, timeout_s: float | None = None, what: str | None = None) -> Message:
        """Send a request until its reply of type `expect` arrives; raise a `BackendError`
        saying why not otherwise.  `what` names the request in messages (e.g. "job 3fa2...")."""
        size = len(payload or b"")
        if size > self.max_message_bytes:
            raise BackendError(f"a {message_type} message of {size / 2**20:.1f} MiB is above the service's limit of "
                               f"{self.max_message_bytes / 2**20:.1f} MiB (delgrad hil serve --max-message-mb)")
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        what = what or f"the {message_type} request"
        with self._lock:
            started, problems = time.monotonic(), []
            for attempt in range(1, self.attempts + 1):
                if attempt > 1:
                    self.retries += 1
                    ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 2))
                    time.sleep(self._jitter.uniform(ceiling / 2, ceiling))
                if self.service is not None:
                    self.service.ensure_running()
                header = new_header(message_type, client=self.client_id, **(fields or {}))
                self._open_socket().send_multipart(encode(self.signer, header, payload), copy=False)
                reply, problem = self._await(header["nonce"], expect, timeout_s)
                if reply is not None:
                    return reply
                problems.append(problem)
            raise self._exhausted(what, problems[-1], time.monotonic() - started)

    def _await(self, nonce: bytes, expect: str, timeout_s: float) -> tuple[Message | None, tuple]:
        """(reply, None), or (None, (kind, text)) saying what went wrong in this attempt: kind
        "silent" (no reply) or "refused" (a corrupted reply or a "try again" answer)."""
        deadline = time.monotonic() + timeout_s
        socket = self._socket
        while (remaining := deadline - time.monotonic()) > 0:
            slice_s = remaining if self.service is None else min(remaining, _POLL_SLICE_S)
            if not socket.poll(int(slice_s * 1000) + 1):
                if self.service is not None and not self.service.alive:
                    self._close_socket()
                    return None, ("silent", "the local service ended")
                continue
            frames = socket.recv_multipart()
            try:
                reply = decode(frames, self.signer, max_message_bytes=_REPLY_SIZE_FACTOR * self.max_message_bytes,
                               replies=True)
            except ProtocolError:
                refusal = read_unverified_error(frames)
                if refusal is not None and refusal["code"] == "bad_signature":
                    raise self._token_refused() from None
                self._close_socket()
                return None, ("refused", "a reply failed its signature check (corrupted)")
            if reply.header["reply_to"] not in (nonce, None):
                continue  # the answer to an earlier message
            if reply.type == "error":
                return None, ("refused", self._retryable_error(reply.header))
            if reply.type != expect:
                raise ProtocolError("malformed", f"the service at {self.address} answered {reply.type!r} "
                                                 f"to a request for {expect!r}")
            return reply, None
        self._close_socket()
        return None, ("silent", f"no answer within {timeout_s:g} s")

    def _token_refused(self) -> BackendUnavailable:
        return BackendUnavailable(f"the service at {self.address} refused the token (check $DELGRAD_HIL_TOKEN or "
                                  f"the token file)", retryable=False)

    def _retryable_error(self, header: dict) -> str:
        """The text of a "try again" error answer; any other error answer is raised."""
        where, code = f"the service at {self.address}", header["code"]
        if code == "bad_signature":
            raise self._token_refused()
        if code == "device_error":
            error = _device_error(header, where)
        else:
            error = ProtocolError(code, f"{where} refused the request: {header['message']}",
                                  retryable=header["retryable"])
        if not error.retryable:
            raise error
        return f"{code}: {header['message']}"

    def _exhausted(self, what: str, problem: tuple, elapsed_s: float) -> BackendError:
        kind, text = problem
        counted = f"after {self.attempts} attempt{'s' * (self.attempts > 1)} ({elapsed_s:.1f} s)"
        if kind == "refused":
            return BackendUnavailable(f"{what} failed at {self.address} {counted}; last: {text}")
        if self._answers_health():
            return ExecutionTimeout(f"the service at {self.address} answers, but {what} got no reply {counted} "
                                    f"(timeout {self.timeout_s:g} s per attempt; raise timeout_s for slow jobs)")
        return BackendUnavailable(f"no answer from {self.address} {counted}")

    def _answers_health(self) -> bool:
        """One quick health request: does the service answer at all?"""
        header = new_header("health", client=self.client_id)
        try:
            self._open_socket().send_multipart(encode(self.signer, header))
            reply, _ = self._await(header["nonce"], "health", min(self.timeout_s, 1.0))
        except BackendError:
            return False
        finally:
            self._close_socket()
        return reply is not None
