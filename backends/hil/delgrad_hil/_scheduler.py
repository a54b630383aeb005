"""Jobs of the service: one queue per client served round-robin, duplicates joined, recent
outcomes cached, executions counted.

A job is known by (client, job id).  Submitting a job that is queued or running adds a waiter
to it instead of queueing it again; submitting a finished one answers from the cache.  The
cache is bounded by entries and bytes (least recently used outcomes go first); an outcome
that says "try again" (a retryable device error) is not kept, so a retry runs the job again.
A queued job whose waiters have all given up (their `expires` passed) is dropped, never run.
The job ids that were running when the device process died are counted (`record_crash`).
The scheduler is shared by the service's I/O thread (submit, completed) and its device thread
(take, finish) and locks its state.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["Job", "Outcome", "Scheduler", "QueueFull", "EXECUTIONS_LISTED"]

EXECUTIONS_LISTED = 400  # job ids a status reply lists with their execution counts, at most (the latest)
CRASHES_LISTED = 20  # job ids a status reply lists as crashing the device, at most (the latest; with the
# executions above, a reply's header stays within the protocol's limit)


class QueueFull(Exception):
    """The client's queue (or all queues together) is at its limit."""


@dataclass(frozen=True)
class Outcome:
    """A finished job's reply: header fields (without nonce, time and reply_to) and payload."""

    header: dict
    payload: bytes | None = None
    keep: bool = True  # False: not cached (a retry runs the job again)

    @property
    def size(self) -> int:
        return len(self.payload or b"")


@dataclass(eq=False)
class Job:
    """A unit of device work and the replies owed for it."""

    client: str
    job_id: str
    kind: str  # "execute" | "calibrate"
    work: object  # what the device runs (a request, or (network, seed))
    waiters: list = field(default_factory=list)  # (routing id, nonce of the message to answer)
    outcome: Outcome | None = None
    expires: float | None = None  # monotonic time after which no waiter waits any more (None: never)

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires < now

    def wait_until(self, expires: float | None) -> None:
        """Another waiter waits until `expires` (None: for ever)."""
        self.expires = None if self.expires is None or expires is None else max(self.expires, expires)


class Scheduler:
    """Per-client FIFO queues served round-robin, with a job table and a result cache.

    Parameters
    ----------
    max_queued_per_client, max_queued : int
        Queue limits (one client's queue; all queues); beyond them `submit` raises `QueueFull`.
    cache_entries, cache_bytes : int
        Bounds of the cache of finished outcomes.
    max_counted_jobs : int
        How many job ids keep their execution count (the oldest are forgotten first).
    """

    def __init__(self, *, max_queued_per_client: int = 16, max_queued: int = 256, cache_entries: int = 1024,
                 cache_bytes: int = 256 * 2**20, max_counted_jobs: int = 100_000):
        self.max_queued_per_client = max_queued_per_client
        self.max_queued = max_queued
        self.cache_entries = cache_entries
        self.cache_bytes = cache_bytes
        self.max_counted_jobs = max_counted_jobs
        self._lock = threading.Lock()
        self._queues: OrderedDict[str, deque] = OrderedDict()  # rotation order = service order
        self._jobs: dict[tuple[str, str], Job] = {}  # queued, running and cached jobs
        self._cache: OrderedDict[tuple[str, str], Job] = OrderedDict()  # finished, least recent first
        self._cached_bytes = 0
        self._finished: list[Job] = []  # finished, replies not yet sent
        self._running: list[Job] = []  # taken by the device and not finished, oldest first
        self._closed = False
        self.executions: OrderedDict[str, int] = OrderedDict()
        self.crashes: OrderedDict[str, int] = OrderedDict()  # job id -> times the device died running it
        self.counts = Counter()  # executed, calibrated, cache_hits, joined, expired
        self.most_queued = 0  # most jobs waiting at once (not counting the running ones)

    # -- I/O thread ----------------------------------------------------------------------------
    def submit(self, client: str, job_id: str, kind: str, work, waiter, expires: float | None = None) \
            -> Outcome | None:
        """Queue a job or join it; returns the cached outcome if it finished already (then
        nothing is owed), else None (the reply goes to `waiter` when it finishes).  `waiter`
        waits until `expires` (monotonic seconds; None: for ever)."""
        key = (client, job_id)
        with self._lock:
            job = self._jobs.get(key)
            if job is not None:
                if job.outcome is not None:
                    self._cache.move_to_end(key)
                    self.counts["cache_hits"] += 1
                    return job.outcome
                job.waiters.append(waiter)
                job.wait_until(expires)
                self.counts["joined"] += 1
                return None
            queue = self._queues.get(client)
            queued = sum(len(q) for q in self._queues.values())
            if queued >= self.max_queued or (queue is not None and len(queue) >= self.max_queued_per_client):
                raise QueueFull(f"{len(queue or ())} jobs of this client and {queued} in all are queued "
                                f"(limits {self.max_queued_per_client} and {self.max_queued})")
            job = Job(client, job_id, kind, work, [waiter], expires=expires)
            self._jobs[key] = job
            self._queues.setdefault(client, deque()).append(job)
            self.most_queued = max(self.most_queued, queued + 1)
            return None

    def state(self, client: str, job_id: str) -> tuple[str, int | None]:
        """("queued" | "running" | "finished" (its outcome is cached) | "unknown", the size in
        bytes of a finished job's payload, None without one)."""
        with self._lock:
            job = self._jobs.get((client, job_id))
            if job is None:
                return "unknown", None
            if job.outcome is not None:
                return "finished", None if job.outcome.payload is None else job.outcome.size
            return "running" if job in self._running else "queued", None

    def completed(self) -> list[Job]:
        """Jobs finished since the last call (their waiters are owed the outcome)."""
        with self._lock:
            finished, self._finished = self._finished, []
            for job in finished:
                if not job.outcome.keep:
                    self._jobs.pop((job.client, job.job_id), None)
            return finished

    def reject_queued(self) -> list[Job]:
        """Remove every queued job (for shutdown); returns them (their waiters are owed an answer)."""
        with self._lock:
            rejected = [job for queue in self._queues.values() for job in queue]
            self._queues.clear()
            for job in rejected:
                del self._jobs[(job.client, job.job_id)]
            return rejected

    def close(self) -> None:
        """Stop handing out jobs: `take` returns None from now on."""
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def running(self) -> tuple[Job, ...]:
        """The jobs the device has taken and not finished, oldest first."""
        with self._lock:
            return tuple(self._running)

    def status(self, *, executions: bool = False) -> dict:
        with self._lock:
            info = {
                "queues": {client: len(queue) for client, queue in self._queues.items()},
                # the job the device runs, and the next one it holds
                **{name: None if len(self._running) <= k else {"client": self._running[k].client,
                                                               "job": self._running[k].job_id,
                                                               "kind": self._running[k].kind}
                   for k, name in enumerate(("running", "next"))},
                "cache": {"entries": len(self._cache), "bytes": self._cached_bytes},
                **{name: self.counts[name] for name in ("executed", "calibrated", "cache_hits", "joined", "expired")},
                "most_queued": self.most_queued,
                "crashed_jobs": dict(itertools.islice(reversed(self.crashes.items()), CRASHES_LISTED)),
                "crashed_jobs_counted": len(self.crashes),
            }
            if executions:  # the most recent job ids (a reply's header is limited), and how many are counted
                info["executions"] = dict(itertools.islice(reversed(self.executions.items()), EXECUTIONS_LISTED))
                info["executions_counted"] = len(self.executions)
            return info

    # -- device thread -------------------------------------------------------------------------
    def take(self) -> Job | None:
        """The next job in round-robin order over the clients; None if none is queued or the
        scheduler is closed.  Expired jobs on the way are dropped (nobody waits for them)."""
        with self._lock:
            now = time.monotonic()
            while not self._closed and self._queues:
                client, queue = next(iter(self._queues.items()))
                job = queue.popleft()
                del self._queues[client]
                if queue:
                    self._queues[client] = queue  # to the end of the rotation
                if job.expired(now):
                    del self._jobs[(job.client, job.job_id)]
                    self.counts["expired"] += 1
                    continue
                self._running.append(job)
                return job
            return None

    def record_crash(self, job_id: str) -> int:
        """Count that the device process died running `job_id`; how often it has so far."""
        with self._lock:
            self.crashes[job_id] = self.crashes.pop(job_id, 0) + 1
            while len(self.crashes) > self.max_counted_jobs:
                self.crashes.popitem(last=False)
            return self.crashes[job_id]

    def crash_count(self, job_id: str) -> int:
        """How often the device process died running `job_id`."""
        with self._lock:
            return self.crashes.get(job_id, 0)

    def finish(self, job: Job, outcome: Outcome, *, ran: bool = True) -> None:
        """Record a job's outcome; `ran`: it ran on the device once more (not: lost with it)."""
        with self._lock:
            job.outcome = outcome
            job.work = None  # (a cached outcome must not hold the request's network and inputs)
            self._running.remove(job)
            self._finished.append(job)
            if ran:
                self.counts["executed" if job.kind == "execute" else "calibrated"] += 1
                self.executions[job.job_id] = self.executions.pop(job.job_id, 0) + 1
                while len(self.executions) > self.max_counted_jobs:
                    self.executions.popitem(last=False)
            if outcome.keep:
                key = (job.client, job.job_id)
                self._cache[key] = job
                self._cached_bytes += outcome.size
                while len(self._cache) > self.cache_entries or self._cached_bytes > self.cache_bytes:
                    old_key, old = self._cache.popitem(last=False)  # (this job itself if it is too large)
                    self._cached_bytes -= old.outcome.size
                    self._jobs.pop(old_key, None)
