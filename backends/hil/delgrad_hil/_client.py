"""Requests to a service, made reliable on the client side ("Lazy Pirate", ZeroMQ guide ch. 4).

Each attempt sends the request as a new signed message (fresh nonce) and waits for its reply.
Silence for `timeout_s` (the service does not answer, not even a probe asking how a long job
is doing), a result that went missing (the service says the job finished, or does not know
it), a reply that fails its signature check (corrupted) or a "try again" answer (busy,
shutting down) ends the attempt: the socket is closed and reopened where it may hold a stale
reply, the client waits with exponential backoff and jitter, restarts a local service that has
ended, and sends the same job again; the service's job ids and result cache make that safe (a
job runs once).  A job sent again is probed just before, so that the attempt learns whether the
service holds its result already (and its size: a reply counts only once it has arrived whole).
A job that is still queued or running when its own time is up raises `ExecutionTimeout`;
attempts used up raise `BackendUnavailable` saying what happened last.  A refused token is never
retried.  "Try again" answers come at once for as long as their cause lasts: they count as
attempts only once they have come for as long as a silent service is given.
"""

from __future__ import annotations

import math
import os
import random
import socket
import threading
import time
import weakref

import zmq

from delgrad_core import BackendError, BackendUnavailable, ExecutionTimeout

from delgrad_hil._address import check_reachable
from delgrad_hil._protocol import (
    CLIENT_ID,
    DEFAULT_MAX_MESSAGE_BYTES,
    REPLY_SIZE_FACTOR,
    Message,
    ProtocolError,
    decode,
    device_error,
    encode,
    new_header,
    read_unverified_error,
    reply_limit,
)
from delgrad_hil._service import BACKSTOP_BYTES

__all__ = ["ServiceClient", "new_client_id"]

_POLL_SLICE_S = 0.05  # how often a wait checks that a local service is still alive
_MAX_DOUBLINGS = 1023  # of backoff_s, at most (2.0 ** 1023 is the largest power of two a float holds)
_SMALL_TIMEOUT_S = 0.01  # below this, "no answer" more likely means a timeout too small for any answer
_TRY_AGAIN = ("shutting_down:", "busy:")  # answers of a service that is there, to wait out


def _unresolved_host(address: str) -> str:
    """'; the host name H does not resolve' for a tcp address whose host has no address (ZeroMQ
    then waits without a word), else ''."""
    if not address.startswith("tcp://"):
        return ""
    host = address[len("tcp://"):].rpartition(":")[0].strip("[]")
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return f"; the host name {host!r} does not resolve"
    return ""


def _size_text(n_bytes: int) -> str:
    """'16.2 MB', or '812 bytes' below 0.1 MB."""
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes:,} bytes"


def new_client_id() -> str:
    """A client identity unique to this process and object: host-pid-random, the host name's
    characters outside the protocol's `CLIENT_ID_RULE` replaced by "-"."""
    host = "".join(letter if CLIENT_ID.fullmatch(letter) else "-" for letter in os.uname().nodename[:40])
    return f"{host}-{os.getpid()}-{os.urandom(4).hex()}"


class _ZmqResources:
    """A client's ZeroMQ context and its one socket (or None), released in that order."""

    def __init__(self):
        self.context, self.socket = zmq.Context(), None

    def close_socket(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None

    def release(self) -> None:
        self.close_socket()
        self.context.term()


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
        How long the client waits for any answer before it gives up the attempt (a job is
        probed after half of it; a reply counts only once it has arrived whole).
    attempts : int
        Attempts per request (1 = no retries).
    backoff_s, max_backoff_s : float
        Wait before the second attempt, doubled each time up to the maximum; each wait is drawn
        uniformly from [w/2, w] (jitter, so clients that failed together do not retry together).
    service : LocalService, optional
        A service this client owns: a wait stops as soon as its process has ended, and it is
        restarted before the next attempt.
    field_name : str
        How the user gave `address` (e.g. "--address"), named when it cannot work.

    Without `service`, an `address` that no service can ever answer at (an ipc socket in a
    folder that does not exist, a host name that does not resolve) raises a `BackendUnavailable`
    at once, instead of after `attempts` x `timeout_s` of silence.  A local service's address is
    the one it serves on, and is not checked.
    """

    def __init__(self, address: str | None, signer, client_id: str, *, timeout_s: float = 5.0, attempts: int = 5,
                 backoff_s: float = 0.05, max_backoff_s: float = 2.0, service=None, field_name: str = "address"):
        if service is None:
            check_reachable(address, field_name)
        self._address = address
        self.signer = signer
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.service = service
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES  # until the service says otherwise
        self.max_queue: int | None = None  # jobs the service queues per client, once it says (older ones do not)
        self.retries = 0  # attempts beyond the first, over the client's lifetime
        self._zmq = _ZmqResources()
        # (closed when the client is collected, before its context: a client in a reference cycle, e.g.
        # held by a trainer nobody closed, was collected in any order, and the context's own finaliser
        # then waited for ever for a socket not yet closed)
        self._release = weakref.finalize(self, self._zmq.release)
        self._lock = threading.Lock()
        self._jitter = random.Random()

    @property
    def address(self) -> str:
        return self.service.address if self.service is not None else self._address

    def close(self) -> None:
        self._release()

    def _close_socket(self) -> None:
        self._zmq.close_socket()

    def _open_socket(self):
        if self._zmq.socket is None:
            socket = self._zmq.context.socket(zmq.DEALER)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.MAXMSGSIZE, reply_limit(self.max_message_bytes) + BACKSTOP_BYTES)
            socket.setsockopt(zmq.IPV6, self.address.startswith("tcp://["))
            try:
                socket.connect(self.address)
            except zmq.ZMQError as exc:  # (a socket left open would hang close())
                socket.close(linger=0)
                raise BackendUnavailable(f"cannot connect to {self.address}: {zmq.strerror(exc.errno)}",
                                         retryable=False) from None
            self._zmq.socket = socket
        return self._zmq.socket

    def request(self, message_type: str, fields: dict | None = None, payload: bytes | None = None, *,
                expect: str, job_timeout_s: float | None = None, what: str | None = None) -> Message:
        """Send a request until its reply of type `expect` arrives; raise a `BackendError`
        saying why not otherwise.  `what` names the request in messages (e.g. "job 3fa2...").

        A job (`job_timeout_s` given; `fields` hold its "job" id) may take up to `job_timeout_s`:
        after `timeout_s` without its result the client asks the service for the job's state,
        keeps waiting while it is queued or running, and sends the job again when its result
        was lost (dropped) or the service does not know it (restarted).
        """
        job_deadline = None if job_timeout_s is None else time.monotonic() + job_timeout_s
        with self._lock:
            return self._request(message_type, fields, payload, expect, job_deadline,
                                 what or f"the {message_type} request")

    def request_many(self, jobs, *, expect: str, depth: int, job_timeout_s: float, receive=None) -> list:
        """The replies (of type `expect`) to several jobs, in order, with up to `depth` of them
        in flight at once (at most `max_queue`: the service refuses more as busy), so that the
        service runs one while the next travels.

        `jobs` are callables giving a job's (message_type, fields, payload, what); each is
        called when its job is first sent.  `receive(index, reply)`, if given, is applied to each
        reply as it arrives (while later jobs run) and its value takes the reply's place.  The first
        trouble (a silence of `timeout_s`, a corrupted reply, a "try again" answer) ends the
        overlap for the jobs then in flight: the socket is reopened and each of them goes
        through `request`'s retries on its own (the same job ids, so none runs twice); the
        rest are overlapped again.  An error answer that retrying cannot change is raised.  Each
        job may take `job_timeout_s` from when it is first sent, retries included, as with
        `request` (the service drops it unrun if it is still queued then).
        """
        messages: dict[int, tuple] = {}

        def message(index: int) -> tuple:
            if index not in messages:
                messages[index] = jobs[index]()
                self._check_size(messages[index][2], messages[index][0])
            return messages[index]

        receive = receive or (lambda index, reply: reply)
        depth = min(depth, self.max_queue or depth)
        replies: list = [None] * len(jobs)
        deadlines: dict[int, float] = {}  # index -> when the job's time is up (from its first sending)
        with self._lock:
            start = 0
            while start < len(jobs):
                start, unanswered, replayed = self._overlap(message, len(jobs), replies, start, depth, expect,
                                                            receive, job_timeout_s, deadlines)
                for index in unanswered:
                    message_type, fields, payload, what = message(index)
                    self.retries += 1
                    replies[index] = receive(index, self._request(message_type, fields, payload, expect,
                                                                  deadlines[index], what, replay_resent=replayed))
        return replies

    def _overlap(self, message, count: int, replies: list, start: int, depth: int, expect: str, receive,
                 job_timeout_s: float, deadlines: dict) -> tuple[int, list[int]]:
        """Send jobs start.. keeping up to `depth` in flight, filling `replies` as they come and
        `deadlines` as they are sent (each job with `job_timeout_s`, also as its ``expires_s``);
        (index of the first job not sent, indices in flight when trouble ended it, whether that
        trouble was a refusal as a replay).  Replies to
        earlier messages (e.g. a probe a finished request left unanswered) are dropped; a job
        still unanswered when its time is up raises `ExecutionTimeout`."""
        self._ensure_service()
        in_flight: dict[bytes, int] = {}  # nonce -> index
        replayed = False
        position, heard = start, time.monotonic()  # (when the service last answered one of them)
        while position < count or in_flight:
            while position < count and len(in_flight) < depth:
                message_type, fields, payload, _ = message(position)
                deadlines[position] = time.monotonic() + job_timeout_s
                in_flight[self._send(message_type, {**fields, "expires_s": job_timeout_s}, payload)] = position
                position += 1
            due = min(deadlines[index] for index in in_flight.values())
            reply, trouble = self._wait_reply(min(heard + self.timeout_s, due))
            if trouble == "timeout" and time.monotonic() >= due:
                self._close_socket()  # (the replies of the jobs still in flight are not awaited)
                overdue, n = min(in_flight.values(), key=deadlines.__getitem__), len(in_flight)
                raise self._job_timeout(message(overdue)[3], f"no reply within job_timeout_s={job_timeout_s:g} s, "
                                                             f"with {n} job{'s' * (n > 1)} of the batch at the service")
            if reply is None:
                break
            reply_to = reply.header["reply_to"]
            index = in_flight.pop(reply_to, None)
            if index is None and not (reply_to is None and reply.type == "error"):
                continue  # the answer to an earlier message
            heard = time.monotonic()
            if reply.type == "error":
                said = self._retryable_error(reply.header, stale=True)  # raises what retrying cannot change
                replayed = said.startswith("replayed:")
                if index is not None:
                    in_flight[reply_to] = index
                break
            self._check_type(reply, expect)
            replies[index] = receive(index, reply)
        else:
            return position, [], False
        self._close_socket()
        return position, sorted(in_flight.values()), replayed

    def _check_type(self, reply: Message, expect: str) -> None:
        """Raise if `reply` (to the request awaited, not an error) is not of type `expect`."""
        if reply.type != expect:
            raise ProtocolError("malformed", f"the service at {self.address} answered {reply.type!r} "
                                             f"to a request for {expect!r}")

    def _wait_reply(self, until: float) -> tuple[Message | None, str | None]:
        """(the next reply, None) if one arrives before `until` (monotonic seconds), decoded and
        verified; else (None, why): "timeout", "ended" (the local service ended) or "corrupted"
        (it failed its check).  A refused token and a reply too large to take raise."""
        socket = self._zmq.socket
        while (now := time.monotonic()) < until:
            wait_s = until - now if self.service is None else min(until - now, _POLL_SLICE_S)
            if not socket.poll(int(1000 * wait_s) + 1):
                if self.service is not None and not self.service.alive:
                    return None, "ended"
                continue
            frames = socket.recv_multipart()
            try:
                return decode(frames, self.signer, max_message_bytes=reply_limit(self.max_message_bytes),
                              replies=True), None
            except ProtocolError as exc:
                if exc.code == "too_large":
                    raise self._too_large(frames) from None
                if exc.code == "unsupported_version":  # (its answer, signed as that version signs, is unread)
                    raise BackendUnavailable(f"the service at {self.address} speaks another version of the protocol: "
                                             f"{exc}; install the same version of delgrad-hil on both sides",
                                             retryable=False) from None
                self._check_refused(frames)
                return None, "corrupted"
        return None, "timeout"

    def _check_size(self, payload: bytes | None, message_type: str) -> None:
        size = len(payload or b"")
        if size > self.max_message_bytes:
            raise BackendError(f"the {message_type} message ({size:,} bytes) is above the service's limit of "
                               f"{self.max_message_bytes:,} bytes (delgrad hil serve --max-message-mb)")

    def _too_large(self, frames) -> ProtocolError:
        """The error of a reply (`frames`) above the size a client takes."""
        size = sum(len(frame) for frame in frames)
        return ProtocolError("too_large", f"the service at {self.address} sent a reply of {size:,} bytes, too large: "
                                          f"a client takes up to {reply_limit(self.max_message_bytes):,} bytes (a "
                                          f"result of up to {REPLY_SIZE_FACTOR} x the service's message limit of "
                                          f"{self.max_message_bytes:,} bytes, and its header); run the batch in "
                                          f"smaller jobs")

    def _check_refused(self, frames) -> None:
        """Raise if `frames` (a reply that failed its check) is the service refusing the token."""
        refusal = read_unverified_error(frames)
        if refusal is not None and refusal["code"] == "bad_signature":
            raise self._token_refused() from None

    def _request(self, message_type: str, fields: dict | None, payload: bytes | None, expect: str,
                 job_deadline: float | None, what: str, *, replay_resent: bool = False) -> Message:
        """`request` with the lock held; a job's time is up at `job_deadline` (monotonic seconds).
        Not counted as attempts: one sending anew after a refusal as a replay (unless
        `replay_resent` already), and "try again" answers (busy, shutting down: a service that is
        there gives them at once for as long as their cause lasts) until they have come for as
        long as a silent service is given (`attempts` x `timeout_s`)."""
        self._check_size(payload, message_type)
        started, problems, attempt, not_counted, first_try_again = time.monotonic(), [], 0, 0, None
        while attempt < self.attempts:
            attempt += 1
            if problems:
                self.retries += 1
                ceiling = self._backoff_ceiling(len(problems) + 1)
                wait_s = self._jitter.uniform(ceiling / 2, ceiling)
                if job_deadline is not None and problems[-1][1].startswith(_TRY_AGAIN) \
                        and time.monotonic() + wait_s >= job_deadline:
                    time.sleep(max(0.0, job_deadline - time.monotonic()))
                    raise self._job_timeout(what, f"the service answered {problems[-1][1]}")
                time.sleep(wait_s)
            self._ensure_service()
            job = None if job_deadline is None else fields["job"]
            # (a job sent again is asked about first: that answer comes before the job's reply, which
            # may be too large to arrive within timeout_s, and says why the job's reply did not)
            asked = self._send("probe", {"job": job}) if job is not None and problems else None
            # (the service drops the job unrun if it is still queued when this client has given up)
            expiry = {} if job is None else {"expires_s": max(0.0, job_deadline - time.monotonic())}
            nonce = self._send(message_type, {**(fields or {}), **expiry}, payload)
            reply, problem = self._await(nonce, expect, job, job_deadline, what, asked, stale=not replay_resent)
            if reply is not None:
                return reply
            problems.append(problem)
            if problem[1].startswith("replayed:"):
                replay_resent, counted = True, False
            elif problem[1].startswith(_TRY_AGAIN):
                first_try_again = first_try_again or time.monotonic()
                counted = time.monotonic() - first_try_again >= self.attempts * self.timeout_s
            else:
                counted = True
            if not counted:
                attempt, not_counted = attempt - 1, not_counted + 1
        raise self._exhausted(what, problems, time.monotonic() - started, not_counted)

    def _backoff_ceiling(self, attempt: int) -> float:
        """The longest wait before `attempt` (2, 3, ...): `backoff_s` doubled per attempt up to
        `max_backoff_s` (the exponent bounded first: 2.0 ** 1024 overflows)."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** min(attempt - 2, _MAX_DOUBLINGS))

    def _ensure_service(self) -> None:
        """Restart the local service if it has ended; the socket is opened anew then (the new
        service may listen on another port, and messages queued for the old one are void)."""
        if self.service is not None and self.service.ensure_running():
            self._close_socket()

    def _send(self, message_type: str, fields: dict | None = None, payload: bytes | None = None) -> bytes:
        """Send a new message (opening the socket if needed); returns its nonce."""
        header = new_header(message_type, client=self.client_id, **(fields or {}))
        self._open_socket().send_multipart(encode(self.signer, header, payload), copy=False)
        return header["nonce"]

    def _await(self, nonce: bytes, expect: str, job: str | None, job_deadline: float | None,
               what: str, asked: bytes | None = None, stale: bool = False) -> tuple[Message | None, tuple | None]:
        """(reply, None), or (None, (kind, text)) saying why this attempt failed: "silent" (no
        answer within `timeout_s`), "slow" (the same, after the service said the job had finished),
        "lost" (the job's result went missing) or "refused" (a corrupted reply or a "try again"
        answer, or with `stale` a message refused as a replay).  A job is probed after `timeout_s` / 2
        of silence, so that a silent service costs an attempt `timeout_s`, not more; `asked` is the
        nonce of a probe sent before the job."""
        probe, state = None, None
        finished = None  # the answer to `asked` if it said the job had finished
        heard = time.monotonic()  # when the service last said something about this request
        while True:
            now = time.monotonic()
            if job_deadline is not None and now >= job_deadline:
                if state is not None:
                    said = f"the service says it is {state}"
                elif probe is None and asked is None:  # (the time was up before the client asked about the job)
                    said = (f"the service said nothing about it yet: the client asks after timeout_s / 2 = "
                            f"{self.timeout_s / 2:g} s, and the job's time was shorter")
                else:
                    said = "no answer from the service: is it running?"
                raise self._job_timeout(what, said)
            silent_until = heard + self.timeout_s
            if now >= silent_until:
                self._close_socket()
                if finished is not None:
                    return None, ("slow", self._reply_too_slow(finished.get("result_bytes")))
                return None, ("silent", f"no answer within {self.timeout_s:g} s")
            probe_at = math.inf if job is None or probe is not None else heard + self.timeout_s / 2
            if now >= probe_at:
                probe = self._send("probe", {"job": job})
                continue
            reply, trouble = self._wait_reply(min(silent_until, probe_at, job_deadline or silent_until))
            if trouble == "timeout":
                continue
            if trouble is not None:
                self._close_socket()
                return None, (("silent", "the local service ended") if trouble == "ended" else
                              ("refused", "a reply failed its signature check (corrupted)"))
            reply_to = reply.header["reply_to"]
            if reply_to is not None and reply_to in (probe, asked) and reply.type == "job_state":
                state, heard = reply.header["state"], time.monotonic()
                if reply_to == probe:
                    probe = None
                    if state not in ("queued", "running"):
                        return None, ("lost", f"the result went missing (the job is {state} at the service)")
                elif state == "finished":  # (asked before the job was sent again: its reply comes after this)
                    finished = reply.header
                continue
            if reply_to not in (nonce, None):
                continue  # the answer to an earlier message
            if reply.type == "error":
                return None, ("refused", self._retryable_error(reply.header, stale))
            self._check_type(reply, expect)
            return reply, None

    def _job_timeout(self, what: str, said: str) -> ExecutionTimeout:
        """The error of a job whose time is up, with what the service `said` of it and the option
        that gives the time of its kind."""
        option, jobs = ("calibration_timeout_s", "calibrations") if what.startswith("calibration") else \
            ("job_timeout_s", "jobs")
        return ExecutionTimeout(f"{what} did not finish in time at {self.address} ({said}); raise {option} for slow "
                                f"{jobs} or a slow link")

    def _reply_too_slow(self, result_bytes: int | None) -> str:
        """Why a job's reply did not arrive although the service had finished the job (its result
        of `result_bytes`, if the service said)."""
        size = "" if result_bytes is None else f" (a result of {_size_text(result_bytes)})"
        return (f"the job finished at the service{size}, but its reply did not arrive within "
                f"timeout_s={self.timeout_s:g} s (a reply counts once it has arrived whole); raise timeout_s to cover "
                f"the transfer of the result")

    def _token_refused(self) -> BackendUnavailable:
        return BackendUnavailable(f"the service at {self.address} refused the token (check $DELGRAD_HIL_TOKEN or "
                                  f"the token file)", retryable=False)

    def _retryable_error(self, header: dict, stale: bool = False) -> str:
        """The text of a "try again" error answer; any other error answer is raised, but with
        `stale` a refusal as a replay: a message sent while the service was away is delivered
        when it is back, perhaps later than its replay window allows, and one sent anew passes
        (clocks that disagree fail again)."""
        where, code = f"the service at {self.address}", header["code"]
        if code == "bad_signature":
            raise self._token_refused()
        if code == "replayed" and stale:
            return f"{code}: {header['message']}"
        if code == "device_error":
            error = device_error(header, f"{where}: {header['message']}")
        else:
            error = ProtocolError(code, f"{where} refused the request: {header['message']}",
                                  retryable=header["retryable"])
        if not error.retryable:
            raise error
        return f"{code}: {header['message']}"

    def _exhausted(self, what: str, problems: list, elapsed_s: float, not_counted: int = 0) -> BackendUnavailable:
        """The error of a request whose attempts all failed, for `problems` (kind, text) of each
        (`not_counted` of them not counted as attempts, see `_request`)."""
        kind, text = problems[-1]
        besides = (f" and {not_counted} sending{'s' * (not_counted > 1)} not counted (after answers to try again "
                   "or a refusal as a replay)") if not_counted else ""
        counted = f"after {self.attempts} attempt{'s' * (self.attempts > 1)}{besides} ({elapsed_s:.1f} s)"
        if kind == "silent":
            small = (f"; timeout_s={self.timeout_s:g} s may be too small for any answer to arrive"
                     if self.timeout_s < _SMALL_TIMEOUT_S else "")
            stopping = next((n for n, (_, said) in enumerate(problems, 1) if said.startswith("shutting_down")), None)
            stopped = ("" if stopping is None else f"; at attempt {stopping} it answered that it was shutting down, "
                       "and it has not come back: start it again (delgrad hil serve)")
            return BackendUnavailable(f"no answer from {self.address} {counted}{_unresolved_host(self.address)}"
                                      f"{small}{stopped}")
        return BackendUnavailable(f"{what} failed at {self.address} {counted}; last: {text}")
