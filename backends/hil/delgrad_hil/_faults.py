"""Fault injection of the service, for tests and demonstrations (docs/hil.md).

Added latency applies to every reply.  Drops and corruption hit the replies of jobs (execute
and calibrate; hello, health and status are answered faithfully), busy answers the job
requests; each decision comes from a generator seeded with `seed`, so a service with the same
faults and the same sequence of jobs fails in the same places.  `exit_after_jobs` ends the
service process (exit status `EXIT_STATUS`) right after its k-th job has run, before the reply
is sent: a crash that loses finished work.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields, replace

from delgrad_core.plugin_tools import check_known_names, checked_number

from delgrad_hil._limits import MAX_LATENCY_S, checked_seconds

__all__ = ["FaultPlan", "Faults", "EXIT_STATUS"]

EXIT_STATUS = 75  # EX_TEMPFAIL: "try again", what a supervisor restarts


@dataclass(frozen=True)
class FaultPlan:
    """Which faults a service injects (all off by default).

    Attributes
    ----------
    latency_s : float
        Added delay of every reply, in seconds.
    drop_fraction, corrupt_fraction, busy_fraction : float
        Fractions of job replies dropped, of job replies with one byte flipped after signing,
        and of job requests answered "busy" instead of queued.
    exit_after_jobs : int or None
        The process exits after running this many jobs (before replying to the last).
    seed : int
        Seed of the fault decisions.
    """

    latency_s: float = 0.0
    drop_fraction: float = 0.0
    corrupt_fraction: float = 0.0
    busy_fraction: float = 0.0
    exit_after_jobs: int | None = None
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "latency_s", checked_seconds(self.latency_s, "faults.latency_s", MAX_LATENCY_S,
                                                             zero_allowed=True))
        for name in ("drop_fraction", "corrupt_fraction", "busy_fraction"):
            object.__setattr__(self, name, checked_number(getattr(self, name), f"faults.{name}", 0, 1))
        object.__setattr__(self, "exit_after_jobs", checked_number(self.exit_after_jobs, "faults.exit_after_jobs", 1,
                                                                   integer=True, optional=True))
        object.__setattr__(self, "seed", checked_number(self.seed, "faults.seed", 0, integer=True))

    @classmethod
    def from_dict(cls, values) -> "FaultPlan":
        """From a dict such as ``{"drop_fraction": 0.1}``, naming an unknown field."""
        if values is None:
            return cls()
        return cls(**check_known_names(values, [f.name for f in fields(cls)], "faults"))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def active(self) -> bool:
        """Whether any field is set (the seed too)."""
        return self != FaultPlan()

    @property
    def injecting(self) -> bool:
        """Whether any fault is injected (a seed alone injects none)."""
        return replace(self, seed=0) != FaultPlan()

    def arguments(self) -> list[str]:
        """The ``delgrad hil serve`` options that set these faults."""
        arguments = []
        for name, value in self.to_dict().items():
            if value != getattr(FaultPlan, name) and value is not None:
                option = "fault-seed" if name == "seed" else name.replace("_", "-")
                arguments += [f"--{option}", repr(value) if isinstance(value, float) else str(value)]
        return arguments


class Faults:
    """The seeded decisions of a running service."""

    def __init__(self, plan: FaultPlan):
        self.plan = plan
        self._replies = random.Random(plan.seed)
        self._requests = random.Random(plan.seed + 1)
        self.jobs_run = 0

    def busy(self) -> bool:
        """Answer this job request "busy"?"""
        return self.plan.busy_fraction > 0 and self._requests.random() < self.plan.busy_fraction

    def reply_fate(self) -> str:
        """"drop", "corrupt" or "send" for the next job reply (two draws each, always)."""
        drop, corrupt = self._replies.random(), self._replies.random()
        if drop < self.plan.drop_fraction:
            return "drop"
        return "corrupt" if corrupt < self.plan.corrupt_fraction else "send"

    def corrupted(self, frames: list[bytes]) -> list[bytes]:
        """`frames` with one byte of one frame (chosen by the generator) flipped."""
        index = self._replies.randrange(len(frames))
        frame = bytearray(frames[index])
        if frame:
            frame[self._replies.randrange(len(frame))] ^= 0xFF
        else:
            frame = bytearray(b"\xff")
        return [*frames[:index], bytes(frame), *frames[index + 1:]]

    def job_finished(self) -> bool:
        """Count a job that ran; True if the service must now exit."""
        self.jobs_run += 1
        return self.plan.exit_after_jobs is not None and self.jobs_run >= self.plan.exit_after_jobs
