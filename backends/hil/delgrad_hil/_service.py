"""The device service: one device backend behind a ZeroMQ ROUTER socket (docs/hil.md).

The I/O thread receives messages, checks them (`decode`, the replay guard, the payload against
its job id), answers hello, health, status and probes (the state of a job) at once and hands
jobs to the `Scheduler`.  The device thread takes them in round-robin order over the clients and
hands them to the device, which runs them one at a time in a process of its own
(`DeviceProcess`: two jobs at once, so that it starts the next as it finishes one); it wakes the
I/O thread with each outcome, which sends it to every message waiting for it.  Any message that
cannot be served gets an error reply; nothing a client sends stops the service.
`request_stop` (from a signal handler) begins a graceful shutdown: queued jobs are answered
"shutting_down", the jobs at the device get up to `shutdown_grace_s` to finish and be
answered, then the service closes.  If the device process dies while it runs a job, the
service starts a new one and answers the jobs it held "try again"; a job that was running at
`CRASHES_ALLOWED` deaths is answered an error from then on instead of being run again (a job
that kills the device every time must not take it down for every client at every retry).  If
the device process ends while idle, the service starts a new one too (no job to blame), but
only `IDLE_DEATHS_ALLOWED` times in a row for device processes that end idle within
`QUICK_DEATH_S` of their start (a device that dies at once, e.g. a broken installation or a
process killed in a loop, is not restarted for ever).  At the next such end, or if a new device
process does not start, the service answers its jobs "shutting_down" and stops (`device_lost`
says why).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import resource
import socket
import stat
import threading
import time
from collections import Counter, OrderedDict, deque
from multiprocessing.connection import wait as wait_readable

import zmq

from delgrad_core import BackendUnavailable, CalibrationError, ExecutionRequest, load_network

from delgrad_hil._auth import ReplayGuard
from delgrad_hil._calibration import unwrap
from delgrad_hil._device_process import DeviceFailure
from delgrad_hil._faults import EXIT_STATUS, FaultPlan, Faults
from delgrad_hil._protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_HEADER_BYTES,
    REFUSAL_CODES,
    REPLY_SIZE_FACTOR,
    VERSION,
    Message,
    ProtocolError,
    calibration_job_id,
    decode,
    encode,
    error_fields,
    failure_fields,
    new_header,
)
from delgrad_hil._refusal_log import RefusalLog
from delgrad_hil._scheduler import Outcome, QueueFull, Scheduler

__all__ = ["DeviceService", "parse_execute", "parse_calibrate", "BACKSTOP_BYTES", "HEARTBEAT_MS", "CRASHES_ALLOWED",
           "IDLE_DEATHS_ALLOWED", "QUICK_DEATH_S", "raise_open_file_limit"]

log = logging.getLogger("delgrad_hil.service")

# ZMQ_MAXMSGSIZE is set this far above the service's own limit: the transport drops larger
# frames silently (it disconnects the peer), so the service's "too_large" answer must come first.
BACKSTOP_BYTES = 2**20
HEARTBEAT_MS = 5000  # the service pings every connection this often; no answer in 3 pings: dropped
_RECEIVE_BATCH = 64  # messages read per wake-up before finished jobs are answered
_CALIBRATIONS_KEPT = 8  # unwrapped calibrations the service keeps
# networks of recent requests: the jobs of an evaluation share one network object, which the
# device then checks and represents once
_NETWORKS_KEPT = 8
_WARNINGS_TOLD = 20  # warnings of a job told in its reply, at most
CRASHES_ALLOWED = 2  # a job the device process died running this often is not run again
# device processes in a row that end while idle within QUICK_DEATH_S of their start are replaced
# this often; the next such end stops the service (one that lived longer starts the count again)
IDLE_DEATHS_ALLOWED = 3
QUICK_DEATH_S = 60.0
_STOPPED_WHILE_RUNNING = error_fields("shutting_down", "the service stopped while running the job; send it again "
                                                       "after the restart")


def raise_open_file_limit() -> int:
    """Raise this process's limit of open files to the system's hard limit and return it: every
    connection takes one, and at the limit ZeroMQ stops accepting (tcp://, spinning on a core) or
    aborts the process (ipc://), so the default 1024 let a few idle peers stop a service."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        with contextlib.suppress(OSError, ValueError):  # (a system that refuses: keep what there is)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def parse_execute(message: Message, unwrap_calibration=unwrap, calibrations=None, networks=None) -> ExecutionRequest:
    """The request of an execute message, its calibration unwrapped for the device (by
    `unwrap_calibration`); its digest must be the job id.  A request that names its
    calibration by digest only takes it from `calibrations` (digest -> calibration); one whose
    network is in `networks` (a cache filled here) shares that network object.  Raises
    `ProtocolError` ("bad_request", "unknown_calibration") only."""
    nonce, job = message.header["nonce"], message.header["job"]
    try:
        request = ExecutionRequest.from_bytes(message.payload, calibrations=calibrations, networks=networks)
        calibration = unwrap_calibration(request.calibration)
    except CalibrationError as exc:
        raise ProtocolError("unknown_calibration", str(exc), reply_to=nonce) from None
    except Exception as exc:  # hostile bytes: FileFormatError, InvalidValueError or worse
        raise ProtocolError("bad_request", f"the payload is not an execution request ({exc})", reply_to=nonce) \
            from None
    if request.digest != job:
        raise ProtocolError("bad_request", f"the job id {job[:16]}... is not the digest of the request "
                                           f"({request.digest[:16]}...)", reply_to=nonce)
    return request if calibration is request.calibration else request.replace(calibration=calibration)


def parse_calibrate(message: Message) -> tuple:
    """(network or None, seed) of a calibrate message; its job id must match.  Raises
    `ProtocolError` ("bad_request") only."""
    header = message.header
    seed = header.get("seed")  # (nil or absent: no seed)
    if calibration_job_id(seed, message.payload) != header["job"]:
        raise ProtocolError("bad_request", "the job id does not match the seed and network of the calibration",
                            reply_to=header["nonce"])
    if message.payload is None:
        return None, seed
    try:
        return load_network(message.payload, stored_only=True), seed
    except Exception as exc:
        raise ProtocolError("bad_request", f"the payload is not a network ({exc})", reply_to=header["nonce"]) \
            from None


def _expiry(expires_s: float | None) -> float | None:
    """The monotonic time at which a job message's sender stops waiting (None: it waits on)."""
    return None if expires_s is None else time.monotonic() + expires_s


def _try_again(what_happened: str) -> Outcome:
    """The answer to a job lost with a device process that the service started again: retryable."""
    return Outcome(error_fields("device_error", f"{what_happened}; the service started it again: send the job again",
                                retryable=True, error_class="BackendUnavailable"), keep=False)


def _ipc_in_use(path: str) -> bool:
    """Whether a process listens on the Unix socket `path` (ZeroMQ would take it over without a
    word; a file left by a service that ended is not in use)."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


def _exists_not_socket(path: str) -> bool:
    """Whether `path` is something other than a Unix socket (a file, a folder, a link...): an
    ipc:// service must not bind there, ZeroMQ would delete it."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # (missing: ZeroMQ makes the socket; a missing folder is ZeroMQ's error)
        return False
    return not stat.S_ISSOCK(mode)


class DeviceService:
    """Serve one device backend to clients of the protocol (docs/hil-protocol.md).

    Parameters
    ----------
    device : DeviceProcess
        The device; the service owns it and closes it at the end.
    signer : Signer
        Signs and verifies messages with the shared token.
    address : str
        ZeroMQ endpoint to bind, e.g. ``tcp://127.0.0.1:5555`` (port 0: any free port).
    faults : FaultPlan, optional
    max_message_bytes : int
        Larger messages are answered "too_large".
    replay_window_s, shutdown_grace_s : float
    **limits
        `Scheduler` limits (max_queued_per_client, max_queued, cache_entries, cache_bytes).
    """

    def __init__(self, device, signer, address: str, *, faults: FaultPlan | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 replay_window_s: float = 60.0, shutdown_grace_s: float = 30.0, **limits):
        self.device = device
        self.signer = signer
        self.faults = Faults(faults or FaultPlan())
        self.max_message_bytes = int(max_message_bytes)
        self.shutdown_grace_s = float(shutdown_grace_s)
        self.replay = ReplayGuard(replay_window_s)
        self.scheduler = Scheduler(**limits)
        self.service_id = os.urandom(8).hex()
        self.counts = Counter()  # refused.<code>, dropped, corrupted, busy
        self._refusals = RefusalLog(log)
        self.calibration_digest: str | None = None
        # digest of a request's calibration -> (that calibration, the device's calibration inside it)
        self._calibrations: OrderedDict = OrderedDict()
        self._networks: OrderedDict = OrderedDict()  # digest of a network's bytes -> network
        self.stopping = False
        self.device_lost: str | None = None  # why the device process ended, if it did
        self._ending_device = False  # the service ends its device process (that end is not a loss)
        self._device_lock = threading.Lock()  # between restarting the device process and ending it
        self.device_restarts = 0
        self._device_started = time.monotonic()  # when the device process (the latest one) started
        self._quick_idle_deaths = 0  # in a row, see IDLE_DEATHS_ALLOWED
        self._stop_requested = False
        self._started = time.monotonic()
        self._delayed: list = []  # (due, sequence, frames) of replies held back by the latency fault
        self._sequence = itertools.count()
        if address.startswith("ipc://"):
            if _exists_not_socket(address[len("ipc://"):]):  # (ZeroMQ would replace it by its socket)
                raise BackendUnavailable(f"cannot serve on {address}: {address[len('ipc://'):]} exists and is not a "
                                         f"socket; choose another path", retryable=False)
            if _ipc_in_use(address[len("ipc://"):]):
                raise BackendUnavailable(f"cannot serve on {address}: another process serves there",
                                         retryable=False)
        self._context = zmq.Context()
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes + BACKSTOP_BYTES)
        # a peer that answers no heartbeat is dropped (ZeroMQ clients answer by themselves; a
        # connection held open and silent would keep its file descriptor for ever)
        self._router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_MS)
        self._router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * HEARTBEAT_MS)
        host, _, port = address.rpartition(":")
        self._router.setsockopt(zmq.IPV6, address.startswith("tcp://["))
        try:
            self._router.bind(f"{host}:*" if address.startswith("tcp://") and port == "0" else address)
        except zmq.ZMQError as exc:
            self._context.destroy(linger=0)
            why = {errno.ENODEV: "no interface of this machine has that host name or address",
                   errno.EADDRINUSE: "the port is in use (another service may listen there); stop it or choose "
                                     "another port"}.get(exc.errno, zmq.strerror(exc.errno))
            if address.startswith("ipc://") and exc.errno == errno.ENOENT:
                why = f"its folder {os.path.dirname(address[len('ipc://'):]) or '.'} does not exist; make it first"
            raise BackendUnavailable(f"cannot serve on {address}: {why}", retryable=False) from None
        self.address = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        wake = f"inproc://delgrad-hil-wake-{self.service_id}"
        self._wake_rx = self._context.socket(zmq.PAIR)
        self._wake_rx.bind(wake)
        self._wake_tx = self._context.socket(zmq.PAIR)  # used by the device thread only
        self._wake_tx.connect(wake)
        # the I/O thread tells the device thread of each job it queued, while that waits for the device
        self._queued_rx, self._queued_tx = os.pipe()
        os.set_blocking(self._queued_tx, False)

    # -- lifecycle -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Begin a graceful shutdown (safe in a signal handler)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    def serve(self) -> None:
        """Serve until `request_stop`; then finish or reject the jobs, close the device and the
        sockets."""
        worker = threading.Thread(target=self._device_loop, name="delgrad-hil-device", daemon=True)
        worker.start()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_rx, zmq.POLLIN)
        deadline = None
        log.info("serving device %r on %s (service %s)", self.device.name, self.address, self.service_id)
        while True:
            if self._stop_requested and deadline is None:
                deadline = self._begin_shutdown()
            self._answer_finished()
            # (replies held back by the latency fault wait for their time within the grace period
            # only: after it, they go out at once in _finish)
            if deadline is not None and (
                    (not self.scheduler.running and not self._delayed) or time.monotonic() > deadline):
                break
            events = dict(poller.poll(self._poll_timeout_ms()))
            if self._wake_rx in events:
                while self._wake_rx.poll(0):
                    self._wake_rx.recv()
            if self._router in events:
                for _ in range(_RECEIVE_BATCH):
                    try:
                        # (not copied: a message of many large frames is held once, in ZeroMQ's buffers)
                        frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames)
            self._send_due()
        self._finish(worker)

    def _begin_shutdown(self) -> float:
        self.stopping = True
        rejected = self.scheduler.reject_queued()
        for job in rejected:
            self._answer(job, error_fields("shutting_down", "the service stopped before running the job; "
                                                            "send it again after the restart"))
        running = len(self.scheduler.running)
        log.info("stopping: %d queued jobs rejected, %s", len(rejected),
                 f"waiting for {running} job{'s' * (running > 1)} at the device" if running else "no job running")
        return time.monotonic() + self.shutdown_grace_s

    def _finish(self, worker: threading.Thread) -> None:
        overdue = self.scheduler.running
        for job in overdue:
            log.warning("job %s did not finish within %g s", job.job_id[:16], self.shutdown_grace_s)
        self.scheduler.close()
        self._tell_device_thread()
        with self._device_lock:
            self._ending_device = True
            # (jobs still running are stopped at once, the grace period is over: the device thread
            # gives them their answer; an idle device closes itself)
            self.device.stop(at_once=bool(overdue))
        worker.join(timeout=5.0)
        # only now, with the device thread ended, is every job either finished or stopped: a job that
        # finished while the running ones were answered here before went unanswered
        self._answer_finished()
        for job in self.scheduler.running:  # (only if the device thread did not end)
            self._answer(job, _STOPPED_WHILE_RUNNING)
        for *_, frames in sorted(self._delayed, key=lambda entry: entry[:2]):
            self._send(frames)
        self.device.close()
        os.close(self._queued_tx)
        os.close(self._queued_rx)
        for endpoint in (self._router, self._wake_rx, self._wake_tx):
            endpoint.close(linger=500)
        self._context.term()
        self.remove_socket_file()
        self._refusals.flush()
        log.info("stopped")

    def remove_socket_file(self) -> None:
        """Remove the socket file of an ipc:// address, which ZeroMQ leaves behind (also from a
        signal handler, before the process ends at once)."""
        if self.address.startswith("ipc://"):
            path = self.address[len("ipc://"):]
            with contextlib.suppress(OSError):
                if not _exists_not_socket(path):  # (only a socket: never a file put there since)
                    os.unlink(path)

    # -- the device thread -----------------------------------------------------------------------
    def _device_loop(self) -> None:
        """Hand jobs to the device as they are queued, up to its depth at once (it starts the
        next as it finishes one), and record each outcome as it comes back."""
        handed: deque = deque()  # jobs at the device, oldest first
        try:
            while not (self.scheduler.closed and not handed):
                try:
                    self._device_step(handed)
                except BackendUnavailable as exc:  # the device process ended
                    if not self._restart_device(exc, handed):
                        return
        except Exception as exc:  # a fault of the service: no job can run any more
            log.exception("the device thread failed")
            self._device_lost(BackendUnavailable(f"the device thread failed: {type(exc).__name__}: {exc}"), handed)

    def _device_step(self, handed: deque) -> None:
        """Hand the next queued job to the device if it has room, else wait for an outcome (and
        record it) or for a job to be queued."""
        room = len(handed) < self.device.depth
        if room and (job := self.scheduler.take()) is not None:
            crashes = self.scheduler.crash_count(job.job_id)
            if crashes >= CRASHES_ALLOWED:
                self._record(job, self._crash_refusal(job, crashes), ran=False)
                return
            handed.append(job)
            self.device.submit(job.kind, job.work)
            return
        waiting_for = [self.device.channel, self._queued_rx] if room else [self.device.channel]
        if self.device.channel not in wait_readable(waiting_for):
            os.read(self._queued_rx, 4096)  # (a job was queued, or the scheduler closed)
        elif not handed:  # (the pipe's end: the device process ended while idle)
            raise self.device.ended_error()
        else:
            self._record(handed[0], self._outcome(handed[0]))
            handed.popleft()

    def _record(self, job, outcome: Outcome, *, ran: bool = True) -> None:
        """Record a job's outcome and wake the I/O thread to answer it."""
        self.scheduler.finish(job, outcome, ran=ran)
        self._wake_tx.send(b"")

    def _restart_device(self, exc: BackendUnavailable, handed: deque) -> bool:
        """The device process ended: answer the jobs `handed` to it (the one it was running counts
        a crash) and start a new device process.  False (the service stops, `_device_lost`) if the
        service ends the device, too many device processes in a row ended idle soon after their
        start, or a new one does not start."""
        if self._ending_device:
            self._device_lost(exc, handed)
            return False
        idle = not handed
        if idle:
            exc = BackendUnavailable(f"{exc} while idle")
        if self._count_quick_idle_deaths(idle) > IDLE_DEATHS_ALLOWED:
            self._device_lost(BackendUnavailable(
                f"{exc}: {self._quick_idle_deaths} device processes in a row ended idle within {QUICK_DEATH_S:g} s "
                f"of their start, the service does not restart a device that keeps ending"), handed)
            return False
        if handed:
            self._answer_crashed(exc, handed)
        with self._device_lock:
            if self._ending_device:
                return False
            try:
                self.device.restart()
            except Exception as error:
                self._device_lost(BackendUnavailable(f"{exc}, and a new one did not start: {error}"), handed)
                return False
        self._device_started = time.monotonic()
        self.device_restarts += 1
        if idle:
            log.error("%s; restarted it", exc)
        return True

    def _count_quick_idle_deaths(self, idle: bool) -> int:
        """Count the end of the device process: the device processes in a row that ended idle
        within `QUICK_DEATH_S` of their start (one that lived longer, however it ended, starts the
        count again)."""
        if time.monotonic() - self._device_started >= QUICK_DEATH_S:
            self._quick_idle_deaths = 0
        elif idle:
            self._quick_idle_deaths += 1
        return self._quick_idle_deaths

    def _answer_crashed(self, exc: BackendUnavailable, handed: deque) -> None:
        """Count the crash against the job the device process was running and answer the jobs
        `handed` to it "try again" (or, at `CRASHES_ALLOWED`, refuse the crashed one)."""
        crashed = handed.popleft()
        crashes = self.scheduler.record_crash(crashed.job_id)
        log.error("%s while running %s job %s (%d time%s); restarting it", exc, crashed.kind, crashed.job_id[:16],
                  crashes, "s" * (crashes > 1))
        self._record(crashed, self._crash_refusal(crashed, crashes) if crashes >= CRASHES_ALLOWED
                     else _try_again(f"{exc} while running the job"), ran=False)
        while handed:
            self._record(handed.popleft(), _try_again(f"{exc} before running the job"), ran=False)

    @staticmethod
    def _crash_refusal(job, crashes: int) -> Outcome:
        """The answer to a job that the device process died running `crashes` times."""
        return Outcome(error_fields(
            "device_error", f"{job.kind} job {job.job_id[:16]}... crashed the device process {crashes} times (it "
                            f"died while running the job); the service does not run it again: run it with the device "
                            f"in-process to see why, or restart the service to try it again",
            retryable=False, error_class="BackendError"))

    def _tell_device_thread(self) -> None:
        """Wake the device thread (a job was queued, or the scheduler closed)."""
        with contextlib.suppress(BlockingIOError):  # (a full pipe has woken it already)
            os.write(self._queued_tx, b"q")

    def _outcome(self, job) -> Outcome:
        """The outcome of the oldest job handed to the device."""
        try:
            value, run_s, told = self.device.collect(job.kind)
            payload = value.to_bytes()
        except DeviceFailure as failure:
            return Outcome(failure.fields, keep=failure.keep)
        except BackendUnavailable:
            raise
        except Exception as exc:
            log.exception("job %s failed inside the service", job.job_id[:16])
            return Outcome(failure_fields(exc), keep=False)
        if job.kind == "execute":
            limit = REPLY_SIZE_FACTOR * self.max_message_bytes
            if len(payload) > limit:
                return Outcome(error_fields("too_large", f"the result of {len(payload):,} bytes is above the reply "
                                            f"limit of {limit:,} bytes ({REPLY_SIZE_FACTOR} x the message limit): "
                                            "run the batch in smaller jobs"), keep=True)
        else:
            self.calibration_digest = value.digest
        reply_type = "result" if job.kind == "execute" else "calibration"
        fields = {"type": reply_type, "job": job.job_id, "cached": False, "run_s": run_s, "service": self.service_id,
                  **({"warnings": told[:_WARNINGS_TOLD]} if told else {})}
        return Outcome(fields, payload)

    def _device_lost(self, exc: BackendUnavailable, handed) -> None:
        """The device process ended (or the device thread failed): answer the `handed` jobs
        "shutting_down" and stop the service (a supervisor, or the client of a local service,
        starts it again)."""
        if self._ending_device:  # (a graceful stop ends the device after the grace period)
            fields = _STOPPED_WHILE_RUNNING
        else:
            log.error("%s: stopping the service", exc)
            self.device_lost = str(exc)
            self._stop_requested = True
            fields = error_fields("shutting_down", f"{exc}; send the job again after the service's restart")
        for job in handed:
            self.scheduler.finish(job, Outcome(fields, keep=False), ran=False)
        self._wake_tx.send(b"")

    # -- receiving -------------------------------------------------------------------------------
    def _handle(self, frames: list[zmq.Frame]) -> None:
        routing_id, frames = frames[0].bytes, frames[1:]
        nonce = None  # (until the request is read)
        try:
            message = decode(frames, self.signer, max_message_bytes=self.max_message_bytes)
            nonce = message.header["nonce"]
            problem = self.replay.check(nonce, message.header["ts"])
            if problem is not None:
                raise ProtocolError(*problem, reply_to=nonce)
            self._dispatch(routing_id, message)
        except ProtocolError as exc:
            self.counts[f"refused.{exc.code}"] += 1
            self._refusals.refused(exc.code, exc)
            self._reply(routing_id, exc.reply_to, error_fields(exc.code, str(exc), retryable=exc.retryable))
        except Exception as exc:  # a fault of the service: answer, keep serving
            log.exception("failed to handle a message")
            self._reply(routing_id, nonce, error_fields("internal", f"the service failed: {type(exc).__name__}"))

    def _dispatch(self, routing_id: bytes, message: Message) -> None:
        header, nonce = message.header, message.header["nonce"]
        if message.type in ("hello", "health", "status"):
            reply_type = "welcome" if message.type == "hello" else message.type
            self._reply(routing_id, nonce, {"type": reply_type, "info": self._info(message)})
            return
        if message.type == "probe":
            state, result_bytes = self.scheduler.state(header["client"], header["job"])
            self._reply(routing_id, nonce, {"type": "job_state", "job": header["job"], "state": state,
                                            **({} if result_bytes is None else {"result_bytes": result_bytes})})
            return
        if message.type == "execute":
            work = parse_execute(message, self._unwrap, self._received_calibrations, self._networks)
            while len(self._networks) > _NETWORKS_KEPT:
                self._networks.popitem(last=False)
            self._check_result_fits(work, nonce)
        else:
            work = parse_calibrate(message)
        # (after the payload's checks: a bad request is refused as such, docs/hil-protocol.md; a job sent
        # again while it runs or after it finished is still joined or answered from the cache)
        if self.stopping and self.scheduler.state(header["client"], header["job"])[0] not in ("running", "finished"):
            raise ProtocolError("shutting_down", "the service is stopping; send the job again after its restart",
                                reply_to=nonce)
        if self.faults.busy():
            self.counts["busy"] += 1
            raise ProtocolError("busy", "the device is busy (injected fault)", reply_to=nonce)
        try:
            outcome = self.scheduler.submit(header["client"], header["job"], message.type, work, (routing_id, nonce),
                                            _expiry(header.get("expires_s")))
        except QueueFull as exc:
            raise ProtocolError("busy", f"the queues are full: {exc}", reply_to=nonce) from None
        self._tell_device_thread()
        if outcome is not None:
            self._reply_outcome(routing_id, nonce, outcome, cached=True)

    def _check_result_fits(self, request: ExecutionRequest, nonce: bytes) -> None:
        """Refuse ("too_large") a request whose result could not be sent, before it runs: its
        spike times alone (batch x neurons x 8 bytes) above the reply limit."""
        neurons = sum(layer.population.size for layer in request.network.layers)
        at_least, limit = len(request.input_spike_times) * neurons * 8, REPLY_SIZE_FACTOR * self.max_message_bytes
        if at_least > limit:
            raise ProtocolError("too_large", f"the result of this request takes at least {at_least:,} bytes (batch "
                                             f"{len(request.input_spike_times)} x {neurons} neurons x 8 bytes), above "
                                             f"the reply limit of {limit:,} bytes ({REPLY_SIZE_FACTOR} x the message "
                                             f"limit): run the batch in smaller jobs", reply_to=nonce)

    def _unwrap(self, calibration):
        """`unwrap`, the same object for the same calibration (its digest is computed once, and
        devices that key work by calibration digest find it again)."""
        if calibration is None:
            return None
        known = self._calibrations.pop(calibration.digest, None)
        device_calibration = known[1] if known is not None else unwrap(calibration)
        self._calibrations[calibration.digest] = (calibration, device_calibration)
        while len(self._calibrations) > _CALIBRATIONS_KEPT:
            self._calibrations.popitem(last=False)
        return device_calibration

    @property
    def _received_calibrations(self) -> dict:
        """Digest -> calibration, of the calibrations requests brought recently (later requests
        may name them by digest only)."""
        return {digest: received for digest, (received, _) in self._calibrations.items()}

    def _info(self, message: Message) -> dict:
        health = {"ok": True, "device": self.device.name, "uptime_s": time.monotonic() - self._started,
                  "stopping": self.stopping}
        if message.type == "health":
            return health
        info = {**health, "protocol": VERSION, "service_id": self.service_id, "pid": os.getpid(),
                "device_options": self.device.options, "max_message_bytes": self.max_message_bytes,
                "max_queue": self.scheduler.max_queued_per_client, "replay_window_s": self.replay.window_s}
        if message.type == "hello":
            return {**info, "capabilities": self.device.capabilities.to_dict()}
        return {**info, **self.scheduler.status(executions=bool(message.header.get("executions"))),
                "calibration_digest": self.calibration_digest, "faults": self.faults.plan.to_dict(),
                "jobs_run": self.faults.jobs_run, "device_restarts": self.device_restarts,
                **{f"refused.{code}": 0 for code in REFUSAL_CODES}, "dropped": 0, "corrupted": 0, "busy": 0,
                **self.counts}

    # -- replying --------------------------------------------------------------------------------
    def _answer_finished(self) -> None:
        for job in self.scheduler.completed():
            if self.faults.job_finished():
                log.warning("injected fault: exiting after %d jobs, before replying", self.faults.jobs_run)
                # the replies sent before go out first (ZeroMQ sends from its own thread): otherwise
                # which of them arrive is a race, and a restarted service reruns a random number of jobs
                self._router.close(linger=2000)
                self._context.destroy(linger=0)  # (waits for the router's replies, at most 2 s)
                os._exit(EXIT_STATUS)
            self._answer(job, job.outcome.header, job.outcome.payload)

    def _answer(self, job, fields: dict, payload: bytes | None = None) -> None:
        for routing_id, nonce in job.waiters:
            self._reply_outcome(routing_id, nonce, Outcome(fields, payload), cached=False)

    def _reply_outcome(self, routing_id: bytes, reply_to: bytes, outcome: Outcome, *, cached: bool) -> None:
        fields = outcome.header if outcome.header["type"] == "error" else {**outcome.header, "cached": cached}
        self._reply(routing_id, reply_to, fields, outcome.payload, job_reply=True)

    def _reply(self, routing_id: bytes, reply_to: bytes | None, fields: dict, payload: bytes | None = None, *,
               job_reply: bool = False) -> None:
        frames = self._signed(reply_to, fields, payload)
        if len(frames[2]) > MAX_HEADER_BYTES:  # (the client would refuse it as corrupted, at every retry)
            message = (f"the service's {fields['type']} reply has a header of {len(frames[2]):,} bytes, above the "
                       f"protocol's {MAX_HEADER_BYTES:,} (e.g. device options of that size)")
            log.error("%s", message)
            frames = self._signed(reply_to, error_fields("too_large", message))
        if job_reply:
            fate = self.faults.reply_fate()
            if fate == "drop":
                self.counts["dropped"] += 1
                log.info("injected fault: dropped a %s reply", fields["type"])
                return
            if fate == "corrupt":
                self.counts["corrupted"] += 1
                log.info("injected fault: corrupted a %s reply", fields["type"])
                frames = self.faults.corrupted(frames)
        if self.faults.plan.latency_s > 0:
            due = time.monotonic() + self.faults.plan.latency_s
            heapq.heappush(self._delayed, (due, next(self._sequence), [routing_id, *frames]))
        else:
            self._send([routing_id, *frames])

    def _signed(self, reply_to: bytes | None, fields: dict, payload: bytes | None = None) -> list[bytes]:
        """The frames of a reply with `fields` (its type among them)."""
        header = new_header(fields["type"], reply_to=reply_to, **{k: v for k, v in fields.items() if k != "type"})
        return encode(self.signer, header, payload)

    def _send(self, frames: list[bytes]) -> None:
        # (copied into zmq's buffers: a zero-copy send of a large frame hands its release to
        # pyzmq's garbage-collector thread, whose waking and taking the GIL cost the service
        # more than the copy; measured with four clients on two cores)
        try:
            self._router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the client's queue is full or it is gone: it will retry
            log.info("could not send a reply: %s", exc)

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            self._send(heapq.heappop(self._delayed)[2])

    def _poll_timeout_ms(self) -> int:
        timeout_s = 0.1
        if self._delayed:
            timeout_s = min(timeout_s, max(0.0, self._delayed[0][0] - time.monotonic()))
        return int(timeout_s * 1000)
